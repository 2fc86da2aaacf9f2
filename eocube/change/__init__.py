"""Continuous and bi-temporal change detection over cubes.

`ccdc` runs a batched CCDC (Zhu & Woodcock 2014) over every pixel's spectral series;
`time_of_change`, `yearly_change` and `bitemporal_change` turn built-up evidence series (model
probabilities, S1 log-ratios) into change dates and maps. All are lazy over dask, with time in
one chunk. torch is imported only for ``backend="torch"``.
"""

from __future__ import annotations

from eocube.change._model import (
    COEF_NAMES,
    STATUS_MEANINGS,
    TREND_ORIGIN,
    CCDCParams,
    design_matrix,
)
from eocube.change.ccdc import ccdc, ccdc_numpy
from eocube.change.urban import (
    TOC_STATES,
    backscatter_log_ratio,
    bitemporal_change,
    time_of_change,
    time_of_change_numpy,
    yearly_change,
)

__all__ = [
    "COEF_NAMES",
    "STATUS_MEANINGS",
    "TOC_STATES",
    "TREND_ORIGIN",
    "CCDCParams",
    "backscatter_log_ratio",
    "bitemporal_change",
    "ccdc",
    "ccdc_numpy",
    "design_matrix",
    "time_of_change",
    "time_of_change_numpy",
    "yearly_change",
]
