"""Bad zones through the public API (#17, hostile inputs): each gets its documented result —
reprojected, repaired with a named warning, flagged ``outside``, ``count = 0`` over no data,
or a ``ZoneError`` naming what to do — never a silent wrong number."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_zeros

from eocube.errors import ZoneError
from eocube.zonal import GeometryRepairWarning, zonal_stats

GB = GeoBox.from_bbox((0, 0, 100, 100), "EPSG:32650", resolution=10)


@pytest.fixture()
def cube():
    c = xr_zeros(GB, dtype="float64") + 1.0
    c[:4] = np.nan  # the top 40 m hold no data
    return c


def test_each_bad_zone_gets_its_documented_result(cube):
    bowtie = shapely.Polygon([(0, 0), (40, 40), (40, 0), (0, 40)])
    z = gpd.GeoDataFrame(
        {"name": ["ok", "empty", "outside", "all-nodata", "bowtie"]},
        geometry=[shapely.box(0, 0, 50, 50), shapely.Polygon(), shapely.box(500, 500, 600, 600),
                  shapely.box(0, 60, 100, 100), bowtie], crs=GB.crs)
    with pytest.warns(GeometryRepairWarning, match="'bowtie'"):
        ds = zonal_stats(cube, z, stats=["sum", "count", "mean"], id_col="name")
    df = ds.to_dataframe()
    assert df.loc["ok", ["sum", "count", "mean"]].tolist() == [25.0, 25.0, 1.0]
    for name in ("empty", "outside"):
        assert df.loc[name, "outside"] and df.loc[name, ["sum", "count", "mean"]].isna().all()
    assert df.loc["all-nodata", ["sum", "count"]].tolist() == [0.0, 0.0]
    assert np.isnan(df.loc["all-nodata", "mean"]) and not df.loc["all-nodata", "outside"]
    np.testing.assert_allclose(df.loc["bowtie", "count"], 8.0, rtol=1e-9)  # two triangles


def test_zones_in_another_crs_equal_the_same_zones_in_the_cube_crs(cube):
    z = gpd.GeoDataFrame(geometry=[shapely.box(10, 10, 70, 50)], crs=GB.crs)
    a = zonal_stats(cube, z.to_crs(3857), stats=["sum", "count"])
    b = zonal_stats(cube, z, stats=["sum", "count"])
    np.testing.assert_allclose(a["count"].values, b["count"].values, rtol=1e-6)


@pytest.mark.parametrize("bad, match", [
    ("no-crs", "no CRS; set it with zones.set_crs"),
    ("points", "must be polygons or multipolygons"),
    ("duplicated", "unique; duplicated"),
])
def test_unusable_zones_raise_zone_error_saying_what_to_do(cube, bad, match):
    box = shapely.box(0, 0, 50, 50)
    z = {"no-crs": gpd.GeoDataFrame(geometry=[box]),
         "points": gpd.GeoDataFrame(geometry=[shapely.Point(5, 5)], crs=GB.crs),
         "duplicated": gpd.GeoDataFrame(geometry=[box, box], index=[7, 7], crs=GB.crs)}[bad]
    with pytest.raises(ZoneError, match=match):
        zonal_stats(cube, z, stats=["sum"])


def test_no_zones_give_an_empty_result(cube):
    ds = zonal_stats(cube, gpd.GeoDataFrame(geometry=[], crs=GB.crs), stats=["sum"])
    assert ds.sizes["zone"] == 0
