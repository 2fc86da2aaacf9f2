"""What each building of the synthetic city is made of: material stock in tonnes.

The generator's own table: an intensity per structure type for a building of 1990, shifted by
the construction year (older stock brick- and wood-heavy, newer stock more concrete, steel and
glass), by district (local practice and supply: ±10 % per material) and per building
(log-normal, ~25 %: thicker slabs, basements, façade choices). The estimators' default table
(``eocube.estimates.stock.DEFAULT_INTENSITY``) is a published-style average and differs from
this one on purpose. Parameters set from engineering reasoning before any estimator was
measured on them (issue #15).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np

from eocube.synth.cityspec import CitySpec

__all__ = ["MATERIAL_INTENSITY", "YEAR_TREND", "intensity_of", "material_stock"]

_MATERIALS = ("concrete", "steel", "brick", "wood", "glass")

#: Material intensity (kg per m³ of gross building volume) of a building completed in 1990,
#: by structure type: a frame with concrete slabs and brick infill; brick walls with concrete
#: slabs; brick walls with timber floors and roof; a steel-framed hall on a concrete slab.
MATERIAL_INTENSITY: dict[str, dict[str, float]] = {
    "reinforced_concrete": {"concrete": 410.0, "steel": 27.0, "brick": 60.0, "wood": 5.0,
                            "glass": 2.5},
    "brick_concrete": {"concrete": 190.0, "steel": 9.0, "brick": 280.0, "wood": 10.0,
                       "glass": 1.5},
    "brick_wood": {"concrete": 50.0, "steel": 2.0, "brick": 290.0, "wood": 55.0, "glass": 1.0},
    "steel": {"concrete": 120.0, "steel": 12.0, "brick": 15.0, "wood": 2.0, "glass": 2.0},
}
#: Change of each material's intensity per 20 years of construction date (log scale, from
#: 1990, clipped to ±1.5 of those 20-year steps): brick −35 %, wood −40 %, concrete +12 %,
#: steel +25 %, glass +45 % — brick walls give way to frames with thinner infill and glazing.
YEAR_TREND = {"concrete": 0.12, "steel": 0.25, "brick": -0.35, "wood": -0.40, "glass": 0.45}
_REFERENCE_YEAR = 1990
_YEARS_PER_STEP = 20.0
#: District factor per material (log-normal sigma) and per-building factor (log-normal sigma,
#: common to all materials of a building) and per material (smaller, independent).
DISTRICT_SIGMA = 0.10
BUILDING_SIGMA = 0.25
MATERIAL_SIGMA = 0.10


def intensity_of(structure: np.ndarray, year_built: np.ndarray, /) -> dict[str, np.ndarray]:
    """Expected intensity (kg/m³) of each material for buildings of ``structure`` completed in
    ``year_built``, before the district and building factors."""
    step = np.clip((np.asarray(year_built, dtype=np.float64) - _REFERENCE_YEAR)
                   / _YEARS_PER_STEP, -1.5, 1.5)
    return {m: np.array([MATERIAL_INTENSITY[s][m] for s in structure]) * np.exp(
        YEAR_TREND[m] * step) for m in _MATERIALS}


def material_stock(spec: CitySpec, buildings: gpd.GeoDataFrame, rng: np.random.Generator, /
                   ) -> gpd.GeoDataFrame:
    """``buildings`` with ``volume`` (m³) and ``stock_<material>_t`` / ``stock_total_t``
    (tonnes) added."""
    b = buildings.copy()
    n = len(b)
    volume = b["area"].to_numpy() * b["height"].to_numpy().astype(np.float64)
    b["volume"] = volume
    base = intensity_of(b["structure"].to_numpy(), b["year_built"].to_numpy())
    ids, district = np.unique(b["community_id"].to_numpy(), return_inverse=True)
    per_building = rng.lognormal(-BUILDING_SIGMA ** 2 / 2, BUILDING_SIGMA, n)
    total = np.zeros(n)
    for mat in _MATERIALS:
        d = rng.lognormal(-DISTRICT_SIGMA ** 2 / 2, DISTRICT_SIGMA, ids.size)[district]
        m = rng.lognormal(-MATERIAL_SIGMA ** 2 / 2, MATERIAL_SIGMA, n)
        col = base[mat] * d * m * per_building * volume / 1000.0
        b[f"stock_{mat}_t"] = col
        total += col
    b["stock_total_t"] = total
    return b
