"""Cubes: load STAC items into lazy (time, y, x) Datasets, mask, index, composite and align.

The public API in the order of the flow: plan (items → records → ``LoadPlan``), engines
(``ENGINES``), finish, and ``load`` which runs the three; then the GDAL settings.
"""

from __future__ import annotations

from eocube.cube.engines import ENGINES, Engine
from eocube.cube.finish import FAILURES, finish, read_failures
from eocube.cube.gdal import GDAL_SETTINGS, configure_gdal
from eocube.cube.load import load
from eocube.cube.plan import (
    BandSource,
    Grid,
    LoadPlan,
    ParsedItem,
    group_items,
    parse_item,
    plan_load,
    target_geobox,
)

__all__ = [  # noqa: RUF022 (in the order of the flow, not alphabetical)
    # plan
    "Grid", "BandSource", "ParsedItem", "parse_item", "group_items", "target_geobox",
    "LoadPlan", "plan_load",
    # engines
    "Engine", "ENGINES",
    # finish
    "finish", "read_failures", "FAILURES",
    # the three in one
    "load",
    # GDAL
    "GDAL_SETTINGS", "configure_gdal",
]
