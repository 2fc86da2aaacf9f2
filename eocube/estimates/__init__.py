"""Estimates from the zonal statistics — population (DEFF), building stock, roof greening,
SDG 11.3.1 — with the multi-criteria tools they share (TOPSIS, AHP), the accuracy metrics that
measure maps and estimates, and the writer of their tables.

The public API, in the order of the flow; torch is imported on call by :func:`topdown_stock`,
never here.
"""

from __future__ import annotations

from eocube.estimates.greening import (
    GreeningResult,
    candidate_roofs,
    greening_criteria,
    greening_suitability,
)
from eocube.estimates.mcda import AHPResult, ahp_weights, topsis
from eocube.estimates.metrics import (
    cohen_kappa,
    confusion_matrix,
    f1,
    iou,
    mae,
    map_metrics,
    mape,
    precision,
    r2,
    recall,
    regression_report,
    rmse,
    smape,
    spearman,
    total_relative_error,
    weighted_rmse,
)
from eocube.estimates.population import (
    DeffInputs,
    DeffResult,
    PopulationComparison,
    areal_weighting,
    building_capacity,
    classify_function,
    coarse_districts,
    compare_population,
    dasymetric,
    deff,
    dqw_weights,
    prepare_inputs,
    smoothed_surface,
    taz_features,
)
from eocube.estimates.sdg import lcrpgr, sdg_rates
from eocube.estimates.stock import (
    STOCK_MODELS,
    TopDownStock,
    bottom_up_stock,
    cell_patches,
    ntl_stock_regression,
    stock_grid,
    topdown_stock,
)
from eocube.io import to_geoparquet

__all__ = [  # noqa: RUF022 -- in the order of the flow, not alphabetical (issue 14.3)
    # population (DEFF): TAZ features → typing → capacity → prepared inputs → model → baselines
    "taz_features", "classify_function", "building_capacity", "prepare_inputs", "DeffInputs",
    "dqw_weights", "topsis", "deff", "DeffResult", "coarse_districts", "areal_weighting",
    "dasymetric", "smoothed_surface", "compare_population", "PopulationComparison",
    # building stock: bottom-up, gridded, top-down
    "bottom_up_stock", "stock_grid", "ntl_stock_regression", "cell_patches", "STOCK_MODELS",
    "topdown_stock", "TopDownStock",
    # roof greening
    "ahp_weights", "AHPResult", "candidate_roofs", "greening_criteria", "greening_suitability",
    "GreeningResult",
    # SDG 11.3.1
    "sdg_rates", "lcrpgr",
    # accuracy
    "confusion_matrix", "f1", "precision", "recall", "iou", "cohen_kappa", "map_metrics",
    "mae", "rmse", "weighted_rmse", "mape", "smape", "r2", "spearman", "total_relative_error",
    "regression_report",
    # output
    "to_geoparquet",
]
