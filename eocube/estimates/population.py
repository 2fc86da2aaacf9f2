"""Building-scale population by Dual-Environment Feature Fusion (DEFF, Liu et al. 2023).

The internal environment of a building is its footprint (function, floors, area → capacity
E_in = C·f·a); the external one is its TAZ, scored by DQW-TOPSIS over TAZ features aggregated
from ~100 m rasters (NTL, POI kernel density, night mobile signal). A community regression
``pop = a·ΣE_in + b·ΣE_out`` fitted on census communities puts people into buildings. The
ablations DEFF1–4, the two linear regressions and three gridded-product style baselines come
from one call, :func:`compare_population`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from eocube.errors import EstimateError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = [
    "LAND_USE_FUNCTION", "POI_AWARENESS", "POI_FUNCTION", "DeffResult", "PopulationComparison",
    "areal_weighting", "building_capacity", "classify_function", "coarse_districts",
    "compare_population", "dasymetric", "deff", "dqw_weights", "smoothed_surface",
    "taz_features", "topsis",
]

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


# ---- TOPSIS and DQW weights ---------------------------------------------------------------
def topsis(matrix: np.ndarray | pd.DataFrame, /, *, weights: Sequence[float] | np.ndarray,
           benefit: Sequence[bool] | np.ndarray | None = None) -> pd.DataFrame:
    """TOPSIS closeness of each alternative (row) to the ideal solution.

    Columns are vector-normalised (``x / √Σx²``; an all-zero column stays 0), multiplied by
    the weights; the ideal vector takes each column's best value (max for a benefit
    criterion, min for a cost), the anti-ideal the worst; ``D⁺`` and ``D⁻`` are the weighted
    Euclidean distances to them and the closeness ``D⁻ / (D⁺ + D⁻)`` lies in [0, 1]. Where
    ``D⁺ + D⁻ = 0`` (every alternative identical) the closeness is 0.5 — documented fallback.

    Parameters
    ----------
    matrix
        Alternatives × criteria, finite.
    weights
        One non-negative weight per criterion (normalised to sum 1).
    benefit
        Per criterion, True where larger is better (default all True).

    Returns
    -------
    pandas.DataFrame
        ``d_plus``, ``d_minus``, ``closeness``, indexed like ``matrix`` rows.

    Examples
    --------
    >>> topsis(np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0]]), weights=[0.5, 0.5])[
    ...     "closeness"].round(3).tolist()
    [0.5, 0.5, 1.0]
    """
    index = matrix.index if isinstance(matrix, pd.DataFrame) else None
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise EstimateError(f"topsis needs a non-empty 2-D matrix, got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise EstimateError("topsis: the decision matrix has NaN or infinite values; fill or "
                            "drop those alternatives first.")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (x.shape[1],) or np.any(w < 0) or not w.sum() > 0:
        raise EstimateError(f"weights must be {x.shape[1]} non-negative values with a positive "
                            f"sum, got {w.tolist()}.")
    w = w / w.sum()
    ben = np.ones(x.shape[1], bool) if benefit is None else np.asarray(benefit, dtype=bool)
    norm = np.sqrt((x**2).sum(axis=0))
    v = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0) * w
    best = np.where(ben, v.max(axis=0), v.min(axis=0))
    worst = np.where(ben, v.min(axis=0), v.max(axis=0))
    d_plus = np.sqrt(((v - best) ** 2).sum(axis=1))
    d_minus = np.sqrt(((v - worst) ** 2).sum(axis=1))
    tot = d_plus + d_minus
    close = np.divide(d_minus, tot, out=np.full_like(tot, 0.5), where=tot > 0)
    return pd.DataFrame({"d_plus": d_plus, "d_minus": d_minus, "closeness": close},
                        index=index)


def dqw_weights(sigma: Sequence[float] | np.ndarray, r: Sequence[float] | np.ndarray, /
                ) -> np.ndarray:
    """Data-quality weights ``w_j = σ_j·r_j / Σ_k σ_k·r_k``.

    A feature negatively correlated with population (``r_j < 0``) is unreliable as a benefit
    criterion and gets weight 0.

    Parameters
    ----------
    sigma
        Informativeness per feature (≥ 0).
    r
        Reliability per feature (Pearson r with population).

    Returns
    -------
    numpy.ndarray
        Weights summing to 1.
    """
    s = np.asarray(sigma, dtype=np.float64)
    rr = np.clip(np.nan_to_num(np.asarray(r, dtype=np.float64)), 0.0, None)
    raw = s * rr
    if not np.all(np.isfinite(raw)) or not raw.sum() > 0:
        raise EstimateError(
            f"DQW weights are undefined: informativeness {s.tolist()} × reliability "
            f"{np.asarray(r).tolist()} has no positive entry. Check the TAZ features (all "
            "constant?) or pass weights='equal'.")
    return raw / raw.sum()


# ---- building function and capacity -------------------------------------------------------
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


# ---- TAZ features ---------------------------------------------------------------------------
def taz_features(rasters: Mapping[str, xr.DataArray], taz: gpd.GeoDataFrame, /, *,
                 id_col: str = "taz_id", method: Literal["exact", "center"] = "exact"
                 ) -> xr.Dataset:
    """Per-TAZ sums and within-zone pixel variances of feature rasters (lazy).

    Each raster keeps its own grid (``eocube.zonal.zonal_stats`` covers the zones once per
    grid). The variance is taken of the raster divided by its range over the grid, so that
    the informativeness ``σ_j = Σ_zones var`` of :func:`deff` is unit-free and comparable
    between features.

    Parameters
    ----------
    rasters
        Name → 2-D raster with a GeoBox (e.g. ``ntl``, ``poi_kde``, ``mobile_weekday``,
        ``mobile_weekend`` at ~100 m).
    taz
        TAZ polygons with ``id_col``.
    id_col
        TAZ id column.
    method
        Coverage rule of the zonal statistics.

    Returns
    -------
    xarray.Dataset
        Variables ``<name>`` (sum) and ``<name>_var`` (variance of the range-normalised raster)
        on dim ``zone``; lazy where the rasters are.
    """
    from eocube.zonal import zonal_stats

    if not rasters:
        raise EstimateError("taz_features needs at least one raster.")
    import xarray as xr

    out = {}
    for name, r in rasters.items():
        ydim, xdim = r.odc.spatial_dims
        extra = [d for d in r.dims if d not in (ydim, xdim)]
        if extra:
            raise EstimateError(f"raster {name!r} has extra dims {extra}; reduce them first "
                                "(e.g. .mean('time')).")
        rng = r.max() - r.min()
        scaled = r / xr.where(rng > 0, rng, 1.0)
        s = zonal_stats(r, taz, stats=["sum"], method=method, id_col=id_col)["sum"]
        v = zonal_stats(scaled, taz, stats=["variance"], method=method, id_col=id_col)[
            "variance"]
        out[name] = s.drop_vars("outside", errors="ignore")
        out[f"{name}_var"] = v.drop_vars("outside", errors="ignore")
    return xr.Dataset(out)


def _features_frame(features: xr.Dataset | pd.DataFrame, id_col: str) -> tuple[pd.DataFrame,
                                                                               list[str]]:
    if isinstance(features, pd.DataFrame):
        f = features.set_index(id_col) if id_col in features.columns else features
    else:
        f = features.compute().to_dataframe()
        f = f[[c for c in f.columns if c in features.data_vars]]
    names = [c for c in f.columns if not str(c).endswith("_var")]
    if not names:
        raise EstimateError("features has no feature columns; build it with taz_features().")
    for n in names:
        if f"{n}_var" not in f.columns:
            raise EstimateError(f"features lacks {n + '_var'!r} (within-zone variance); build "
                                "it with taz_features().")
    f = f.fillna(0.0)
    f.index.name = id_col
    return f, names


# ---- the DEFF model ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DeffResult:
    """What :func:`deff` returns: every table it used and produced.

    Attributes
    ----------
    buildings
        Input buildings + ``function``, ``function_source``, ``habitability``, ``e_in``,
        ``e_out`` (the TOPSIS closeness of the TAZ), ``x_out`` (the building's external term),
        ``population``.
    taz
        TAZ + features, ``d_plus``, ``d_minus``, ``e_out``.
    communities
        ``community_id``, census ``pop``, ``split``, ``n_buildings``, ``sum_e_in``,
        ``sum_x_out``, ``predicted``.
    weights
        Per feature: ``sigma``, ``r``, ``w``.
    coef
        ``{"a": …, "b": …}``.
    metrics
        Community-level metrics on the ``test`` and ``train`` communities, and building-level
        metrics where the buildings carry truth.
    """

    buildings: gpd.GeoDataFrame
    taz: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame
    weights: pd.DataFrame
    coef: dict[str, float]
    metrics: pd.DataFrame


def _nnls(X: np.ndarray, y: np.ndarray, names: Sequence[str], what: str) -> np.ndarray:
    from scipy.optimize import nnls

    if X.shape[0] < X.shape[1]:
        raise EstimateError(f"{what}: {X.shape[0]} training communities for {X.shape[1]} "
                            "coefficients; the regression is underdetermined.")
    scale = np.abs(X).max(axis=0)
    if np.any(scale == 0) or np.linalg.matrix_rank(X / np.where(scale > 0, scale, 1)) < X.shape[1]:
        raise EstimateError(
            f"{what}: the regression is singular — the columns {list(names)} of the training "
            "communities are zero or collinear (e.g. no habitable building, or every TAZ with "
            "the same external score). Check the inputs or use more communities.")
    coef, _ = nnls(X / scale, y)
    return coef / scale


def _ols(X: np.ndarray, y: np.ndarray, what: str) -> np.ndarray:
    X1 = np.column_stack([np.ones(len(X)), X])
    scale = np.abs(X1).max(axis=0)
    scale[scale == 0] = 1.0
    if np.linalg.matrix_rank(X1 / scale) < X1.shape[1]:
        raise EstimateError(f"{what}: the regression is singular (collinear features).")
    coef, *_ = np.linalg.lstsq(X1 / scale, y, rcond=None)
    return coef / scale


@dataclasses.dataclass(frozen=True)
class _Prepared:
    buildings: gpd.GeoDataFrame  # typed, with e_in (typed) and e_in_one, community/taz ids
    taz: gpd.GeoDataFrame
    feats: pd.DataFrame
    names: list[str]
    comm: pd.DataFrame  # community_id, pop, test, n_buildings
    communities: gpd.GeoDataFrame
    sigma: np.ndarray
    r: np.ndarray


def _prepare(buildings, *, pois, taz, communities, census, features, pop_col, test, seed,
             test_size, n_classes, taz_id_col, community_id_col, classify_kw) -> _Prepared:
    for name, df, cols in (("taz", taz, [taz_id_col, community_id_col]),
                           ("census", census, [community_id_col, pop_col]),
                           ("communities", communities, [community_id_col])):
        miss = [c for c in cols if c not in df.columns]
        if miss:
            raise EstimateError(f"{name} lacks column(s) {miss}; it has {list(df.columns)}.")
    if len(buildings) == 0:
        raise EstimateError("no buildings were given; DEFF needs footprints.")
    b = classify_function(buildings, pois=pois, taz=taz, taz_id_col=taz_id_col, **classify_kw)
    b = building_capacity(b)
    b["e_in_one"] = b["floors_used"] * b["footprint_m2"]
    if community_id_col not in b.columns:
        tc = taz.set_index(taz_id_col)[community_id_col]
        b[community_id_col] = b[taz_id_col].map(tc)
    feats, names = _features_frame(features, taz_id_col)
    t = taz.merge(feats, left_on=taz_id_col, right_index=True, how="left")
    t[feats.columns] = t[feats.columns].fillna(0.0)
    cen = census[[community_id_col, pop_col]].rename(columns={pop_col: "pop"})
    comm = communities[[community_id_col]].merge(cen, on=community_id_col, how="left")
    if comm["pop"].isna().any():
        miss = comm.loc[comm["pop"].isna(), community_id_col].tolist()[:5]
        raise EstimateError(f"the census has no population for communities {miss}…")
    nb = b.groupby(community_id_col).size()
    comm["n_buildings"] = comm[community_id_col].map(nb).fillna(0).astype("int64")
    if test is None:
        test_mask = _split(comm["pop"].to_numpy(), seed=seed, test_size=test_size,
                           n_classes=n_classes)
    else:
        test_mask = np.asarray(test, dtype=bool)
        if test_mask.shape != (len(comm),):
            raise EstimateError(f"test must be a mask of {len(comm)} communities, got shape "
                                f"{test_mask.shape}.")
    comm["test"] = test_mask
    # informativeness over all zones (needs no labels); reliability on training communities
    sigma = np.array([float(feats[f"{n}_var"].sum()) for n in names])
    csum = t.groupby(community_id_col)[names].sum()
    tr = comm.loc[~comm["test"]]
    x = csum.reindex(tr[community_id_col]).fillna(0.0).to_numpy()
    y = tr["pop"].to_numpy(np.float64)
    r = np.array([_pearson(x[:, j], y) for j in range(len(names))])
    return _Prepared(b, t, feats, names, comm, communities, sigma, r)


def _split(pop, *, seed, test_size, n_classes):
    from eocube.estimates._split import stratified_split

    return stratified_split(pop, n_classes=n_classes, test_size=test_size, seed=seed)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _fit_variant(p: _Prepared, *, weights: Literal["dqw", "equal"], habitability: str,
                 terms: Literal["both", "in", "out"], external: str, taz_id_col: str,
                 community_id_col: str, label: str):
    w = dqw_weights(p.sigma, p.r) if weights == "dqw" else np.full(len(p.names),
                                                                    1 / len(p.names))
    ts = topsis(p.taz[p.names].to_numpy(np.float64), weights=w)
    e_out_taz = pd.Series(ts["closeness"].to_numpy(), index=p.taz[taz_id_col].to_numpy())
    b = p.buildings
    e_in = (b["e_in"] if habitability == "typed" else b["e_in_one"]).to_numpy(np.float64)
    e_out = e_out_taz.reindex(b[taz_id_col].to_numpy()).fillna(0.0).to_numpy()
    tid = b[taz_id_col].to_numpy()
    if external == "share":
        taz_cap = pd.Series(e_in).groupby(tid).transform("sum").to_numpy()
        x_out = e_out * np.divide(e_in, taz_cap, out=np.zeros_like(e_in), where=taz_cap > 0)
    elif external == "capacity":
        x_out = e_out * e_in
    elif external == "count":
        x_out = e_out * (e_in > 0)
    else:
        raise EstimateError(f"external must be 'share', 'capacity' or 'count', not "
                            f"{external!r}.")
    cid = b[community_id_col].to_numpy()
    agg = pd.DataFrame({"cid": cid, "e_in": e_in, "x_out": x_out}).groupby("cid").sum()
    comm = p.comm.copy()
    comm["sum_e_in"] = comm[community_id_col].map(agg["e_in"]).fillna(0.0)
    comm["sum_x_out"] = comm[community_id_col].map(agg["x_out"]).fillna(0.0)
    # communities without buildings cannot inform a, b: left out of the fit, predicted 0
    fit = ~comm["test"] & (comm["n_buildings"] > 0)
    cols = {"both": ["sum_e_in", "sum_x_out"], "in": ["sum_e_in"], "out": ["sum_x_out"]}[terms]
    coef = _nnls(comm.loc[fit, cols].to_numpy(np.float64), comm.loc[fit, "pop"].to_numpy(
        np.float64), cols, label)
    a = float(coef[cols.index("sum_e_in")]) if "sum_e_in" in cols else 0.0
    bb = float(coef[cols.index("sum_x_out")]) if "sum_x_out" in cols else 0.0
    comm["predicted"] = a * comm["sum_e_in"] + bb * comm["sum_x_out"]
    pop_b = a * e_in + bb * x_out
    return dict(w=w, ts=ts, e_out=e_out, x_out=x_out, e_in=e_in, comm=comm, a=a, b=bb,
                pop_b=pop_b)


def _community_metrics(comm: pd.DataFrame, pred_col: str = "predicted") -> dict[str, dict]:
    from eocube.estimates._metrics import regression_report

    out = {}
    for split, m in (("test", comm["test"]), ("train", ~comm["test"])):
        out[split] = regression_report(comm.loc[m, "pop"], comm.loc[m, pred_col])
    return out


def deff(
    buildings: gpd.GeoDataFrame,
    /,
    *,
    pois: gpd.GeoDataFrame,
    taz: gpd.GeoDataFrame,
    communities: gpd.GeoDataFrame,
    census: pd.DataFrame,
    features: xr.Dataset | pd.DataFrame,
    pop_col: str = "pop_end",
    test: np.ndarray | None = None,
    seed: int = 0,
    test_size: float = 0.25,
    n_classes: int = 5,
    weights: Literal["dqw", "equal"] = "dqw",
    habitability: Literal["typed", "one"] = "typed",
    terms: Literal["both", "in", "out"] = "both",
    external: Literal["share", "capacity", "count"] = "share",
    truth_col: str | None = None,
    taz_id_col: str = "taz_id",
    community_id_col: str = "community_id",
    classify_kw: Mapping[str, object] | None = None,
) -> DeffResult:
    """Building population by DEFF. Eager: computes the (lazy) TAZ features.

    Steps: function typing (:func:`classify_function`) → capacity ``E_in = C·f·a``
    (:func:`building_capacity`) → DQW weights ``w_j ∝ σ_j·r_j`` with ``σ_j`` the sum over TAZ of
    the within-zone variance of feature j and ``r_j`` the Pearson r of its community sum with
    census population on the training communities → TOPSIS closeness of each TAZ, ``E_out`` in
    [0, 1] → the building's external term ``x_out``: by default (``external="share"``) its
    share of its TAZ's ``E_out`` in proportion to capacity, ``E_out(TAZ)·E_in/ΣE_in(TAZ)``, so
    a community's ``Σx_out`` is the sum of its TAZ scores (the TAZ features are extensive
    sums); ``"capacity"``: ``E_out(TAZ)·E_in`` (the score scales how densely capacity is
    occupied); ``"count"``: ``E_out(TAZ)`` per habitable building
    → ``pop_c = a·ΣE_in + b·Σx_out`` fitted by non-negative
    least squares on the training communities → building population ``a·E_in + b·x_out``,
    which sums to the community prediction.

    Fallbacks (documented, tested): a community with no building is predicted 0 and left out
    of the fit; a building whose TAZ has no typed POI is typed by land use. Errors: a singular
    regression, a census missing a community, features missing a variance column.

    Parameters
    ----------
    buildings
        Footprints with ``floors`` (or ``height``) and, optionally, ``taz_id`` /
        ``community_id`` (else assigned). Truth columns are ignored except ``truth_col``.
    pois
        POIs with ``type``.
    taz
        TAZ with ``taz_id``, ``community_id``, ``land_use``.
    communities
        Community polygons with ``community_id``.
    census
        ``community_id`` and ``pop_col``.
    features
        Output of :func:`taz_features` (or a DataFrame with the same columns by TAZ id).
    pop_col
        Census population column.
    test
        Mask of held-out communities (in ``communities`` order); default a seeded 3:1 split
        stratified by Jenks class of population.
    seed, test_size, n_classes
        Of the default split.
    weights, habitability, terms
        The switches of the ablations: ``"equal"`` (DEFF4), ``"one"`` (DEFF3), ``"in"``
        (DEFF1, b = 0), ``"out"`` (DEFF2, a = 0).
    external
        How the TAZ score enters a building, see above.
    truth_col
        A building column of true population, for building-level metrics.
    taz_id_col, community_id_col
        Id columns.
    classify_kw
        Extra keywords of :func:`classify_function` (tables, ``mixed_ratio``).

    Returns
    -------
    DeffResult
    """
    p = _prepare(buildings, pois=pois, taz=taz, communities=communities, census=census,
                 features=features, pop_col=pop_col, test=test, seed=seed, test_size=test_size,
                 n_classes=n_classes, taz_id_col=taz_id_col, community_id_col=community_id_col,
                 classify_kw=dict(classify_kw or {}))
    f = _fit_variant(p, weights=weights, habitability=habitability, terms=terms,
                     external=external, taz_id_col=taz_id_col,
                     community_id_col=community_id_col, label="DEFF")
    return _result(p, f, truth_col=truth_col, community_id_col=community_id_col)


def _with_geometry(comm: pd.DataFrame, communities: gpd.GeoDataFrame,
                   community_id_col: str) -> gpd.GeoDataFrame:
    """The community table on the community polygons, ``test`` turned into ``split``."""
    comm = comm.assign(split=np.where(comm["test"], "test", "train")).drop(columns=["test"])
    return communities[[community_id_col, "geometry"]].merge(comm, on=community_id_col,
                                                             how="left")


def _result(p: _Prepared, f: dict, *, truth_col, community_id_col) -> DeffResult:
    from eocube.estimates._metrics import regression_report

    b = p.buildings.drop(columns=["e_in_one"]).copy()
    b["e_in"] = f["e_in"]
    b["e_out"] = f["e_out"]
    b["x_out"] = f["x_out"]
    b["population"] = f["pop_b"]
    t = p.taz.copy()
    t["d_plus"] = f["ts"]["d_plus"].to_numpy()
    t["d_minus"] = f["ts"]["d_minus"].to_numpy()
    t["e_out"] = f["ts"]["closeness"].to_numpy()
    comm = _with_geometry(f["comm"], p.communities, community_id_col)
    rows = []
    for split, m in _community_metrics(f["comm"]).items():
        rows.append({"level": "community", "split": split, **m})
    if truth_col is not None and truth_col in b.columns:
        test_c = set(f["comm"].loc[f["comm"]["test"], community_id_col])
        bm = b[community_id_col].isin(test_c).to_numpy()
        rows.append({"level": "building", "split": "test",
                     **regression_report(b.loc[bm, truth_col], b.loc[bm, "population"])})
    weights = pd.DataFrame({"feature": p.names, "sigma": p.sigma, "r": p.r, "w": f["w"]})
    return DeffResult(buildings=b, taz=t, communities=comm, weights=weights,
                      coef={"a": f["a"], "b": f["b"]}, metrics=pd.DataFrame(rows))


# ---- gridded-product style baselines ----------------------------------------------------
def coarse_districts(census: gpd.GeoDataFrame, /, *, cell_m: float, pop_col: str = "pop_end",
                     community_id_col: str = "community_id") -> gpd.GeoDataFrame:
    """Coarse census districts: communities dissolved by the ``cell_m`` grid cell of their
    representative point, with the summed population (the coarse census a gridded product
    starts from).

    Returns
    -------
    geopandas.GeoDataFrame
        ``district_id``, ``pop``, the member ``community_ids`` and the dissolved geometry.
    """
    import shapely

    pts = shapely.point_on_surface(np.asarray(census.geometry.values, dtype=object))
    x0, y0 = census.total_bounds[:2]
    ix = np.floor((shapely.get_x(pts) - x0) / cell_m).astype(int)
    iy = np.floor((shapely.get_y(pts) - y0) / cell_m).astype(int)
    key = iy * (ix.max() + 1) + ix
    c = census[[community_id_col, pop_col, "geometry"]].copy()
    c["district_id"] = pd.factorize(key, sort=True)[0] + 1
    d = c.dissolve(by="district_id", aggfunc={pop_col: "sum", community_id_col: list})
    d = d.rename(columns={pop_col: "pop", community_id_col: "community_ids"}).reset_index()
    return d


def areal_weighting(districts: gpd.GeoDataFrame, communities: gpd.GeoDataFrame, /, *,
                    community_id_col: str = "community_id") -> pd.Series:
    """Census areal weighting: each district's population spread evenly over its area.

    Returns
    -------
    pandas.Series
        Population per community (index ``community_id``).
    """
    import geopandas as gpd

    ov = gpd.overlay(communities[[community_id_col, "geometry"]],
                     districts[["district_id", "pop", "geometry"]], how="intersection")
    darea = districts.set_index("district_id").geometry.area
    ov["est"] = ov["pop"] * ov.geometry.area / ov["district_id"].map(darea)
    est = ov.groupby(community_id_col)["est"].sum()
    return est.reindex(communities[community_id_col]).fillna(0.0)


def _district_raster(districts: gpd.GeoDataFrame, geobox) -> np.ndarray:
    from rasterio import features

    return features.rasterize(
        zip(districts.geometry.values, districts["district_id"].to_numpy(), strict=True),
        out_shape=geobox.shape.yx, transform=geobox.transform, fill=0, dtype="int32")


def dasymetric(districts: gpd.GeoDataFrame, builtup: xr.DataArray, /, *,
               resolution: float = 100.0) -> xr.DataArray:
    """Built-up dasymetric surface (GHS-POP style): each district's population spread over
    its built-up pixels, summed to a ``resolution`` grid (people per cell). Eager.

    Parameters
    ----------
    districts
        Coarse census districts (``district_id``, ``pop``), e.g. :func:`coarse_districts`.
    builtup
        Built-up map (0/1 or fraction) at a finer resolution, with a GeoBox; the output cell
        must be an integer multiple of its pixel.
    resolution
        Output cell size (m).
    """

    gb = builtup.odc.geobox
    d = districts.to_crs(gb.crs)
    dr = _district_raster(d, gb)
    bu = np.asarray(builtup.values, dtype=np.float64)
    tot = np.bincount(dr.ravel(), weights=bu.ravel(), minlength=int(dr.max()) + 1)
    pop = np.zeros(tot.size)
    pop[d["district_id"].to_numpy()] = d["pop"].to_numpy(np.float64)
    if np.any((pop > 0) & (tot == 0)):
        bad = np.flatnonzero((pop > 0) & (tot == 0)).tolist()
        raise EstimateError(f"districts {bad} have population but no built-up pixel; the "
                            "dasymetric surface would lose them.")
    per = np.divide(pop, tot, out=np.zeros_like(pop), where=tot > 0)
    people = bu * per[dr]
    return _block_sum(people, gb, resolution)


def _block_sum(a: np.ndarray, gb, resolution: float) -> xr.DataArray:
    """Sum a fine raster into ``resolution`` cells anchored at its top-left corner (the last
    row/column of cells may extend past the fine grid)."""
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import wrap_xr

    f = int(round(resolution / abs(gb.resolution.x)))
    if f < 1 or abs(f * abs(gb.resolution.x) - resolution) > 1e-6 * resolution:
        raise EstimateError(f"resolution={resolution} must be a whole multiple of the pixel "
                            f"size {abs(gb.resolution.x)}.")
    h, w = a.shape
    H, W = -(-h // f) * f, -(-w // f) * f
    pad = np.zeros((H, W))
    pad[:h, :w] = a
    coarse = pad.reshape(H // f, f, W // f, f).sum(axis=(1, 3))
    out = wrap_xr(coarse, GeoBox((H // f, W // f), gb.affine * gb.affine.scale(f), gb.crs))
    out.attrs["units"] = "people per cell"
    return out


def smoothed_surface(surface: xr.DataArray, /, *, resolution: float = 1000.0,
                     sigma_cells: float = 1.0) -> xr.DataArray:
    """A coarse smoothed product (LandScan style): a people-per-cell surface summed to
    ``resolution`` cells and Gaussian-smoothed (mass preserving up to the edges). Eager."""
    import scipy.ndimage as ndi
    from odc.geo.xr import wrap_xr

    coarse = _block_sum(np.asarray(surface.values, dtype=np.float64), surface.odc.geobox,
                        resolution)
    c = np.asarray(coarse.values)
    sm = ndi.gaussian_filter(c, sigma_cells, mode="constant")
    sm *= c.sum() / sm.sum() if sm.sum() > 0 else 1.0
    out = wrap_xr(sm, coarse.odc.geobox)
    out.attrs["units"] = "people per cell"
    return out


def _surface_to_communities(surface: xr.DataArray, communities: gpd.GeoDataFrame,
                            community_id_col: str) -> pd.Series:
    from eocube.zonal import zonal_stats

    s = zonal_stats(surface, communities, stats=["sum"], method="exact",
                    id_col=community_id_col)["sum"]
    return pd.Series(s.values, index=s["zone"].values).reindex(
        communities[community_id_col]).fillna(0.0)


# ---- the comparison ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PopulationComparison:
    """What :func:`compare_population` returns.

    Attributes
    ----------
    table
        One row per model: community-level MAE, RMSE, MAPE, SMAPE, R² on the held-out
        communities (and building-level R², MAE where the model places people in buildings
        and truth is given).
    communities
        Per community: census ``pop``, ``split`` and one prediction column per model.
    deff
        The full :class:`DeffResult` of the DEFF model.
    """

    table: pd.DataFrame
    communities: gpd.GeoDataFrame
    deff: DeffResult


def compare_population(
    buildings: gpd.GeoDataFrame,
    /,
    *,
    pois: gpd.GeoDataFrame,
    taz: gpd.GeoDataFrame,
    communities: gpd.GeoDataFrame,
    census: gpd.GeoDataFrame,
    features: xr.Dataset | pd.DataFrame,
    builtup: xr.DataArray | None = None,
    districts: gpd.GeoDataFrame | None = None,
    pop_col: str = "pop_end",
    test: np.ndarray | None = None,
    seed: int = 0,
    test_size: float = 0.25,
    n_classes: int = 5,
    external: Literal["share", "capacity", "count"] = "share",
    truth_col: str | None = None,
    taz_id_col: str = "taz_id",
    community_id_col: str = "community_id",
    classify_kw: Mapping[str, object] | None = None,
) -> PopulationComparison:
    """DEFF, its ablations DEFF1–4, LR(building), LR(TAZ) and the baselines, on one split.

    * DEFF1: ``b = 0``; DEFF2: ``a = 0``; DEFF3: ``C_i ≡ 1``; DEFF4: equal TOPSIS weights.
    * LR(building): OLS with intercept of community population on community sums of footprint
      area, floor area (f·a) and building count — the building form without typing.
    * LR(TAZ): OLS with intercept on community sums of the TAZ features.
    * With ``districts`` (coarse census, e.g. :func:`coarse_districts`): census areal
      weighting; with ``builtup`` too: built-up dasymetric at 100 m and a 1 km smoothed surface.
      These start from the coarse census of all districts, as gridded products do.

    All models fit on the same training communities and are scored on the same held-out ones.
    Arguments as in :func:`deff`. Eager.

    Returns
    -------
    PopulationComparison
    """
    from eocube.estimates._metrics import regression_report

    p = _prepare(buildings, pois=pois, taz=taz, communities=communities, census=census,
                 features=features, pop_col=pop_col, test=test, seed=seed, test_size=test_size,
                 n_classes=n_classes, taz_id_col=taz_id_col, community_id_col=community_id_col,
                 classify_kw=dict(classify_kw or {}))
    common = dict(external=external, taz_id_col=taz_id_col, community_id_col=community_id_col)
    variants = {
        "DEFF": dict(weights="dqw", habitability="typed", terms="both"),
        "DEFF1 (b=0)": dict(weights="dqw", habitability="typed", terms="in"),
        "DEFF2 (a=0)": dict(weights="dqw", habitability="typed", terms="out"),
        "DEFF3 (C=1)": dict(weights="dqw", habitability="one", terms="both"),
        "DEFF4 (equal w)": dict(weights="equal", habitability="typed", terms="both"),
    }
    comm = p.comm.copy()
    b = p.buildings
    cid_b = b[community_id_col].to_numpy()
    test_c = set(comm.loc[comm["test"], community_id_col])
    in_test_b = np.isin(cid_b, list(test_c))
    has_truth = truth_col is not None and truth_col in b.columns
    bld_pred: dict[str, np.ndarray] = {}
    deff_res = None
    for name, kw in variants.items():
        f = _fit_variant(p, label=name, **kw, **common)
        comm[name] = f["comm"]["predicted"].to_numpy()
        bld_pred[name] = f["pop_b"]
        if name == "DEFF":
            deff_res = _result(p, f, truth_col=truth_col, community_id_col=community_id_col)
    fit = ~comm["test"].to_numpy()
    y = comm["pop"].to_numpy(np.float64)
    # LR(building)
    floor_area = b["e_in_one"].to_numpy()  # f·a, from _prepare
    bf = pd.DataFrame({"cid": cid_b, "fp": b["footprint_m2"].to_numpy(), "fa": floor_area,
                       "n": 1.0}).groupby("cid").sum()
    Xb = bf.reindex(comm[community_id_col]).fillna(0.0).to_numpy()
    cb = _ols(Xb[fit], y[fit], "LR(building)")
    comm["LR(building)"] = np.clip(cb[0] + Xb @ cb[1:], 0, None)
    # LR(TAZ)
    Xt = p.taz.groupby(community_id_col)[p.names].sum().reindex(
        comm[community_id_col]).fillna(0.0).to_numpy()
    ct = _ols(Xt[fit], y[fit], "LR(TAZ)")
    comm["LR(TAZ)"] = np.clip(ct[0] + Xt @ ct[1:], 0, None)
    # building-level placement of the two LRs: community estimate ∝ floor area
    fa_comm = pd.Series(floor_area).groupby(cid_b).sum()
    for name in ("LR(building)", "LR(TAZ)"):
        est = comm.set_index(community_id_col)[name]
        denom = fa_comm.reindex(cid_b).to_numpy()
        bld_pred[name] = np.divide(est.reindex(cid_b).to_numpy() * floor_area, denom,
                                   out=np.zeros_like(floor_area), where=denom > 0)
    baselines = []
    if districts is not None:
        comm["census areal weighting"] = areal_weighting(
            districts, communities, community_id_col=community_id_col).to_numpy()
        baselines.append("census areal weighting")
        if builtup is not None:
            surf = dasymetric(districts, builtup, resolution=100.0)
            comm["built-up dasymetric 100 m"] = _surface_to_communities(
                surf, communities, community_id_col).to_numpy()
            sm = smoothed_surface(surf, resolution=1000.0, sigma_cells=1.0)
            comm["1 km smoothed surface"] = _surface_to_communities(
                sm, communities, community_id_col).to_numpy()
            baselines += ["built-up dasymetric 100 m", "1 km smoothed surface"]
    rows = []
    te = comm["test"].to_numpy()
    for name in [*variants, "LR(building)", "LR(TAZ)", *baselines]:
        m = regression_report(y[te], comm[name].to_numpy()[te])
        row = {"model": name, **m}
        if has_truth and name in bld_pred:
            bm = regression_report(b[truth_col].to_numpy()[in_test_b],
                                   bld_pred[name][in_test_b])
            row.update({"bld_MAE": bm["MAE"], "bld_RMSE": bm["RMSE"], "bld_R2": bm["R2"]})
        rows.append(row)
    return PopulationComparison(table=pd.DataFrame(rows).set_index("model"),
                                communities=_with_geometry(comm, communities, community_id_col),
                                deff=deff_res)
