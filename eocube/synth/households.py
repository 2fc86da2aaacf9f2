"""Who lives in each building of the synthetic city: residential capacity and occupants."""

from __future__ import annotations

import geopandas as gpd
import numpy as np

from eocube.synth.cityspec import CitySpec

__all__ = ["FLOOR_AREA_PER_PERSON", "households"]

#: Floor area per resident (m²) used to turn capacity into occupants.
FLOOR_AREA_PER_PERSON = 35.0


def households(spec: CitySpec, buildings: gpd.GeoDataFrame, rng: np.random.Generator, /
               ) -> gpd.GeoDataFrame:
    """``buildings`` with ``habitability``, ``capacity`` (m² of residential floor) and
    ``occupants`` added."""
    b = buildings.copy()
    func = b["function"].to_numpy()
    floors = b["floors"].to_numpy()
    area = b["area"].to_numpy()
    hab = np.select([func == "residential", func == "mixed"], [1.0, (floors - 1) / floors], 0.0)
    b["habitability"] = hab
    b["capacity"] = hab * floors * area
    lam = b["capacity"].to_numpy() / FLOOR_AREA_PER_PERSON * b["occupancy"].to_numpy()
    b["occupants"] = rng.poisson(lam).astype("int64")
    return b
