"""TOPSIS and AHP (eocube.estimates.mcda) against hand-worked values and pymcdm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eocube.errors import EstimateError
from eocube.estimates.mcda import ahp_weights, topsis


def _pymcdm_topsis(x, w, benefit):
    pymcdm = pytest.importorskip("pymcdm")
    from pymcdm import normalizations

    method = pymcdm.methods.TOPSIS(normalization_function=normalizations.vector_normalization)
    return method(x, np.asarray(w, float) / np.sum(w), np.where(benefit, 1, -1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topsis_equals_pymcdm(seed):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0, 1, (40, 4))
    w = rng.uniform(0.1, 1, 4)
    benefit = np.array([True, True, False, True])
    ours = topsis(x, weights=w, benefit=benefit)["closeness"].to_numpy()
    np.testing.assert_allclose(ours, _pymcdm_topsis(x, w, benefit), rtol=1e-12)


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e300, 1e-300])
def test_topsis_does_not_overflow_or_underflow(scale):
    # squares of 1e±200 overflow to inf or underflow to 0: every closeness became 0.5
    x = np.array([[3.0, 4.0], [4.0, 3.0], [0.0, 5.0]])
    want = topsis(x, weights=[0.6, 0.4])["closeness"].to_numpy()
    got = topsis(x * scale, weights=[0.6, 0.4])["closeness"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got, [0.73312, 0.80925, 0.19075], atol=5e-5)
    # one column tiny, one huge: each is normalised on its own
    mixed = topsis(x * np.array([scale, 1.0 / scale]), weights=[0.6, 0.4])["closeness"]
    np.testing.assert_allclose(mixed, want, rtol=1e-12)


def test_topsis_benefit_of_the_wrong_length_is_named():
    with pytest.raises(EstimateError, match="benefit must be 2 booleans"):
        topsis(np.ones((3, 2)), weights=[1, 1], benefit=[True])


@pytest.mark.parametrize("bad", [np.float64(3.0), np.array(2.0), np.ones(3), np.ones((2, 3)),
                                 np.ones((0, 0))], ids=["scalar", "0-d", "1-d", "2x3", "0x0"])
def test_ahp_refuses_a_non_square_input_clearly(bad):
    # a 0-d input raised IndexError (shape[0] of a scalar)
    with pytest.raises(EstimateError, match=r"pairwise must be a square n × n matrix"):
        ahp_weights(bad)


def test_ahp_consistent_matrix_and_a_single_criterion():
    # a consistent matrix: the eigenvector is the generating weights exactly
    w = np.array([0.5, 0.25, 0.15, 0.1])
    r = ahp_weights(pd.DataFrame(w[:, None] / w[None, :], index=list("abcd")))
    np.testing.assert_allclose(r.weights, w, rtol=1e-12)
    one = ahp_weights(np.array([[1.0]]))
    assert one.weights.tolist() == [1.0] and one.cr == 0.0
