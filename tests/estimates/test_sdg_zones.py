"""SDG 11.3.1 per zone against a hand computation on three zones with different built-up
areas at the two dates and different population growth (issue #15: the dates swapped per zone
passed every test)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import wrap_xr

from eocube.estimates.sdg import lcrpgr

CRS = "EPSG:32650"
# a 30 × 30 grid of 10 m pixels; zones are the left, middle and right 10-column strips
GB = GeoBox.from_bbox((0, 0, 300, 300), crs=CRS, resolution=10)


def _maps() -> xr.DataArray:
    b0 = np.zeros((30, 30), "float32")
    b1 = np.zeros((30, 30), "float32")
    b0[:5, 0:10] = 1     # zone A: 50 px → 100 px
    b1[:10, 0:10] = 1
    b0[:20, 10:20] = 1   # zone B: 200 px → 220 px
    b1[:22, 10:20] = 1
    b0[:10, 20:30] = 1   # zone C: 100 px → 80 px (built-up lost: LCR < 0)
    b1[:8, 20:30] = 1
    two = xr.concat([wrap_xr(b0, GB), wrap_xr(b1, GB)], dim="year")
    return two.assign_coords(year=[2016, 2020])


def _zones() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"community_id": ["A", "B", "C"]},
                            geometry=[shapely.box(0, 0, 100, 300), shapely.box(100, 0, 200, 300),
                                      shapely.box(200, 0, 300, 300)], crs=CRS)


CENSUS = pd.DataFrame({"community_id": ["A", "B", "C"], "pop_start": [1000.0, 4000.0, 500.0],
                       "pop_end": [1500.0, 4100.0, 400.0]})


def test_per_zone_rates_match_a_hand_computation():
    out = lcrpgr(_maps(), population=CENSUS, zones=_zones()).set_index("zone")
    years = 4.0
    hand = {  # (urb_t1 m², urb_t2 m², pop_t1, pop_t2)
        "A": (5000.0, 10000.0, 1000.0, 1500.0),
        "B": (20000.0, 22000.0, 4000.0, 4100.0),
        "C": (10000.0, 8000.0, 500.0, 400.0),
    }
    for z, (u1, u2, p1, p2) in hand.items():
        r = out.loc[z]
        assert (r["urb_t1"], r["urb_t2"]) == pytest.approx((u1, u2))
        assert (r["pop_t1"], r["pop_t2"]) == pytest.approx((p1, p2))
        lcr, pgr = np.log(u2 / u1) / years, np.log(p2 / p1) / years
        assert r["LCR"] == pytest.approx(lcr, rel=1e-9)
        assert r["PGR"] == pytest.approx(pgr, rel=1e-9)
        assert r["LCRPGR"] == pytest.approx(lcr / pgr, rel=1e-9)
    # the signs a swap of dates would flip: A and B consume land, C loses both
    assert out.loc["A", "LCR"] > 0 and out.loc["C", "LCR"] < 0 and out.loc["C", "PGR"] < 0
    assert out.loc["A", "LCRPGR"] == pytest.approx(np.log(2) / np.log(1.5))
    # the city row: sums over the zones
    city = out.loc["city"]
    assert city["urb_t1"] == pytest.approx(35000.0) and city["urb_t2"] == pytest.approx(40000.0)
    assert city["LCRPGR"] == pytest.approx(np.log(40 / 35) / np.log(6000 / 5500))


def test_zone_order_in_the_census_does_not_matter():
    shuffled = CENSUS.iloc[[2, 0, 1]].reset_index(drop=True)
    a = lcrpgr(_maps(), population=CENSUS, zones=_zones()).set_index("zone")
    b = lcrpgr(_maps(), population=shuffled, zones=_zones().iloc[[1, 2, 0]]).set_index("zone")
    pd.testing.assert_series_equal(a.loc[["A", "B", "C"], "LCRPGR"],
                                   b.loc[["A", "B", "C"], "LCRPGR"])
