"""Coverage fractions against shapely, cell by cell; centre rule against point-in-polygon."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox

from eocube.errors import ConfigError, GridError, ZoneError
from eocube.testing.polygons import random_polygons
from eocube.zonal import zonal_coverage


def _cells(gbox: GeoBox, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    a = gbox.affine
    x0, y0 = a.c + cols * a.a, a.f + rows * a.e
    return shapely.box(x0, y0, x0 + a.a, y0 + a.e)


@pytest.fixture(scope="module")
def small() -> GeoBox:
    return GeoBox.from_bbox((0, 0, 400, 300), "EPSG:32650", resolution=10)


@pytest.fixture(scope="module")
def zones(small):
    return random_polygons(150, small, seed=3, size=(0.2, 6.0))


def test_exact_fraction_equals_shapely_area_of_every_cell(small, zones):
    m = zonal_coverage(zones, small, method="exact", chunks=(13, 17)).to_scipy().tocoo()
    _, nx = small.shape.yx
    cells = _cells(small, m.col // nx, m.col % nx)
    ref = shapely.area(shapely.intersection(zones.geometry.values[m.row], cells)) / 100.0
    np.testing.assert_allclose(m.data, ref, atol=2e-7)
    # nothing missed: each zone's total equals its area on the raster
    frame = shapely.box(*small.extent.boundingbox)
    total = shapely.area(shapely.intersection(zones.geometry.values, frame)) / 100.0
    np.testing.assert_allclose(np.asarray(m.tocsr().sum(axis=1)).ravel(), total, atol=1e-5,
                               rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(xy=st.lists(st.tuples(st.floats(-30, 430), st.floats(-30, 330)), min_size=3, max_size=12),
       chunk=st.integers(3, 40))
def test_total_coverage_is_the_area_on_the_raster(small, xy, chunk):
    import geopandas as gpd

    poly = shapely.make_valid(shapely.Polygon(xy))
    parts = [p for p in shapely.get_parts(poly) if p.geom_type == "Polygon"]
    assume(parts)
    poly = shapely.MultiPolygon(parts)
    # make_valid can return an invalid polygon (negative area) on near-degenerate input:
    # no reference area then (test_repair_of_a_repair_that_stays_invalid covers it)
    assume(poly.is_valid)
    z = gpd.GeoDataFrame(geometry=[poly], crs=small.crs)
    got = zonal_coverage(z, small, chunks=chunk).to_scipy().sum()
    want = poly.intersection(shapely.box(*small.extent.boundingbox)).area / 100.0
    assert abs(got - want) <= 1e-6 * max(1.0, want) + 1e-5


def test_repair_of_a_repair_that_stays_invalid(small):
    # found by the property above: GEOS's default make_valid of this polygon is invalid itself
    # (a 1e-124 sliver and a triangle as its "hole", area −1), and its coverage was 0
    import geopandas as gpd

    from eocube.zonal import GeometryRepairWarning

    xy = [(2.0, 3.7282974383432126e-124), (2.0, 0.0), (0.0, 2.0), (0.0, 0.0), (1.0, 1.0)]
    z = gpd.GeoDataFrame(geometry=[shapely.Polygon(xy)], crs=small.crs)
    assert not shapely.make_valid(z.geometry.iloc[0]).is_valid
    with pytest.warns(GeometryRepairWarning, match="1 invalid zone geometry"):
        got = zonal_coverage(z, small, chunks=3).to_scipy().sum()
    assert got == pytest.approx(1.0 / 100.0, rel=1e-6)  # the triangle (0 0, 1 1, 0 2)


def test_center_rule_equals_point_in_polygon(small, zones):
    # shift the grid by an irrational amount so no pixel centre lies on an edge
    gb = GeoBox(small.shape, small.affine @ Affine.translation(0.0137, -0.0291), small.crs)
    m = zonal_coverage(zones, gb, method="center", chunks=64).to_scipy()
    ny, nx = gb.shape.yx
    a = gb.affine
    cx, cy = np.meshgrid(a.c + (np.arange(nx) + 0.5) * a.a, a.f + (np.arange(ny) + 0.5) * a.e)
    for i in range(0, len(zones), 5):
        ref = shapely.contains_xy(zones.geometry.values[i], cx, cy).ravel()
        got = m[i].toarray().ravel()
        np.testing.assert_array_equal(got, ref.astype(np.float32))


def test_blocks_do_not_depend_on_chunking(small, zones):
    one = zonal_coverage(zones, small).to_scipy()
    many = zonal_coverage(zones, small, chunks=(7, 11)).to_scipy()
    assert abs(one - many).max() < 1e-6
    assert one.nnz == many.nnz


def test_south_up_grid_gives_the_same_weights(small, zones):
    flipped = GeoBox(small.shape, Affine(10, 0, 0, 0, 10, 0), small.crs)
    up = zonal_coverage(zones, flipped).to_scipy()
    down = zonal_coverage(zones, small).to_scipy()
    ny, nx = small.shape.yx
    # row r of the south-up grid is row ny-1-r of the north-up one
    perm = (ny - 1 - np.arange(ny))[:, None] * nx + np.arange(nx)
    assert abs(up[:, perm.ravel()] - down).max() < 1e-6


def test_outside_flag_and_lazy_blocks(small):
    import geopandas as gpd

    z = gpd.GeoDataFrame(geometry=[shapely.box(10, 10, 50, 50), shapely.box(1000, 0, 1100, 50),
                                   shapely.Polygon()], crs=small.crs)
    cov = zonal_coverage(z, small, chunks=16)
    np.testing.assert_array_equal(cov.outside, [False, True, True])
    assert all(isinstance(v, tuple) for k, v in cov.layer.items() if isinstance(k, tuple))
    done = cov.compute(scheduler="sync")
    assert sum(b.nnz for b in done.layer.values()) == 16
    np.testing.assert_allclose(done.to_scipy().sum(axis=1).A1, [16, 0, 0])


def test_errors_name_the_fix(small):
    import geopandas as gpd

    z = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)])
    with pytest.raises(ZoneError, match="no CRS"):
        zonal_coverage(z, small)
    z = z.set_crs(small.crs)
    with pytest.raises(ConfigError, match="'exact' or 'center'"):
        zonal_coverage(z, small, method="centre")
    rotated = GeoBox(small.shape, small.affine @ Affine.rotation(10), small.crs)
    with pytest.raises(GridError, match="axis-aligned"):
        zonal_coverage(z, rotated)
    lines = gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (5, 5)])], crs=small.crs)
    with pytest.raises(ZoneError, match="polygons or multipolygons"):
        zonal_coverage(lines, small)
