"""The synthetic city: a ground-truth world and the sensors that observe it, as a STAC archive.

In flow order: a city's specification (``resolve_spec``), its hidden world (``make_world``),
the open-map layers that observe it, the archive written from both (``build_city``) and the
truth read back by evaluation code (``read_truth``).
"""

from __future__ import annotations

from eocube.synth.build import acquisition_dates, build_city
from eocube.synth.cityspec import CITY_CRS, PRESETS, CitySpec, resolve_spec
from eocube.synth.osm import open_map_layers
from eocube.synth.truth import read_truth, truth_layers
from eocube.synth.world import World, make_world

# in flow order, not alphabetical: the order a reader meets them
__all__ = [  # noqa: RUF022
    "CITY_CRS", "PRESETS", "CitySpec", "resolve_spec", "World", "make_world",
    "open_map_layers", "acquisition_dates", "build_city", "truth_layers", "read_truth",
]
