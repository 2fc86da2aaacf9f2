"""The CCDC model shared by every backend: parameters, status codes, the design matrix.

`eocube.change._core` (batched reference), `eocube.change._numba` (compiled CPU path) and
`eocube.change._procedures` (pyccd's special procedures) all build on this module and on
nothing of each other, so none imports another.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy.stats import chi2

from eocube.errors import ConfigError

#: Names of the harmonic-model coefficients, in the order of the ``coef`` dimension.
COEF_NAMES = ("intercept", "slope", "cos1", "sin1", "cos2", "sin2", "cos3", "sin3")
#: The trend term is in years since this date, so coefficients from different cubes compare.
TREND_ORIGIN = np.datetime64("2000-01-01", "D")
DAYS_PER_YEAR = 365.2425

#: Pixel status codes (the ``status`` output) and their meanings.
STATUS_OK = 0
STATUS_INSUFFICIENT_DATA = 1
STATUS_NO_STABLE_MODEL = 2
STATUS_PERSISTENT_SNOW = 3
STATUS_INSUFFICIENT_CLEAR = 4
STATUS_MEANINGS = ("ok", "insufficient_data", "no_stable_model", "persistent_snow",
                   "insufficient_clear")

#: Phases of the per-pixel state machine, shared by the batched and the compiled kernel.
PHASE_INIT, PHASE_LOOKBACK, PHASE_MONITOR, PHASE_DONE = 0, 1, 2, 3
#: Columns of the design matrix (the largest model).
N_COEFS = len(COEF_NAMES)
#: `TREND_ORIGIN` in days since 1970-01-01.
ORIGIN_DAYS = float(TREND_ORIGIN.astype("int64"))


@dataclasses.dataclass(frozen=True)
class CCDCParams:
    """CCDC parameters; the defaults are those of pyccd (Zhu & Woodcock 2014).

    Parameters
    ----------
    max_segments
        Segments kept per pixel; breaks beyond are still counted in ``n_breaks``.
    chi2_prob
        Probability of the chi-square change threshold, with one degree of freedom per
        detection band (pyccd: 0.99 over 5 bands, threshold 15.086).
    outlier_prob
        Probability of the chi-square threshold above which a single observation is dropped as
        an outlier (pyccd: 0.999999, 35.888 over 5 bands).
    consecutive
        Consecutive anomalous observations that make a break (pyccd's ``PEEK_SIZE``).
    min_obs
        Observations in an initialisation window (pyccd's ``MEOW_SIZE``).
    min_days
        Days an initialisation window must span (pyccd's ``DAY_DELTA``).
    obs_per_coef
        Observations per coefficient: 4 coefficients under ``6 * obs_per_coef`` observations,
        6 under ``8 * obs_per_coef``, else 8 (pyccd's ``NUM_OBS_FACTOR``).
    refit_growth
        Once a model covers ``full_refit_obs`` observations it is refitted only when its time
        span has grown by this factor (pyccd: 1.33).
    full_refit_obs
        Below this many observations the model is refitted at every new observation.
    variogram_days
        Observation pairs closer than this are skipped in the variogram (pyccd: 30).
    clear_pct, snow_pct
        With QA classes (``qa=``): a pixel whose clear-or-water share of the non-fill
        observations is under ``clear_pct`` does not run the change model; if snow makes up
        ``snow_pct`` or more of its clear, water and snow observations it gets pyccd's
        persistent-snow procedure, else its insufficient-clear procedure (one 4-coefficient
        fit, no break). pyccd: 0.25 and 0.75.
    tmask_const
        Initialisation windows drop observations whose residual exceeds this many variograms
        in any detection band (pyccd's ``T_CONST``, its Tmask screen); 0 turns it off.
    ridge
        Ridge added to the normal equations, times the observation count, on every
        coefficient but the intercept; keeps ill-posed windows (all observations in one
        season) solvable without moving well-posed fits measurably.
    """

    max_segments: int = 10
    chi2_prob: float = 0.99
    outlier_prob: float = 0.999999
    consecutive: int = 6
    min_obs: int = 12
    min_days: float = 365.0
    obs_per_coef: int = 3
    refit_growth: float = 1.33
    full_refit_obs: int = 24
    variogram_days: float = 30.0
    clear_pct: float = 0.25
    snow_pct: float = 0.75
    tmask_const: float = 4.89
    ridge: float = 1e-8

    def __post_init__(self) -> None:
        checks = [
            ("max_segments", self.max_segments >= 1, "at least 1"),
            ("chi2_prob", 0 < self.chi2_prob < 1, "in (0, 1)"),
            ("outlier_prob", self.chi2_prob <= self.outlier_prob < 1, "in [chi2_prob, 1)"),
            ("consecutive", self.consecutive >= 1, "at least 1"),
            ("min_obs", self.min_obs >= 5, "at least 5 (a 4-coefficient fit needs 5)"),
            ("min_days", self.min_days >= 0, "non-negative"),
            ("obs_per_coef", self.obs_per_coef >= 1, "at least 1"),
            ("refit_growth", self.refit_growth >= 1, "at least 1"),
            ("ridge", self.ridge >= 0, "non-negative"),
            ("tmask_const", self.tmask_const >= 0, "non-negative"),
            ("clear_pct", 0 <= self.clear_pct <= 1, "in [0, 1]"),
            ("snow_pct", 0 <= self.snow_pct <= 1, "in [0, 1]"),
        ]
        for name, ok, what in checks:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be {what}")


def dates_to_days(dates: Any) -> np.ndarray:
    """Days since 1970-01-01 as float64, from datetime64 values or numbers of days."""
    dates = np.asarray(dates)
    if np.issubdtype(dates.dtype, np.datetime64):
        return dates.astype("datetime64[s]").astype("int64") / 86400.0
    if np.issubdtype(dates.dtype, np.number):
        return dates.astype(np.float64)
    raise ConfigError(f"dates must be datetime64 or numbers of days, not dtype {dates.dtype}")


def design_matrix(days: np.ndarray) -> np.ndarray:
    """The (time, 8) CCDC design: intercept, trend in years, three annual harmonic pairs."""
    w = 2 * math.pi / DAYS_PER_YEAR
    cols = [np.ones_like(days), (days - ORIGIN_DAYS) / DAYS_PER_YEAR]
    for h in (1, 2, 3):
        cols += [np.cos(h * w * days), np.sin(h * w * days)]
    return np.stack(cols, axis=-1)


def thresholds(p: CCDCParams, n_det: int) -> tuple[float, float]:
    """Chi-square change and outlier thresholds for ``n_det`` detection bands."""
    return float(chi2.ppf(p.chi2_prob, n_det)), float(chi2.ppf(p.outlier_prob, n_det))
