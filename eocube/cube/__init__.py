"""Cubes: load STAC items into lazy (time, y, x) Datasets, mask, index, composite and align."""

from __future__ import annotations

from eocube.cube.gdal import GDAL_SETTINGS, configure_gdal
from eocube.cube.load import group_items, load, read_failures, target_geobox

__all__ = ["GDAL_SETTINGS", "configure_gdal", "group_items", "load", "read_failures",
           "target_geobox"]
