"""Map and estimate metrics agree with scikit-learn / scipy, on numpy and lazily on dask."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from sklearn import metrics as skm

from eocube.estimates import metrics as m

SEEDS = [0, 1, 2]


def _maps(seed, n=500):
    rng = np.random.default_rng(seed)
    t = rng.random(n) < 0.3
    p = np.where(rng.random(n) < 0.8, t, rng.random(n) < 0.5)
    w = rng.uniform(0.1, 3, n)
    return t.astype("uint8"), p.astype("uint8"), w


def _values(seed, n=300):
    rng = np.random.default_rng(seed)
    t = rng.lognormal(3, 1, n)
    p = t * rng.lognormal(0, 0.3, n) + rng.normal(0, 2, n)
    return t, p, rng.uniform(0.1, 3, n)


MAP_PAIRS = [(m.f1, skm.f1_score), (m.precision, skm.precision_score),
             (m.recall, skm.recall_score), (m.iou, skm.jaccard_score),
             (m.cohen_kappa, skm.cohen_kappa_score)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("ours", "theirs"), MAP_PAIRS, ids=lambda f: getattr(f, "__name__", ""))
def test_map_metrics_agree_with_sklearn(ours, theirs, seed):
    t, p, w = _maps(seed)
    assert ours(t, p) == pytest.approx(theirs(t, p), abs=1e-12)
    assert ours(t, p, sample_weight=w) == pytest.approx(theirs(t, p, sample_weight=w), abs=1e-12)


def test_map_metrics_on_2d_maps_with_a_mask():
    t, p, _ = _maps(3, 400)
    t2, p2 = t.reshape(20, 20), p.reshape(20, 20)
    valid = np.ones((20, 20), bool)
    valid[:, :5] = False
    d = m.map_metrics(t2, p2, mask=valid)
    ref = skm.f1_score(t2[:, 5:].ravel(), p2[:, 5:].ravel())
    assert d["f1"] == pytest.approx(ref)
    assert d["kappa"] == pytest.approx(skm.cohen_kappa_score(t2[:, 5:].ravel(), p2[:, 5:].ravel()))


def test_multiclass_kappa_and_confusion_matrix():
    rng = np.random.default_rng(4)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert m.cohen_kappa(t, p, n_classes=4) == pytest.approx(skm.cohen_kappa_score(t, p))
    np.testing.assert_array_equal(m.confusion_matrix(t, p, n_classes=4),
                                  skm.confusion_matrix(t, p, labels=range(4)))


REG_PAIRS = [(m.mae, skm.mean_absolute_error),
             (m.mape, skm.mean_absolute_percentage_error), (m.r2, skm.r2_score)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("ours", "theirs"), REG_PAIRS, ids=lambda f: getattr(f, "__name__", ""))
def test_estimate_metrics_agree_with_sklearn(ours, theirs, seed):
    t, p, w = _values(seed)
    assert ours(t, p) == pytest.approx(theirs(t, p), rel=1e-10)
    assert ours(t, p, sample_weight=w) == pytest.approx(theirs(t, p, sample_weight=w), rel=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_rmse_weighted_rmse_spearman_smape_total(seed):
    t, p, w = _values(seed)
    assert m.rmse(t, p) == pytest.approx(np.sqrt(skm.mean_squared_error(t, p)))
    assert m.weighted_rmse(t, p, sample_weight=w) == pytest.approx(
        np.sqrt(skm.mean_squared_error(t, p, sample_weight=w)))
    assert m.spearman(t, p) == pytest.approx(spearmanr(t, p).statistic)
    assert m.smape(t, p) == pytest.approx(np.mean(2 * np.abs(p - t) / (np.abs(t) + np.abs(p))))
    assert m.total_relative_error(t, p) == pytest.approx(p.sum() / t.sum() - 1)


def test_spearman_with_ties_and_nan_pairs_left_out():
    t = np.array([1, 2, 2, 3, np.nan, 5, 5, 7.0])
    p = np.array([2, 1, 1, 4, 3, np.nan, 6, 9.0])
    ok = ~np.isnan(t) & ~np.isnan(p)
    assert m.spearman(t, p) == pytest.approx(spearmanr(t[ok], p[ok]).statistic)
    assert m.mae(t, p) == pytest.approx(skm.mean_absolute_error(t[ok], p[ok]))


class _Counter:
    def __init__(self):
        self.n = 0

    def __call__(self, dsk, keys, **kwargs):
        self.n += 1
        return dask.get(dsk, keys, **kwargs)


ALL = [m.f1, m.precision, m.recall, m.iou, m.cohen_kappa, m.mae, m.rmse, m.mape, m.smape, m.r2,
       m.spearman, m.total_relative_error]


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_dask_inputs_stay_lazy_and_agree_with_numpy(fn):
    if fn in (m.f1, m.precision, m.recall, m.iou, m.cohen_kappa):
        t, p, _ = _maps(5, 600)
    else:
        t, p, _ = _values(5, 600)
    dt, dp = da.from_array(t, chunks=100), da.from_array(p, chunks=100)
    counter = _Counter()
    with dask.config.set(scheduler=counter):
        lazy = fn(dt, dp)
        assert counter.n == 0, "the metric computed its input"
        assert isinstance(lazy, da.Array) and lazy.shape == ()
        value = float(lazy.compute())
    assert value == pytest.approx(fn(t, p), rel=1e-10)


def test_weighted_rmse_lazy_with_dask_weights_and_xarray_inputs():
    t, p, w = _values(6)
    xt = xr.DataArray(da.from_array(t, chunks=50), dims="zone")
    xp = xr.DataArray(p, dims="zone")
    lazy = m.weighted_rmse(xt, xp, sample_weight=da.from_array(w, chunks=50))
    assert isinstance(lazy, da.Array)
    assert float(lazy) == pytest.approx(np.sqrt(skm.mean_squared_error(t, p, sample_weight=w)))


def test_map_metrics_on_dask_compute_in_one_pass():
    t, p, _ = _maps(7, 1000)
    d = m.map_metrics(da.from_array(t.reshape(40, 25), chunks=10),
                      da.from_array(p.reshape(40, 25), chunks=10))
    values = dict(zip(d, dask.compute(*d.values()), strict=True))
    assert values["f1"] == pytest.approx(skm.f1_score(t, p))
    assert values["iou"] == pytest.approx(skm.jaccard_score(t, p))


def test_mismatched_shapes_are_refused():
    from eocube.errors import EstimateError

    with pytest.raises(EstimateError, match="different shapes"):
        m.f1(np.zeros(3), np.zeros(4))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_f1_iou_kappa_property(pairs):
    t = np.array([a for a, _ in pairs], dtype="uint8")
    p = np.array([b for _, b in pairs], dtype="uint8")
    assert m.f1(t, p) == pytest.approx(skm.f1_score(t, p, zero_division=0.0))
    assert m.iou(t, p) == pytest.approx(skm.jaccard_score(t, p, zero_division=0.0))
    k_ref = skm.cohen_kappa_score(t, p) if len(set(t) | set(p)) > 1 else np.nan
    if np.isfinite(k_ref):
        assert m.cohen_kappa(t, p) == pytest.approx(k_ref, abs=1e-9)
    else:  # one class in both maps: p_e = 1, undefined (scikit-learn's NaN)
        assert np.isnan(m.cohen_kappa(t, p))


# ---- validation and undefined cases (issue 16.10) -------------------------------------------

def test_map_metrics_refuse_probabilities_nan_and_labels_out_of_range_naming_the_argument():
    from eocube.errors import EstimateError

    t, p, _ = _maps(8)
    prob = np.where(p == 1, 0.8, 0.3)  # probabilities: once cast to int silently, F1 0.0
    with pytest.raises(EstimateError, match=r"y_pred holds non-integer values \(e\.g\. 0\.3\).*"
                                            r"threshold probabilities first"):
        m.f1(t, prob)
    with pytest.raises(EstimateError, match=r"y_true holds NaN.*mask="):
        m.map_metrics(np.where(np.arange(t.size) == 3, np.nan, t), p)
    with pytest.raises(EstimateError, match=r"y_true holds label 255 outside \[0, 2\)"):
        m.iou(np.where(np.arange(t.size) == 3, 255, t).astype("uint8"), p)
    with pytest.raises(EstimateError, match=r"y_pred holds label 4 outside \[0, 4\)"):
        m.cohen_kappa(t, p * 4, n_classes=4)
    with pytest.raises(EstimateError, match=r"y_pred holds label -1"):
        m.confusion_matrix(t, p.astype(int) - 1)
    # thresholded probabilities, integral floats and nodata under the mask are fine
    assert m.f1(t, prob > 0.5) == pytest.approx(skm.f1_score(t, p))
    assert m.f1(t.astype(float), p.astype(float)) == pytest.approx(skm.f1_score(t, p))
    tn = np.where(np.arange(t.size) < 10, np.nan, t)
    tn255 = np.where(np.arange(t.size) < 10, 255, t)
    keep = np.arange(t.size) >= 10
    for truth in (tn, tn255):
        assert m.f1(truth, p, mask=keep) == pytest.approx(skm.f1_score(t[keep], p[keep]))


def test_dask_map_labels_are_checked_when_computed():
    from eocube.errors import EstimateError

    t, p, _ = _maps(9)
    lazy = m.f1(da.from_array(t, chunks=100), da.from_array(np.where(p == 1, 0.9, 0.1),
                                                            chunks=100))
    with pytest.raises(EstimateError, match="y_pred holds non-integer values"):
        lazy.compute()


def test_r2_constant_truth_and_empty_input_follow_sklearn():
    import warnings

    const = np.full(5, 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert m.r2(const, const) == skm.r2_score(const, const) == 1.0
        off = const + np.r_[0, 0, 1, 0, 0]
        assert m.r2(const, off) == skm.r2_score(const, off) == 0.0
        assert np.isnan(m.r2(np.array([2.0]), np.array([2.0])))
        assert np.isnan(skm.r2_score([2.0], [2.0]))
    assert np.isnan(m.r2(np.zeros(0), np.zeros(0)))  # the docstring's promise
    t, p, _ = _values(1, 50)
    assert np.isnan(m.r2(t, p, mask=np.arange(50) == 7))  # one pair left: undefined
    assert np.isnan(m.r2(np.full(4, np.nan), p[:4]))
    lazy = m.r2(da.from_array(const, chunks=2), da.from_array(const, chunks=2))
    assert float(lazy.compute()) == 1.0


def test_kappa_is_nan_where_chance_agreement_is_one():
    import warnings

    ones = np.ones(20, "uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = skm.cohen_kappa_score(ones, ones)
    assert np.isnan(ref)
    assert np.isnan(m.cohen_kappa(ones, ones)) and np.isnan(m.map_metrics(ones, ones)["kappa"])
    assert np.isnan(m.cohen_kappa(ones, ones, mask=np.zeros(20, bool)))  # nothing counted
    # one class in the truth but not in the prediction: p_e < 1, kappa defined (0 here)
    p = ones.copy()
    p[:5] = 0
    assert m.cohen_kappa(ones, p) == pytest.approx(skm.cohen_kappa_score(ones, p))


def test_mask_or_weights_of_the_wrong_shape_are_named():
    from eocube.errors import EstimateError

    t, p, w = _maps(10, 400)
    t2, p2 = t.reshape(20, 20), p.reshape(20, 20)
    with pytest.raises(EstimateError, match=r"y_true \(20, 20\), mask \(20, 19\)"):
        m.map_metrics(t2, p2, mask=np.ones((20, 19), bool))
    with pytest.raises(EstimateError, match=r"y_true \(400,\), sample_weight \(399,\)"):
        m.mae(t.astype(float), p.astype(float), sample_weight=w[:-1])
    with pytest.raises(EstimateError, match=r"mask \(3,\)"):
        m.spearman(t.astype(float), p.astype(float), mask=np.ones(3, bool))


def test_dask_map_metrics_with_nodata_under_a_lazy_mask():
    t, p, _ = _maps(11, 600)
    keep = np.arange(600) >= 20
    tn = np.where(keep, t, np.nan)
    counter = _Counter()
    with dask.config.set(scheduler=counter):
        lazy = m.map_metrics(da.from_array(tn, chunks=100), da.from_array(p, chunks=150),
                             mask=da.from_array(keep, chunks=120))
        assert counter.n == 0
        values = dict(zip(lazy, dask.compute(*lazy.values()), strict=True))
    assert values["f1"] == pytest.approx(skm.f1_score(t[keep], p[keep]))
    assert values["kappa"] == pytest.approx(skm.cohen_kappa_score(t[keep], p[keep]))
