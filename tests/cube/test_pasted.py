"""The odc engine's fast path (tiles on the output grid, ``eocube.cube._pasted``) makes
exactly the cube odc-stac makes: same values bit for bit, coordinates, attributes and
failures; and it leaves every other grid to odc-stac."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from eocube.cube import _pasted, load, plan_load, read_failures
from eocube.errors import ReadError


def _both(monkeypatch, items, **kw):
    """(fast path, odc-stac path) cubes, computed; asserts the fast path was taken."""
    calls = []
    plan = _pasted.plan

    def spy(*a, **k):
        calls.append(out := plan(*a, **k))
        return out

    monkeypatch.setattr(_pasted, "plan", spy)
    fast = load(items, **kw)
    assert calls and calls[-1] is not None, "the fast path was not taken"
    monkeypatch.setattr(_pasted, "plan", lambda *a, **k: None)
    slow = load(items, **kw)
    monkeypatch.undo()
    return fast, slow


def _assert_same(fast, slow):
    assert fast.chunks == slow.chunks
    fast, slow = fast.compute(), slow.compute()
    xr.testing.assert_identical(fast, slow)
    for v in fast.data_vars:
        a, b = fast[v].values, slow[v].values
        if a.dtype.kind == "f":
            a, b = a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")
        np.testing.assert_array_equal(a, b, err_msg=v)


def _shifted(gb, dy, dx, ny, nx):
    """``gb``'s grid moved by whole pixels, ``ny`` × ``nx``."""
    return GeoBox((ny, nx), gb.transform * Affine.translation(dx, dy), gb.crs)


@pytest.mark.parametrize("groupby", ["solar_day", "time"])
def test_mosaics_on_the_items_grid_equal_odc_stac(monkeypatch, s2_items, tiny_scene, groupby):
    fast, slow = _both(monkeypatch, s2_items, bands=["B04", "nir"], geobox=tiny_scene.geobox,
                       chunks={"x": 48, "y": 40}, groupby=groupby)
    assert fast.sizes["time"] >= 6
    _assert_same(fast, slow)


def test_class_bands_on_their_grid_equal_odc_stac(monkeypatch, s2_items, tiny_scene):
    fast, slow = _both(monkeypatch, s2_items, bands=["swir16", "SCL"],
                       geobox=tiny_scene.geobox_20m, chunks={"x": 32, "y": 32, "time": 1})
    _assert_same(fast, slow)


@pytest.mark.parametrize(("dy", "dx", "ny", "nx", "chunk"), [
    (-7, 13, 90, 70, 23),     # partial overlap, chunks straddling tile edges
    (30, -50, 200, 230, 64),  # beyond the items on two sides: NaN fill
    (5, 5, 17, 19, 512),      # one chunk larger than the grid
])
def test_partial_overlaps_equal_odc_stac(monkeypatch, s2_items, tiny_scene, dy, dx, ny, nx,
                                         chunk):
    gb = _shifted(tiny_scene.geobox, dy, dx, ny, nx)
    for on_error in ("raise", "nan"):
        fast, slow = _both(monkeypatch, s2_items, bands=["B04", "B08"], geobox=gb,
                           chunks={"x": chunk, "y": chunk}, on_error=on_error)
        _assert_same(fast, slow)
    assert np.isnan(fast.B04.values).any() or (dy >= 0 and dx >= 0)


def test_off_grid_loads_go_through_odc_stac(monkeypatch, s2_items, tiny_scene):
    gb = tiny_scene.geobox
    half = GeoBox((64, 64), gb.transform * Affine.translation(0.5, 0), gb.crs)
    coarse = GeoBox((32, 32), gb.transform * Affine.scale(2), gb.crs)
    utm51 = GeoBox.from_bbox((100_000, 2_500_000, 100_640, 2_500_640), "EPSG:32651",
                             resolution=10)
    def fast_path_taken(*args, **kwargs):
        raise AssertionError("the pasted fast path was taken for an off-grid load")

    monkeypatch.setattr(_pasted, "build", fast_path_taken)
    for grid in (half, coarse, utm51):
        cube = load(s2_items, bands=["B04"], geobox=grid, chunks={"x": 32, "y": 32})
        assert cube.odc.geobox == grid
        lp = plan_load(s2_items, bands=["B04"], geobox=grid, chunks={"x": 32, "y": 32})
        assert _pasted.plan(lp) is None
    # the same plan on the items' own grid is pasted ...
    lp = plan_load(s2_items, bands=["B04"], geobox=gb, chunks={"x": 32, "y": 32})
    assert _pasted.plan(lp) is not None
    # ... but not 10 m bands with a 20 m band on the 10 m grid, nor chunks it cannot tile
    lp = plan_load(s2_items, bands=["B04", "SCL"], geobox=gb, chunks={"x": 32, "y": 32})
    assert _pasted.plan(lp) is None
    lp = plan_load(s2_items, bands=["B04"], geobox=gb, chunks={"x": "auto", "y": 32})
    assert _pasted.plan(lp) is None


def test_graph_is_one_task_per_chunk_and_builds_lazily(s2_items, tiny_scene):
    cube = load(s2_items, bands=["B04", "B08"], geobox=tiny_scene.geobox,
                chunks={"x": 32, "y": 32})
    n_chunks = sum(v.data.npartitions for v in cube.data_vars.values())
    assert len(dict(cube.__dask_graph__())) == n_chunks


def test_failures_equal_odc_stac_under_both_policies(monkeypatch, broken_items, tiny_scene,
                                                    broken_policy):
    gb = _shifted(tiny_scene.geobox, -3, 4, 100, 90)
    fast, slow = _both(monkeypatch, broken_items, href_policy=broken_policy,
                       bands=["B04", "B08"], geobox=gb, chunks={"x": 32, "y": 24}, on_error="nan")
    _assert_same(fast, slow)
    assert read_failures(fast.compute()) == read_failures(slow.compute()) != []
    ok = [it for i, it in enumerate(broken_items) if i != 2]
    for band in ("B04", "B08"):  # one failing source each: the error does not depend on order
        msgs = []
        for use_fast in (True, False):
            if not use_fast:
                monkeypatch.setattr(_pasted, "plan", lambda *a, **k: None)
            cube = load(ok, href_policy=broken_policy, bands=[band], geobox=gb,
                        chunks={"x": 32, "y": 24})
            with pytest.raises(ReadError, match=f"asset '{band}'") as e:
                cube.compute()
            msgs.append(str(e.value))
            monkeypatch.undo()
        assert msgs[0] == msgs[1]
