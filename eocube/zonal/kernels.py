"""Numba inner loops of the zonal stage (internal to eocube.zonal): pixel coverage of polygons
and per-chunk reductions.

Everything here works in *pixel space* of one raster chunk: x is the column, y the row, a cell
``(r, c)`` is the unit square ``[c, c + 1] × [r, r + 1]``. The Python layer (``coverage.py``,
``stats.py``) moves geometries into that space and stitches chunks together.

Exact coverage uses the signed-area accumulation of scanline font rasterisers (the same quantity
exactextract computes, by a different walk): for every edge and every row it crosses, each
piece of the edge lying inside one cell adds its trapezoid to that cell and the rest of the
row's height to the next cell; a running sum along the row then gives, for every cell, the
integral of the ring's winding number over the cell — the covered area, since a cell has unit
area. Rings are oriented on the fly (exterior +1, holes −1), so input orientation is irrelevant.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Coverage below this is round-off of the running sum, not area (a polygon of 1e-10 pixel is
# far below any raster's meaning).
_EPS = 1e-10
#: the Gaussian kernel is cut at this many bandwidths (mass beyond: 3e-4)
GAUSS_CUT = 4.0


@njit(cache=True, nogil=True)
def _row_piece(acc, r, xl, xh, sdy, nc):
    """Accumulate one row-piece of an edge, spanning ``xl <= x <= xh``, of signed height ``sdy``."""
    if xh <= 0.0:
        # Entirely left of the window: every cell of the row lies right of it.
        acc[r, 0] += sdy
        return
    if xl >= nc:
        return
    width = xh - xl
    if width <= 0.0:
        c = int(math.floor(xl))
        f = xl - c
        acc[r, c] += sdy * (1.0 - f)
        acc[r, c + 1] += sdy * f
        return
    x = xl
    if xl < 0.0:
        acc[r, 0] += sdy * (-xl) / width
        x = 0.0
    xend = min(xh, float(nc))
    c = int(math.floor(x))
    while x < xend:
        nx = min(c + 1.0, xend)
        d = sdy * (nx - x) / width
        xm = 0.5 * (x + nx) - c
        acc[r, c] += d * (1.0 - xm)
        acc[r, c + 1] += d * xm
        x = nx
        c += 1


@njit(cache=True, nogil=True)
def _edge_exact(acc, x0, y0, x1, y1, s):
    nr = acc.shape[0]
    nc = acc.shape[1] - 1
    if y0 == y1:
        return
    if y0 > y1:
        x0, y0, x1, y1 = x1, y1, x0, y0
        s = -s
    if y1 <= 0.0 or y0 >= nr:
        return
    dxdy = (x1 - x0) / (y1 - y0)
    ya = max(y0, 0.0)
    yb = min(y1, float(nr))
    for r in range(int(math.floor(ya)), int(math.ceil(yb))):
        ra = max(ya, float(r))
        rb = min(yb, r + 1.0)
        if rb <= ra:
            continue
        xa = x0 + (ra - y0) * dxdy if ra != y0 else x0
        xb = x0 + (rb - y0) * dxdy if rb != y1 else x1
        if xa > xb:
            xa, xb = xb, xa
        _row_piece(acc, r, xa, xb, s * (rb - ra), nc)


@njit(cache=True, nogil=True)
def _edge_center(acc, x0, y0, x1, y1, s):
    """Scanline crossings at row centres: a cell is counted when its centre is right of the edge."""
    nr = acc.shape[0]
    nc = acc.shape[1] - 1
    if y0 == y1:
        return
    if y0 > y1:
        x0, y0, x1, y1 = x1, y1, x0, y0
        s = -s
    # rows whose centre r + 0.5 lies in [y0, y1): half-open, so shared vertices count once
    ra = max(int(math.ceil(y0 - 0.5)), 0)
    rb = min(int(math.ceil(y1 - 0.5)), nr)
    dxdy = (x1 - x0) / (y1 - y0)
    for r in range(ra, rb):
        xc = x0 + (r + 0.5 - y0) * dxdy
        c = int(math.ceil(xc - 0.5))
        if c < 0:
            c = 0
        if c < nc:
            acc[r, c] += s


@njit(cache=True, nogil=True)
def _ring_area2(coords, a, b):
    s = 0.0
    for i in range(a, b - 1):
        s += coords[i, 0] * coords[i + 1, 1] - coords[i + 1, 0] * coords[i, 1]
    # close the ring if the input did not repeat the first vertex
    s += coords[b - 1, 0] * coords[a, 1] - coords[a, 0] * coords[b - 1, 1]
    return s


@njit(cache=True, nogil=True)
def chunk_coverage(coords, ring_off, poly_off, geom_off, bounds, zone_idx, r0, c0, nr, nc,
                   exact):
    """Coverage of the window ``rows [r0, r0+nr) × cols [c0, c0+nc)`` by the zones ``zone_idx``.

    Returns ``(zone, pix, weight)``: the zone index, the pixel index inside the window
    (row-major) and the covered fraction (1.0 in centre mode), grouped by zone in the order of
    ``zone_idx``.
    """
    cap = 1024
    out_z = np.empty(cap, np.int64)
    out_p = np.empty(cap, np.int32)
    out_w = np.empty(cap, np.float32)
    n = 0
    for k in range(zone_idx.shape[0]):
        g = zone_idx[k]
        zr0 = max(int(math.floor(bounds[g, 1])), r0)
        zr1 = min(int(math.ceil(bounds[g, 3])), r0 + nr)
        zc0 = max(int(math.floor(bounds[g, 0])), c0)
        zc1 = min(int(math.ceil(bounds[g, 2])), c0 + nc)
        if zr1 <= zr0 or zc1 <= zc0:
            continue
        h = zr1 - zr0
        w = zc1 - zc0
        acc = np.zeros((h, w + 1))
        for p in range(geom_off[g], geom_off[g + 1]):
            for j in range(poly_off[p], poly_off[p + 1]):
                a = ring_off[j]
                b = ring_off[j + 1]
                if b - a < 3:
                    continue
                area2 = _ring_area2(coords, a, b)
                if area2 == 0.0:
                    continue
                # winding is −1 inside a positively oriented ring (see module docstring)
                s = -1.0 if area2 > 0 else 1.0
                if j != poly_off[p]:
                    s = -s
                for i in range(a, b):
                    i1 = i + 1 if i + 1 < b else a
                    x0 = coords[i, 0] - zc0
                    y0 = coords[i, 1] - zr0
                    x1 = coords[i1, 0] - zc0
                    y1 = coords[i1, 1] - zr0
                    if exact:
                        _edge_exact(acc, x0, y0, x1, y1, s)
                    else:
                        _edge_center(acc, x0, y0, x1, y1, s)
        need = n + h * w
        if need > cap:
            while cap < need:
                cap *= 2
            out_z = _grow(out_z, cap)
            out_p = _grow(out_p, cap)
            out_w = _grow(out_w, cap)
        for r in range(h):
            run = 0.0
            base = (zr0 + r - r0) * nc + (zc0 - c0)
            for c in range(w):
                run += acc[r, c]
                if exact:
                    if run > _EPS:
                        out_z[n] = g
                        out_p[n] = base + c
                        out_w[n] = min(run, 1.0)
                        n += 1
                elif run > 0.5:
                    out_z[n] = g
                    out_p[n] = base + c
                    out_w[n] = 1.0
                    n += 1
    return out_z[:n].copy(), out_p[:n].copy(), out_w[:n].copy()


@njit(cache=True, nogil=True)
def _grow(a, cap):
    b = np.empty(cap, a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True)
def block_moments(indptr, pix, cov, vals, wts, weighted, want_var, want_minmax):
    """Per-zone partial aggregates of one chunk, for every lead (time × band) slice at once.

    ``vals`` and ``wts`` are ``(leads, pixels)`` (the chunk as it comes, no transposed copy);
    NaN values are skipped (nodata). Variances use West's weighted update, as exactextract
    does, so they combine exactly with Chan's formula. Returns an array
    ``(fields, zones, leads)`` with fields ``n, sum, mean, m2, min, max, wn, wsum, wmean, wm2``
    (unused ones left at their start).
    """
    nz = indptr.shape[0] - 1
    nl = vals.shape[0]
    out = np.zeros((10, nz, nl))
    out[4] = np.nan
    out[5] = np.nan
    for li in range(nl):
        row = vals[li]
        for z in range(nz):
            n = 0.0
            s = 0.0
            mean = 0.0
            m2 = 0.0
            mn = np.nan
            mx = np.nan
            wn = 0.0
            ws = 0.0
            wmean = 0.0
            wm2 = 0.0
            for j in range(indptr[z], indptr[z + 1]):
                p = pix[j]
                v = row[p]
                if math.isnan(v):
                    continue
                c = np.float64(cov[j])
                n += c
                s += c * v
                if want_var:
                    m_old = mean
                    mean = m_old + (c / n) * (v - m_old)
                    m2 += c * (v - m_old) * (v - mean)
                if want_minmax:
                    if not (v >= mn):
                        mn = v
                    if not (v <= mx):
                        mx = v
                if weighted:
                    cw = c * wts[li, p]
                    if cw == 0.0:
                        continue
                    wn += cw
                    ws += cw * v
                    if want_var:
                        wm_old = wmean
                        wmean = wm_old + (cw / wn) * (v - wm_old)
                        wm2 += cw * (v - wm_old) * (v - wmean)
            out[0, z, li] = n
            out[1, z, li] = s
            out[2, z, li] = mean
            out[3, z, li] = m2
            out[4, z, li] = mn
            out[5, z, li] = mx
            out[6, z, li] = wn
            out[7, z, li] = ws
            out[8, z, li] = wmean
            out[9, z, li] = wm2
    return out


@njit(cache=True, nogil=True)
def group_quantile_mode(starts, values, weights, q):
    """Weighted quantile (exactextract's interpolation) and mode of each sorted group.

    ``values`` are distinct and ascending inside each group ``starts[i]:starts[i+1]``; ``weights``
    are their summed coverage. The mode breaks ties towards the greater value, as exactextract.
    """
    ng = starts.shape[0] - 1
    quant = np.full(ng, np.nan)
    mode = np.full(ng, np.nan)
    for g in range(ng):
        a = starts[g]
        b = starts[g + 1]
        m = b - a
        if m == 0:
            continue
        best = a
        for i in range(a, b):
            if weights[i] >= weights[best]:
                best = i
        mode[g] = values[best]
        if m == 1:
            quant[g] = values[a]
            continue
        # s_i = i·w_i + (m − 1)·Σ_{k<i} w_k ; look up q·(m − 1)·Σw, interpolate linearly
        total = 0.0
        for i in range(a, b):
            total += weights[i]
        target = q * total * (m - 1)
        cum = 0.0
        prev_s = 0.0
        prev_x = values[a]
        found = False
        for i in range(a, b):
            k = i - a
            s = 0.0 if k == 0 else k * weights[i] + (m - 1) * cum
            cum += weights[i]
            if s > target:
                quant[g] = prev_x + (target - prev_s) * (values[i] - prev_x) / (s - prev_s)
                found = True
                break
            prev_s = s
            prev_x = values[i]
        if not found:
            quant[g] = values[b - 1]
    return quant, mode


@njit(cache=True, nogil=True)
def kde_block(px, py, pw, x0, dx, y0, dy, ny, nx, h, kind):
    """Kernel sum of weighted points at the pixel centres of one block (see density.py)."""
    out = np.zeros((ny, nx))
    reach = h * (GAUSS_CUT if kind == 1 else 1.0)
    h2 = h * h
    for k in range(px.shape[0]):
        # pixel centres: x = x0 + (c + 0.5)·dx, y = y0 + (r + 0.5)·dy (dy < 0 north-up)
        ca = max(int(math.floor((px[k] - reach - x0) / dx - 0.5)), 0)
        cb = min(int(math.ceil((px[k] + reach - x0) / dx - 0.5)) + 1, nx)
        r1 = (py[k] + reach - y0) / dy - 0.5
        r2 = (py[k] - reach - y0) / dy - 0.5
        ra = max(int(math.floor(min(r1, r2))), 0)
        rb = min(int(math.ceil(max(r1, r2))) + 1, ny)
        for r in range(ra, rb):
            yc = y0 + (r + 0.5) * dy
            ddy = yc - py[k]
            for c in range(ca, cb):
                xc = x0 + (c + 0.5) * dx
                ddx = xc - px[k]
                d2 = ddx * ddx + ddy * ddy
                if kind == 0:
                    if d2 < h2:
                        t = 1.0 - d2 / h2
                        out[r, c] += pw[k] * 3.0 / (math.pi * h2) * t * t
                elif kind == 1:
                    if d2 < reach * reach:
                        out[r, c] += pw[k] * math.exp(-0.5 * d2 / h2) / (2.0 * math.pi * h2)
                elif d2 < h2:
                    out[r, c] += pw[k] / (math.pi * h2)
    return out
