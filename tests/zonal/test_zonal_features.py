"""taz_features: per-zone sums and range-normalised within-zone variances of feature rasters."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from odc.geo.geobox import GeoBox
from odc.geo.xr import wrap_xr

from eocube.errors import ZoneError
from eocube.zonal import taz_features

CRS = "EPSG:32650"


def _grid():
    gb = GeoBox.from_bbox((0, 0, 1000, 600), CRS, resolution=100)
    rng = np.random.default_rng(3)
    return gb, rng.uniform(0, 10, gb.shape.yx)


def _taz():
    return gpd.GeoDataFrame({"taz_id": [1, 2]},
                            geometry=[shapely.box(0, 0, 500, 600), shapely.box(500, 0, 1000, 600)],
                            crs=CRS)


def test_sums_and_variances_by_hand():
    gb, a = _grid()
    f = taz_features({"ntl": wrap_xr(a, gb)}, _taz()).compute()
    np.testing.assert_allclose(f["ntl"].values, [a[:, :5].sum(), a[:, 5:].sum()])
    scaled = a / (a.max() - a.min())
    np.testing.assert_allclose(f["ntl_var"].values, [scaled[:, :5].var(), scaled[:, 5:].var()])


def test_a_fill_value_is_not_a_feature_value():
    # a −9999 fill would stretch the range (σ_j of DEFF) and enter the sums
    gb, a = _grid()
    filled = a.copy()
    filled[0, :3] = -9999.0
    nan = a.copy()
    nan[0, :3] = np.nan
    want = taz_features({"ntl": wrap_xr(nan, gb)}, _taz()).compute()
    got = taz_features({"ntl": wrap_xr(filled, gb).assign_attrs(_FillValue=-9999.0)},
                       _taz()).compute()
    for v in ("ntl", "ntl_var"):
        np.testing.assert_allclose(got[v].values, want[v].values, rtol=1e-12)


def test_errors_name_the_raster():
    gb, a = _grid()
    with pytest.raises(ZoneError, match="at least one raster"):
        taz_features({}, _taz())
    cube = wrap_xr(a, gb).expand_dims(time=2)
    with pytest.raises(ZoneError, match=r"raster 'ntl' has extra dims \['time'\]"):
        taz_features({"ntl": cube}, _taz())
