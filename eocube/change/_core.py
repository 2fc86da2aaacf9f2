"""The CCDC state machine over a batch of pixels: numpy arrays in, numpy arrays out.

Every pixel of the batch walks its own clear observations through the CCDC phases
(initialise → look back → monitor → …) but all pixels advance together, one event per
iteration, as masked array operations; there is no loop over pixels. The same statements run
on numpy (CPU) and torch (CPU or CUDA) through :mod:`eocube.change._backend`. On the CPU the
default is :mod:`eocube.change._numba`, the same phases compiled one pixel at a time (what a
GPU does not want, and a CPU does); this module stays the reference it is tested against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eocube.change._backend import NumpyOps
from eocube.change._model import (
    DAYS_PER_YEAR,
    N_COEFS,
    PHASE_DONE,
    PHASE_INIT,
    PHASE_LOOKBACK,
    PHASE_MONITOR,
    STATUS_INSUFFICIENT_DATA,
    STATUS_NO_STABLE_MODEL,
    CCDCParams,
    design_matrix,
    thresholds,
)

_EPS = float(np.finfo(np.float64).eps)
#: pyccd's Tmask regression: bisquare tuning, MAD constant, iterations, convergence tolerance
_TUNE, _MAD_C, _RLM_ITER, _RLM_TOL = 4.685, 0.6745, 5, 1e-8


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
    ar = ops.arange(N_COEFS)
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
                 tmask_bands: list[int], p: CCDCParams) -> None:
        xp = ops.xp
        self.ops, self.p, self.xp = ops, p, xp
        n_pix, n_time, n_band = values.shape
        self.P, self.T, self.B, self.S = n_pix, n_time, n_band, p.max_segments
        self.det = ops.asarray(np.asarray(det), "i")
        self.det_list = det
        self.tmask_bands = list(tmask_bands)
        self.vario_bands = sorted(set(det) | set(tmask_bands))
        self.change_thr, self.outlier_thr = thresholds(p, len(det))

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
        self.xtx, self.xty, self.yty = z(N_COEFS, N_COEFS), z(N_COEFS, n_band), z(n_band)
        self.coef, self.rmse = z(N_COEFS, n_band), z(n_band)
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
        self.out_coef = nan(self.S, n_band, N_COEFS)
        # pending 4-coefficient "catch" fits over [lo, hi): start of series and end of series
        self.lb_found, self.lb_mag = z(kind="b"), z(n_band)
        self.catch_break = z(kind="b")
        self.catch = {w: (z(kind="i"), z(kind="i"), z(kind="i") - 1) for w in ("start", "end")}

        self.vario = self._variogram()
        span = self.day(self.ops.arange(n_pix), self.n - 1) - self.dc[:, 0]
        insufficient = (self.n < p.min_obs) | (span < p.min_days)
        self.status = xp.where(insufficient, STATUS_INSUFFICIENT_DATA, self.status)
        self.phase = xp.where(insufficient, PHASE_DONE, self.phase)

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
        for b in self.vario_bands:  # one band at a time: contiguous (pixel, time) sorts
            yb = self.yc[:, :, b]
            diff = xp.abs(yb[rows[:, None], j2] - yb)
            vario_det.append(_nanmedian(ops, xp.where(far, diff, math.nan)))
        vario = ops.zeros((self.P, self.B))
        for b, v in zip(self.vario_bands, vario_det, strict=True):
            vario[:, b] = xp.where(xp.isfinite(v), v, 0.0)
        return vario

    # -- the phases ----------------------------------------------------------------------
    def window(self, a: Any) -> tuple[Any, Any, Any, Any, Any]:
        """Windows [s, e) of pixels ``a`` padded to the longest: positions (m, W), the flat
        index, which positions are still in (not removed), and the first and last of those."""
        ops, xp = self.ops, self.xp
        width = max(int(ops.to_numpy(self.e[a] - self.s[a]).max()), 1)
        jj = self.s[a][:, None] + ops.arange(width)[None, :]
        inwin = jj < self.e[a][:, None]
        jj = xp.where(inwin, jj, self.s[a][:, None])
        flat = a[:, None] * self.T + jj
        ok = inwin & ~self.removedf[flat]
        first = ops.amin(xp.where(ok, jj, self.T), 1)
        last = ops.amax(xp.where(ok, jj, -1), 1)
        return jj, flat, ok, first, last

    def grow(self, g: Any) -> None:
        """Add the next observation to the initialisation windows of pixels ``g``."""
        self.update(g, self.e[g], 1.0)
        self.n_in[g] += 1
        self.e[g] += 1

    def step_init(self, a: Any) -> None:
        p, xp, ops = self.p, self.xp, self.ops
        e, n = self.e[a], self.n[a]
        jj, flat, ok, j_first, j_last = self.window(a)
        fail = e + p.min_obs >= n
        span = self.day(a, j_last) - self.day(a, j_first)
        ready = ~fail & (self.n_in[a] >= p.min_obs) & (span >= p.min_days)
        self.grow(self.take(a, ~fail & ~ready))
        self.finish_failed(self.take(a, fail))
        r = self.take(a, ready)
        if r.shape[0] == 0:
            return
        jj, flat, ok = jj[ready], flat[ready], ok[ready]
        j_first, j_last = j_first[ready], j_last[ready]
        if p.tmask_const > 0:
            # pyccd's Tmask: drop every outlier of the window at once, unless too few
            # observations or too short a time would be left (then grow the window instead)
            out = self.tmask(r, jj, ok) & ok
            n_out = out.sum(1)
            keep = ok & ~out
            k_first = ops.amin(xp.where(keep, jj, self.T), 1)
            k_last = ops.amax(xp.where(keep, jj, -1), 1)
            k_span = self.day(r, k_last) - self.day(r, k_first)
            retry = (n_out > 0) & ((n_out == self.n_in[r]) | (self.n_in[r] - n_out < p.min_obs)
                                   | (k_span < p.min_days))
            self.grow(self.take(r, retry))
            go = ~retry
            r, jj, flat, out, n_out = r[go], jj[go], flat[go], out[go], n_out[go]
            j_first = xp.where(n_out > 0, k_first[go], j_first[go])
            j_last = xp.where(n_out > 0, k_last[go], j_last[go])
            sc = n_out > 0
            if ops.any(sc):
                rs = self.take(r, sc)
                badf = ops.fl(out[sc])
                x, y = self.obs(rs, jj[sc])
                xb = xp.swapaxes(x * badf[:, :, None], 1, 2)
                self.xtx[rs] -= xb @ x
                self.xty[rs] -= xb @ y
                self.yty[rs] -= (y * y * badf[:, :, None]).sum(1)
                self.n_in[rs] -= n_out[sc]
                self.removedf[flat[out]] = True
            if r.shape[0] == 0:
                return
        cnt = self.n_in[r]
        coef, rmse = _solve(ops, self.xtx[r], self.xty[r], self.yty[r], cnt, cnt * 0 + 4,
                            p.ridge)
        self.coef[r], self.rmse[r] = coef, rmse
        first = self.residuals(r, j_first)
        last = self.residuals(r, j_last)
        years = (self.day(r, j_last) - self.day(r, j_first)) / DAYS_PER_YEAR
        trend = coef[:, 1, :] * years[:, None]
        den = xp.maximum(self.vario[r], rmse)
        check = ((xp.abs(trend) + xp.abs(first) + xp.abs(last)) / den)[:, self.det]
        stable = (check**2).sum(-1) < self.change_thr
        # unstable: drop the window's first observation and add the next one, as pyccd does
        uns = self.take(r, ~stable)
        drop = self.take(j_first, ~stable)
        self.update(uns, drop, -1.0)
        self.n_in[uns] -= 1
        self.s[uns] = drop + 1
        self.grow(uns)
        good = self.take(r, stable)
        self.k[good] = 4
        self.s[good] = self.take(j_first, stable)  # the first observation still in
        self.last_in[good] = self.take(j_last, stable)
        back = self.s[good] > self.prev_end[good]
        lb = self.take(good, back)
        self.lb[lb] = self.s[lb] - 1
        self.lb_found[lb] = False
        self.phase[lb] = PHASE_LOOKBACK
        self.after_lookback(self.take(good, ~back))

    def tmask(self, r: Any, jj: Any, ok: Any) -> Any:
        """pyccd's Tmask (``ccd.models.tmask``) on windows ``jj`` of pixels ``r``: (m, W)
        True for an outlier. Per Tmask band a robust fit (pyccd's ``RLM(maxiter=5)``:
        bisquare-weighted IRLS on a leverage-adjusted MAD scale) of the annual harmonic and
        the harmonic whose period is the window's length in whole years; an outlier lies
        farther than ``tmask_const`` variograms from it in any Tmask band. The statements
        are `_numba._tmask`'s, for all windows at once."""
        ops, xp, p = self.ops, self.xp, self.p
        okf = ops.fl(ok)
        m = okf.sum(1)
        d = self.dcf[r[:, None] * self.T + jj]
        d0 = self.day(r, ops.amin(xp.where(ok, jj, self.T), 1))
        d1 = self.day(r, ops.amax(xp.where(ok, jj, -1), 1))
        w1 = 2 * math.pi / DAYS_PER_YEAR
        w2 = (w1 / xp.ceil((d1 - d0) / DAYS_PER_YEAR))[:, None]
        one = d * 0 + 1.0
        x = xp.stack([xp.cos(w1 * d), xp.sin(w1 * d), xp.cos(w2 * d), xp.sin(w2 * d), one], -1)
        eye = ops.fl(ops.arange(5)[:, None] == ops.arange(5)[None, :])[None]
        ridge = eye * (max(p.ridge, 1e-12) * m)[:, None, None]

        def wls(w: Any, y: Any) -> Any:
            xw = x * w[..., None]
            a = xp.swapaxes(xw, 1, 2) @ x + ridge
            return ops.solve(a, (xp.swapaxes(xw, 1, 2) @ y[..., None]))[..., 0]

        def mad(res: Any) -> Any:
            srt = ops.sort(xp.where(ok, xp.abs(res), math.inf), 1)
            c = ops.toi(m) - 4
            lo = ops.take_along(srt, (4 + (c - 1) // 2)[:, None], 1)[:, 0]
            hi = ops.take_along(srt, (4 + c // 2)[:, None], 1)[:, 0]
            return 0.5 * (lo + hi) / _MAD_C

        a0 = xp.swapaxes(x * okf[..., None], 1, 2) @ x + ridge
        inv = ops.solve(a0, eye + a0 * 0)
        h = ((x @ inv) * x).sum(-1)
        adj = 1.0 / xp.sqrt(1.0 - xp.where(h < 0.9999, h, 0.9999))
        out = ok & ~ok
        for band in self.tmask_bands:
            y = self.ycf[r[:, None] * self.T + jj][..., band] * okf
            mean = y.sum(1) / m
            std = xp.sqrt((((y - mean[:, None]) * okf) ** 2).sum(1) / m)
            coef = wls(okf, y)
            live = mad(y - (x @ coef[..., None])[..., 0]) >= _EPS
            for _ in range(1, _RLM_ITER):
                if not ops.any(live):
                    break
                c0 = coef
                res = (y - (x @ c0[..., None])[..., 0]) * adj
                scale = xp.maximum(_EPS * std, mad(res))
                u = res / scale[:, None]
                w = xp.where(xp.abs(u) < _TUNE, (1 - (u / _TUNE) ** 2) ** 2, 0.0) * okf
                new = wls(w, y)
                coef = xp.where(live[:, None], new, c0)
                live = live & (c0 - new > _RLM_TOL).any(1)  # pyccd's check, sign and all
            pred = (x @ coef[..., None])[..., 0]
            out = out | (ok & (xp.abs(pred - y) > self.vario[r][:, band][:, None]
                               * p.tmask_const))
        return out

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
        self.phase[mon] = PHASE_MONITOR
        self.need_fit[mon] = True

    def step_monitor(self, a: Any) -> None:
        p, xp, ops = self.p, self.xp, self.ops
        end = self.e[a] + p.consecutive > self.n[a]
        done = self.take(a, end)
        self.record(done, None, None)
        self.phase[done] = PHASE_DONE
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
            self.phase[c] = PHASE_INIT

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
        self.phase[a] = PHASE_DONE

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
            xtx = ops.zeros((a.shape[0], N_COEFS, N_COEFS))
            xty = ops.zeros((a.shape[0], N_COEFS, self.B))
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


def run_batched(ops: NumpyOps, values: np.ndarray, days: np.ndarray, det: list[int],
                tmask_bands: list[int], p: CCDCParams) -> dict[str, np.ndarray]:
    """Every pixel of ``values`` through the state machine with ``ops`` (numpy or torch)."""
    b = _Batch(ops, values, days, det, tmask_bands, p)
    # each iteration moves every unfinished pixel by one observation, so this bounds the loop
    for _ in range(8 * b.T + 16):
        phase = b.phase
        live = phase != PHASE_DONE
        if not ops.any(live):
            break
        ini = ops.nonzero(phase == PHASE_INIT)
        lbk = ops.nonzero(phase == PHASE_LOOKBACK)
        mon = ops.nonzero(phase == PHASE_MONITOR)
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
