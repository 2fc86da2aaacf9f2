"""When each building of the synthetic city was built, and how: construction as a process.

Buildings standing before the series carry a mid-year date of an earlier year; a share of lots
is built during the series. A new building goes through phases over months, each with its date:

``clearing_date``   vegetation removed: bare soil (site preparation, excavation)
``foundation_date`` foundation works (piles, slab, formwork): soil and raw concrete
``structure_date``  the structure rises (frame and slabs; height grows linearly)
``built_date``      the structure is complete (roof closed): the building is *built*

Some buildings standing before the series are demolished in it (``demolished_date``): rubble
for a few weeks, then a cleared lot; about half of those lots are rebuilt in the series by a new
building on the same footprint (``replaces_id`` names the demolished one). ``built_date``,
``year_built`` and ``built_in_series`` keep their meaning: completion of the structure. A
building *stands* at t when ``built_date <= t`` and it is not demolished by t (``standing``).

The durations below were set from construction practice before any model was measured on this
world (issue #15); do not tune them until a model wins.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from eocube.synth.cityspec import CitySpec

__all__ = ["PHASES", "building_phase", "construction_schedule", "standing"]

#: Phases of a lot, in order (codes are the positions): ``site`` (vegetated, before clearing),
#: ``cleared``, ``foundation``, ``structure``, ``built``, ``rubble`` (just demolished), ``lot``
#: (cleared after demolition).
PHASES = ("site", "cleared", "foundation", "structure", "built", "rubble", "lot")

#: Site preparation and excavation leave bare soil for 1–3 months.
CLEARED_DAYS = (30, 90)
#: Piles, slab and formwork take 1–4 months.
FOUNDATION_DAYS = (30, 120)
#: A reinforced-concrete frame rises about one floor every 1–3 weeks; at least two months.
STRUCTURE_DAYS_PER_FLOOR = (7, 21)
STRUCTURE_MIN_DAYS = 60
#: Share of the pre-series stock demolished per year (redevelopment in a growing city: ~1 %/yr).
DEMOLITION_RATE_PER_YEAR = 0.01
#: Rubble stays 3–8 weeks before the lot is cleared.
RUBBLE_DAYS = (20, 60)
#: Half of the demolished lots are rebuilt, the new site cleared 1–4 months after the rubble.
REBUILD_SHARE = 0.5
REBUILD_WAIT_DAYS = (30, 120)
#: Redevelopment densifies: the new building has 1.2–2.5 × the floors of the one it replaces.
REBUILD_FLOORS_FACTOR = (1.2, 2.5)


def _days(rng: np.random.Generator, lo_hi: tuple[int, int], n: int) -> np.ndarray:
    return rng.integers(lo_hi[0], lo_hi[1] + 1, n)


def _phase_dates(b: gpd.GeoDataFrame, new: np.ndarray, rng: np.random.Generator) -> None:
    """Set clearing/foundation/structure dates (in place) of the rows ``new``, backwards from
    their ``built_date``; NaT for the others."""
    n = len(b)
    built = b["built_date"].to_numpy().astype("datetime64[D]")
    per_floor = rng.uniform(*STRUCTURE_DAYS_PER_FLOOR, n)
    structure = np.maximum(STRUCTURE_MIN_DAYS, np.round(per_floor * b["floors"].to_numpy()))
    foundation = _days(rng, FOUNDATION_DAYS, n)
    cleared = _days(rng, CLEARED_DAYS, n)
    s = built - structure.astype("timedelta64[D]")
    f = s - foundation.astype("timedelta64[D]")
    c = f - cleared.astype("timedelta64[D]")
    nat = np.datetime64("NaT", "D")
    for col, v in (("clearing_date", c), ("foundation_date", f), ("structure_date", s)):
        b[col] = pd.to_datetime(np.where(new, v, nat)).astype("datetime64[ns]")


def construction_schedule(spec: CitySpec, buildings: gpd.GeoDataFrame, centrality: np.ndarray,
                          rng: np.random.Generator, /) -> gpd.GeoDataFrame:
    """``buildings`` with the construction process added: ``built_date``, ``year_built``,
    ``built_in_series``, the phase dates, ``demolished_date`` and ``replaces_id``; rebuilds are
    appended as new rows (same footprint as the building they replace).

    New lots are completed between day 100 and 60 days before the end of the series, more
    often away from the centre (their clearing may precede the series); industrial buildings
    all predate the series.
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
    b["built_in_series"] = is_new
    _phase_dates(b, is_new, rng)

    # demolitions of pre-series buildings, and rebuilds on some of their lots
    p_demolish = 1.0 - (1.0 - DEMOLITION_RATE_PER_YEAR) ** spec.years
    demolished = ~is_new & (rng.uniform(size=n) < p_demolish)
    dem_day = rng.integers(30, max(span - 30, 31), n)
    b["demolished_date"] = pd.to_datetime(np.where(
        demolished, (start + pd.to_timedelta(dem_day, unit="D")).to_numpy(),
        np.datetime64("NaT", "ns")))
    b["rubble_cleared_date"] = b["demolished_date"] + pd.to_timedelta(
        _days(rng, RUBBLE_DAYS, n), unit="D")
    b["replaces_id"] = np.zeros(n, dtype="int32")
    rebuild_rows = _rebuilds(spec, b, demolished, rng)
    if len(rebuild_rows):
        b = pd.concat([b, rebuild_rows], ignore_index=True)
        b = gpd.GeoDataFrame(b, geometry="geometry", crs=buildings.crs)
    b["year_built"] = b["built_date"].dt.year.astype("int32")
    return b


def _rebuilds(spec: CitySpec, b: gpd.GeoDataFrame, demolished: np.ndarray,
              rng: np.random.Generator) -> gpd.GeoDataFrame:
    """New buildings on demolished lots, kept only when completed within the series."""
    idx = np.flatnonzero(demolished)
    pick = idx[rng.uniform(size=idx.size) < REBUILD_SHARE]
    old = b.iloc[pick]
    k = len(old)
    factor = rng.uniform(*REBUILD_FLOORS_FACTOR, k)
    floors = np.clip(np.round(old["floors"].to_numpy() * factor), 1, 60).astype("int32")
    storey = (old["height"].to_numpy() - 1.5) / np.maximum(old["floors"].to_numpy(), 1)
    new = old.copy()
    new["floors"] = floors
    new["height"] = (floors * storey + rng.uniform(0.5, 2.5, k)).astype("float32")
    new["structure"] = np.where(floors >= 7, "reinforced_concrete", "brick_concrete")
    new["roof_material"] = "concrete"
    new["replaces_id"] = old["building_id"].to_numpy().astype("int32")
    new["demolished_date"] = pd.NaT
    new["rubble_cleared_date"] = pd.NaT
    new["built_in_series"] = True
    # forward from the cleared rubble: wait, then the same phases as any new building
    clearing = (old["rubble_cleared_date"].to_numpy().astype("datetime64[D]")
                + _days(rng, REBUILD_WAIT_DAYS, k).astype("timedelta64[D]"))
    per_floor = rng.uniform(*STRUCTURE_DAYS_PER_FLOOR, k)
    structure = np.maximum(STRUCTURE_MIN_DAYS, np.round(per_floor * floors)).astype(int)
    f = clearing + _days(rng, CLEARED_DAYS, k).astype("timedelta64[D]")
    s = f + _days(rng, FOUNDATION_DAYS, k).astype("timedelta64[D]")
    done = s + structure.astype("timedelta64[D]")
    for col, v in (("clearing_date", clearing), ("foundation_date", f),
                   ("structure_date", s), ("built_date", done)):
        new[col] = pd.to_datetime(v).astype("datetime64[ns]")
    keep = done <= np.datetime64(spec.end) - np.timedelta64(30, "D")
    new = new[keep]
    new["building_id"] = (b["building_id"].max() + 1 + np.arange(len(new))).astype("int32")
    return new


def standing(buildings: pd.DataFrame, t: pd.Timestamp | np.datetime64, /) -> np.ndarray:
    """Whether each building stands at ``t``: completed and not (yet) demolished."""
    t = np.datetime64(pd.Timestamp(t).tz_localize(None), "ns")
    built = buildings["built_date"].to_numpy().astype("datetime64[ns]") <= t
    if "demolished_date" not in buildings:
        return built
    dem = buildings["demolished_date"].to_numpy().astype("datetime64[ns]")
    return built & ~(dem <= t)


def building_phase(buildings: pd.DataFrame, t: pd.Timestamp | np.datetime64, /
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Phase code of each building at ``t`` (a position in ``PHASES``) and its structure's
    progress in [0, 1] (1 once built; the share of the final height while it rises)."""
    t = np.datetime64(pd.Timestamp(t).tz_localize(None), "ns")

    def col(name: str) -> np.ndarray:
        if name not in buildings:
            return np.full(len(buildings), np.datetime64("NaT", "ns"))
        return buildings[name].to_numpy().astype("datetime64[ns]")

    built, s = col("built_date"), col("structure_date")
    phase = np.zeros(len(buildings), dtype="int8")  # site
    phase[col("clearing_date") <= t] = 1
    phase[col("foundation_date") <= t] = 2
    phase[s <= t] = 3
    phase[built <= t] = 4
    phase[col("demolished_date") <= t] = 5
    phase[col("rubble_cleared_date") <= t] = 6
    with np.errstate(invalid="ignore", divide="ignore"):
        span = (built - s).astype("float64")
        prog = np.where(np.isnat(s), 1.0, (t - s).astype("float64") / span)
    prog = np.clip(np.nan_to_num(prog, nan=1.0), 0.0, 1.0)
    prog = np.where(phase == 3, prog, np.where(phase >= 4, 1.0, 0.0))
    return phase, prog
