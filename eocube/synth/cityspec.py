"""City specifications and presets: the sizes and schedules every other part of `synth` reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from eocube.errors import ConfigError

#: UTM zone 50N, a subtropical coastal metropolis like the ones in the source papers.
CITY_CRS = "EPSG:32650"


LANDSCAPE_NAMES = ("temperate", "arid")


@dataclasses.dataclass(frozen=True)
class CitySpec:
    """Everything that decides the shape of a synthetic city, except the seed.

    Sizes are in metres on the city's UTM grid. ``size_m`` must be a multiple of ``tile_m``,
    and ``tile_m`` a multiple of 20 m (the coarsest Sentinel-2 band) and of ``vhr_res_m``.
    """

    name: str
    size_m: int
    tile_m: int
    block_m: float
    start: dt.date
    years: int
    s2_revisit_days: int = 10
    s1_revisit_days: int = 12
    new_building_share: float = 0.12
    vhr_res_m: int = 2
    origin_xy: tuple[float, float] = (200_000.0, 2_500_000.0)
    community_taz: int = 2  # communities are blocks of community_taz × community_taz TAZ
    #: the open ground's surface in Sentinel-2 (see ``eocube.synth.sensors.LANDSCAPES``):
    #: ``"temperate"`` (half vegetation, half soil) or ``"arid"`` (bright bare soil, sparse
    #: dry vegetation, which optical sensors confuse with roofs); radar sees both alike
    landscape: str = "temperate"

    def __post_init__(self) -> None:
        if self.tile_m <= 0 or self.size_m <= 0:
            raise ConfigError(f"size_m={self.size_m} and tile_m={self.tile_m} must be positive")
        if self.size_m % self.tile_m:
            raise ConfigError(
                f"size_m={self.size_m} is not a multiple of tile_m={self.tile_m}; "
                f"use size_m={self.size_m // self.tile_m * self.tile_m or self.tile_m} "
                "or change tile_m"
            )
        if self.tile_m % 40 or self.tile_m % self.vhr_res_m:
            raise ConfigError(
                f"tile_m={self.tile_m} must be a multiple of 40 m (two 20 m Sentinel-2 pixels) "
                f"and of vhr_res_m={self.vhr_res_m}"
            )
        if self.years < 1:
            raise ConfigError(f"years={self.years} must be at least 1")
        if not 0 <= self.new_building_share < 1:
            raise ConfigError(f"new_building_share={self.new_building_share} must be in [0, 1)")
        if self.landscape not in LANDSCAPE_NAMES:
            raise ConfigError(f"landscape={self.landscape!r}: use one of {LANDSCAPE_NAMES}")
        if self.block_m < 100 or self.block_m > self.size_m:
            raise ConfigError(f"block_m={self.block_m} must lie in [100, size_m]")

    @property
    def end(self) -> dt.date:
        """Last day of the series (inclusive)."""
        return dt.date(self.start.year + self.years, self.start.month, self.start.day) - (
            dt.timedelta(days=1)
        )

    @property
    def tiles_per_side(self) -> int:
        return self.size_m // self.tile_m

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in ``CITY_CRS``."""
        x0, y0 = self.origin_xy
        return (x0, y0, x0 + self.size_m, y0 + self.size_m)


PRESETS: dict[str, CitySpec] = {
    "tiny": CitySpec(name="tiny", size_m=1280, tile_m=640, block_m=160,
                     start=dt.date(2020, 1, 1), years=2, s2_revisit_days=10, s1_revisit_days=12,
                     new_building_share=0.2),
    "demo": CitySpec(name="demo", size_m=10240, tile_m=2560, block_m=400,
                     start=dt.date(2019, 1, 1), years=3, s2_revisit_days=10, s1_revisit_days=12),
}


def resolve_spec(preset: str | CitySpec, /, **overrides: Any) -> CitySpec:
    """A ``CitySpec`` from a preset name or a spec, with fields replaced by ``overrides``."""
    if isinstance(preset, CitySpec):
        spec = preset
    else:
        try:
            spec = PRESETS[preset]
        except KeyError:
            raise ConfigError(
                f"unknown city preset {preset!r}; choose one of {sorted(PRESETS)} "
                "or pass a CitySpec"
            ) from None
    if overrides:
        fields = {f.name for f in dataclasses.fields(CitySpec)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"unknown CitySpec fields {unknown}; valid fields: {sorted(fields)}")
        spec = dataclasses.replace(spec, **overrides)
    return spec
