"""Natural-breaks classes (Fisher–Jenks) and the seeded class-stratified train/test split."""

from __future__ import annotations

import numpy as np

from eocube.errors import EstimateError

__all__ = ["jenks_breaks", "stratified_split"]


def jenks_breaks(values: np.ndarray, /, *, n_classes: int) -> np.ndarray:
    """Fisher–Jenks natural breaks: the optimal 1-D partition minimising within-class SSD.

    Exact dynamic programming over the sorted values, O(k·n²) time and O(k·n) memory.

    Parameters
    ----------
    values
        1-D finite values.
    n_classes
        Number of classes ``k``; at most the number of distinct values.

    Returns
    -------
    numpy.ndarray
        ``k + 1`` break values: the minimum, then the upper bound of each class (the last is
        the maximum), as in ``jenkspy``.

    Examples
    --------
    >>> jenks_breaks(np.array([1, 2, 3, 10, 11, 12, 20, 21, 22]), n_classes=3).tolist()
    [1.0, 3.0, 12.0, 22.0]
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise EstimateError("jenks_breaks needs a non-empty array of finite values.")
    k = int(n_classes)
    n_distinct = np.unique(x).size
    if k < 1 or k > n_distinct:
        raise EstimateError(
            f"n_classes={n_classes} must lie in [1, {n_distinct}] (the number of distinct "
            "values); lower n_classes.")
    n = x.size
    s1 = np.r_[0.0, np.cumsum(x)]
    s2 = np.r_[0.0, np.cumsum(x * x)]

    def ssd(i: np.ndarray, j: int) -> np.ndarray:
        # sum of squared deviations of x[i:j] (half-open), for an array of starts i
        m = j - i
        s = s1[j] - s1[i]
        return (s2[j] - s2[i]) - s * s / m

    inf = np.inf
    cost = np.full((k + 1, n + 1), inf)
    arg = np.zeros((k + 1, n + 1), dtype=np.int64)
    cost[0, 0] = 0.0
    for c in range(1, k + 1):
        for j in range(c, n + 1):
            i = np.arange(c - 1, j)  # start of the last class
            tot = cost[c - 1, i] + ssd(i, j)
            best = int(np.argmin(tot))
            cost[c, j] = tot[best]
            arg[c, j] = i[best]
    uppers = []
    j = n
    for c in range(k, 0, -1):
        uppers.append(x[j - 1])
        j = arg[c, j]
    return np.array([x[0], *uppers[::-1]])


def stratified_split(values: np.ndarray, /, *, n_classes: int = 5, test_size: float = 0.25,
                     seed: int = 0) -> np.ndarray:
    """A seeded train/test split stratified by natural-breaks class of ``values``.

    Within each class, ``round(test_size · n_class)`` members chosen at random go to the test
    set (a class of one member stays in training).

    Parameters
    ----------
    values
        The stratifying variable (community population).
    n_classes
        Natural-breaks classes; lowered to the number of distinct values if larger.
    test_size
        Share of each class held out, in (0, 1).
    seed
        Seed of the generator.

    Returns
    -------
    numpy.ndarray
        Boolean mask, True for the test set.
    """
    v = np.asarray(values, dtype=np.float64)
    if not 0 < test_size < 1:
        raise EstimateError(f"test_size={test_size} must lie in (0, 1).")
    if v.size < 2:
        raise EstimateError(f"need at least 2 values to split, got {v.size}.")
    k = min(int(n_classes), np.unique(v).size)
    breaks = jenks_breaks(v, n_classes=k)
    cls = np.clip(np.searchsorted(breaks[1:-1], v, side="left"), 0, k - 1)
    rng = np.random.default_rng(seed)
    test = np.zeros(v.size, dtype=bool)
    for c in range(k):
        idx = np.flatnonzero(cls == c)
        n_test = int(round(test_size * idx.size)) if idx.size > 1 else 0
        if n_test:
            test[rng.choice(idx, size=n_test, replace=False)] = True
    return test
