"""CCDC one pixel after another, compiled with numba: the CPU fast path of `_core`.

The batched state machine in `eocube.change._core` moves every pixel of a batch by one event
per iteration with masked array operations; that is what a GPU wants, but on a CPU each
iteration gathers observations and rewrites the whole batch's normal equations in memory.
Here the same phases run for one pixel at a time in compiled code, with the pixel's normal
equations in a few cache lines, and monitoring computes one new residual per step (the model
changes only at a refit). The statements are those of `_core._Batch`, one for one, in the
same order: pixels are independent, so a step of `_core` restricted to one pixel is a step of
this kernel. The normal equations are accumulated in the same order and solved by the same
LAPACK routine on the same 8×8 system, so the decisions (breaks, outliers, segment bounds,
coefficient counts) are the same and the floats differ at most by the rounding of a few
small dot products (tests/change/test_numba.py holds them to the torch path's tolerance).
"""

from __future__ import annotations

import math

import numba
import numpy as np

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
)

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}  # numpy's x / 0 = inf, no raise
_INLINE = {**_JIT, "inline": "always"}


@numba.njit(**_INLINE)
def _day(dc, j):
    """Day at compact position ``j``, clipped to the series as `_Batch.day` does."""
    t = dc.shape[0]
    return dc[0 if j < 0 else (t - 1 if j >= t else j)]


@numba.njit(**_INLINE)
def _update(xtx, xty, yty, x, row, yc, j, sign):
    """Add (sign 1) or remove (sign -1) observation ``j`` (design row ``row``)."""
    nb = yc.shape[1]
    for i in range(N_COEFS):
        xi = x[row, i]
        for c in range(N_COEFS):
            xtx[i, c] += sign * (xi * x[row, c])
        for b in range(nb):
            xty[i, b] += sign * (xi * yc[j, b])
    for b in range(nb):
        yty[b] += sign * (yc[j, b] * yc[j, b])


@numba.njit(**_INLINE)
def _residual(x, row, yc, j, coef, k, out, q):
    """``out[q]``: observed minus predicted at ``j``, with the first ``k`` coefficients (the
    others are 0)."""
    for b in range(yc.shape[1]):
        acc = 0.0
        for c in range(k):
            acc += x[row, c] * coef[c, b]
        out[q, b] = yc[j, b] - acc


@numba.njit(**_INLINE)
def _scaled(resid, q, vario, rmse, det):
    """Sum over detection bands of squared residuals over max(variogram, rmse)."""
    tot = 0.0
    for d in det:
        r = resid[q, d] / max(vario[d], rmse[d])
        tot += r * r
    return tot


_EPS = float(np.finfo(np.float64).eps)
#: pyccd's Tmask regression: bisquare tuning, MAD constant, iterations, convergence tolerance
TUNE, MAD_C, RLM_ITER, RLM_TOL = 4.685, 0.6745, 5, 1e-8


@numba.njit(**_INLINE)
def _mad(r, m, buf):
    """pyccd's ``robust_fit.mad``: median of the sorted |r[:m]| without its 4 smallest."""
    for q in range(m):
        buf[q] = abs(r[q])
    buf[:m].sort()
    c = m - 4
    return 0.5 * (buf[4 + (c - 1) // 2] + buf[4 + c // 2]) / MAD_C


@numba.njit(**_INLINE)
def _wls(xt, y, w, m, ridge, a, b, coef):
    """Weighted least squares on the 5-column Tmask design through its normal equations."""
    for i in range(5):
        for j in range(i + 1):
            acc = 0.0
            for q in range(m):
                acc += w[q] * xt[q, i] * xt[q, j]
            a[i, j] = acc
            a[j, i] = acc
        acc = 0.0
        for q in range(m):
            acc += w[q] * xt[q, i] * y[q]
        b[i, 0] = acc
        # on every coefficient: with all weights 0 the fit is 0, as pyccd's lstsq gives
        a[i, i] += max(ridge, 1e-12) * m
    _cholesky(a)
    for i in range(5):
        coef[i] = b[i, 0]
    _chol_solve(a, coef)


@numba.njit(**_INLINE)
def _cholesky(a):
    """In place: the lower Cholesky factor of the 5×5 positive definite ``a``."""
    for j in range(5):
        d = a[j, j]
        for k in range(j):
            d -= a[j, k] * a[j, k]
        d = math.sqrt(d)
        a[j, j] = d
        for i in range(j + 1, 5):
            v = a[i, j]
            for k in range(j):
                v -= a[i, k] * a[j, k]
            a[i, j] = v / d


@numba.njit(**_INLINE)
def _chol_solve(lo, v):
    """In place: ``v`` ← (L Lᵀ)⁻¹ v for the factor ``lo`` of `_cholesky`."""
    for i in range(5):
        acc = v[i]
        for k in range(i):
            acc -= lo[i, k] * v[k]
        v[i] = acc / lo[i, i]
    for i in range(4, -1, -1):
        acc = v[i]
        for k in range(i + 1, 5):
            acc -= lo[k, i] * v[k]
        v[i] = acc / lo[i, i]


@numba.njit(**_JIT)
def _tmask(dc, yc, removed, s, e, vario, tb, t_const, ridge, out, idx, xt, vec):
    """pyccd's Tmask on the kept observations of window [s, e): ``out[j - s]`` True for an
    outlier. Per Tmask band, a robust fit (pyccd's ``RLM(maxiter=5)``: bisquare IRLS with a
    leverage-adjusted MAD scale) of the annual and the window-long harmonic; an outlier is
    farther than ``t_const`` variograms from it in any Tmask band. ``idx``, ``xt`` and
    ``vec`` are scratch space of the series' length (allocated once per chunk)."""
    m = 0
    for j in range(s, e):
        out[j - s] = False
        if not removed[j]:
            idx[m] = j
            m += 1
    w1 = 2 * math.pi / DAYS_PER_YEAR
    w2 = w1 / math.ceil((dc[idx[m - 1]] - dc[idx[0]]) / DAYS_PER_YEAR)
    for q in range(m):
        t = dc[idx[q]]
        xt[q, 0] = math.cos(w1 * t)
        xt[q, 1] = math.sin(w1 * t)
        xt[q, 2] = math.cos(w2 * t)
        xt[q, 3] = math.sin(w2 * t)
        xt[q, 4] = 1.0
    a, b, coef, c0 = np.empty((5, 5)), np.empty((5, 1)), np.empty(5), np.empty(5)
    ones, w, y, r, buf, adj = vec[0], vec[1], vec[2], vec[3], vec[4], vec[5]
    ones[:m] = 1.0
    y[:m] = 0.0
    # leverage: the hat matrix diagonal, capped at 0.9999 as pyccd caps it
    _wls(xt, y, ones, m, ridge, a, b, coef)  # a = the factor L of X'X (+ ridge)
    for q in range(m):
        hq = 0.0  # x_q' (X'X)^-1 x_q = |L^-1 x_q|^2
        for i in range(5):
            acc = xt[q, i]
            for k in range(i):
                acc -= a[i, k] * c0[k]
            c0[i] = acc / a[i, i]
            hq += c0[i] * c0[i]
        adj[q] = 1.0 / math.sqrt(1.0 - min(0.9999, hq))
    for band in tb:
        mean = 0.0
        for q in range(m):
            y[q] = yc[idx[q], band]
            mean += y[q]
        mean /= m
        var = 0.0
        for q in range(m):
            var += (y[q] - mean) ** 2
        std = math.sqrt(var / m)
        _wls(xt, y, ones, m, ridge, a, b, coef)
        for q in range(m):
            acc = 0.0
            for i in range(5):
                acc += xt[q, i] * coef[i]
            r[q] = y[q] - acc
        scale = _mad(r, m, buf)
        if scale >= _EPS:
            it, converged = 1, False
            while not converged and it < RLM_ITER:
                c0[:] = coef
                for q in range(m):
                    acc = 0.0
                    for i in range(5):
                        acc += xt[q, i] * c0[i]
                    r[q] = (y[q] - acc) * adj[q]
                scale = max(_EPS * std, _mad(r, m, buf))
                for q in range(m):
                    u = r[q] / scale
                    w[q] = (1 - (u / TUNE) ** 2) ** 2 if abs(u) < TUNE else 0.0
                _wls(xt, y, w, m, ridge, a, b, coef)
                it += 1
                converged = True
                for i in range(5):
                    if c0[i] - coef[i] > RLM_TOL:  # pyccd's check, sign and all
                        converged = False
        for q in range(m):
            acc = 0.0
            for i in range(5):
                acc += xt[q, i] * coef[i]
            if abs(acc - y[q]) > vario[band] * t_const:
                out[idx[q] - s] = True


_F2 = "float64[:, ::1]"


@numba.njit(f"void({_F2}, {_F2}, float64[::1], int64, int64, float64, {_F2}, float64[::1], "
            f"{_F2}, {_F2})", **_JIT)
def _solve(xtx, xty, yty, n, k, ridge, coef, rmse, a, rhs):
    """`_core._solve` for one pixel: coefficients and RMSE, into ``coef`` and ``rmse``.

    The same padded 8×8 system as `_core._solve` (unused coefficients: identity row, zero
    right-hand side), through the same LAPACK solver, so the coefficients match it; the
    residual sum of squares comes from the normal equations, with ``n - k`` degrees of
    freedom, summed as `_core._solve` sums it: it cancels, so the order shows.
    """
    nb = xty.shape[1]
    for i in range(N_COEFS):
        for j in range(N_COEFS):
            a[i, j] = xtx[i, j] if i < k and j < k else 0.0
        a[i, i] += (ridge * n if i >= 1 else 0.0) if i < k else 1.0
        for b in range(nb):
            rhs[i, b] = xty[i, b] if i < k else 0.0
    coef[:] = np.linalg.solve(a, rhs)
    # the cancelling sums of `_core._solve`, term for term (xtx @ coef by BLAS, as there)
    q = np.dot(xtx, coef)
    dof = float(n - k if n - k > 1 else 1)
    for b in range(nb):
        cx, cqc = 0.0, 0.0
        for i in range(N_COEFS):
            cx += coef[i, b] * xty[i, b]
            cqc += coef[i, b] * q[i, b]
        rss = yty[b] - 2 * cx + cqc
        rmse[b] = math.sqrt((rss if rss > 0 else 0.0) / dof)


@numba.njit("float64(float64[::1], int64)", **_JIT)
def _median(v, m):
    """Median of ``v[:m]`` (m > 0), numpy's even-count convention; reorders ``v[:m]``.

    A selection (Wirth's), not a sort: the middle values are exact either way, and the
    variogram takes medians of whole series.
    """
    hi = m // 2
    left, right = 0, m - 1
    while left < right:
        pivot = v[(left + right) // 2]
        i, j = left, right
        while i <= j:
            while v[i] < pivot:
                i += 1
            while pivot < v[j]:
                j -= 1
            if i <= j:
                v[i], v[j] = v[j], v[i]
                i += 1
                j -= 1
        if j < hi:
            left = i
        if hi < i:
            right = j
    if m % 2:
        return v[hi]
    low = v[0]
    for i in range(1, hi):
        low = max(low, v[i])
    return 0.5 * (low + v[hi])


@numba.njit(**_JIT)
def _kernel(values, days, x, det, tb, vb, n_seg, h, min_obs, min_days, obs_per_coef,
            refit_growth, full_refit_obs, variogram_days, tmask_const, ridge, change_thr,
            outlier_thr):
    n_pix, n_time, nb = values.shape
    max_steps = 8 * n_time + 16
    status = np.zeros(n_pix, np.int8)
    n_clear = np.zeros(n_pix, np.int32)
    n_breaks = np.zeros(n_pix, np.int32)
    out_start = np.full((n_pix, n_seg), np.nan)
    out_end = np.full((n_pix, n_seg), np.nan)
    out_break = np.full((n_pix, n_seg), np.nan)
    out_nobs = np.zeros((n_pix, n_seg), np.int32)
    out_ncoef = np.zeros((n_pix, n_seg), np.int8)
    out_isbreak = np.zeros((n_pix, n_seg), np.bool_)
    out_mag = np.full((n_pix, n_seg, nb), np.nan)
    out_rmse = np.full((n_pix, n_seg, nb), np.nan)
    out_coef = np.full((n_pix, n_seg, nb, N_COEFS), np.nan)

    # per-pixel scratch, reused
    clear = np.empty(n_time, np.bool_)
    cidx = np.empty(n_time, np.int64)
    dc = np.empty(n_time)
    yc = np.zeros((n_time, nb))
    removed = np.zeros(n_time, np.bool_)
    xtx, xty, yty = np.zeros((N_COEFS, N_COEFS)), np.zeros((N_COEFS, nb)), np.zeros(nb)
    coef, rmse = np.zeros((N_COEFS, nb)), np.zeros(nb)
    a, rhs = np.zeros((N_COEFS, N_COEFS)), np.zeros((N_COEFS, nb))
    vario, lb_mag, mag = np.zeros(nb), np.zeros(nb), np.zeros(nb)
    resid = np.zeros((max(n_time, h), nb))
    tmask_out = np.zeros(n_time, np.bool_)
    tm_idx, tm_x, tm_vec = np.zeros(n_time, np.int64), np.zeros((n_time, 5)), np.zeros((6, n_time))
    buf = np.zeros(max(n_time, h))
    mags = np.zeros(h)
    ring = np.zeros((h, nb))
    x4, x4w = np.zeros((n_time, 4)), np.zeros((n_time, 4))
    cat_lo, cat_hi, cat_slot = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2, np.int64)

    stuck = False
    for p in range(n_pix):
        if stuck:
            break
        # clear observations first, in time order: positions 0..n-1 are the pixel's series
        n = 0
        for t in range(n_time):
            ok = True
            for b in range(nb):
                if not np.isfinite(values[p, t, b]):
                    ok = False
            clear[t] = ok
            if ok:
                cidx[n] = t
                n += 1
        m = n
        for t in range(n_time):
            if not clear[t]:
                cidx[m] = t
                m += 1
        for j in range(n_time):
            dc[j] = days[cidx[j]]
            for b in range(nb):
                yc[j, b] = values[p, cidx[j], b] if j < n else 0.0
        n_clear[p] = n
        if n < min_obs or _day(dc, n - 1) - dc[0] < min_days:
            status[p] = STATUS_INSUFFICIENT_DATA
            continue

        # pyccd's adjusted variogram (see _Batch._variogram)
        span = _day(dc, n - 1) - dc[0]
        gap = span / (n - 1 if n > 1 else 1)
        gap = gap if gap > 0 else 1.0
        lag = int(math.floor(variogram_days / gap)) + 1
        vario[:] = 0.0
        for d in vb:
            cnt = 0
            for j in range(n - lag):
                if dc[j + lag] - dc[j] > variogram_days:
                    buf[cnt] = abs(yc[j + lag, d] - yc[j, d])
                    cnt += 1
            if cnt > 0:
                v = _median(buf, cnt)
                vario[d] = v if np.isfinite(v) else 0.0

        phase = PHASE_INIT
        s = e = lb = prev_end = last_in = n_in = 0
        k = 4
        first, need_fit, lb_found, catch_break = True, True, False, False
        fit_span = 0.0
        seg = 0
        xtx[:] = 0.0
        xty[:] = 0.0
        yty[:] = 0.0
        coef[:] = 0.0
        rmse[:] = 0.0
        lb_mag[:] = 0.0
        removed[:] = False
        cat_slot[:] = -1
        steps = 0
        peeked = 0  # monitoring: next position whose residual is not in the ring yet
        finish = False  # pyccd's closing fit: _Batch.finish
        while phase != PHASE_DONE:
            steps += 1
            if steps > max_steps:
                stuck = True
                break
            after = False  # _Batch.after_lookback
            if phase == PHASE_INIT:
                # first and last observation of the window still in it
                j_first, j_last = e, s - 1
                for j in range(s, e):
                    if not removed[j]:
                        j_first = min(j_first, j)
                        j_last = j
                if e + min_obs >= n:
                    if first:
                        status[p] = STATUS_NO_STABLE_MODEL
                    finish = True
                elif not (n_in >= min_obs and _day(dc, j_last) - _day(dc, j_first) >= min_days):
                    _update(xtx, xty, yty, x, cidx[e], yc, e, 1.0)
                    n_in += 1
                    e += 1
                else:
                    # pyccd's Tmask: drop every outlier of the window at once, unless too few
                    # observations or too short a time would be left (then grow the window)
                    n_out = 0
                    if tmask_const > 0:
                        _tmask(dc, yc, removed, s, e, vario, tb, tmask_const, ridge, tmask_out,
                               tm_idx, tm_x, tm_vec)
                        k_first, k_last = e, s - 1
                        for j in range(s, e):
                            if not removed[j]:
                                if tmask_out[j - s]:
                                    n_out += 1
                                else:
                                    k_first = min(k_first, j)
                                    k_last = j
                        if n_out > 0 and (n_out == n_in or n_in - n_out < min_obs
                                          or _day(dc, k_last) - _day(dc, k_first) < min_days):
                            _update(xtx, xty, yty, x, cidx[e], yc, e, 1.0)
                            n_in += 1
                            e += 1
                            continue
                        for j in range(s, e):
                            if not removed[j] and tmask_out[j - s]:
                                _update(xtx, xty, yty, x, cidx[j], yc, j, -1.0)
                                n_in -= 1
                                removed[j] = True
                        j_first, j_last = k_first, k_last
                    _solve(xtx, xty, yty, n_in, 4, ridge, coef, rmse, a, rhs)
                    _residual(x, cidx[j_first], yc, j_first, coef, 4, resid, 0)
                    _residual(x, cidx[j_last], yc, j_last, coef, 4, resid, 1)
                    years = (_day(dc, j_last) - _day(dc, j_first)) / DAYS_PER_YEAR
                    tot = 0.0
                    for d in det:
                        c = ((abs(coef[1, d] * years) + abs(resid[0, d])
                              + abs(resid[1, d])) / max(vario[d], rmse[d]))
                        tot += c * c
                    if not tot < change_thr:
                        # unstable: drop the window's first observation, add the next one
                        _update(xtx, xty, yty, x, cidx[j_first], yc, j_first, -1.0)
                        n_in -= 1
                        s = j_first + 1
                        _update(xtx, xty, yty, x, cidx[e], yc, e, 1.0)
                        n_in += 1
                        e += 1
                    else:
                        k = 4
                        s = j_first  # the window starts at its first observation still in
                        last_in = j_last
                        if s > prev_end:
                            lb = s - 1
                            lb_found = False
                            phase = PHASE_LOOKBACK
                        else:
                            after = True
            elif phase == PHASE_LOOKBACK:
                change = lb < prev_end
                outlier = False
                if not change:
                    low = np.inf
                    for q in range(h):
                        j = lb - q
                        jc = 0 if j < 0 else j
                        _residual(x, cidx[jc], yc, jc, coef, k, resid, q)
                        mags[q] = _scaled(resid, q, vario, rmse, det)
                        if j >= prev_end:
                            low = min(low, mags[q])
                    if low > change_thr:
                        change = True
                        # the change the stable model starts after, for the first segment
                        lb_found = True
                        for b in range(nb):
                            cnt = 0
                            for q in range(h):
                                if lb - q >= prev_end:
                                    buf[cnt] = resid[q, b]
                                    cnt += 1
                            lb_mag[b] = -_median(buf, cnt)
                    else:
                        outlier = mags[0] > outlier_thr
                if change:
                    after = True
                elif outlier:
                    removed[lb] = True
                    lb -= 1
                else:
                    _update(xtx, xty, yty, x, cidx[lb], yc, lb, 1.0)
                    s = lb
                    n_in += 1
                    lb -= 1
            else:  # PHASE_MONITOR
                if e + h > n:
                    if seg < n_seg:
                        out_start[p, seg] = _day(dc, s)
                        out_end[p, seg] = _day(dc, last_in)
                        out_nobs[p, seg] = n_in
                        out_ncoef[p, seg] = k
                        for b in range(nb):
                            out_rmse[p, seg, b] = rmse[b]
                            out_mag[p, seg, b] = 0.0
                            for c in range(N_COEFS):
                                out_coef[p, seg, b, c] = coef[c, b]
                    seg += 1
                    phase = PHASE_DONE
                    continue
                span = _day(dc, last_in) - _day(dc, s)
                if need_fit or n_in < full_refit_obs or span >= refit_growth * fit_span:
                    k = 6 if n_in < 8 * obs_per_coef else 8
                    k = 4 if n_in < 6 * obs_per_coef else k
                    _solve(xtx, xty, yty, n_in, k, ridge, coef, rmse, a, rhs)
                    fit_span = span
                    need_fit = False
                    peeked = e
                # the model changes only at a refit, so each step computes the residual of
                # the one observation entering the window of the next h; ring slot j % h
                while peeked < e + h:
                    _residual(x, cidx[peeked], yc, peeked, coef, k, ring, peeked % h)
                    mags[peeked % h] = _scaled(ring, peeked % h, vario, rmse, det)
                    peeked += 1
                if mags.min() > change_thr:
                    for b in range(nb):
                        for q in range(h):
                            buf[q] = ring[q, b]
                        mag[b] = _median(buf, h)
                    if seg < n_seg:
                        out_start[p, seg] = _day(dc, s)
                        out_end[p, seg] = _day(dc, last_in)
                        out_nobs[p, seg] = n_in
                        out_ncoef[p, seg] = k
                        out_break[p, seg] = _day(dc, e)
                        out_isbreak[p, seg] = True
                        for b in range(nb):
                            out_rmse[p, seg, b] = rmse[b]
                            out_mag[p, seg, b] = mag[b]
                            for c in range(N_COEFS):
                                out_coef[p, seg, b, c] = coef[c, b]
                    seg += 1
                    n_breaks[p] += 1
                    prev_end = e
                    s = e
                    n_in = 0
                    xtx[:] = 0.0
                    xty[:] = 0.0
                    yty[:] = 0.0
                    phase = PHASE_INIT
                elif mags[e % h] > outlier_thr:
                    removed[e] = True
                    e += 1
                else:
                    _update(xtx, xty, yty, x, cidx[e], yc, e, 1.0)
                    n_in += 1
                    last_in = e
                    e += 1
            if after:
                if first and s - prev_end > h:
                    cat_lo[0], cat_hi[0] = prev_end, s
                    if seg < n_seg:
                        cat_slot[0] = seg
                    seg += 1
                    if lb_found:  # unlike pyccd, a first segment cut short is a break
                        n_breaks[p] += 1
                        catch_break = True
                first = False
                if e + h > n:
                    finish = True
                else:
                    phase = PHASE_MONITOR
                    need_fit = True
            if finish:
                if prev_end + h < n:
                    cat_lo[1], cat_hi[1] = prev_end, n
                    if seg < n_seg:
                        cat_slot[1] = seg
                    seg += 1
                phase = PHASE_DONE

        # the pending 4-coefficient fits: start of series, then end of series; weighted
        # products over the whole series through BLAS, as `_Batch.fit_catches` computes them
        for w in range(2):
            sl = cat_slot[w]
            if sl < 0:
                continue
            xtx[:] = 0.0
            xty[:] = 0.0
            yty[:] = 0.0
            cnt = 0
            j_first, j_last = n_time, -1
            for j in range(n_time):
                wj = cat_lo[w] <= j < cat_hi[w] and not removed[j]
                for c in range(4):
                    x4[j, c] = x[cidx[j], c]
                    x4w[j, c] = x4[j, c] * (1.0 if wj else 0.0)
                for b in range(nb):
                    yty[b] += yc[j, b] * yc[j, b] * (1.0 if wj else 0.0)
                if wj:
                    cnt += 1
                    j_first = min(j_first, j)
                    j_last = j
            xtx[:4, :4] = np.dot(x4w.T, x4)
            xty[:4, :] = np.dot(x4w.T, yc)
            _solve(xtx, xty, yty, cnt, 4, ridge, coef, rmse, a, rhs)
            out_start[p, sl] = _day(dc, j_first)
            out_end[p, sl] = _day(dc, j_last)
            out_nobs[p, sl] = cnt
            out_ncoef[p, sl] = 4
            for b in range(nb):
                out_rmse[p, sl, b] = rmse[b]
                out_mag[p, sl, b] = 0.0
                for c in range(N_COEFS):
                    out_coef[p, sl, b, c] = coef[c, b]
            if w == 0 and catch_break:
                out_isbreak[p, sl] = True
                out_break[p, sl] = _day(dc, cat_hi[0])
                for b in range(nb):
                    out_mag[p, sl, b] = lb_mag[b]

    return stuck, (status, n_clear, n_breaks, out_start, out_end, out_break, out_nobs, out_ncoef,
            out_isbreak, out_mag, out_rmse, out_coef)


_FIELDS = ("status", "n_clear", "n_breaks", "start_day", "end_day", "break_day", "n_obs",
           "n_coefs", "is_break", "magnitude", "rmse", "coefficients")


def run_numba(values: np.ndarray, days: np.ndarray, det: list[int], tmask_bands: list[int],
              p: CCDCParams, change_thr: float, outlier_thr: float) -> dict[str, np.ndarray]:
    """`_core.run_batched` through the compiled kernel; same inputs (already checked), same dict."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    days = np.ascontiguousarray(days, dtype=np.float64)
    x = np.ascontiguousarray(design_matrix(days))
    vb = sorted(set(det) | set(tmask_bands))
    stuck, out = _kernel(values, days, x, np.asarray(det, dtype=np.int64),
                         np.asarray(tmask_bands, dtype=np.int64), np.asarray(vb, dtype=np.int64),
                         p.max_segments,
                  p.consecutive, p.min_obs, float(p.min_days), p.obs_per_coef,
                  float(p.refit_growth), p.full_refit_obs, float(p.variogram_days),
                  float(p.tmask_const), float(p.ridge), change_thr, outlier_thr)
    if stuck:  # pragma: no cover - a bug guard, not a user error
        raise RuntimeError("CCDC state machine did not terminate; please report this")
    return dict(zip(_FIELDS, out, strict=True))
