from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pystac
import pytest

from eocube.catalog import open_archive
from eocube.cube import load, read_failures
from eocube.cube.masks import cloud_mask, mask_clouds
from eocube.errors import ReadError
from eocube.synth.build import s2_dates


def _truth(scene, t):
    """The simulator's own DNs and SCL for the acquisition at time t."""
    dates = s2_dates(scene.world.spec)
    i = int(np.flatnonzero(dates.tz_convert(None) == pd.Timestamp(t))[0])
    return scene.s2_scene(i, dates[i])


@pytest.mark.parametrize("engine", ["odc", "stackstac"])
def test_scaled_bands_equal_the_simulated_reflectance(s2_items, tiny_scene, engine):
    c10 = load(s2_items, bands=["B04", "nir"], geobox=tiny_scene.geobox, engine=engine,
               chunks={"x": 64, "y": 64}).compute()
    c20 = load(s2_items, bands=["swir16", "SCL"], geobox=tiny_scene.geobox_20m, engine=engine,
               chunks={"x": 32, "y": 32}).compute()
    assert c10.sizes["time"] == c20.sizes["time"] == 6
    assert c10.B04.dtype == np.float32 and c20.SCL.dtype == np.uint8
    cloudy = 0
    for t in c10.time.values:
        dn = _truth(tiny_scene, t)
        for var, band, cube in (("B04", "B04", c10), ("nir", "B08", c10),
                                ("swir16", "B11", c20)):
            want = (dn[band].astype("float64") - 1000) / 10000
            np.testing.assert_allclose(cube[var].sel(time=t).values, want, atol=0.5e-4,
                                       rtol=0)
        np.testing.assert_array_equal(c20.SCL.sel(time=t).values, dn["SCL"])
        truth_mask = np.isin(dn["SCL"], (3, 8, 9, 10))
        got = cloud_mask(c20).sel(time=t).values
        np.testing.assert_array_equal(got, truth_mask)
        cloudy += truth_mask.any()
    assert cloudy >= 1, "the window must include a cloudy date"


def test_mask_clouds_removes_exactly_the_cloud_and_shadow_pixels(s2_items, tiny_scene):
    cube = load(s2_items, bands=["B11", "SCL"], geobox=tiny_scene.geobox_20m,
                chunks={"x": 32, "y": 32})
    clear = mask_clouds(cube, classes=(3, 8, 9, 10)).compute()
    assert "SCL" not in clear
    for t in clear.time.values:
        truth = np.isin(_truth(tiny_scene, t)["SCL"], (3, 8, 9, 10))
        np.testing.assert_array_equal(np.isnan(clear.B11.sel(time=t).values), truth)


def test_like_and_crs_resolution_give_the_same_grid(s2_items, tiny_scene):
    a = load(s2_items, bands=["B04"], geobox=tiny_scene.geobox)
    b = load(s2_items[:4], bands=["red"], like=a)
    assert b.odc.geobox == a.odc.geobox and "red" in b
    c = load(s2_items, bands=["B04"], crs="EPSG:32650", resolution=20)
    assert c.odc.geobox.crs == "EPSG:32650" and c.odc.geobox.resolution.x == 20
    assert c.odc.geobox.extent.contains(tiny_scene.geobox.extent.buffer(-30))
    assert int(a.spatial_ref) == 32650 and a.B04.attrs["units"] == "1"


# ---- failures ------------------------------------------------------------------------------

def test_failures_raise_by_default_naming_item_and_asset(broken_items, tiny_scene,
                                                         broken_policy):
    ok = broken_items[3]
    with pytest.raises(ReadError, match=f"asset 'B04' of item '{broken_items[2].id}'"):
        load(broken_items, href_policy=broken_policy, bands=["B04", "B08"],
             geobox=tiny_scene.geobox)
    cube = load([broken_items[0], ok], href_policy=broken_policy, bands=["B04"],
                geobox=tiny_scene.geobox, chunks={"x": 32, "y": 32})
    with pytest.raises(ReadError, match=f"asset 'B04' of item '{broken_items[0].id}'"):
        cube.compute()
    cube = load([broken_items[1], ok], href_policy=broken_policy, bands=["B08"],
                geobox=tiny_scene.geobox)
    with pytest.raises(ReadError, match=f"asset 'B08' of item '{broken_items[1].id}'.*gone"):
        cube.compute()


@pytest.mark.parametrize("engine", ["odc", "stackstac"])
def test_failures_become_nan_and_are_recorded(broken_items, tiny_scene, engine,
                                              broken_policy):
    cube = load(broken_items, href_policy=broken_policy, bands=["B04", "B08"],
                geobox=tiny_scene.geobox, engine=engine, on_error="nan",
                chunks={"x": 32, "y": 32})
    c = cube.compute()
    fails = read_failures(c)
    assert {f["band"] for f in fails} == {"B04", "B08"}
    assert all(set(f["items"]) == {it.id for it in broken_items} for f in fails)
    half = tiny_scene.geobox.shape.y // 2
    tiles = {it.id: it.properties["s2:mgrs_tile"] for it in broken_items}
    quads = {"50Q0000": np.s_[:half, :half], "50Q0100": np.s_[:half, half:],
             "50Q0001": np.s_[half:, :half], "50Q0101": np.s_[half:, half:]}
    b04 = c.B04.values[0]
    b08 = c.B08.values[0]
    # the corrupted and the asset-less tile are NaN in B04, the missing file NaN in B08 ...
    assert np.isnan(b04[quads[tiles[broken_items[2].id]]]).all()
    assert np.isnan(b08[quads[tiles[broken_items[1].id]]]).all()
    assert np.isnan(b04[quads[tiles[broken_items[0].id]]]).any()
    # ... and every other pixel holds the simulated value
    t = c.time.values[0]
    dn = _truth(tiny_scene, t)
    for var, band, arr in (("B04", "B04", b04), ("B08", "B08", b08)):
        ok = np.isfinite(arr)
        np.testing.assert_allclose(arr[ok], ((dn[band] - 1000.0) / 10000)[ok], atol=0.5e-4)
        assert ok[quads[tiles[broken_items[3].id]]].all(), var


def test_a_clean_load_records_no_failure(s2_items, tiny_scene):
    cube = load(s2_items[:4], bands=["B04", "SCL"], geobox=tiny_scene.geobox, on_error="nan")
    assert read_failures(cube) == []
    assert cube.read_failed.dims == ("time", "band")


def test_items_may_be_plain_dicts(tiny_archive, tiny_scene):
    items = [it for it in open_archive(tiny_archive).items("sentinel-1-rtc")][:8]
    cube = load(items, bands=["vv"], geobox=tiny_scene.geobox)
    v = cube.vv.values
    assert np.isfinite(v).mean() > 0.9 and np.nanmin(v) > 0 and cube.vv.attrs["units"] == \
        "linear power"
    assert json.loads(json.dumps(items[0]))["collection"] == "sentinel-1-rtc"
    assert isinstance(pystac.Item.from_dict(items[0]), pystac.Item)


def test_load_takes_plan_loads_keywords_declared_once():
    """``load`` is plan + engine + finish: its keywords are ``plan_load``'s, shown by
    ``inspect.signature`` and checked like any keyword-only parameter."""
    import inspect

    from eocube.cube import plan_load

    sig, plan_sig = inspect.signature(load), inspect.signature(plan_load)
    assert list(sig.parameters) == list(plan_sig.parameters)
    assert all(p.kind == p.KEYWORD_ONLY for n, p in sig.parameters.items() if n != "items")
    assert sig.parameters["groupby"].default == "solar_day"
    with pytest.raises(TypeError, match="bandz"):
        load([], bandz=["B04"])
