from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from eocube.catalog.hrefs import HrefPolicy
from eocube.catalog.search import search
from eocube.cube import load, read_failures
from eocube.cube.blackmarble import FIELDS
from eocube.errors import ReadError
from eocube.synth import vnp46a3 as bm


@pytest.fixture(scope="module")
def bm_items(stac_api):
    return search(stac_api, profile="blackmarble", datetime="2020-03-01/2020-05-31")


def test_tiles_have_the_real_layout(tiny_archive):
    path = next(tiny_archive.glob("blackmarble-vnp46a3/*/*.h5"))
    assert ".h29v06." in path.name and path.stat().st_size < 200_000
    with h5py.File(path, "r") as f:
        g = f[FIELDS]
        for name in ("AllAngle_Composite_Snow_Free", "AllAngle_Composite_Snow_Free_Quality",
                     "AllAngle_Composite_Snow_Free_Num", "lat", "lon"):
            assert name in g
        rad = g["AllAngle_Composite_Snow_Free"]
        assert rad.shape == (2400, 2400) and rad.dtype == np.uint16
        assert rad.attrs["_FillValue"] == 65535 and rad.attrs["scale_factor"] == 0.1
        assert f.attrs["HorizontalTileNumber"] == "29" and f.attrs["VerticalTileNumber"] == "06"
    assert bm.tile_of(114.1, 22.6) == (29, 6)


def test_black_marble_reads_onto_its_grid_with_the_quality_mask(bm_items, tiny_scene,
                                                                tiny_archive):
    cube = load(bm_items, geobox=tiny_scene.ntl_geobox, chunks={"x": 8, "y": 8})
    assert cube.radiance.chunks is not None and cube.sizes["time"] == 3
    c = cube.compute()
    for i, t in enumerate(c.time.values):
        m = pd.Timestamp(t, tz="UTC")
        idx = (m.year - 2020) * 12 + m.month - 1
        end = m + pd.offsets.MonthEnd(0) + pd.Timedelta(hours=23, minutes=59, seconds=59)
        truth = tiny_scene.ntl_month(idx, end)
        item = json.loads(next(tiny_archive.glob(
            f"blackmarble-vnp46a3/*A{m:%Y}{m.dayofyear:03d}*/*.json")).read_text())
        path = next(tiny_archive.glob(f"blackmarble-vnp46a3/{item['id']}/*.h5"))
        r0, c0 = bm._offset_in_tile(tiny_scene.ntl_geobox, 29, 6)
        ny, nx = truth.shape
        with h5py.File(path, "r") as f:
            q = f[FIELDS]["AllAngle_Composite_Snow_Free_Quality"][r0:r0 + ny, c0:c0 + nx]
        got = c.radiance.values[i]
        np.testing.assert_array_equal(np.isnan(got), q != 0)
        assert (q != 0).any()
        np.testing.assert_allclose(got[q == 0], truth[q == 0], atol=0.05 + 1e-6)


def test_black_marble_onto_a_utm_grid_and_failure_policies(bm_items, tiny_scene, tmp_path,
                                                          tiny_archive):
    utm = load(bm_items[:1], geobox=tiny_scene.geobox_100m, chunks={"x": 8, "y": 8})
    v = utm.radiance.values
    assert v.shape == (1, *tiny_scene.geobox_100m.shape.yx) and np.isfinite(v).mean() > 0.8
    broken = [it.clone() for it in bm_items[:2]]
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    broken[0].assets["h5"].href = bad.as_uri()
    pol = HrefPolicy(roots=(tmp_path, tiny_archive))
    with pytest.raises(ReadError, match=f"asset 'h5' of item '{broken[0].id}'"):
        load(broken, href_policy=pol, geobox=tiny_scene.ntl_geobox).compute()
    c = load(broken, href_policy=pol, geobox=tiny_scene.ntl_geobox, on_error="nan").compute()
    assert np.isnan(c.radiance.values[0]).all() and np.isfinite(c.radiance.values[1]).any()
    assert [f["items"] for f in read_failures(c)] == [[broken[0].id]]
