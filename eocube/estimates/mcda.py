"""Multi-criteria decision analysis for the estimates: TOPSIS (the external environment score
of DEFF) and AHP (the criteria weights of roof greening).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from eocube.errors import EstimateError

__all__ = ["RANDOM_INDEX", "AHPResult", "ahp_weights", "topsis"]


def topsis(matrix: np.ndarray | pd.DataFrame, /, *, weights: Sequence[float] | np.ndarray,
           benefit: Sequence[bool] | np.ndarray | None = None) -> pd.DataFrame:
    """TOPSIS closeness of each alternative (row) to the ideal solution.

    Columns are vector-normalised (``x / √Σx²``, computed as ``s·√Σ(x/s)²`` with ``s`` the
    column's largest ``|x|``, so that values near 1e±200 neither overflow nor underflow when
    squared; an all-zero column stays 0), multiplied by
    the weights; the ideal vector takes each column's best value (max for a benefit
    criterion, min for a cost), the anti-ideal the worst; ``D⁺`` and ``D⁻`` are the weighted
    Euclidean distances to them and the closeness ``D⁻ / (D⁺ + D⁻)`` lies in [0, 1]. Where
    ``D⁺ + D⁻ = 0`` (every alternative identical) the closeness is 0.5 — documented fallback.

    Parameters
    ----------
    matrix
        Alternatives × criteria, finite.
    weights
        One non-negative weight per criterion (normalised to sum 1).
    benefit
        Per criterion, True where larger is better (default all True).

    Returns
    -------
    pandas.DataFrame
        ``d_plus``, ``d_minus``, ``closeness``, indexed like ``matrix`` rows.

    Examples
    --------
    >>> topsis(np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0]]), weights=[0.5, 0.5])[
    ...     "closeness"].round(3).tolist()
    [0.5, 0.5, 1.0]
    """
    index = matrix.index if isinstance(matrix, pd.DataFrame) else None
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise EstimateError(f"topsis needs a non-empty 2-D matrix, got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise EstimateError("topsis: the decision matrix has NaN or infinite values; fill or "
                            "drop those alternatives first.")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (x.shape[1],) or np.any(w < 0) or not w.sum() > 0:
        raise EstimateError(f"weights must be {x.shape[1]} non-negative values with a positive "
                            f"sum, got {w.tolist()}.")
    w = w / w.sum()
    ben = np.ones(x.shape[1], bool) if benefit is None else np.asarray(benefit, dtype=bool)
    if ben.shape != (x.shape[1],):
        raise EstimateError(f"benefit must be {x.shape[1]} booleans (one per criterion), got "
                            f"{ben.tolist()}.")
    # scaled norm: divide by the largest |x| before squaring (1e200² overflows, 1e-200² is 0)
    scale = np.abs(x).max(axis=0)
    xs = np.divide(x, scale, out=np.zeros_like(x), where=scale > 0)
    norm = np.sqrt((xs**2).sum(axis=0))
    v = np.divide(xs, norm, out=np.zeros_like(x), where=norm > 0) * w
    best = np.where(ben, v.max(axis=0), v.min(axis=0))
    worst = np.where(ben, v.min(axis=0), v.max(axis=0))
    d_plus = np.sqrt(((v - best) ** 2).sum(axis=1))
    d_minus = np.sqrt(((v - worst) ** 2).sum(axis=1))
    tot = d_plus + d_minus
    close = np.divide(d_minus, tot, out=np.full_like(tot, 0.5), where=tot > 0)
    return pd.DataFrame({"d_plus": d_plus, "d_minus": d_minus, "closeness": close},
                        index=index)


#: Saaty's random consistency index by matrix order (n = 1, 2 are always consistent).
RANDOM_INDEX = {1: 0.0, 2: 0.0, 3: 0.52, 4: 0.89, 5: 1.12, 6: 1.26, 7: 1.36, 8: 1.41,
                9: 1.46, 10: 1.49}


@dataclasses.dataclass(frozen=True)
class AHPResult:
    """Principal-eigenvector weights and the consistency of a pairwise-comparison matrix."""

    weights: pd.Series
    lambda_max: float
    ci: float
    ri: float
    cr: float


def ahp_weights(pairwise: pd.DataFrame | np.ndarray, /, *, max_cr: float = 0.1,
                names: Sequence[str] | None = None) -> AHPResult:
    """AHP weights: the principal eigenvector of a reciprocal pairwise-comparison matrix.

    ``λ_max`` is its eigenvalue, ``CI = (λ_max − n)/(n − 1)``, ``CR = CI/RI(n)`` with Saaty's
    random index (:data:`RANDOM_INDEX`). A matrix with ``CR ≥ max_cr`` is refused.

    Parameters
    ----------
    pairwise
        n × n positive matrix with ``a_ji = 1/a_ij`` and a unit diagonal; a DataFrame's index
        names the criteria.
    max_cr
        The consistency threshold (0.1 by Saaty).
    names
        Criteria names for an array input.

    Returns
    -------
    AHPResult

    Examples
    --------
    >>> r = ahp_weights(np.array([[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]]))
    >>> [round(w, 3) for w in r.weights], round(r.lambda_max, 3)
    ([0.637, 0.258, 0.105], 3.039)
    """
    if isinstance(pairwise, pd.DataFrame):
        names = list(pairwise.index)
    a = np.asarray(pairwise, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise EstimateError(f"pairwise must be a square n × n matrix of judgements (n ≥ 1), "
                            f"got shape {a.shape}; pass e.g. [[1, 3], [1/3, 1]].")
    n = a.shape[0]
    if n > max(RANDOM_INDEX):
        raise EstimateError(f"AHP with {n} criteria has no random index here (n ≤ "
                            f"{max(RANDOM_INDEX)}); group the criteria.")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise EstimateError("the pairwise matrix must hold positive finite judgements.")
    if not np.allclose(a * a.T, 1.0, rtol=1e-3) or not np.allclose(np.diag(a), 1.0):
        i, j = np.argwhere(~np.isclose(a * a.T, 1.0, rtol=1e-3))[0] if not np.allclose(
            a * a.T, 1.0, rtol=1e-3) else (0, 0)
        raise EstimateError(
            f"the pairwise matrix is not reciprocal: a[{i},{j}]·a[{j},{i}] = "
            f"{a[i, j] * a[j, i]:.4g}, must be 1 (and the diagonal 1). Fill the lower "
            "triangle with 1/upper.")
    vals, vecs = np.linalg.eig(a)
    k = int(np.argmax(vals.real))
    lam = float(vals[k].real)
    w = np.abs(vecs[:, k].real)
    w = w / w.sum()
    ci = (lam - n) / (n - 1) if n > 2 else 0.0
    ri = RANDOM_INDEX[n]
    cr = ci / ri if ri > 0 else 0.0
    if cr >= max_cr:
        raise EstimateError(
            f"the pairwise comparisons are inconsistent: CR = {cr:.3f} ≥ {max_cr} "
            f"(λ_max = {lam:.3f}, CI = {ci:.3f}, RI = {ri}). Revise the judgements that "
            "contradict each other.")
    idx = list(names) if names is not None else list(range(n))
    return AHPResult(weights=pd.Series(w, index=idx, name="weight"), lambda_max=lam, ci=ci,
                     ri=ri, cr=cr)
