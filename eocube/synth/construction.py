"""When each building of the synthetic city was built: the construction schedule.

Buildings standing before the series carry a mid-year date of an earlier year; a share of lots
is built during the series, so every change has a stable history before and after it.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from eocube.synth.cityspec import CitySpec

__all__ = ["construction_schedule"]


def construction_schedule(spec: CitySpec, buildings: gpd.GeoDataFrame, centrality: np.ndarray,
                          rng: np.random.Generator, /) -> gpd.GeoDataFrame:
    """``buildings`` with ``built_date``, ``year_built`` and ``built_in_series`` added.

    New lots are built between day 100 and 60 days before the end of the series, more often
    away from the centre; industrial buildings all predate the series.
    """
    b = buildings.copy()
    n = len(b)
    func = b["function"].to_numpy()
    start, end = pd.Timestamp(spec.start), pd.Timestamp(spec.end)
    span = (end - start).days
    is_new = (rng.uniform(size=n) < spec.new_building_share * (1.3 - 0.6 * centrality)) & (
        func != "industrial")
    new_day = rng.integers(100, max(span - 60, 101), n)
    year_before = spec.start.year - rng.integers(1, 40, n)
    built_date = np.where(
        is_new,
        (start + pd.to_timedelta(new_day, unit="D")).to_numpy(),
        pd.to_datetime(pd.Series(year_before).astype(str) + "-07-01").to_numpy(),
    )
    b["built_date"] = pd.to_datetime(built_date)
    b["year_built"] = b["built_date"].dt.year.astype("int32")
    b["built_in_series"] = is_new
    return b
