"""Zones and zonal statistics: TAZ from roads, footprints from masks, exact statistics at scale.

The stage between the cubes (and model outputs) and the estimates: polygons in, tables out.

* :func:`taz_from_roads`, :func:`admin_zones`, :func:`assign_zones` — the zone layers and the
  building → zone assignment by largest footprint overlap.
* :func:`vectorize_mask` — building mask to footprints with shape metrics and raster stats.
* :func:`zonal_coverage`, :func:`zonal_stats`, :func:`zonal_sums` — exact (exactextract's
  coverage fraction) or centre-rule statistics of lazy cubes, chunk by chunk, with the
  coverage computed once per grid and reused for every time step and band.
* :func:`kernel_density` — point density on a grid.
* :func:`taz_features` — per-zone sums and within-zone variances of feature rasters (the TAZ
  features of the population model).

Submodules load numba, rasterio and dask only when a function needs them.
"""

from __future__ import annotations

from eocube.zonal.coverage import Coverage, CoverageBlock, zonal_coverage
from eocube.zonal.density import kernel_density
from eocube.zonal.features import taz_features
from eocube.zonal.geometry import GeometryRepairWarning, prepare_zones, repair_polygons
from eocube.zonal.stats import STATS, mask_nodata, nodata_value, zonal_stats, zonal_sums
from eocube.zonal.vectorize import regularize_footprints, vectorize_mask
from eocube.zonal.zones import (
    admin_zones,
    assign_zones,
    metric_crs,
    road_corridors,
    taz_from_roads,
)

__all__ = [
    "STATS",
    "Coverage",
    "CoverageBlock",
    "GeometryRepairWarning",
    "admin_zones",
    "assign_zones",
    "kernel_density",
    "mask_nodata",
    "metric_crs",
    "nodata_value",
    "prepare_zones",
    "regularize_footprints",
    "repair_polygons",
    "road_corridors",
    "taz_features",
    "taz_from_roads",
    "vectorize_mask",
    "zonal_coverage",
    "zonal_stats",
    "zonal_sums",
]
