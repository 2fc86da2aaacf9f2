"""Building masks to footprints; point kernel density."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import wrap_xr

from eocube.errors import ConfigError
from eocube.zonal import kernel_density, regularize_footprints, vectorize_mask


@pytest.fixture(scope="module")
def grid() -> GeoBox:
    return GeoBox.from_bbox((0, 0, 200, 100), "EPSG:32650", resolution=2)


def _mask(grid: GeoBox) -> np.ndarray:
    m = np.zeros(grid.shape.yx, bool)
    m[5:15, 10:30] = True  # 20 × 40 m
    m[30:40, 50:55] = True  # 10 × 20 m
    m[30:35, 55:60] = True  # an L with the previous one
    return m


def test_mask_to_footprints_with_metrics_and_stats(grid):
    values = wrap_xr(np.arange(grid.shape.x)[None, :].repeat(grid.shape.y, 0) * 1.0, grid)
    fp = vectorize_mask(wrap_xr(_mask(grid), grid), values=values, stats=["mean", "count"])
    assert len(fp) == 2 and fp.crs == grid.crs
    rect = fp.loc[fp["area"].idxmax()]
    assert rect["area"] == 800 and rect["perimeter"] == 120
    assert rect["compactness"] == pytest.approx(4 * np.pi * 800 / 120**2)
    assert rect["count"] == pytest.approx(200) and rect["mean"] == pytest.approx(19.5)
    assert fp.loc[fp["area"].idxmin(), "area"] == 200 + 100


def test_probabilities_need_a_threshold_and_min_area_drops_specks(grid):
    prob = wrap_xr(np.where(_mask(grid), 0.9, 0.1), grid)
    with pytest.raises(ConfigError, match=r"threshold=0\.5"):
        vectorize_mask(prob)
    fp = vectorize_mask(prob, threshold=0.5, min_area=500)
    assert len(fp) == 1


def test_regularisation_straightens_a_staircase():
    stairs = shapely.Polygon([(0, 0), (10, 0), (10, 4), (9, 4), (9, 5), (0, 5)])
    (reg,) = regularize_footprints([stairs], rectangularity=0.9)
    assert reg.area == pytest.approx(stairs.area)
    assert len(shapely.get_coordinates(reg)) == 5  # a rectangle
    ell = shapely.union(shapely.box(0, 0, 10, 2), shapely.box(0, 0, 2, 10))
    (reg,) = regularize_footprints([ell], rectangularity=0.9)
    assert reg.is_valid and reg.symmetric_difference(ell).area < 1e-6


def test_kernel_density_integrates_to_the_point_count_and_is_lazy(grid, no_compute):
    pts = gpd.GeoDataFrame(geometry=shapely.points([(50, 50), (52, 47), (150, 60)]),
                           crs=grid.crs)
    pts["w"] = [1.0, 1.0, 2.0]
    with no_compute():
        dens = kernel_density(pts, grid, bandwidth=20, chunks=16)
    assert dens.chunks is not None
    total = float(dens.sum()) * 4.0  # pixel area 4 m²
    assert total == pytest.approx(3.0, rel=1e-3)
    weighted = kernel_density(pts, grid, bandwidth=8, kernel="gaussian", weight_col="w")
    assert float(weighted.sum()) * 4.0 == pytest.approx(4.0, rel=2e-3)
    # the quartic peak at a point far from others is 3 / (π h²)
    centre = GeoBox((1, 1), Affine(2, 0, 149, 0, -2, 61), grid.crs)  # pixel centre (150, 60)
    one = kernel_density(pts.iloc[[2]], centre, bandwidth=20)
    assert float(one[0, 0]) == pytest.approx(3 / (np.pi * 400))
