"""The synthetic city: a ground-truth world and the sensors that observe it, as a STAC archive."""

from __future__ import annotations

from eocube.synth.spec import CITY_CRS, PRESETS, CitySpec, resolve_spec
from eocube.synth.world import World, make_world

__all__ = ["CITY_CRS", "PRESETS", "CitySpec", "World", "make_world", "resolve_spec"]

from eocube.synth.archive import acquisition_dates, build_city
from eocube.synth.openmap import open_map_layers
from eocube.synth.truth import read_truth, truth_layers

__all__ += ["acquisition_dates", "build_city", "open_map_layers", "read_truth", "truth_layers"]
