from __future__ import annotations

import json
from pathlib import Path

import pytest

from eocube.catalog.profiles import (
    CATALOG_URLS,
    SENTINEL1_RTC,
    SENTINEL2_L2A,
    catalog_key,
    get_profile,
    profile_for_item,
)
from eocube.errors import ConfigError

DATA = Path(__file__).parent / "data"


def _item(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def test_planetary_computer_s2_bands_map_by_band_id():
    it = _item("pc_sentinel2_l2a.json")
    assert SENTINEL2_L2A.band_map(it) == {"B04": "B04", "B08": "B08", "B11": "B11",
                                          "SCL": "SCL"}
    assert SENTINEL2_L2A.asset_key(it, "red") == "B04"
    assert SENTINEL2_L2A.asset_key(it, "swir16") == "B11"
    assert SENTINEL2_L2A.asset_key(it, "B02") is None  # not in this item


def test_earth_search_s2_bands_map_by_common_name():
    it = _item("es_sentinel2_l2a.json")
    assert SENTINEL2_L2A.band_map(it) == {"B04": "red", "B08": "nir", "B11": "swir16",
                                          "SCL": "scl"}
    assert SENTINEL2_L2A.asset_key(it, "B04") == "red"
    assert SENTINEL2_L2A.nodata(it, "B04") == 0


def test_s2_offset_follows_the_processing_baseline():
    pc = _item("pc_sentinel2_l2a.json")  # no raster:bands: the profile's rule decides
    assert SENTINEL2_L2A.scale_offset(pc, "B04") == pytest.approx((1e-4, -0.1))
    pc["properties"]["s2:processing_baseline"] = "03.01"
    assert SENTINEL2_L2A.scale_offset(pc, "B04") == pytest.approx((1e-4, 0.0))
    pc["properties"]["s2:processing_baseline"] = "05.10"
    assert SENTINEL2_L2A.scale_offset(pc, "red") == pytest.approx((1e-4, -0.1))
    assert SENTINEL2_L2A.scale_offset(pc, "SCL") == (1.0, 0.0)


def test_s2_offset_from_raster_bands_and_the_earth_search_flag():
    es = _item("es_sentinel2_l2a.json")
    assert SENTINEL2_L2A.scale_offset(es, "B04") == pytest.approx((1e-4, -0.1))
    es["properties"]["earthsearch:boa_offset_applied"] = True  # DNs already harmonised
    assert SENTINEL2_L2A.scale_offset(es, "B04") == pytest.approx((1e-4, 0.0))


def test_s1_rtc_item_of_planetary_computer():
    it = _item("pc_sentinel1_rtc.json")
    assert profile_for_item(it) is SENTINEL1_RTC
    assert SENTINEL1_RTC.band_map(it) == {"vv": "vv", "vh": "vh"}
    assert SENTINEL1_RTC.nodata(it, "VV") == -32768
    assert SENTINEL1_RTC.scale_offset(it, "vh") == (1.0, 0.0)


def test_profile_knows_each_catalogs_collection_and_resampling():
    s2 = get_profile("s2")
    assert s2.collection(CATALOG_URLS["planetary-computer"]) == "sentinel-2-l2a"
    assert s2.collection("http://127.0.0.1:8080") == "sentinel-2-l2a"
    assert catalog_key("https://earth-search.aws.element84.com/v1/") == "earth-search"
    assert s2.resampling("SCL") == "nearest" and s2.band("SCL").is_class
    assert s2.resampling("red") == "bilinear"
    assert get_profile("ntl").resampling("radiance") == "nearest"
    with pytest.raises(ConfigError, match="no collection in the 'earth-search' catalog"):
        get_profile("s1").collection(CATALOG_URLS["earth-search"])


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ConfigError, match="unknown sensor profile 'landsat'"):
        get_profile("landsat")
    with pytest.raises(ConfigError, match="has no band 'B99'"):
        SENTINEL2_L2A.band("B99")
    with pytest.raises(ConfigError, match="matches no sensor profile"):
        profile_for_item({"id": "x", "collection": "landsat-c2-l2", "assets": {}})


def test_earth_search_collection_1_items_are_sentinel_2():
    # a real Earth Search item of sentinel-2-c1-l2a (source: tests/catalog/data/SOURCES.md)
    it = _item("es_c1_sentinel2_l2a.json")
    assert it["collection"] == "sentinel-2-c1-l2a"
    assert profile_for_item(it) is SENTINEL2_L2A
    assert SENTINEL2_L2A.band_map(it) == {"B02": "blue", "B03": "green", "B04": "red",
                                          "B05": "rededge1", "B08": "nir", "B8A": "nir08",
                                          "B11": "swir16", "SCL": "scl"}
    assert SENTINEL2_L2A.scale_offset(it, "red") == pytest.approx((1e-4, -0.1))
    assert SENTINEL2_L2A.scale_offset(it, "B8A") == pytest.approx((1e-4, -0.1))
    assert SENTINEL2_L2A.nodata(it, "nir") == 0 and SENTINEL2_L2A.nodata(it, "SCL") == 0
    # Earth Search is searched in Collection 1; its legacy collection is still recognised
    assert SENTINEL2_L2A.collection(CATALOG_URLS["earth-search"]) == "sentinel-2-c1-l2a"
    assert profile_for_item(_item("es_sentinel2_l2a.json")) is SENTINEL2_L2A
