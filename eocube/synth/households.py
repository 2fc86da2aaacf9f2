"""Who lives in each building of the synthetic city: dwellings, households and occupants.

Occupants are counted dwelling by dwelling, not read from a capacity formula: a building's
residential floor space (a share that is not DEFF's (f − 1)/f for mixed buildings) is divided
into dwellings whose size depends on the district and the building's age; each dwelling is a
usual residence, vacant or a second home with probabilities that depend on the district, the
building's age, how long ago it was completed and its TAZ; a household's size depends on the
district and the age of the building. Dormitories (a few public and residential buildings) hold
many residents per m². The parameters below were set from demographic reasoning before any
estimator was measured on this world (issue #15); do not tune them until an estimator wins.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from eocube.synth.cityspec import CitySpec

__all__ = ["DWELLING_M2", "FILL_MONTHS", "HOUSEHOLD_SIZE", "fill_fraction", "households"]

#: Gross floor area per dwelling (m², circulation and walls included): a district's median is
#: drawn log-normally around 80 m² (sd ≈ 25 %: old inner-city flats of ~55 m² to suburban
#: ~110 m² units); dwellings grow ~1 % a year of construction date (≈ ×0.8 for 1980 stock,
#: ×1.2 for 2020) and vary ±15 % between buildings of a district.
DWELLING_M2 = {"median": 80.0, "district_sigma": 0.25, "per_year": 0.01, "building_sigma": 0.15,
               "reference_year": 2000}
#: Persons per occupied dwelling: a district's mean is uniform in [2.2, 3.4] (city-centre
#: singles and couples to suburban families); newer stock holds ~0.5 % fewer persons per year of
#: construction date (young couples buy new flats), ±10 % between buildings.
HOUSEHOLD_SIZE = {"district_low": 2.2, "district_high": 3.4, "per_year": -0.005,
                  "building_sigma": 0.10}
#: Vacancy (share of dwellings that are no one's residence and not a second home): a district's
#: base is uniform in [2 %, 10 %]; in about a third of districts (declining ones) stock older
#: than 30 years adds 10–25 %. The TAZ's ``occupancy`` (higher towards the centre) scales the
#: occupied share too: demand for housing is a property of the neighbourhood.
VACANCY = {"district_low": 0.02, "district_high": 0.10, "declining_share": 0.35,
           "old_age_years": 30, "old_extra_low": 0.10, "old_extra_high": 0.25}
#: Second homes (empty at night on weekdays; visited at weekends): a district's share is
#: uniform in [0 %, 10 %], plus 6 points in stock younger than 10 years (bought as investment).
SECOND_HOMES = {"district_high": 0.10, "new_extra": 0.06, "new_age_years": 10}
#: A building completed during the series fills over months: occupied share of its eventual
#: households after m months = 1 − exp(−m / τ), τ drawn log-normally around 8 months (±40 %).
FILL_MONTHS = {"median": 8.0, "sigma": 0.4}
#: Dormitories: ~10 % of public buildings (university, hospital staff) and ~1.5 % of
#: residential buildings of ≥ 3 floors; one resident per 8–14 m² of gross floor, 90 % filled.
DORMITORY = {"public_share": 0.10, "residential_share": 0.015, "min_floors": 3,
             "m2_per_resident_low": 8.0, "m2_per_resident_high": 14.0, "filled": 0.9}
#: Mixed buildings: the non-residential floors are the ground floor (55 %), a two-storey
#: podium (30 %) or three storeys (15 %); in 20 % of them the upper floors also hold offices,
#: only 30–80 % of them residential.
MIXED = {"podium_floors": (1, 2, 3), "podium_p": (0.55, 0.30, 0.15), "office_share": 0.20,
         "upper_residential_low": 0.3, "upper_residential_high": 0.8}


def fill_fraction(months: np.ndarray, tau: np.ndarray | float, /) -> np.ndarray:
    """Occupied share of a new building's eventual households ``months`` after completion
    (0 before completion, rising towards 1 with time constant ``tau`` months)."""
    m = np.asarray(months, dtype=np.float64)
    return np.where(m > 0, 1.0 - np.exp(-np.maximum(m, 0.0) / np.asarray(tau)), 0.0)


def _district_draws(ids: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    u = np.unique(ids)
    n = u.size
    return pd.DataFrame({
        "dwelling_m2": DWELLING_M2["median"] * rng.lognormal(0.0, DWELLING_M2["district_sigma"],
                                                             n),
        "hh_size": rng.uniform(HOUSEHOLD_SIZE["district_low"], HOUSEHOLD_SIZE["district_high"],
                               n),
        "vacancy": rng.uniform(VACANCY["district_low"], VACANCY["district_high"], n),
        "old_extra": np.where(rng.uniform(size=n) < VACANCY["declining_share"],
                              rng.uniform(VACANCY["old_extra_low"], VACANCY["old_extra_high"], n),
                              0.0),
        "second": rng.uniform(0.0, SECOND_HOMES["district_high"], n),
    }, index=u)


def households(spec: CitySpec, buildings: gpd.GeoDataFrame, rng: np.random.Generator, /
               ) -> gpd.GeoDataFrame:
    """``buildings`` with their residents at the end of the series.

    Adds ``residential_share`` (of the gross floor area), ``dormitory``, ``dwellings``,
    ``second_homes`` (dwellings empty at night on weekdays), ``households`` (occupied
    dwellings, or dormitory rooms' worth of residents), ``fill_months`` (τ of a building
    completed during the series) and ``occupants`` (usual residents, the census' count).
    """
    b = buildings.copy()
    n = len(b)
    func = b["function"].to_numpy()
    floors = b["floors"].to_numpy().astype(np.float64)
    area = b["area"].to_numpy()
    year = b["year_built"].to_numpy().astype(np.float64)
    end = pd.Timestamp(spec.end)
    age = end.year - year
    months = ((end - pd.to_datetime(b["built_date"])).dt.days.to_numpy() / 30.44)
    d = _district_draws(b["community_id"].to_numpy(), rng).reindex(b["community_id"].to_numpy())

    # residential share of the gross floor area
    podium = rng.choice(MIXED["podium_floors"], size=n, p=MIXED["podium_p"])
    podium = np.minimum(podium, np.maximum(floors - 1, 0))
    upper = np.where(rng.uniform(size=n) < MIXED["office_share"],
                     rng.uniform(MIXED["upper_residential_low"],
                                 MIXED["upper_residential_high"], n), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mixed_share = np.where(floors > 0, (floors - podium) / floors * upper, 0.0)
    dorm = ((func == "public") & (rng.uniform(size=n) < DORMITORY["public_share"])) | (
        (func == "residential") & (floors >= DORMITORY["min_floors"])
        & (rng.uniform(size=n) < DORMITORY["residential_share"]))
    share = np.select([dorm, func == "residential", func == "mixed"], [1.0, 1.0, mixed_share],
                      0.0)
    res_m2 = share * floors * area

    # dwellings and their state
    dw_m2 = (d["dwelling_m2"].to_numpy()
             * np.exp(DWELLING_M2["per_year"] * (year - DWELLING_M2["reference_year"]))
             * rng.lognormal(0.0, DWELLING_M2["building_sigma"], n))
    dwellings = np.where(res_m2 > 0, np.maximum(np.round(res_m2 / dw_m2), 1), 0).astype("int64")
    second_p = d["second"].to_numpy() + np.where(age < SECOND_HOMES["new_age_years"],
                                                 SECOND_HOMES["new_extra"], 0.0)
    vacant_p = d["vacancy"].to_numpy() + np.where(age > VACANCY["old_age_years"],
                                                  d["old_extra"].to_numpy(), 0.0)
    tau = FILL_MONTHS["median"] * rng.lognormal(0.0, FILL_MONTHS["sigma"], n)
    filled = np.where(b["built_in_series"].to_numpy(), fill_fraction(months, tau), 1.0)
    # a dwelling that is not a second home is lived in unless vacant, and less often in a TAZ
    # of low demand (``occupancy`` 0.2–1, its square root so that it does not dominate)
    second_p = np.clip(second_p, 0.0, 0.5)
    occupied_p = (np.clip(1.0 - vacant_p / (1.0 - second_p), 0.0, 1.0)
                  * np.sqrt(np.clip(b["occupancy"].to_numpy(), 0.0, 1.0)) * filled)
    second = rng.binomial(dwellings, second_p * filled)
    hh = rng.binomial(dwellings - second, occupied_p)
    # persons per household: 1 + Poisson(mean − 1) per household, summed
    size = (d["hh_size"].to_numpy()
            * np.exp(HOUSEHOLD_SIZE["per_year"] * (year - DWELLING_M2["reference_year"]))
            * rng.lognormal(0.0, HOUSEHOLD_SIZE["building_sigma"], n))
    occupants = hh + rng.poisson(hh * np.maximum(size - 1.0, 0.0))

    # dormitories: residents per m² of floor, not households
    per_m2 = rng.uniform(DORMITORY["m2_per_resident_low"], DORMITORY["m2_per_resident_high"], n)
    dorm_occ = rng.binomial(np.round(res_m2 / per_m2).astype("int64"),
                            np.clip(DORMITORY["filled"] * filled, 0.0, 1.0))
    occupants = np.where(dorm, dorm_occ, occupants)
    b["residential_share"] = share
    b["dormitory"] = dorm
    b["dwellings"] = np.where(dorm, 0, dwellings).astype("int64")
    b["second_homes"] = np.where(dorm, 0, second).astype("int64")
    b["households"] = np.where(dorm, 0, hh).astype("int64")
    b["fill_months"] = tau
    b["occupants"] = occupants.astype("int64")
    return b
