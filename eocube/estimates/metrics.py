"""Accuracy metrics: maps (F1, precision, recall, IoU, Cohen's kappa) and estimates (MAE, RMSE,
MAPE, SMAPE, R², Spearman ρ, weighted RMSE, total relative error).

Inputs may be numpy arrays, dask arrays or xarray DataArrays of any shape (they are
flattened). The code is written with numpy functions, which dask dispatches to itself, so a
dask input gives a lazy 0-d dask array and nothing is computed until the caller asks; a numpy
input gives a Python ``float``. Pixels or rows can be left out with ``mask`` (``True`` = use),
and weighted with ``sample_weight``; estimates also leave out pairs where either value is NaN.
Definitions follow scikit-learn where it has the metric (MAPE and SMAPE are fractions, not
percent), its undefined cases included: kappa is NaN where the chance agreement is 1, R² is
1.0 for a constant truth predicted exactly and NaN for fewer than two pairs. Map metrics take
class labels and refuse anything else (probabilities, NaN, labels outside the classes) where
``mask`` is True, naming the argument; ``mask`` and ``sample_weight`` must have the inputs'
shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eocube.errors import EstimateError

__all__ = ["cohen_kappa", "confusion_matrix", "f1", "iou", "mae", "map_metrics", "mape",
           "precision", "r2", "recall", "regression_report", "rmse", "smape", "spearman",
           "total_relative_error", "weighted_rmse"]

_EPS = np.finfo(np.float64).eps


def _data(a: Any) -> Any:
    a = getattr(a, "data", a) if hasattr(a, "dims") else a  # xarray → its numpy/dask array
    return a if _is_dask(a) else np.asarray(a)


def _is_dask(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "dask"


def _out(x: Any) -> Any:
    return x if _is_dask(x) else float(x)


def _flat(**arrays: Any) -> list[Any]:
    """The named arrays (``None`` skipped) flattened, after checking they share one shape."""
    given = {k: _data(a) for k, a in arrays.items() if a is not None}
    shapes = {k: tuple(a.shape) for k, a in given.items()}
    if len(set(shapes.values())) > 1:
        (first, s0), *rest = shapes.items()
        bad = ", ".join(f"{k} {s}" for k, s in rest if s != s0)
        raise EstimateError(
            f"inputs have different shapes: {first} {s0}, {bad}; they must match (pass "
            "sample_weight and mask with the shape of y_true)")
    flat = [a.reshape(-1) for a in given.values()]
    lazy = [a for a in flat if _is_dask(a)]
    if lazy:
        # one chunking for all (bincount needs its weights on the labels' chunks)
        import dask.array as da

        chunks = lazy[0].chunks
        flat = [da.asarray(a).rechunk(chunks) for a in flat]
    return flat


def _weights(n_like: Any, sample_weight: Any, mask: Any) -> Any:
    w = np.ones_like(n_like, dtype="float64")
    if sample_weight is not None:
        w = w * sample_weight.astype("float64")
    if mask is not None:
        w = w * mask.astype("float64")
    return w


def _label_problem(a: np.ndarray, keep: np.ndarray | None, n_classes: int) -> str | None:
    """Why ``a`` (where ``keep``) is not a map of class labels in ``[0, n_classes)``."""
    if a.dtype == bool:
        return None if n_classes >= 2 else f"holds booleans but n_classes={n_classes}"
    v = a if keep is None else a[np.asarray(keep).astype(bool)]
    if v.size == 0:
        return None
    if v.dtype.kind == "f":
        if np.isnan(v).any():
            return ("holds NaN; leave those pixels out with mask= (e.g. "
                    "mask=~np.isnan(y_true))")
        frac = v[v != np.round(v)]
        if frac.size:
            return (f"holds non-integer values (e.g. {frac[0]:.4g}); map metrics take class "
                    "labels: threshold probabilities first (e.g. y_pred > 0.5)")
    elif v.dtype.kind not in "iu":
        return f"has dtype {v.dtype}; map metrics take integer or boolean class labels"
    lo, hi = v.min(), v.max()
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        return (f"holds label {bad:g} outside [0, {n_classes}); pass n_classes= covering "
                "every class, or leave nodata pixels out with mask=")
    return None


def _check_block(a: np.ndarray, keep: np.ndarray | None, *, name: str, n_classes: int
                 ) -> np.ndarray:
    why = _label_problem(a, keep, n_classes)
    if why is not None:
        raise EstimateError(f"{name} {why}.")
    return a


def _labels(a: Any, keep: Any, *, name: str, n_classes: int) -> Any:
    """``a`` checked to hold class labels (where ``keep``): at once for numpy, inside the
    graph (raising when computed) for dask."""
    if _is_dask(a) or _is_dask(keep):
        import functools

        import dask.array as da

        check = functools.partial(_check_block, name=name, n_classes=int(n_classes))
        if keep is None:
            return da.map_blocks(check, a, None, dtype=a.dtype)
        return da.map_blocks(check, a, keep, dtype=a.dtype)  # one chunking (see _flat)
    return _check_block(a, keep, name=name, n_classes=n_classes)


# ---- maps --------------------------------------------------------------------------------

def confusion_matrix(y_true: Any, y_pred: Any, /, *, n_classes: int = 2,
                     sample_weight: Any = None, mask: Any = None) -> Any:
    """(n_classes, n_classes) confusion matrix, rows = truth, columns = prediction.

    Labels must be integers in ``[0, n_classes)`` (integer or integral float dtype); booleans
    count as 0/1. Where ``mask`` is False anything goes (NaN, a nodata label).

    Raises
    ------
    EstimateError
        If ``y_true`` or ``y_pred`` holds NaN, a non-integer value (a probability: threshold
        it first) or a label outside ``[0, n_classes)`` where ``mask`` is True, or if
        ``sample_weight`` / ``mask`` do not have the shape of ``y_true``. With dask inputs
        the labels are checked when the result is computed.
    """
    if int(n_classes) < 1:
        raise EstimateError(f"n_classes={n_classes} must be at least 1.")
    t, p, *rest = _flat(y_true=y_true, y_pred=y_pred, sample_weight=sample_weight, mask=mask)
    sw = rest.pop(0) if sample_weight is not None else None
    m = rest.pop(0) if mask is not None else None
    t = _labels(t, m, name="y_true", n_classes=n_classes)
    p = _labels(p, m, name="y_pred", n_classes=n_classes)
    if m is not None:  # labels under the mask may be NaN or out of range: make them 0
        keep = m.astype(bool)
        t, p = np.where(keep, t, 0), np.where(keep, p, 0)
    t, p = t.astype("int64"), p.astype("int64")
    w = _weights(t, sw, m)
    idx = t * n_classes + p
    cm = np.bincount(idx, weights=w, minlength=n_classes * n_classes)
    return cm.reshape(n_classes, n_classes)


def _binary(y_true, y_pred, sample_weight, mask):
    cm = confusion_matrix(y_true, y_pred, sample_weight=sample_weight, mask=mask)
    return cm[1, 1], cm[0, 1], cm[1, 0], cm[0, 0]  # tp, fp, fn, tn


def _ratio(num: Any, den: Any) -> Any:
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def precision(y_true: Any, y_pred: Any, /, *, sample_weight: Any = None, mask: Any = None
              ) -> Any:
    """TP / (TP + FP) of the positive class (1); 0 when nothing is predicted positive."""
    tp, fp, _, _ = _binary(y_true, y_pred, sample_weight, mask)
    return _out(_ratio(tp, tp + fp))


def recall(y_true: Any, y_pred: Any, /, *, sample_weight: Any = None, mask: Any = None) -> Any:
    """TP / (TP + FN) of the positive class (1); 0 when the truth has no positive."""
    tp, _, fn, _ = _binary(y_true, y_pred, sample_weight, mask)
    return _out(_ratio(tp, tp + fn))


def f1(y_true: Any, y_pred: Any, /, *, sample_weight: Any = None, mask: Any = None) -> Any:
    """F1 = 2·TP / (2·TP + FP + FN) of the positive class (1)."""
    tp, fp, fn, _ = _binary(y_true, y_pred, sample_weight, mask)
    return _out(_ratio(2 * tp, 2 * tp + fp + fn))


def iou(y_true: Any, y_pred: Any, /, *, sample_weight: Any = None, mask: Any = None) -> Any:
    """Intersection over union (Jaccard) of the positive class: TP / (TP + FP + FN)."""
    tp, fp, fn, _ = _binary(y_true, y_pred, sample_weight, mask)
    return _out(_ratio(tp, tp + fp + fn))


def cohen_kappa(y_true: Any, y_pred: Any, /, *, n_classes: int = 2, sample_weight: Any = None,
                mask: Any = None) -> Any:
    """Cohen's kappa: (p_o − p_e) / (1 − p_e) from the confusion matrix.

    Undefined, and NaN (as scikit-learn's ``cohen_kappa_score``), where the chance agreement
    ``p_e`` is 1 — truth and prediction are both one and the same single class, so agreement
    beyond chance cannot be measured — or where no pixel is counted.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes=n_classes, sample_weight=sample_weight,
                          mask=mask)
    n = cm.sum()
    po = _ratio(np.trace(cm), n)
    pe = _ratio((cm.sum(axis=0) * cm.sum(axis=1)).sum(), n * n)
    return _out(_kappa(po, pe, n))


def _kappa(po: Any, pe: Any, n: Any) -> Any:
    # p_e = 1 (one class in both maps) or nothing counted: undefined
    undefined = (n <= 0) | (pe >= 1.0)
    return np.where(undefined, np.nan, (po - pe) / np.where(undefined, 1.0, 1.0 - pe))


def map_metrics(y_true: Any, y_pred: Any, /, *, sample_weight: Any = None, mask: Any = None
                ) -> dict[str, Any]:
    """F1, precision, recall, IoU and kappa of a binary map from one confusion matrix.

    The labels are checked as in :func:`confusion_matrix`; kappa is NaN where undefined
    (:func:`cohen_kappa`).

    With dask inputs the values are lazy; ``dask.compute(*d.values())`` computes them in one
    pass.
    """
    cm = confusion_matrix(y_true, y_pred, sample_weight=sample_weight, mask=mask)
    tp, fp, fn, tn = cm[1, 1], cm[0, 1], cm[1, 0], cm[0, 0]
    n = tp + fp + fn + tn
    po = _ratio(tp + tn, n)
    pe = _ratio((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), n * n)
    return {"f1": _out(_ratio(2 * tp, 2 * tp + fp + fn)),
            "precision": _out(_ratio(tp, tp + fp)), "recall": _out(_ratio(tp, tp + fn)),
            "iou": _out(_ratio(tp, tp + fp + fn)), "kappa": _out(_kappa(po, pe, n))}


# ---- estimates ---------------------------------------------------------------------------

def _pairs(y_true, y_pred, sample_weight, mask, *, count: bool = False):
    t, p, *rest = _flat(y_true=y_true, y_pred=y_pred, sample_weight=sample_weight, mask=mask)
    sw = rest.pop(0) if sample_weight is not None else None
    m = rest.pop(0) if mask is not None else None
    t, p = t.astype("float64"), p.astype("float64")
    w = _weights(t, sw, m)
    ok = ~(np.isnan(t) | np.isnan(p))
    if m is not None:
        ok = ok & m.astype(bool)
    w = np.where(ok, w, 0.0)
    out = (np.where(ok, t, 0.0), np.where(ok, p, 0.0), w)
    return (*out, ok.sum()) if count else out


def _wmean(x, w):
    return (x * w).sum() / w.sum()


def mae(y_true: Any, y_pred: Any, /, *, sample_weight: Any = None, mask: Any = None) -> Any:
    """Mean absolute error."""
    t, p, w = _pairs(y_true, y_pred, sample_weight, mask)
    return _out(_wmean(np.abs(p - t), w))


def rmse(y_true: Any, y_pred: Any, /, *, mask: Any = None) -> Any:
    """Root mean squared error."""
    return weighted_rmse(y_true, y_pred, sample_weight=None, mask=mask)


def weighted_rmse(y_true: Any, y_pred: Any, /, *, sample_weight: Any, mask: Any = None) -> Any:
    """√(Σ w (ŷ − y)² / Σ w): RMSE with each pair weighted (by area, population, stock …)."""
    t, p, w = _pairs(y_true, y_pred, sample_weight, mask)
    return _out(np.sqrt(_wmean((p - t) ** 2, w)))


def mape(y_true: Any, y_pred: Any, /, *, sample_weight: Any = None, mask: Any = None) -> Any:
    """Mean absolute percentage error as a fraction: mean(|ŷ − y| / max(|y|, ε))."""
    t, p, w = _pairs(y_true, y_pred, sample_weight, mask)
    return _out(_wmean(np.abs(p - t) / np.maximum(np.abs(t), _EPS), w))


def smape(y_true: Any, y_pred: Any, /, *, sample_weight: Any = None, mask: Any = None) -> Any:
    """Symmetric MAPE as a fraction in [0, 2]: mean(2|ŷ − y| / (|y| + |ŷ|)), 0 where both are 0."""
    t, p, w = _pairs(y_true, y_pred, sample_weight, mask)
    den = np.abs(t) + np.abs(p)
    return _out(_wmean(np.where(den > 0, 2 * np.abs(p - t) / np.where(den > 0, den, 1.0), 0.0),
                       w))


def r2(y_true: Any, y_pred: Any, /, *, sample_weight: Any = None, mask: Any = None) -> Any:
    """Coefficient of determination 1 − SS_res / SS_tot (weighted as scikit-learn does).

    As scikit-learn's ``r2_score``: a constant truth gives 1.0 when predicted exactly and 0.0
    otherwise (SS_tot = 0); fewer than two pairs (after the mask and NaN pairs are left out)
    give NaN, an empty input included.
    """
    t, p, w, n = _pairs(y_true, y_pred, sample_weight, mask, count=True)
    wsum = w.sum()
    mean = (w * t).sum() / np.where(wsum > 0, wsum, 1.0)
    ss_res = (w * (t - p) ** 2).sum()
    ss_tot = (w * (t - mean) ** 2).sum()
    r = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                 np.where(ss_res > 0, 0.0, 1.0))
    return _out(np.where(n < 2, np.nan, r))


def total_relative_error(y_true: Any, y_pred: Any, /, *, mask: Any = None) -> Any:
    """(Σŷ − Σy) / Σy: the signed error of the total, as a fraction of the true total."""
    t, p, w = _pairs(y_true, y_pred, None, mask)
    st = (w * t).sum()
    return _out((w * p).sum() / st - 1.0)


def spearman(y_true: Any, y_pred: Any, /, *, mask: Any = None) -> Any:
    """Spearman's rank correlation ρ (average ranks for ties), NaN pairs left out.

    Ranks need every value at once: with dask inputs the result is a lazy 0-d array whose task
    gathers the (flattened) inputs.
    """
    t, p, *rest = _flat(y_true=y_true, y_pred=y_pred, mask=mask)
    m = rest[0] if rest else None
    if _is_dask(t) or _is_dask(p) or _is_dask(m):
        import dask
        import dask.array as da

        return da.from_delayed(dask.delayed(_spearman_np)(t, p, m), shape=(), dtype="float64")
    return _spearman_np(t, p, m)


def _spearman_np(t: np.ndarray, p: np.ndarray, m: np.ndarray | None) -> float:
    from scipy.stats import rankdata

    t, p = np.asarray(t, "float64"), np.asarray(p, "float64")
    ok = ~(np.isnan(t) | np.isnan(p))
    if m is not None:
        ok &= np.asarray(m).astype(bool)
    rt, rp = rankdata(t[ok]), rankdata(p[ok])
    rt, rp = rt - rt.mean(), rp - rp.mean()
    den = np.sqrt((rt * rt).sum() * (rp * rp).sum())
    return float((rt * rp).sum() / den) if den > 0 else float("nan")


def regression_report(y_true: Any, y_pred: Any, /) -> dict[str, float]:
    """The estimates' report of a regression: MAE, RMSE, MAPE (in %, over the non-zero truths:
    a community with no residents has no percentage error), SMAPE (in %) and R². Eager.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    nz = t != 0
    return {
        "MAE": float(mae(t, p)),
        "RMSE": float(rmse(t, p)),
        "MAPE": 100 * float(mape(t, p, mask=nz)) if nz.any() else float("nan"),
        "SMAPE": 100 * float(smape(t, p)),
        "R2": float(r2(t, p)),
    }
