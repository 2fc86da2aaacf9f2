"""The metric bundles the estimates report, built on :mod:`eocube.estimates.metrics`.

MAPE and SMAPE are reported in percent here (the shared functions return fractions), and MAPE
leaves out zero truths (a community with no residents has no percentage error).
"""

from __future__ import annotations

import numpy as np

from eocube.estimates import metrics as m


def regression_report(y_true, y_pred) -> dict[str, float]:
    """MAE, RMSE, MAPE (%, over non-zero truths), SMAPE (%), R²."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    nz = t != 0
    return {
        "MAE": float(m.mae(t, p)),
        "RMSE": float(m.rmse(t, p)),
        "MAPE": 100 * float(m.mape(t, p, mask=nz)) if nz.any() else float("nan"),
        "SMAPE": 100 * float(m.smape(t, p)),
        "R2": float(m.r2(t, p)),
    }


def spearman(y_true, y_pred) -> float:
    return float(m.spearman(np.asarray(y_true, "float64"), np.asarray(y_pred, "float64")))


def weighted_rmse(y_true, y_pred) -> float:
    """RMSE with each cell weighted by its true value (large stocks count more)."""
    t = np.asarray(y_true, dtype=np.float64)
    return float(m.weighted_rmse(t, np.asarray(y_pred, "float64"), sample_weight=np.abs(t)))


def total_relative_error(y_true, y_pred) -> float:
    """(Σ pred − Σ true) / Σ true."""
    return float(m.total_relative_error(np.asarray(y_true, "float64"),
                                        np.asarray(y_pred, "float64")))
