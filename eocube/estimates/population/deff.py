"""The DEFF model (Dual-Environment Feature Fusion, Liu et al. 2023): the inputs prepared once
(typed buildings with capacity, TAZ with features, the community split, DQW σ and r), the
external score by DQW-TOPSIS, and the community regression ``pop = a·ΣE_in + b·Σx_out``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from eocube.errors import EstimateError
from eocube.estimates.mcda import topsis
from eocube.estimates.metrics import regression_report
from eocube.estimates.population.capacity import building_capacity
from eocube.estimates.population.typing import classify_function
from eocube.estimates.split import stratified_split

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["DeffFit", "DeffInputs", "DeffResult", "DeffVariant", "deff", "deff_result",
           "dqw_weights", "fit_variant", "prepare_inputs", "with_geometry"]


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


@dataclasses.dataclass(frozen=True)
class DeffInputs:
    """The inputs of DEFF, prepared once by :func:`prepare_inputs` and shared by every model
    variant fitted on them (:func:`deff`, :func:`~eocube.estimates.compare_population`).

    Attributes
    ----------
    buildings
        Typed buildings with capacity (``function``, ``e_in``), ``e_in_one`` (``f·a``, the
        capacity with ``C ≡ 1``) and both zone ids.
    taz
        TAZ with their feature columns.
    names
        The feature names (the TOPSIS criteria).
    comm
        Per community: id, census ``pop``, ``test`` (the held-out mask), ``n_buildings``.
    communities
        The community polygons.
    sigma, r
        Informativeness and reliability of each feature (the DQW inputs).
    taz_id_col, community_id_col
        The id columns of the tables above.
    """

    buildings: gpd.GeoDataFrame
    taz: gpd.GeoDataFrame
    names: tuple[str, ...]
    comm: pd.DataFrame
    communities: gpd.GeoDataFrame
    sigma: np.ndarray
    r: np.ndarray
    taz_id_col: str = "taz_id"
    community_id_col: str = "community_id"


def prepare_inputs(
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
    taz_id_col: str = "taz_id",
    community_id_col: str = "community_id",
    classify_kw: Mapping[str, object] | None = None,
) -> DeffInputs:
    """Type the buildings, compute their capacity, join the TAZ features, split the
    communities and measure the DQW inputs: everything the DEFF variants share. Eager.

    Its keywords are those of every population estimate (:func:`deff` and
    ``compare_population`` pass theirs on here).

    Parameters
    ----------
    buildings
        Footprints with ``floors`` (or ``height``) and, optionally, ``taz_id`` /
        ``community_id`` (else assigned).
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
    taz_id_col, community_id_col
        Id columns.
    classify_kw
        Extra keywords of :func:`classify_function` (tables, ``mixed_ratio``).

    Returns
    -------
    DeffInputs
    """
    for name, df, cols in (("taz", taz, [taz_id_col, community_id_col]),
                           ("census", census, [community_id_col, pop_col]),
                           ("communities", communities, [community_id_col])):
        miss = [c for c in cols if c not in df.columns]
        if miss:
            raise EstimateError(f"{name} lacks column(s) {miss}; it has {list(df.columns)}.")
    if len(buildings) == 0:
        raise EstimateError("no buildings were given; DEFF needs footprints.")
    b = classify_function(buildings, pois=pois, taz=taz, taz_id_col=taz_id_col,
                          **dict(classify_kw or {}))
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
        test_mask = stratified_split(comm["pop"].to_numpy(), n_classes=n_classes,
                                     test_size=test_size, seed=seed)
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
    return DeffInputs(buildings=b, taz=t, names=tuple(names), comm=comm,
                      communities=communities, sigma=sigma, r=r, taz_id_col=taz_id_col,
                      community_id_col=community_id_col)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


@dataclasses.dataclass(frozen=True)
class DeffVariant:
    """The switches of one DEFF model: the full model or one of its ablations.

    ``weights="equal"`` is DEFF4, ``habitability="one"`` DEFF3, ``terms="in"`` DEFF1
    (b = 0) and ``terms="out"`` DEFF2 (a = 0); ``external`` as in :func:`deff`.
    """

    weights: Literal["dqw", "equal"] = "dqw"
    habitability: Literal["typed", "one"] = "typed"
    terms: Literal["both", "in", "out"] = "both"
    external: Literal["share", "capacity", "count"] = "share"


@dataclasses.dataclass(frozen=True)
class DeffFit:
    """One variant fitted on :class:`DeffInputs`: the per-building terms, the TOPSIS table,
    the community table with ``predicted`` and the coefficients."""

    w: np.ndarray
    topsis: pd.DataFrame
    e_in: np.ndarray
    e_out: np.ndarray
    x_out: np.ndarray
    comm: pd.DataFrame
    a: float
    b: float
    pop_b: np.ndarray


def fit_variant(p: DeffInputs, variant: DeffVariant = DeffVariant(), /, *,
                label: str = "DEFF") -> DeffFit:
    """Fit one DEFF variant on prepared inputs (non-negative least squares on the training
    communities); ``label`` names it in errors."""
    taz_id_col, community_id_col = p.taz_id_col, p.community_id_col
    names = list(p.names)
    w = dqw_weights(p.sigma, p.r) if variant.weights == "dqw" else np.full(len(names),
                                                                            1 / len(names))
    ts = topsis(p.taz[names].to_numpy(np.float64), weights=w)
    e_out_taz = pd.Series(ts["closeness"].to_numpy(), index=p.taz[taz_id_col].to_numpy())
    b = p.buildings
    e_in = (b["e_in"] if variant.habitability == "typed" else b["e_in_one"]).to_numpy(
        np.float64)
    e_out = e_out_taz.reindex(b[taz_id_col].to_numpy()).fillna(0.0).to_numpy()
    tid = b[taz_id_col].to_numpy()
    if variant.external == "share":
        taz_cap = pd.Series(e_in).groupby(tid).transform("sum").to_numpy()
        x_out = e_out * np.divide(e_in, taz_cap, out=np.zeros_like(e_in), where=taz_cap > 0)
    elif variant.external == "capacity":
        x_out = e_out * e_in
    elif variant.external == "count":
        x_out = e_out * (e_in > 0)
    else:
        raise EstimateError(f"external must be 'share', 'capacity' or 'count', not "
                            f"{variant.external!r}.")
    cid = b[community_id_col].to_numpy()
    agg = pd.DataFrame({"cid": cid, "e_in": e_in, "x_out": x_out}).groupby("cid").sum()
    comm = p.comm.copy()
    comm["sum_e_in"] = comm[community_id_col].map(agg["e_in"]).fillna(0.0)
    comm["sum_x_out"] = comm[community_id_col].map(agg["x_out"]).fillna(0.0)
    # communities without buildings cannot inform a, b: left out of the fit, predicted 0
    fit = ~comm["test"] & (comm["n_buildings"] > 0)
    cols = {"both": ["sum_e_in", "sum_x_out"], "in": ["sum_e_in"],
            "out": ["sum_x_out"]}[variant.terms]
    coef = _nnls(comm.loc[fit, cols].to_numpy(np.float64), comm.loc[fit, "pop"].to_numpy(
        np.float64), cols, label)
    a = float(coef[cols.index("sum_e_in")]) if "sum_e_in" in cols else 0.0
    bb = float(coef[cols.index("sum_x_out")]) if "sum_x_out" in cols else 0.0
    comm["predicted"] = a * comm["sum_e_in"] + bb * comm["sum_x_out"]
    return DeffFit(w=w, topsis=ts, e_in=e_in, e_out=e_out, x_out=x_out, comm=comm, a=a, b=bb,
                   pop_b=a * e_in + bb * x_out)


def _community_metrics(comm: pd.DataFrame, pred_col: str = "predicted") -> dict[str, dict]:
    out = {}
    for split, m in (("test", comm["test"]), ("train", ~comm["test"])):
        out[split] = regression_report(comm.loc[m, "pop"], comm.loc[m, pred_col])
    return out


def deff(
    buildings: gpd.GeoDataFrame,
    /,
    *,
    weights: Literal["dqw", "equal"] = "dqw",
    habitability: Literal["typed", "one"] = "typed",
    terms: Literal["both", "in", "out"] = "both",
    external: Literal["share", "capacity", "count"] = "share",
    truth_col: str | None = None,
    **inputs: Any,
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
    weights, habitability, terms
        The switches of the ablations: ``"equal"`` (DEFF4), ``"one"`` (DEFF3), ``"in"``
        (DEFF1, b = 0), ``"out"`` (DEFF2, a = 0).
    external
        How the TAZ score enters a building, see above.
    truth_col
        A building column of true population, for building-level metrics.
    **inputs
        The layers and options of :func:`prepare_inputs` (``pois``, ``taz``, ``communities``,
        ``census``, ``features``; ``pop_col``, ``test``, ``seed``, ``test_size``,
        ``n_classes``, ``taz_id_col``, ``community_id_col``, ``classify_kw``): one signature
        for every population estimate.

    Returns
    -------
    DeffResult
    """
    p = prepare_inputs(buildings, **inputs)
    f = fit_variant(p, DeffVariant(weights=weights, habitability=habitability, terms=terms,
                                   external=external))
    return deff_result(p, f, truth_col=truth_col)


def with_geometry(comm: pd.DataFrame, communities: gpd.GeoDataFrame, /, *,
                  community_id_col: str = "community_id") -> gpd.GeoDataFrame:
    """A community table on the community polygons, its ``test`` mask turned into ``split``
    (``"test"`` / ``"train"``)."""
    comm = comm.assign(split=np.where(comm["test"], "test", "train")).drop(columns=["test"])
    return communities[[community_id_col, "geometry"]].merge(comm, on=community_id_col,
                                                             how="left")


def deff_result(p: DeffInputs, f: DeffFit, /, *, truth_col: str | None = None) -> DeffResult:
    """The :class:`DeffResult` of a fitted variant: tables and community (and, with
    ``truth_col``, building) metrics."""
    community_id_col = p.community_id_col
    b = p.buildings.drop(columns=["e_in_one"]).copy()
    b["e_in"] = f.e_in
    b["e_out"] = f.e_out
    b["x_out"] = f.x_out
    b["population"] = f.pop_b
    t = p.taz.copy()
    t["d_plus"] = f.topsis["d_plus"].to_numpy()
    t["d_minus"] = f.topsis["d_minus"].to_numpy()
    t["e_out"] = f.topsis["closeness"].to_numpy()
    comm = with_geometry(f.comm, p.communities, community_id_col=community_id_col)
    rows = []
    for split, m in _community_metrics(f.comm).items():
        rows.append({"level": "community", "split": split, **m})
    if truth_col is not None and truth_col in b.columns:
        test_c = set(f.comm.loc[f.comm["test"], community_id_col])
        bm = b[community_id_col].isin(test_c).to_numpy()
        rows.append({"level": "building", "split": "test",
                     **regression_report(b.loc[bm, truth_col], b.loc[bm, "population"])})
    weights = pd.DataFrame({"feature": list(p.names), "sigma": p.sigma, "r": p.r, "w": f.w})
    return DeffResult(buildings=b, taz=t, communities=comm, weights=weights,
                      coef={"a": f.a, "b": f.b}, metrics=pd.DataFrame(rows))
