"""What each building of the synthetic city is made of: material stock in tonnes."""

from __future__ import annotations

import geopandas as gpd
import numpy as np

from eocube.synth.cityspec import CitySpec

__all__ = ["MATERIAL_INTENSITY", "material_stock"]

_MATERIALS = ("concrete", "steel", "brick", "wood", "glass")

#: Material intensity in kg per m³ of gross building volume, by structure type.
#: Orders of magnitude follow published building material-stock inventories.
MATERIAL_INTENSITY: dict[str, dict[str, float]] = {
    "reinforced_concrete": {"concrete": 380.0, "steel": 32.0, "brick": 45.0, "wood": 4.0,
                            "glass": 3.0},
    "brick_concrete": {"concrete": 210.0, "steel": 12.0, "brick": 260.0, "wood": 8.0,
                       "glass": 2.0},
    "brick_wood": {"concrete": 60.0, "steel": 3.0, "brick": 300.0, "wood": 45.0, "glass": 1.5},
    "steel": {"concrete": 120.0, "steel": 65.0, "brick": 20.0, "wood": 2.0, "glass": 6.0},
}


def material_stock(spec: CitySpec, buildings: gpd.GeoDataFrame, rng: np.random.Generator, /
                   ) -> gpd.GeoDataFrame:
    """``buildings`` with ``volume`` (m³) and ``stock_<material>_t`` / ``stock_total_t``
    (tonnes) added."""
    b = buildings.copy()
    structure = b["structure"].to_numpy()
    volume = b["area"].to_numpy() * b["height"].to_numpy().astype(np.float64)
    b["volume"] = volume
    total = np.zeros(len(b))
    for mat in _MATERIALS:
        col = np.array([MATERIAL_INTENSITY[s][mat] for s in structure]) * volume / 1000.0
        b[f"stock_{mat}_t"] = col
        total += col
    b["stock_total_t"] = total
    return b
