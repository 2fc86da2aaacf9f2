from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eocube.errors import EstimateError
from eocube.estimates.split import jenks_breaks, stratified_split


def _brute_ssd(x: np.ndarray, k: int) -> float:
    x = np.sort(x)
    best = np.inf
    for cuts in itertools.combinations(range(1, x.size), k - 1):
        parts = np.split(x, cuts)
        best = min(best, sum(((p - p.mean()) ** 2).sum() for p in parts))
    return best


def test_jenks_known_groups():
    x = np.array([22, 1, 2, 3, 10, 11, 12, 20, 21])
    assert jenks_breaks(x, n_classes=3).tolist() == [1, 3, 12, 22]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=4, max_size=9), st.integers(2, 3))
def test_jenks_is_optimal(values, k):
    x = np.asarray(values, dtype=float)
    if np.unique(x).size < k:
        return
    b = jenks_breaks(x, n_classes=k)
    cls = np.searchsorted(b[1:-1], np.sort(x), side="left")
    ssd = sum(((g - g.mean()) ** 2).sum() for g in (np.sort(x)[cls == c] for c in range(k))
              if g.size)
    assert ssd == pytest.approx(_brute_ssd(x, k), abs=1e-9)


def test_jenks_errors():
    with pytest.raises(EstimateError, match="n_classes=5"):
        jenks_breaks(np.array([1.0, 1.0, 2.0]), n_classes=5)
    with pytest.raises(EstimateError, match="finite"):
        jenks_breaks(np.array([1.0, np.nan]), n_classes=1)


def test_stratified_split_share_and_seed():
    rng = np.random.default_rng(3)
    pop = rng.lognormal(7, 1, 200)
    a = stratified_split(pop, seed=1)
    assert a.sum() == pytest.approx(50, abs=3)
    assert np.array_equal(a, stratified_split(pop, seed=1))
    assert not np.array_equal(a, stratified_split(pop, seed=2))
    # each natural-breaks class is split about 3:1
    b = jenks_breaks(pop, n_classes=5)
    cls = np.searchsorted(b[1:-1], pop, side="left")
    for c in range(5):
        n = (cls == c).sum()
        if n > 1:
            assert a[cls == c].sum() == round(0.25 * n)
