"""Building function typing, the first step of DEFF: POIs inside the footprint, then the TAZ's
POIs weighted by public awareness (FT_q = Σ_p N_p·AW_p), then the TAZ's land use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eocube.errors import EstimateError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["FUNCTIONS", "LAND_USE_FUNCTION", "POI_AWARENESS", "POI_FUNCTION", "classify_function"]

#: The building functions DEFF distinguishes (``"unknown"`` where no tier decides).
FUNCTIONS = ("residential", "mixed", "commercial", "industrial", "public")

#: POI type → functional type of the building or area it marks. Editable: pass your own
#: mapping to :func:`classify_function`; types not in the mapping are ignored.
POI_FUNCTION: dict[str, str] = {
    "residential_complex": "residential",
    "convenience_store": "commercial", "restaurant": "commercial", "shop": "commercial",
    "bank": "commercial", "office": "commercial", "hotel": "commercial",
    "shopping_mall": "commercial",
    "factory": "industrial", "warehouse": "industrial", "logistics": "industrial",
    "kindergarten": "public", "school": "public", "hospital": "public", "government": "public",
    "library": "public",
    "park": "green",
}

#: Public awareness AW_p of each POI type in [0, 1]: how strongly one POI of the type marks
#: the function of its surroundings (large, named facilities high; small, ubiquitous shops
#: low), after the survey-based weights of Liu et al. Editable like ``POI_FUNCTION``.
POI_AWARENESS: dict[str, float] = {
    "residential_complex": 0.8, "convenience_store": 0.2, "restaurant": 0.3, "shop": 0.25,
    "bank": 0.5, "office": 0.6, "hotel": 0.6, "shopping_mall": 0.9, "factory": 0.7,
    "warehouse": 0.5, "logistics": 0.5, "kindergarten": 0.4, "school": 0.85, "hospital": 0.9,
    "government": 0.8, "library": 0.6, "park": 0.7,
}

#: Land use of the TAZ → building function, the last tier of the typing.
LAND_USE_FUNCTION: dict[str, str] = {
    "residential": "residential", "commercial": "commercial", "industrial": "industrial",
    "public_service": "public", "green": "public", "water": "public",
}


def _scores(ids: np.ndarray, types: np.ndarray, poi_function: Mapping[str, str],
            awareness: Mapping[str, float]) -> pd.DataFrame:
    """Σ N_p·AW_p per id and functional type (rows ids, columns functional types)."""
    ft = pd.Series(types).map(poi_function)
    aw = pd.Series(types).map(awareness).fillna(0.0)
    ok = ft.notna().to_numpy()
    df = pd.DataFrame({"id": ids[ok], "ft": ft[ok].to_numpy(), "w": aw[ok].to_numpy()})
    return df.pivot_table(index="id", columns="ft", values="w", aggfunc="sum", fill_value=0.0)


def _argmax_function(scores: pd.DataFrame, mixed_ratio: float | None, min_score: float = 0.0,
                     dominance: float = 0.0) -> pd.Series:
    s = scores.reindex(columns=[c for c in scores.columns if c in FUNCTIONS])
    s = s.loc[(s.sum(axis=1) > 0) & (s.sum(axis=1) >= min_score)]
    if s.empty:
        return pd.Series(dtype=object)
    best = s.idxmax(axis=1)
    if mixed_ratio is None:
        # a zone is single-function only when its leading type holds at least `dominance`
        # of the score; a mixed-function zone says nothing about one building
        return best[s.max(axis=1) >= dominance * s.sum(axis=1)]
    res = s.get("residential", pd.Series(0.0, index=s.index))
    com = s.get("commercial", pd.Series(0.0, index=s.index))
    lo, hi = np.minimum(res, com), np.maximum(res, com)
    mixed = (lo > 0) & (lo >= mixed_ratio * hi) & best.isin(["residential", "commercial"])
    return best.where(~mixed, "mixed")


def classify_function(
    buildings: gpd.GeoDataFrame,
    /,
    *,
    pois: gpd.GeoDataFrame,
    taz: gpd.GeoDataFrame,
    poi_function: Mapping[str, str] = POI_FUNCTION,
    awareness: Mapping[str, float] = POI_AWARENESS,
    land_use_function: Mapping[str, str] = LAND_USE_FUNCTION,
    mixed_ratio: float = 0.5,
    min_poi_score: float = 0.5,
    taz_density: bool = False,
    taz_dominance: float = 0.5,
    taz_id_col: str = "taz_id",
    type_col: str = "type",
    land_use_col: str = "land_use",
) -> gpd.GeoDataFrame:
    """Type each building's function in three tiers: its POIs, its TAZ's POIs, land use.

    1. POIs inside the footprint whose awareness sums to at least ``min_poi_score``: the
       functional type with the largest ``Σ N_p·AW_p`` (one small shop or restaurant does
       not decide what a building is).
    2. Otherwise: the TAZ's functional-area type ``argmax_q FT_q``, ``FT_q = Σ_p N_p·AW_p``
       over the TAZ's POIs, when it holds at least ``taz_dominance`` of ``Σ_q FT_q`` (a
       single-function zone, the 50 % rule of functional-zone identification); with
       ``taz_density`` each ``FT_q`` is first divided by its city-wide total.
    3. No (typed) POI in the TAZ, or a mixed-function TAZ: ``land_use_function`` of the
       TAZ's land use; an
       unmapped land use gives function ``"unknown"`` (capacity 0) — documented fallback.

    In tier 1, when both the residential and the commercial score are positive and the
    smaller is at least ``mixed_ratio`` × the larger, the type is ``"mixed"``.

    Parameters
    ----------
    buildings
        Footprints; with ``taz_id_col`` (else assigned by largest overlap with ``taz``).
    pois
        Points with ``type_col``.
    taz
        TAZ polygons with ``taz_id_col`` and ``land_use_col``.
    poi_function, awareness, land_use_function
        The editable tables (see the module constants).
    mixed_ratio
        Residential/commercial balance above which a building is mixed.
    min_poi_score
        Least awareness-weighted POI score for tier 1.
    taz_density
        Normalise the TAZ scores by type totals before the arg-max (tier 2).
    taz_dominance
        Least share of the leading type for a single-function TAZ (tier 2).
    taz_id_col, type_col, land_use_col
        Column names.

    Returns
    -------
    geopandas.GeoDataFrame
        A copy with ``function`` and ``function_source`` (``poi``/``taz``/``land_use``/``none``).
    """
    import shapely

    for name, df, cols in (("pois", pois, [type_col]), ("taz", taz, [taz_id_col, land_use_col])):
        miss = [c for c in cols if c not in df.columns]
        if miss:
            raise EstimateError(f"{name} lacks column(s) {miss}; it has {list(df.columns)}.")
    b = _with_zone(buildings, taz, taz_id_col)
    p = pois.to_crs(b.crs) if not pois.crs.equals(b.crs) else pois
    ptypes = p[type_col].astype(str).to_numpy()
    pgeom = np.asarray(p.geometry.values, dtype=object)
    # tier 1: POIs inside each footprint
    bgeom = np.asarray(b.geometry.values, dtype=object)
    tree = shapely.STRtree(bgeom)
    pi, bi = tree.query(pgeom, predicate="within")
    s1 = _scores(bi, ptypes[pi], poi_function, awareness)
    f1 = _argmax_function(s1, mixed_ratio, min_poi_score)
    # tier 2: POIs of each TAZ
    t = taz.to_crs(b.crs) if not taz.crs.equals(b.crs) else taz
    tids = t[taz_id_col].to_numpy()
    pj, tj = shapely.STRtree(np.asarray(t.geometry.values, dtype=object)).query(
        pgeom, predicate="within")
    s2 = _scores(tids[tj], ptypes[pj], poi_function, awareness)
    if taz_density:
        # frequency density: each type's score relative to its city-wide total, so that a type
        # that is abundant everywhere (shops, restaurants) does not win every zone
        tot = s2.sum(axis=0)
        s2 = s2.div(tot.where(tot > 0, 1.0), axis=1)
    f2 = _argmax_function(s2, None, dominance=taz_dominance)
    lu = pd.Series(t[land_use_col].to_numpy(), index=tids).map(land_use_function)
    n = len(b)
    func = np.full(n, "unknown", dtype=object)
    source = np.full(n, "none", dtype=object)
    bt = b[taz_id_col].to_numpy()
    f3 = lu.reindex(bt).to_numpy()
    has3 = pd.notna(f3)
    func[has3], source[has3] = f3[has3], "land_use"
    f2v = f2.reindex(bt).to_numpy()
    has2 = pd.notna(f2v)
    func[has2], source[has2] = f2v[has2], "taz"
    f1v = f1.reindex(np.arange(n)).to_numpy()
    has1 = pd.notna(f1v)
    func[has1], source[has1] = f1v[has1], "poi"
    out = b.copy()
    out["function"] = func.astype(str)
    out["function_source"] = source.astype(str)
    return out


def _with_zone(buildings: gpd.GeoDataFrame, zones: gpd.GeoDataFrame, id_col: str
               ) -> gpd.GeoDataFrame:
    if id_col in buildings.columns:
        return buildings
    from eocube.zonal import assign_zones

    return assign_zones(buildings, zones, id_col=id_col)
