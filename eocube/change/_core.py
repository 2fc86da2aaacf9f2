"""The CCDC state machine over a batch of pixels: numpy arrays in, numpy arrays out.

Every pixel of the batch walks its own clear observations through the CCDC phases
(initialise → look back → monitor → …) but all pixels advance together, one event per
iteration, as masked array operations; there is no loop over pixels. The same statements run
on numpy (CPU) and torch (CPU or CUDA) through :mod:`eocube.change._backend`. On the CPU the
default is :mod:`eocube.change._numba`, the same phases compiled one pixel at a time (what a
GPU does not want, and a CPU does); this module stays the reference it is tested against.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy.stats import chi2

from eocube.change._backend import NumpyOps, get_ops
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
STATUS_MEANINGS = ("ok", "insufficient_data", "no_stable_model")

_INIT, _LOOKBACK, _MONITOR, _DONE = 0, 1, 2, 3
_K = len(COEF_NAMES)
_ORIGIN_DAYS = float(TREND_ORIGIN.astype("int64"))


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
    cols = [np.ones_like(days), (days - _ORIGIN_DAYS) / DAYS_PER_YEAR]
    for h in (1, 2, 3):
        cols += [np.cos(h * w * days), np.sin(h * w * days)]
    return np.stack(cols, axis=-1)


def ccdc_numpy(
    values: np.ndarray,
    dates: np.ndarray,
    /,
    *,
    detection_bands: list[int] | None = None,
    params: CCDCParams | None = None,
    backend: str = "numba",
    device: str = "auto",
) -> dict[str, np.ndarray]:
    """CCDC change detection over a batch of pixel time series (the numpy core of `ccdc`).

    Parameters
    ----------
    values
        Array of shape (pixel, time, band); NaN in any band marks the observation not clear.
    dates
        The (time,) acquisition dates, strictly increasing: datetime64, or days since
        1970-01-01.
    detection_bands
        Indices of the bands whose residuals enter the chi-square test; all by default. Every
        band is modelled and reported either way.
    params
        Algorithm parameters; `CCDCParams` defaults (pyccd's) when None.
    backend
        ``"numba"`` (the CPU fast path: the same phases compiled per pixel, compiled on first
        use and cached), ``"numpy"`` (the batched reference the others are tested against),
        or ``"torch"`` to run the batched statements with torch (float64) on ``device``. All
        three make the same decisions; coefficients, RMSE and magnitudes differ only by
        rounding.
    device
        Torch device (``"auto"``: CUDA if available, else CPU); only ``"cpu"``/``"auto"`` for
        numba and numpy.

    Returns
    -------
    dict of numpy arrays
        Per pixel: ``status`` (int8, see `STATUS_MEANINGS`), ``n_clear`` (int32), ``n_breaks``
        (int32). Per pixel and segment (``max_segments`` slots, empty slots NaN/0):
        ``start_day``, ``end_day``, ``break_day`` (float64 days since 1970-01-01; NaN where
        the segment did not end in a break), ``n_obs`` (int32), ``n_coefs`` (int8),
        ``is_break`` (bool). Per pixel, segment and band: ``magnitude`` (median residual
        over the ``consecutive`` observations that made the break, 0 without a break) and
        ``rmse``; per pixel, segment, band and coefficient: ``coefficients`` (see
        `COEF_NAMES`; trend in years since `TREND_ORIGIN`).
    """
    params = params or CCDCParams()
    values = np.asarray(values)
    if values.ndim != 3:
        raise ConfigError(
            f"values must be (pixel, time, band); got an array of shape {values.shape}"
        )
    days = dates_to_days(dates)
    _n_pix, n_time, n_band = values.shape
    if days.shape != (n_time,):
        raise ConfigError(f"dates has shape {days.shape}; values has {n_time} time steps")
    if n_time > 1 and not np.all(np.diff(days) > 0):
        raise ConfigError(
            "dates must be strictly increasing; sort the cube with cube.sortby('time') and "
            "drop duplicate dates first"
        )
    det = list(range(n_band)) if detection_bands is None else [int(b) for b in detection_bands]
    if not det or any(b < 0 or b >= n_band for b in det) or len(set(det)) != len(det):
        raise ConfigError(
            f"detection_bands={detection_bands!r} must be distinct indices below {n_band}"
        )
    if backend == "numba":
        if device not in ("auto", "cpu"):
            raise ConfigError(
                f'device={device!r} needs backend="torch"; the numba backend runs on the CPU'
            )
        from eocube.change._numba import run_numba  # compiles (or loads its cache) on first use

        return run_numba(values, days, det, params, *_thresholds(params, len(det)))
    ops = get_ops(backend, device)
    return _run(ops, values, days, det, params)


def _thresholds(p: CCDCParams, n_det: int) -> tuple[float, float]:
    """Chi-square change and outlier thresholds for ``n_det`` detection bands."""
    return float(chi2.ppf(p.chi2_prob, n_det)), float(chi2.ppf(p.outlier_prob, n_det))


def _nanmedian(ops: NumpyOps, a: Any) -> Any:
    """Median over the last axis ignoring NaN, numpy's even-count convention on both backends."""
    xp = ops.xp
    s = ops.sort(a, -1)
    cnt = xp.isfinite(a).sum(-1)
    lo = xp.where(cnt > 0, (cnt - 1) // 2, 0)
    hi = xp.where(cnt > 0, cnt // 2, 0)
    vlo = ops.take_along(s, lo[..., None], -1)[..., 0]
    vhi = ops.take_along(s, hi[..., None], -1)[..., 0]
    return xp.where(cnt > 0, 0.5 * (vlo + vhi), math.nan)


def _coef_count(n_obs: Any, p: CCDCParams, xp: Any) -> Any:
    k = xp.where(n_obs < 8 * p.obs_per_coef, 6, 8)
    return xp.where(n_obs < 6 * p.obs_per_coef, 4, k)


def _solve(ops: NumpyOps, xtx: Any, xty: Any, yty: Any, n: Any, k: Any, ridge: float):
    """Batched least squares from normal equations, with the first ``k`` coefficients only.

    Unused coefficients get an identity row and a zero right-hand side, so one batched
    8×8 solve serves pixels that fit 4, 6 or 8 coefficients. Returns (coef, rmse), rmse with
    ``n - k`` degrees of freedom as in pyccd.
    """
    xp = ops.xp
    ar = ops.arange(_K)
    use = ar[None, :] < k[:, None]  # (m, K)
    both = ops.fl(use[:, :, None] & use[:, None, :])
    eye = ops.fl(ar[:, None] == ar[None, :])[None]
    penal = ops.fl(use & (ar[None, :] >= 1)) * (ridge * ops.fl(n))[:, None]
    a = xtx * both + eye * (ops.fl(~use) + penal)[:, :, None]
    rhs = xty * ops.fl(use)[:, :, None]
    coef = ops.solve(a, rhs)  # (m, K, B)
    rss = yty - 2 * (coef * xty).sum(1) + (coef * (xtx @ coef)).sum(1)
    rss = xp.where(rss > 0, rss, 0.0)
    dof = ops.fl(xp.where(n - k > 1, n - k, 1))
    return coef, xp.sqrt(rss / dof[:, None])


class _Batch:
    """State of every pixel in the batch; methods act on an index subset of pixels."""

    def __init__(self, ops: NumpyOps, values: np.ndarray, days: np.ndarray, det: list[int],
                 p: CCDCParams) -> None:
        xp = ops.xp
        self.ops, self.p, self.xp = ops, p, xp
        n_pix, n_time, n_band = values.shape
        self.P, self.T, self.B, self.S = n_pix, n_time, n_band, p.max_segments
        self.det = ops.asarray(np.asarray(det), "i")
        self.det_list = det
        self.change_thr, self.outlier_thr = _thresholds(p, len(det))

        y = ops.asarray(values)
        clear = xp.isfinite(y).all(-1)
        self.n = clear.sum(1)
        # clear observations first, in time order: positions 0..n-1 are the pixel's series
        self.cidx = ops.argsort_stable(ops.fl(~clear), 1)
        yc = ops.take_along(y, self.cidx[:, :, None], 1)
        self.pos = ops.arange(n_time)
        self.valid = self.pos[None, :] < self.n[:, None]
        self.yc = xp.where(self.valid[:, :, None], yc, 0.0)
        self.dall = ops.asarray(days)
        self.dc = self.dall[self.cidx]
        # flat views: one-index gathers are much cheaper than (row, column) fancy indexing
        self.cflat = self.cidx.reshape(-1)
        self.ycf = self.yc.reshape(n_pix * n_time, n_band)
        self.dcf = self.dc.reshape(-1)
        self.x = ops.asarray(design_matrix(days))

        z = lambda *s, kind="f": ops.zeros((n_pix, *s), kind)  # noqa: E731
        self.phase = z(kind="i")
        self.s, self.e, self.lb = z(kind="i"), z(kind="i"), z(kind="i")
        self.prev_end, self.last_in, self.n_in = z(kind="i"), z(kind="i"), z(kind="i")
        self.k = z(kind="i") + 4
        self.first = ops.full((n_pix,), True, "b")
        self.need_fit = ops.full((n_pix,), True, "b")
        self.fit_span = z()
        self.xtx, self.xty, self.yty = z(_K, _K), z(_K, n_band), z(n_band)
        self.coef, self.rmse = z(_K, n_band), z(n_band)
        self.removed = z(n_time, kind="b")
        self.removedf = self.removed.reshape(-1)
        self.status = z(kind="i")
        self.n_breaks = z(kind="i")
        self.seg = z(kind="i")
        nan = lambda *s: ops.full((n_pix, *s), math.nan)  # noqa: E731
        self.out_start, self.out_end, self.out_break = nan(self.S), nan(self.S), nan(self.S)
        self.out_nobs, self.out_ncoef = z(self.S, kind="i"), z(self.S, kind="i")
        self.out_isbreak = z(self.S, kind="b")
        self.out_mag, self.out_rmse = nan(self.S, n_band), nan(self.S, n_band)
        self.out_coef = nan(self.S, n_band, _K)
        # pending 4-coefficient "catch" fits over [lo, hi): start of series and end of series
        self.lb_found, self.lb_mag = z(kind="b"), z(n_band)
        self.catch_break = z(kind="b")
        self.catch = {w: (z(kind="i"), z(kind="i"), z(kind="i") - 1) for w in ("start", "end")}

        self.vario = self._variogram()
        span = self.day(self.ops.arange(n_pix), self.n - 1) - self.dc[:, 0]
        insufficient = (self.n < p.min_obs) | (span < p.min_days)
        self.status = xp.where(insufficient, STATUS_INSUFFICIENT_DATA, self.status)
        self.phase = xp.where(insufficient, _DONE, self.phase)

    # -- small helpers -------------------------------------------------------------------
    def _clip(self, j: Any) -> Any:
        return self.xp.where(j < 0, 0, self.xp.where(j >= self.T, self.T - 1, j))

    def day(self, idx: Any, j: Any) -> Any:
        return self.dcf[idx * self.T + self._clip(j)]

    def obs(self, idx: Any, j: Any) -> tuple[Any, Any]:
        """Design rows and values at compact positions ``j`` ((m,) or (m, q), in range)."""
        f = idx * self.T + j if j.ndim == 1 else idx[:, None] * self.T + j
        return self.x[self.cflat[f]], self.ycf[f]

    def residuals(self, idx: Any, j: Any) -> Any:
        x, y = self.obs(idx, j)
        if j.ndim == 1:
            return y - (x[:, None, :] @ self.coef[idx])[:, 0]  # (m, B)
        return y - x @ self.coef[idx]  # (m, q, B)

    def scaled(self, idx: Any, resid: Any) -> Any:
        """Sum over detection bands of squared residuals over max(variogram, rmse)."""
        den = self.xp.maximum(self.vario[idx][:, self.det], self.rmse[idx][:, self.det])
        return ((resid[..., self.det] / den[:, None, :]) ** 2).sum(-1)

    def update(self, idx: Any, j: Any, sign: float) -> None:
        x, y = self.obs(idx, j)
        self.xtx[idx] += sign * (x[:, :, None] * x[:, None, :])
        self.xty[idx] += sign * (x[:, :, None] * y[:, None, :])
        self.yty[idx] += sign * y * y

    def reset_acc(self, idx: Any) -> None:
        self.xtx[idx] = 0.0
        self.xty[idx] = 0.0
        self.yty[idx] = 0.0

    def take(self, idx: Any, mask: Any) -> Any:
        return idx[mask]

    # -- pre-processing ------------------------------------------------------------------
    def _variogram(self) -> Any:
        """pyccd's adjusted variogram: median |difference| of clear pairs > 30 days apart.

        pyccd picks the smallest lag whose modal date gap exceeds ``variogram_days``; here the
        lag is ``floor(variogram_days / mean gap) + 1`` per pixel, which is the same lag on a
        regular revisit and needs no per-pixel mode.
        """
        ops, xp, p = self.ops, self.xp, self.p
        rows = ops.arange(self.P)
        span = self.day(rows, self.n - 1) - self.dc[:, 0]
        gap = span / ops.fl(xp.where(self.n > 1, self.n - 1, 1))
        gap = xp.where(gap > 0, gap, 1.0)
        lag = ops.toi(xp.floor(p.variogram_days / gap)) + 1
        j2 = self._clip(self.pos[None, :] + lag[:, None])
        ok = (self.pos[None, :] + lag[:, None]) < self.n[:, None]
        far = ok & ((self.dc[rows[:, None], j2] - self.dc) > p.variogram_days)
        vario_det = []
        for b in self.det_list:  # one band at a time: contiguous (pixel, time) sorts
            yb = self.yc[:, :, b]
            diff = xp.abs(yb[rows[:, None], j2] - yb)
            vario_det.append(_nanmedian(ops, xp.where(far, diff, math.nan)))
        vario = ops.zeros((self.P, self.B))
        for b, v in zip(self.det_list, vario_det, strict=True):
            vario[:, b] = xp.where(xp.isfinite(v), v, 0.0)
        return vario

    # -- the phases ----------------------------------------------------------------------
    def step_init(self, a: Any) -> None:
        p, xp, ops = self.p, self.xp, self.ops
        s, e, n = self.s[a], self.e[a], self.n[a]
        fail = e + p.min_obs >= n
        span = self.day(a, e - 1) - self.day(a, s)
        ready = ~fail & (self.n_in[a] >= p.min_obs) & (span >= p.min_days)
        grow = self.take(a, ~fail & ~ready)
        self.update(grow, self.e[grow], 1.0)
        self.n_in[grow] += 1
        self.e[grow] += 1

        r = self.take(a, ready)
        if r.shape[0] == 0:
            return self.finish_failed(self.take(a, fail))
        cnt = self.n_in[r]
        coef, rmse = _solve(ops, self.xtx[r], self.xty[r], self.yty[r], cnt, cnt * 0 + 4,
                            p.ridge)
        self.coef[r], self.rmse[r] = coef, rmse
        # the whole window, padded to the longest: (m, W) positions, minus removed ones
        width = int(ops.to_numpy(self.e[r] - self.s[r]).max())
        jj = self.s[r][:, None] + ops.arange(width)[None, :]
        inwin = jj < self.e[r][:, None]
        jj = xp.where(inwin, jj, self.s[r][:, None])
        flat = r[:, None] * self.T + jj
        ok = inwin & ~self.removedf[flat]
        resid = self.residuals(r, jj)  # (m, W, B)
        # Tmask's job (pyccd screens windows with a robust fit on green and SWIR1): drop the
        # observation farthest off the fit if it is beyond tmask_const variograms in a
        # detection band, and refit next round. One at a time, because a least-squares fit
        # bent by two bright clouds also misses their neighbours.
        vd = self.vario[r][:, None, :][..., self.det]
        ratio = ops.amax(xp.abs(resid[..., self.det]) / xp.where(vd > 0, vd, math.inf), -1)
        ratio = xp.where(ok, ratio, 0.0)
        worst = ops.take_along(ratio, ops.argmax(ratio, 1)[:, None], 1)
        bad = (ratio == worst) & (ratio > p.tmask_const)
        if p.tmask_const > 0 and ops.any(bad):
            nbad = bad.sum(1)
            sc = nbad > 0
            rs = self.take(r, sc)
            badf = ops.fl(bad[sc])
            x, y = self.obs(rs, jj[sc])
            xb = xp.swapaxes(x * badf[:, :, None], 1, 2)
            self.xtx[rs] -= xb @ x
            self.xty[rs] -= xb @ y
            self.yty[rs] -= (y * y * badf[:, :, None]).sum(1)
            self.n_in[rs] -= nbad[sc]
            self.removedf[flat[bad]] = True
            keep = ~sc
            r, jj, ok, resid, coef, rmse = (r[keep], jj[keep], ok[keep], resid[keep],
                                            coef[keep], rmse[keep])
        pos = ops.arange(width)[None, :]
        i_first = ops.amin(xp.where(ok, pos, width), 1)
        i_last = ops.amax(xp.where(ok, pos, -1), 1)
        first = ops.take_along(resid, i_first[:, None, None], 1)[:, 0]
        last = ops.take_along(resid, i_last[:, None, None], 1)[:, 0]
        j_first, j_last = self.s[r] + i_first, self.s[r] + i_last
        years = (self.day(r, j_last) - self.day(r, j_first)) / DAYS_PER_YEAR
        trend = coef[:, 1, :] * years[:, None]
        den = xp.maximum(self.vario[r], rmse)
        check = ((xp.abs(trend) + xp.abs(first) + xp.abs(last)) / den)[:, self.det]
        stable = (check**2).sum(-1) < self.change_thr
        # unstable: slide the window one observation forward, as pyccd does
        uns = self.take(r, ~stable)
        gone = self.removedf[uns * self.T + self.s[uns]]
        drop = self.take(uns, ~gone)
        self.update(drop, self.s[drop], -1.0)
        self.n_in[drop] -= 1
        self.update(uns, self.e[uns], 1.0)
        self.n_in[uns] += 1
        self.s[uns] += 1
        self.e[uns] += 1
        good = self.take(r, stable)
        self.k[good] = 4
        self.last_in[good] = self.take(j_last, stable)
        back = self.s[good] > self.prev_end[good]
        lb = self.take(good, back)
        self.lb[lb] = self.s[lb] - 1
        self.lb_found[lb] = False
        self.phase[lb] = _LOOKBACK
        self.after_lookback(self.take(good, ~back))
        self.finish_failed(self.take(a, fail))

    def finish_failed(self, f: Any) -> None:
        """No stable start left: a pixel that never had one is ``no_stable_model``."""
        self.status[f] = self.xp.where(self.first[f], STATUS_NO_STABLE_MODEL, self.status[f])
        self.finish(f)

    def step_lookback(self, a: Any) -> None:
        p, xp = self.p, self.xp
        lb, pe = self.lb[a], self.prev_end[a]
        q = self.ops.arange(p.consecutive)
        jj = lb[:, None] - q[None, :]
        mags = self.scaled(a, self.residuals(a, self._clip(jj)))
        mags_in = xp.where(jj >= pe[:, None], mags, math.inf)
        over = lb < pe
        found = ~over & (self.ops.amin(mags_in, 1) > self.change_thr)
        change = over | found
        outlier = ~change & (mags[:, 0] > self.outlier_thr)
        f = self.take(a, found)
        if f.shape[0]:
            # the stable model does not reach back over the change it started after: keep
            # the change (new - old = -residual of the old observations) for the first segment
            resid = self.residuals(f, self._clip(jj[found]))
            resid = xp.where((jj[found] >= pe[found][:, None])[:, :, None], resid, math.nan)
            self.lb_found[f] = True
            self.lb_mag[f] = -_nanmedian(self.ops, xp.swapaxes(resid, 1, 2))
        inc = self.take(a, ~change & ~outlier)
        self.update(inc, self.lb[inc], 1.0)
        self.s[inc] = self.lb[inc]
        self.n_in[inc] += 1
        out = self.take(a, outlier)
        self.removed[out, self.lb[out]] = True
        self.lb[inc] -= 1
        self.lb[out] -= 1
        self.after_lookback(self.take(a, change))

    def after_lookback(self, a: Any) -> None:
        p = self.p
        start_catch = self.take(a, self.first[a] & (self.s[a] - self.prev_end[a] > p.consecutive))
        self.queue_catch("start", start_catch, self.prev_end[start_catch], self.s[start_catch])
        # unlike pyccd, a first segment cut short by a change found looking back is a break
        brk = self.take(start_catch, self.lb_found[start_catch])
        self.n_breaks[brk] += 1
        self.catch_break[brk] = True
        self.first[a] = False
        short = self.e[a] + p.consecutive > self.n[a]
        self.finish(self.take(a, short))
        mon = self.take(a, ~short)
        self.phase[mon] = _MONITOR
        self.need_fit[mon] = True

    def step_monitor(self, a: Any) -> None:
        p, xp, ops = self.p, self.xp, self.ops
        end = self.e[a] + p.consecutive > self.n[a]
        done = self.take(a, end)
        self.record(done, None, None)
        self.phase[done] = _DONE
        a = self.take(a, ~end)

        span = self.day(a, self.last_in[a]) - self.day(a, self.s[a])
        refit = self.need_fit[a] | (self.n_in[a] < p.full_refit_obs)
        refit = refit | (span >= p.refit_growth * self.fit_span[a])
        r = self.take(a, refit)
        if r.shape[0]:
            k = _coef_count(self.n_in[r], p, xp)
            self.coef[r], self.rmse[r] = _solve(ops, self.xtx[r], self.xty[r], self.yty[r],
                                                self.n_in[r], k, p.ridge)
            self.k[r] = k
            self.fit_span[r] = self.take(span, refit)
            self.need_fit[r] = False

        q = ops.arange(p.consecutive)
        resid = self.residuals(a, self.e[a][:, None] + q[None, :])
        mags = self.scaled(a, resid)
        change = ops.amin(mags, 1) > self.change_thr
        outlier = ~change & (mags[:, 0] > self.outlier_thr)

        c = self.take(a, change)
        if c.shape[0]:
            med = ops.sort(resid[change], 1)
            h = p.consecutive
            mag = 0.5 * (med[:, (h - 1) // 2] + med[:, h // 2])
            self.record(c, self.day(c, self.e[c]), mag)
            self.n_breaks[c] += 1
            self.prev_end[c] = self.e[c]
            self.s[c] = self.e[c]
            self.n_in[c] = 0
            self.reset_acc(c)
            self.phase[c] = _INIT

        out = self.take(a, outlier)
        self.removed[out, self.e[out]] = True
        self.e[out] += 1
        inc = self.take(a, ~change & ~outlier)
        self.update(inc, self.e[inc], 1.0)
        self.n_in[inc] += 1
        self.last_in[inc] = self.e[inc]
        self.e[inc] += 1

    # -- results -------------------------------------------------------------------------
    def slot(self, a: Any) -> tuple[Any, Any]:
        """Pixels of ``a`` that still have a free segment slot, and the slot; counts it."""
        slot = self.seg[a]
        self.seg[a] += 1
        keep = slot < self.S
        return a[keep], slot[keep]

    def record(self, a: Any, break_day: Any, mag: Any) -> None:
        if a.shape[0] == 0:
            return
        xp = self.xp
        if break_day is not None:
            keep = self.seg[a] < self.S
            break_day, mag = break_day[keep], mag[keep]
        a, sl = self.slot(a)
        self.out_start[a, sl] = self.day(a, self.s[a])
        self.out_end[a, sl] = self.day(a, self.last_in[a])
        self.out_nobs[a, sl] = self.n_in[a]
        self.out_ncoef[a, sl] = self.k[a]
        self.out_rmse[a, sl] = self.rmse[a]
        self.out_coef[a, sl] = xp.swapaxes(self.coef[a], 1, 2)
        if break_day is None:
            self.out_mag[a, sl] = 0.0
        else:
            self.out_break[a, sl] = break_day
            self.out_isbreak[a, sl] = True
            self.out_mag[a, sl] = mag

    def queue_catch(self, which: str, a: Any, lo: Any, hi: Any) -> None:
        a2, sl = self.slot(a)
        keep = (self.seg[a] - 1) < self.S
        clo, chi, cslot = self.catch[which]
        clo[a2], chi[a2], cslot[a2] = lo[keep], hi[keep], sl

    def finish(self, a: Any) -> None:
        """End a pixel's run: pyccd's closing 4-coefficient fit if enough is left over."""
        p = self.p
        left = self.take(a, self.prev_end[a] + p.consecutive < self.n[a])
        self.queue_catch("end", left, self.prev_end[left], self.n[left])
        self.phase[a] = _DONE

    def fit_catches(self) -> None:
        ops, xp = self.ops, self.xp
        for which, (lo, hi, slot) in self.catch.items():
            a = ops.nonzero(slot >= 0)
            if a.shape[0] == 0:
                continue
            w = ((self.pos[None, :] >= lo[a][:, None]) & (self.pos[None, :] < hi[a][:, None])
                 & ~self.removed[a])
            wf = ops.fl(w)
            x4 = self.x[self.cidx[a]][..., :4]  # (m, T, 4)
            xw = xp.swapaxes(x4 * wf[:, :, None], 1, 2)
            xtx = ops.zeros((a.shape[0], _K, _K))
            xty = ops.zeros((a.shape[0], _K, self.B))
            xtx[:, :4, :4] = xw @ x4
            xty[:, :4, :] = xw @ self.yc[a]
            yty = (self.yc[a] ** 2 * wf[:, :, None]).sum(1)
            cnt = w.sum(1)
            coef, rmse = _solve(ops, xtx, xty, yty, cnt, cnt * 0 + 4, self.p.ridge)
            sl = slot[a]
            first = ops.amin(xp.where(w, self.pos[None, :], self.T), 1)
            last = ops.amax(xp.where(w, self.pos[None, :], -1), 1)
            self.out_start[a, sl] = self.day(a, first)
            self.out_end[a, sl] = self.day(a, last)
            self.out_nobs[a, sl] = cnt
            self.out_ncoef[a, sl] = 4
            self.out_rmse[a, sl] = rmse
            self.out_coef[a, sl] = xp.swapaxes(coef, 1, 2)
            self.out_mag[a, sl] = 0.0
            if which == "start":
                b = self.take(a, self.catch_break[a])
                bsl = slot[b]
                self.out_isbreak[b, bsl] = True
                self.out_break[b, bsl] = self.day(b, hi[b])
                self.out_mag[b, bsl] = self.lb_mag[b]

    def result(self) -> dict[str, np.ndarray]:
        np_ = self.ops.to_numpy
        return {
            "status": np_(self.status).astype(np.int8),
            "n_clear": np_(self.n).astype(np.int32),
            "n_breaks": np_(self.n_breaks).astype(np.int32),
            "start_day": np_(self.out_start),
            "end_day": np_(self.out_end),
            "break_day": np_(self.out_break),
            "n_obs": np_(self.out_nobs).astype(np.int32),
            "n_coefs": np_(self.out_ncoef).astype(np.int8),
            "is_break": np_(self.out_isbreak).astype(bool),
            "magnitude": np_(self.out_mag),
            "rmse": np_(self.out_rmse),
            "coefficients": np_(self.out_coef),
        }


def _run(ops: NumpyOps, values: np.ndarray, days: np.ndarray, det: list[int],
         p: CCDCParams) -> dict[str, np.ndarray]:
    b = _Batch(ops, values, days, det, p)
    # each iteration moves every unfinished pixel by one observation, so this bounds the loop
    for _ in range(8 * b.T + 16):
        phase = b.phase
        live = phase != _DONE
        if not ops.any(live):
            break
        ini = ops.nonzero(phase == _INIT)
        lbk = ops.nonzero(phase == _LOOKBACK)
        mon = ops.nonzero(phase == _MONITOR)
        if ini.shape[0]:
            b.step_init(ini)
        if lbk.shape[0]:
            b.step_lookback(lbk)
        if mon.shape[0]:
            b.step_monitor(mon)
    else:  # pragma: no cover - a bug guard, not a user error
        raise RuntimeError("CCDC state machine did not terminate; please report this")
    b.fit_catches()
    return b.result()
