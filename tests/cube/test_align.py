from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from eocube.catalog.search import search
from eocube.cube import load
from eocube.cube.align import align, total
from eocube.errors import GridError


@pytest.fixture(scope="module")
def cubes(stac_api, tiny_scene):
    s2 = load(search(stac_api, profile="s2", datetime="2020-06-01/2020-08-31"),
              bands=["B04", "B08", "SCL"], geobox=tiny_scene.geobox, chunks={"x": 64, "y": 64})
    s1 = load(search(stac_api, profile="s1", datetime="2020-05-20/2020-09-10"),
              bands=["vv", "vh"], geobox=tiny_scene.geobox_20m, chunks={"x": 32, "y": 32})
    ntl = load(search(stac_api, profile="ntl", datetime="2020-05-01/2020-08-31"), chunks={})
    return s2, s1, ntl


def _exact_ntl_total(ntl_month, target_gb):
    """Σ radiance × area of (NTL pixel ∩ target extent), from the native 15″ pixels."""
    gb = ntl_month.odc.geobox
    target = target_gb.extent.geom
    tot = 0.0
    for r in range(gb.shape.y):
        for c in range(gb.shape.x):
            px = gb[r:r + 1, c:c + 1].extent.to_crs(target_gb.crs, resolution=5).geom
            tot += float(ntl_month.values[r, c]) * shapely.intersection(px, target).area
    return tot


def test_aligned_cube_has_one_grid_one_time_axis_and_conserves_ntl(cubes, tiny_scene):
    s2, s1, ntl = cubes
    a = align({"s2": s2, "s1": s1, "ntl": ntl})
    assert a.odc.geobox == s2.odc.geobox
    assert list(a.time.values) == list(s2.time.values)
    assert set(a.data_vars) == {"B04", "B08", "SCL", "vv", "vh", "radiance"}
    for v in a.data_vars.values():
        assert v.dims == ("time", "y", "x") and v.chunks is not None
    assert a.SCL.dtype == np.uint8
    c = a.compute()
    assert np.isfinite(c.vv.values).mean() > 0.9  # every S2 date has an S1 date within 6 d
    nat = ntl.compute()
    for t in c.time.values:
        month = pd.Timestamp(t).to_period("M").start_time
        want = _exact_ntl_total(nat.radiance.sel(time=month), s2.odc.geobox)
        got = float(total(c.radiance.sel(time=t)))
        assert abs(got - want) / want < 0.01, (t, got, want)
    # the class band is resampled with nearest: only codes that exist in the source
    s1_on_s2 = align({"s1": s1, "s2": s2}, like="s2")
    assert s1_on_s2.odc.geobox == s2.odc.geobox


def test_alignment_refuses_clashing_names(cubes):
    s2, _, _ = cubes
    with pytest.raises(GridError, match="variable 'B04' is in cubes 's2' and 'again'"):
        align({"s2": s2, "again": s2[["B04"]]})
