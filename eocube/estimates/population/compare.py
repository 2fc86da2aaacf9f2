"""DEFF against its ablations DEFF1–4, the two linear regressions and the gridded-product
style baselines, all on one split of the communities: :func:`compare_population`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from eocube.errors import EstimateError
from eocube.estimates.metrics import regression_report
from eocube.estimates.population.baselines import (
    areal_weighting,
    dasymetric,
    smoothed_surface,
    surface_to_communities,
)
from eocube.estimates.population.deff import (
    DeffResult,
    DeffVariant,
    deff_result,
    fit_variant,
    prepare_inputs,
    with_geometry,
)

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["EXTERNAL_FORMS", "VARIANTS", "PopulationComparison", "compare_population"]

#: DEFF and its ablations, in the order of the comparison table.
VARIANTS: dict[str, DeffVariant] = {
    "DEFF": DeffVariant(),
    "DEFF1 (b=0)": DeffVariant(terms="in"),
    "DEFF2 (a=0)": DeffVariant(terms="out"),
    "DEFF3 (C=1)": DeffVariant(habitability="one"),
    "DEFF4 (equal w)": DeffVariant(weights="equal"),
}

#: DEFF with the other forms of its external term (:func:`~eocube.estimates.deff`'s
#: ``external``), beside the chosen one: the share form places a TAZ's score by capacity
#: within the TAZ, so a TAZ of little capacity and a high score gets many people per
#: building; the other two scale each building's capacity or count instead.
EXTERNAL_FORMS: dict[str, Literal["share", "capacity", "count"]] = {
    "DEFF, x_out as TAZ share": "share",
    "DEFF, x_out ∝ capacity": "capacity",
    "DEFF, x_out per building": "count",
}


def _ols(X: np.ndarray, y: np.ndarray, what: str) -> np.ndarray:
    X1 = np.column_stack([np.ones(len(X)), X])
    scale = np.abs(X1).max(axis=0)
    scale[scale == 0] = 1.0
    if np.linalg.matrix_rank(X1 / scale) < X1.shape[1]:
        raise EstimateError(f"{what}: the regression is singular (collinear features).")
    coef, *_ = np.linalg.lstsq(X1 / scale, y, rcond=None)
    return coef / scale


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
    buildings
        Per building (``building_id`` where the input has one, in :attr:`deff`'s order): one
        column of population per model that places people in buildings (DEFF, its ablations
        and other external forms, the two LRs).
    """

    table: pd.DataFrame
    communities: gpd.GeoDataFrame
    deff: DeffResult
    buildings: pd.DataFrame


def compare_population(
    buildings: gpd.GeoDataFrame,
    /,
    *,
    builtup: xr.DataArray | None = None,
    districts: gpd.GeoDataFrame | None = None,
    external: Literal["share", "capacity", "count"] = "share",
    truth_col: str | None = None,
    **inputs: Any,
) -> PopulationComparison:
    """DEFF, its ablations DEFF1–4, LR(building), LR(TAZ) and the baselines, on one split.

    * DEFF1: ``b = 0``; DEFF2: ``a = 0``; DEFF3: ``C_i ≡ 1``; DEFF4: equal TOPSIS weights.
    * DEFF with the two other forms of the external term (:data:`EXTERNAL_FORMS`).
    * LR(building): OLS with intercept of community population on community sums of footprint
      area, floor area (f·a) and building count — the building form without typing.
    * LR(TAZ): OLS with intercept on community sums of the TAZ features.
    * With ``districts`` (coarse census, e.g. :func:`coarse_districts`): census areal
      weighting; with ``builtup`` too: built-up dasymetric at 100 m and a 1 km smoothed surface.
      These start from the coarse census of all districts, as gridded products do;
      ``builtup`` without ``districts`` is refused (there is no census to spread).

    All models fit on the same training communities and are scored on the same held-out ones.
    ``external`` and ``truth_col`` as in :func:`deff`; ``**inputs`` the layers and options of
    :func:`prepare_inputs` (``pois``, ``taz``, ``communities``, ``census``, ``features``,
    ``pop_col``, ``test``, ``seed`` …), as for :func:`deff`. Eager.

    Returns
    -------
    PopulationComparison

    Raises
    ------
    EstimateError
        ``builtup`` without ``districts``; and the errors of :func:`deff`.
    """
    if builtup is not None and districts is None:
        raise EstimateError(
            "compare_population(builtup=...) needs districts= too: the built-up dasymetric and "
            "smoothed baselines spread a coarse census over the built-up pixels. Pass "
            "districts=coarse_districts(census, cell_m=1200.0) (or your own districts), or "
            "leave builtup out.")
    p = prepare_inputs(buildings, **inputs)
    community_id_col, communities = p.community_id_col, p.communities
    variants = {name: dataclasses.replace(v, external=external) for name, v in VARIANTS.items()}
    variants.update({name: DeffVariant(external=form) for name, form in EXTERNAL_FORMS.items()
                     if form != external})
    comm = p.comm.copy()
    b = p.buildings
    cid_b = b[community_id_col].to_numpy()
    test_c = set(comm.loc[comm["test"], community_id_col])
    in_test_b = np.isin(cid_b, list(test_c))
    has_truth = truth_col is not None and truth_col in b.columns
    bld_pred: dict[str, np.ndarray] = {}
    deff_res = None
    for name, variant in variants.items():
        f = fit_variant(p, variant, label=name)
        comm[name] = f.comm["predicted"].to_numpy()
        bld_pred[name] = f.pop_b
        if name == "DEFF":
            deff_res = deff_result(p, f, truth_col=truth_col)
    fit = ~comm["test"].to_numpy()
    y = comm["pop"].to_numpy(np.float64)
    # LR(building)
    floor_area = b["e_in_one"].to_numpy()  # f·a, from prepare_inputs
    bf = pd.DataFrame({"cid": cid_b, "fp": b["footprint_m2"].to_numpy(), "fa": floor_area,
                       "n": 1.0}).groupby("cid").sum()
    Xb = bf.reindex(comm[community_id_col]).fillna(0.0).to_numpy()
    cb = _ols(Xb[fit], y[fit], "LR(building)")
    comm["LR(building)"] = np.clip(cb[0] + Xb @ cb[1:], 0, None)
    # LR(TAZ)
    Xt = p.taz.groupby(community_id_col)[list(p.names)].sum().reindex(
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
            comm["built-up dasymetric 100 m"] = surface_to_communities(
                surf, communities, community_id_col=community_id_col).to_numpy()
            sm = smoothed_surface(surf, resolution=1000.0, sigma_cells=1.0)
            comm["1 km smoothed surface"] = surface_to_communities(
                sm, communities, community_id_col=community_id_col).to_numpy()
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
    per_building = pd.DataFrame(bld_pred)
    if "building_id" in b.columns:
        per_building.insert(0, "building_id", b["building_id"].to_numpy())
    return PopulationComparison(table=pd.DataFrame(rows).set_index("model"),
                                communities=with_geometry(comm, communities,
                                                          community_id_col=community_id_col),
                                deff=deff_res, buildings=per_building)
