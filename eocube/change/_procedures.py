"""pyccd's procedures around the change model, shared by every backend.

lcmap-pyccd (``ccd/procedures.py``, ``ccd/qa.py``) does not run the change model on every
pixel: from the QA classes it sends a pixel with too few clear observations to the
*insufficient-clear* procedure, or, when most of what it sees is snow, to the
*persistent-snow* procedure; both fit one 4-coefficient model over the whole series and
report no break. Those pixels never reach the state machine, so the numba kernel and the
batched reference (and torch) share this one numpy implementation and stay equal.
This module also refuses input that was obviously never masked.
"""

from __future__ import annotations

import numpy as np

from eocube.change._model import (
    N_COEFS,
    STATUS_INSUFFICIENT_CLEAR,
    STATUS_INSUFFICIENT_DATA,
    STATUS_OK,
    STATUS_PERSISTENT_SNOW,
    CCDCParams,
    design_matrix,
)
from eocube.cube.qa import QA_CLEAR, QA_FILL, QA_SNOW, QA_WATER
from eocube.errors import MaskError

#: Values that are fill or saturation markers in common products, never a measurement:
#: -9999 (fill of many float products), 16000 and 20000 (saturation in Landsat ARD
#: reflectance x 10 000), -32768 / 32767 / 65535 (integer fill).
FILL_VALUES = (-9999.0, 16000.0, 20000.0, -32768.0, 32767.0, 65535.0)

MASK_HINT = ("mask the cube first: eocube.cube.qa.mask_landsat(cube) for Landsat Collection 2 "
             "(QA_PIXEL, QA_RADSAT), eocube.cube.qa.mask_s2(cube) for Sentinel-2 (SCL), or "
             "cube.where(valid) for other products")


def check_masked(values: np.ndarray, band_names: list[str] | None = None) -> None:
    """Raise `MaskError` if (pixel, time, band) ``values`` hold fill or saturation markers.

    A value in `FILL_VALUES`, or an observation whose bands are all exactly 0 (the 0-DN fill
    of Landsat and Sentinel-2 products), means the cube was not masked.
    """
    for b in range(values.shape[-1]):
        v = values[..., b]
        hit = np.isin(v, FILL_VALUES)
        if hit.any():
            name = band_names[b] if band_names else f"#{b}"
            found = sorted({float(x) for x in np.unique(v[hit])})
            raise MaskError(
                f"ccdc: band {name!r} holds {found} at {int(hit.sum())} observations, fill or "
                f"saturation values of an unmasked product; {MASK_HINT}")
    zero = (values == 0).all(-1)
    if values.shape[-1] > 1 and zero.any():
        raise MaskError(
            f"ccdc: {int(zero.sum())} observations are 0 in every band, the 0-DN fill of an "
            f"unmasked product; {MASK_HINT}")


def select_procedures(qa: np.ndarray, p: CCDCParams) -> np.ndarray:
    """pyccd's ``fit_procedure`` per pixel from (pixel, time) QA classes.

    `STATUS_OK` (the standard procedure) unless the clear-or-water share of the non-fill
    observations is under ``clear_pct``: then `STATUS_PERSISTENT_SNOW` if snow is at least
    ``snow_pct`` of clear, water and snow together (pyccd's ``+ 0.01`` included), else
    `STATUS_INSUFFICIENT_CLEAR`. A pixel with nothing but fill is `STATUS_INSUFFICIENT_DATA`.
    """
    cw = np.isin(qa, (QA_CLEAR, QA_WATER)).sum(1)
    snow = (qa == QA_SNOW).sum(1)
    total = (qa != QA_FILL).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        clear_ratio = np.where(total > 0, cw / np.maximum(total, 1), 0.0)
    snow_ratio = snow / (cw + snow + 0.01)
    special = np.where(snow_ratio >= p.snow_pct, STATUS_PERSISTENT_SNOW,
                       STATUS_INSUFFICIENT_CLEAR)
    out = np.where(clear_ratio < p.clear_pct, special, STATUS_OK)
    return np.where(total == 0, STATUS_INSUFFICIENT_DATA, out).astype(np.int8)


def procedure_mask(qa: np.ndarray, values: np.ndarray, procedure: np.ndarray) -> np.ndarray:
    """(pixel, time) observations each pixel's procedure uses: clear or water, and snow too
    for persistent snow; always only where every band is finite."""
    classes = np.where((procedure == STATUS_PERSISTENT_SNOW)[:, None],
                       np.isin(qa, (QA_CLEAR, QA_WATER, QA_SNOW)),
                       np.isin(qa, (QA_CLEAR, QA_WATER)))
    return classes & np.isfinite(values).all(-1)


def empty_result(n_pix: int, n_seg: int, n_band: int) -> dict[str, np.ndarray]:
    """The result dict of `eocube.change.ccdc_numpy` with every slot empty."""
    nan = np.nan
    return {
        "status": np.zeros(n_pix, np.int8),
        "n_clear": np.zeros(n_pix, np.int32),
        "n_breaks": np.zeros(n_pix, np.int32),
        "start_day": np.full((n_pix, n_seg), nan),
        "end_day": np.full((n_pix, n_seg), nan),
        "break_day": np.full((n_pix, n_seg), nan),
        "n_obs": np.zeros((n_pix, n_seg), np.int32),
        "n_coefs": np.zeros((n_pix, n_seg), np.int8),
        "is_break": np.zeros((n_pix, n_seg), bool),
        "magnitude": np.full((n_pix, n_seg, n_band), nan),
        "rmse": np.full((n_pix, n_seg, n_band), nan),
        "coefficients": np.full((n_pix, n_seg, n_band, N_COEFS), nan),
    }


def fit_whole_series(values: np.ndarray, days: np.ndarray, use: np.ndarray,
                     procedure: np.ndarray, p: CCDCParams) -> dict[str, np.ndarray]:
    """pyccd's persistent-snow and insufficient-clear procedures for a batch of pixels.

    One 4-coefficient model (intercept, trend, annual harmonic) per pixel over the
    observations ``use`` marks, in segment 0, when there are at least ``min_obs`` of them
    (pyccd's ``MEOW_SIZE``), else no model; never a break. ``status`` is ``procedure``.
    """
    n_pix, _, n_band = values.shape
    res = empty_result(n_pix, p.max_segments, n_band)
    res["status"][:] = procedure
    res["n_clear"][:] = use.sum(1)
    x = design_matrix(days)[:, :4]
    w = use.astype(np.float64)
    y = np.where(use[..., None], values, 0.0)
    n = w.sum(1)
    xtx = np.einsum("pt,ti,tj->pij", w, x, x)
    xty = np.einsum("pt,ti,ptb->pib", w, x, y)
    ok = n >= p.min_obs
    if not ok.any():
        return res
    ridge = np.diag([0.0, 1.0, 1.0, 1.0])[None] * (p.ridge * n)[:, None, None]
    coef = np.linalg.solve(xtx[ok] + ridge[ok], xty[ok])  # (m, 4, B)
    resid = y[ok] - np.einsum("ti,pib->ptb", x, coef)
    rss = (resid**2 * w[ok][..., None]).sum(1)
    dof = np.maximum(n[ok] - 4, 1)
    t = np.arange(days.size)
    first = np.where(use[ok], t, days.size).min(1)
    last = np.where(use[ok], t, -1).max(1)
    full = np.zeros((coef.shape[0], N_COEFS, n_band))
    full[:, :4] = coef
    res["start_day"][ok, 0] = days[first]
    res["end_day"][ok, 0] = days[last]
    res["n_obs"][ok, 0] = n[ok].astype(np.int32)
    res["n_coefs"][ok, 0] = 4
    res["magnitude"][ok, 0] = 0.0
    res["rmse"][ok, 0] = np.sqrt(rss / dof[:, None])
    res["coefficients"][ok, 0] = np.swapaxes(full, 1, 2)
    return res
