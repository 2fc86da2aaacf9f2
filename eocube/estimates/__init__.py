"""Estimates from the zonal statistics (population, stock, greening, SDG 11.3.1) and the
accuracy metrics that measure maps and estimates."""

from __future__ import annotations

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
    rmse,
    smape,
    spearman,
    total_relative_error,
    weighted_rmse,
)

__all__ = ["cohen_kappa", "confusion_matrix", "f1", "iou", "mae", "map_metrics", "mape",
           "precision", "r2", "recall", "rmse", "smape", "spearman", "total_relative_error",
           "weighted_rmse"]

# estimates (issue 8): population (DEFF), stock, greening, SDG 11.3.1, and the writer
from eocube.io import to_geoparquet
from eocube.estimates.greening import (
    AHPResult,
    GreeningResult,
    ahp_weights,
    candidate_roofs,
    greening_criteria,
    greening_suitability,
)
from eocube.estimates.population import (
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
    smoothed_surface,
    taz_features,
    topsis,
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

__all__ += [
    "AHPResult", "DeffResult", "GreeningResult", "PopulationComparison", "ahp_weights",
    "areal_weighting", "bottom_up_stock", "building_capacity", "candidate_roofs",
    "classify_function", "coarse_districts", "compare_population", "dasymetric", "deff",
    "dqw_weights", "greening_criteria", "greening_suitability", "lcrpgr",
    "ntl_stock_regression", "sdg_rates", "smoothed_surface", "stock_grid", "taz_features",
    "to_geoparquet", "topsis",
]
# top-down stock with the shipped regressors (torch is imported on call, not here)
__all__ += ["STOCK_MODELS", "TopDownStock", "cell_patches", "topdown_stock"]
