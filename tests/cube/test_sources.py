"""Each source is read as its own metadata says, on every engine: the declared nodata whatever
the file's tag, its own scale and offset within a time step, one band of a multi-band asset,
and items of Earth Search's Collection 1."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from eocube.catalog.hrefs import HrefPolicy
from eocube.catalog.search import search
from eocube.cube import _pasted, load
from eocube.errors import ConfigError
from tests.cube.test_load import _truth

ENGINES = ["odc", "odc-stac", "stackstac"]


def _load(monkeypatch, items, engine, **kw):
    """``load`` on the fast path ("odc", asserted taken on the items' grid), through odc-stac
    ("odc-stac": fast path off) or stackstac; computed."""
    if engine == "odc-stac":
        monkeypatch.setattr(_pasted, "plan", lambda *a, **k: None)
    try:
        cube = load(items, engine="stackstac" if engine == "stackstac" else "odc", **kw)
        return cube.compute()
    finally:
        monkeypatch.undo()


def _quadrants(items, n):
    half = n // 2
    quads = {"50Q0000": np.s_[:half, :half], "50Q0100": np.s_[:half, half:],
             "50Q0001": np.s_[half:, :half], "50Q0101": np.s_[half:, half:]}
    return [quads[it.properties["s2:mgrs_tile"]] for it in items]


@pytest.fixture()
def first_date(s2_items):
    t0 = s2_items[0].datetime
    items = [it.clone() for it in s2_items if it.datetime == t0]
    assert len(items) == 4
    return items


def _rewrite(src_href, dst, *, nodata, zero=np.s_[10:20, 5:30]):
    """The COG at ``src_href`` written to ``dst`` with DN 0 over ``zero`` and with the nodata
    tag ``nodata`` (``None``: no tag at all)."""
    with rasterio.open(src_href.removeprefix("file://")) as ds:
        dn = ds.read(1)
        prof = ds.profile
    dn[zero] = 0
    prof.update(nodata=nodata, driver="GTiff")
    with rasterio.open(dst, "w", **prof) as out:
        out.write(dn, 1)
    with rasterio.open(dst) as check:
        assert check.nodata == nodata
    return dst.as_uri()


# ---- #16.1: nodata declared by the item or the profile, whatever the file says ---------------

@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("declared", ["item", "profile"])
def test_declared_nodata_applies_to_a_cog_without_a_nodata_tag(monkeypatch, first_date,
                                                               tiny_scene, tmp_path, engine,
                                                               declared, tiny_archive):
    items = first_date
    src = items[0].assets["B04"].get_absolute_href()
    tagged = [it.clone() for it in items]
    untagged = [it.clone() for it in items]
    tagged[0].assets["B04"].href = _rewrite(src, tmp_path / "tagged.tif", nodata=0)
    untagged[0].assets["B04"].href = _rewrite(src, tmp_path / "untagged.tif", nodata=None)
    if declared == "profile":  # the item says nothing: the profile's nodata (0) applies
        for it in (tagged[0], untagged[0]):
            del it.assets["B04"].extra_fields["raster:bands"][0]["nodata"]
    gb = tiny_scene.geobox
    kw = {"bands": ["B04"], "chunks": {"x": 48, "y": 40},
          "href_policy": HrefPolicy(roots=(tmp_path, tiny_archive))}
    on_grid = _load(monkeypatch, untagged, engine, geobox=gb, **kw)
    q = _quadrants(untagged, gb.shape.y)[0]
    b04 = on_grid.B04.values[0][q]
    assert np.isnan(b04[10:20, 5:30]).all(), "DN 0 must be nodata, not reflectance -0.1"
    assert np.nanmin(on_grid.B04.values) > -0.1 + 1e-6
    ok = np.ones(b04.shape, bool)
    ok[10:20, 5:30] = False
    want = (_truth(tiny_scene, on_grid.time.values[0])["B04"][q] - 1000.0) / 10000
    np.testing.assert_allclose(b04[ok], want[ok], atol=0.5e-4)
    xr.testing.assert_identical(on_grid, _load(monkeypatch, tagged, engine, geobox=gb, **kw))
    # off the items' grid (resampled): nodata never blends into the valid pixels
    off = GeoBox((70, 60), gb.transform * Affine.translation(3.5, 2.5), gb.crs)
    a = _load(monkeypatch, untagged, engine, geobox=off, resampling="bilinear", **kw)
    b = _load(monkeypatch, tagged, engine, geobox=off, resampling="bilinear", **kw)
    xr.testing.assert_identical(a, b)
    assert np.nanmin(a.B04.values) > -0.1 + 1e-6


# ---- #16.4: items of one time step that scale differently ------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_items_of_one_step_that_scale_differently_are_each_scaled(monkeypatch, first_date,
                                                                  tiny_scene, engine):
    items = first_date
    # two tiles of an older processing baseline (no BOA offset), one whose offset Earth
    # Search marks as already applied, one as published
    for it in items[:2]:
        del it.assets["B04"].extra_fields["raster:bands"][0]["offset"]
        it.properties["s2:processing_baseline"] = "03.01"
    items[2].properties["earthsearch:boa_offset_applied"] = True
    gb = tiny_scene.geobox
    cube = _load(monkeypatch, items, engine, bands=["B04"], geobox=gb,
                 chunks={"x": 48, "y": 40})
    assert cube.sizes["time"] == 1
    dn = _truth(tiny_scene, cube.time.values[0])["B04"].astype("float64")
    got = cube.B04.values[0]
    for q, offset in zip(_quadrants(items, gb.shape.y), (0.0, 0.0, 0.0, -0.1), strict=True):
        np.testing.assert_allclose(got[q], dn[q] * 1e-4 + offset, atol=0.5e-4)


# ---- #16.9: one band of a multi-band asset ---------------------------------------------------

@pytest.fixture(scope="module")
def vhr_items(stac_api):
    return search(stac_api, profile="vhr")


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_stackstac_loads_the_bands_of_a_multi_band_asset_as_odc_does(vhr_items, shift):
    items = list(vhr_items)[:4]
    a = items[0].assets["visual"]
    gb = GeoBox(tuple(a.extra_fields["proj:shape"]), Affine(*a.extra_fields["proj:transform"]),
                items[0].properties["proj:code"])
    gb = GeoBox((200, 240), gb.transform * Affine.translation(shift - 20, shift + 30), gb.crs)
    kw = {"bands": ["red", "green", "blue"], "geobox": gb, "chunks": {"x": 64, "y": 64}}
    odc = load(items, engine="odc", **kw).compute()
    sst = load(items, engine="stackstac", **kw).compute()
    assert odc.red.dtype == np.float32 and np.isfinite(odc.red.values).mean() > 0.5
    assert not np.array_equal(odc.red.values, odc.blue.values, equal_nan=True)
    if shift == 0:  # on the asset's grid: the same pixels
        xr.testing.assert_identical(odc, sst)
    else:  # resampled by two warpers (GDAL's reproject and a WarpedVRT)
        xr.testing.assert_allclose(odc, sst, atol=1.0)
        assert (np.isnan(odc.red.values) == np.isnan(sst.red.values)).mean() > 0.99


# ---- #16.3: Earth Search Collection 1 items ----------------------------------------------------

def _as_c1(item):
    """``item`` as Earth Search's ``sentinel-2-c1-l2a`` publishes it: common-name asset keys
    (the recorded C1 item in tests/catalog/data holds the same keys)."""
    d = item.to_dict(transform_hrefs=False)
    d["collection"] = "sentinel-2-c1-l2a"
    rename = {"B04": "red", "B08": "nir", "SCL": "scl"}
    d["assets"] = {rename.get(k, k): {**a, "href": item.assets[k].get_absolute_href()}
                   for k, a in d["assets"].items()}
    d["links"] = []
    return d


@pytest.mark.parametrize("engine", ["odc", "stackstac"])
def test_earth_search_c1_items_load_without_a_profile(s2_items, tiny_scene, engine):
    c1 = [_as_c1(it) for it in s2_items]
    got = load(c1, bands=["red", "nir", "scl"], geobox=tiny_scene.geobox, engine=engine,
               chunks={"x": 64, "y": 64}).compute()
    want = load(s2_items, bands=["B04", "B08", "SCL"], geobox=tiny_scene.geobox,
                engine=engine, chunks={"x": 64, "y": 64}).compute()
    assert got.attrs["eocube:profile"] == "sentinel-2-l2a"
    for a, b in (("red", "B04"), ("nir", "B08"), ("scl", "SCL")):
        np.testing.assert_array_equal(got[a].values, want[b].values)


# ---- HDF5 tiles: engine= and resampling= are honoured or refused ------------------------------

def test_hdf5_loads_honour_resampling_and_refuse_another_engine(stac_api, s2_items, tiny_scene):
    bm = search(stac_api, profile="blackmarble", datetime="2020-03-01/2020-03-31")
    with pytest.raises(ConfigError, match="engine='stackstac' cannot read the 'vnp46a3'"):
        load(bm, geobox=tiny_scene.geobox_100m, engine="stackstac")
    with pytest.raises(ConfigError, match="engine='hdf5' reads Black Marble HDF5 tiles only"):
        load(s2_items, bands=["B04"], engine="hdf5")
    with pytest.raises(ConfigError, match=r"resampling= names \['B04'\]"):
        load(bm, geobox=tiny_scene.geobox_100m, resampling={"B04": "average"})
    kw = {"geobox": tiny_scene.geobox_100m, "chunks": {"x": 8, "y": 8}}
    near = load(bm, engine="hdf5", **kw).radiance.values
    bil = load(bm, resampling="bilinear", **kw).radiance.values
    both = np.isfinite(near) & np.isfinite(bil)
    assert both.mean() > 0.7 and not np.array_equal(near[both], bil[both])
    # the NTL grid is 15″ (~460 m): nearest repeats each radiance over a block of 100 m pixels
    assert len(np.unique(near[both])) < len(np.unique(bil[both]))


def test_stackstac_items_off_the_output_bounds_are_left_out_in_step_order(monkeypatch,
                                                                          first_date,
                                                                          s2_items,
                                                                          tiny_scene):
    """stackstac drops the items that miss the bounds; whether eocube foresees it or learns
    it from stackstac's answer (a second stack call), the steps get the right items."""
    from eocube.cube import _stackstac

    gb = tiny_scene.geobox
    corner = GeoBox((40, 30), gb.transform * Affine.translation(-10, -5), gb.crs)
    kw = {"bands": ["B04", "B08"], "geobox": corner, "chunks": {"x": 16, "y": 16}}
    want = load(s2_items, engine="odc", **kw).compute()
    foreseen = load(s2_items, engine="stackstac", **kw).compute()
    monkeypatch.setattr(_stackstac, "_may_overlap", lambda it, gb: True)
    learnt = load(s2_items, engine="stackstac", **kw).compute()
    assert np.isfinite(want.B04.values).any() and np.isnan(want.B04.values).any()
    xr.testing.assert_identical(foreseen, want)
    xr.testing.assert_identical(learnt, want)
