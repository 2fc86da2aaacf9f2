"""Internal capacity of each building, the internal environment of DEFF: habitability C_i
(residential 1, mixed (f − 1)/f, else 0) × floors f × footprint area a.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from eocube.errors import EstimateError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["building_capacity"]


def building_capacity(buildings: gpd.GeoDataFrame, /, *, function_col: str = "function",
                      floors_col: str = "floors", height_col: str = "height",
                      storey_height: float = 3.0, habitability: Literal["typed", "one"] = "typed"
                      ) -> gpd.GeoDataFrame:
    """Habitability ``C_i`` and internal capacity ``E_in = C_i·f·a`` (m² of residential floor).

    ``C = 1`` for residential buildings, ``(f − 1)/f`` for mixed ones (the ground floor is
    not lived in), 0 otherwise; ``habitability="one"`` sets ``C ≡ 1`` (the DEFF3 ablation).
    Floors come from ``floors_col``, else ``round(height / storey_height)`` (at least 1).

    Returns
    -------
    geopandas.GeoDataFrame
        A copy with ``floors_used``, ``footprint_m2``, ``habitability``, ``e_in``.
    """
    n = len(buildings)
    floors = np.full(n, np.nan)
    if floors_col in buildings.columns:
        floors = pd.to_numeric(buildings[floors_col], errors="coerce").to_numpy(np.float64)
    if np.isnan(floors).any():
        if height_col not in buildings.columns:
            raise EstimateError(f"buildings need {floors_col!r} or {height_col!r} to count "
                                "floors; neither is usable.")
        h = pd.to_numeric(buildings[height_col], errors="coerce").to_numpy(np.float64)
        floors = np.where(np.isnan(floors), np.maximum(np.round(h / storey_height), 1), floors)
    if np.isnan(floors).any():
        raise EstimateError(f"{int(np.isnan(floors).sum())} building(s) have neither floors nor "
                            "height; drop them or fill one of the two.")
    func = buildings[function_col].astype(str).to_numpy()
    if habitability == "one":
        c = np.ones(n)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.select([func == "residential", func == "mixed"],
                          [1.0, np.where(floors > 0, (floors - 1) / floors, 0.0)], 0.0)
    area = buildings.geometry.area.to_numpy()
    out = buildings.copy()
    out["floors_used"] = floors
    out["footprint_m2"] = area
    out["habitability"] = c
    out["e_in"] = c * floors * area
    return out
