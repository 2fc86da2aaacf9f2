"""The trivial baselines (eocube.models.simple_baselines) on hand-made data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from eocube.errors import ConfigError
from eocube.models.simple_baselines import (
    PixelLogistic,
    ThresholdRule,
    baseline_features,
    best_f1_threshold,
    fit_pixel_logistic,
    fit_stock_intensity,
    fit_threshold_rule,
    post_classification,
    volume_stock,
)


def _scene(seed: int, n: int = 60) -> tuple[xr.Dataset, np.ndarray]:
    """Built pixels: brighter SWIR than NIR and strong VV; vegetation the reverse; noisy."""
    rng = np.random.default_rng(seed)
    built = rng.random((n, n)) < 0.3
    nir = np.where(built, 0.18, 0.30) + rng.normal(0, 0.03, (n, n))
    swir = np.where(built, 0.25, 0.18) + rng.normal(0, 0.03, (n, n))
    vv = 10 ** (np.where(built, -3.0, -12.0) / 10 + rng.normal(0, 0.3, (n, n)))
    ds = xr.Dataset({"B08": (("y", "x"), nir), "B11": (("y", "x"), swir),
                     "vv": (("y", "x"), vv)})
    return ds, built.astype("uint8")


def _f1(truth: np.ndarray, pred: np.ndarray) -> float:
    t, p = truth.astype(bool), pred.astype(bool)
    tp = (t & p).sum()
    return 2 * tp / max(t.sum() + p.sum(), 1)


def test_best_f1_threshold_equals_brute_force():
    rng = np.random.default_rng(0)
    v = np.round(rng.normal(0, 1, 300), 1)  # ties on purpose
    y = (v + rng.normal(0, 0.7, 300)) > 0.5
    t, f1 = best_f1_threshold(v, y)
    brute = max(_f1(y, v > c) for c in np.unique(v) - 1e-9)
    assert f1 == pytest.approx(brute)
    assert _f1(y, v > t) == pytest.approx(f1)
    # below-threshold rules: the same split of -v
    t2, f2 = best_f1_threshold(-v, y, above=False)
    assert f2 == pytest.approx(f1) and t2 == pytest.approx(-t)


def test_logistic_learns_the_bands_and_generalises():
    train = [_scene(s) for s in (0, 1)]
    m = fit_pixel_logistic([d for d, _ in train], [y for _, y in train],
                           bands=["B08", "B11", "vv"], n_samples=4000, seed=0)
    assert m.transforms == ("identity", "identity", "db")
    # built-up: NIR down, SWIR and VV up
    assert m.coef[0] < 0 < m.coef[1] and m.coef[2] > 0
    ds, y = _scene(2)
    p = m.probability(ds)
    assert p.shape == y.shape and np.all((p >= 0) & (p <= 1))
    assert _f1(y, p > 0.5) > 0.95
    # a wrong sign (the mutation a test must catch) loses most of it
    flipped = PixelLogistic(m.bands, m.transforms, m.mean, m.std, -m.coef, m.intercept)
    assert _f1(y, flipped.probability(ds) > 0.5) < 0.5


def test_threshold_rules_fitted_on_training_cities():
    train = [_scene(s) for s in (0, 1)]
    vv = fit_threshold_rule([d for d, _ in train], [y for _, y in train], kind="vv_db")
    assert -12.0 < vv.threshold < -3.0 and vv.label.startswith("VV (dB) > ")
    nd = fit_threshold_rule([d for d, _ in train], [y for _, y in train], kind="ndbi")
    ds, y = _scene(2)
    assert _f1(y, vv.apply(ds)) > 0.85  # 9 dB apart, 3 dB of noise each side
    assert _f1(y, nd.apply(ds)) > 0.8
    with np.errstate(invalid="ignore"):
        assert np.array_equal(nd.apply(ds), baseline_features(ds, kind="ndbi") > nd.threshold)
    lo = ThresholdRule(kind="ndbi", threshold=0.0, above=False)
    assert np.array_equal(lo.apply(ds), baseline_features(ds, kind="ndbi") < 0.0)
    with pytest.raises(ConfigError, match="needs band 'vv'"):
        baseline_features(ds.drop_vars("vv"), kind="vv_db")


def test_post_classification_and_stock():
    a = np.array([[0, 1], [1, 0]])
    b = np.array([[1, 1], [0, 0]])
    assert post_classification(a, b).tolist() == [[True, False], [False, False]]
    k = fit_stock_intensity(np.array([100.0, 300.0, 0.0]), np.array([50.0, 50.0, 7.0]))
    assert k == pytest.approx(0.25)  # 100 t over 400 m³; the zero-volume building ignored
    np.testing.assert_allclose(volume_stock(np.array([4.0, 8.0]), intensity_t_per_m3=k),
                               [1.0, 2.0])
    with pytest.raises(ConfigError, match="positive volume"):
        fit_stock_intensity(np.zeros(2), np.ones(2))


def test_logistic_refuses_one_class():
    ds, y = _scene(0)
    with pytest.raises(ConfigError, match="one class only"):
        fit_pixel_logistic([ds], [np.zeros_like(y)], bands=["B08"])


def test_logistic_decision_threshold_is_fitted_for_f1_on_a_rare_class():
    # 5 % built, overlapping classes: P > 0.5 calls few pixels built; the fitted threshold is
    # the best-F1 cut of the training pixels, so the baseline is judged at its own best
    def scene(seed, n=80):
        rng = np.random.default_rng(seed)
        built = rng.random((n, n)) < 0.05
        swir = np.where(built, 0.24, 0.20) + rng.normal(0, 0.03, (n, n))
        return xr.Dataset({"B11": (("y", "x"), swir)}), built.astype("uint8")

    train = [scene(s) for s in (0, 1)]
    m = fit_pixel_logistic([d for d, _ in train], [y for _, y in train], bands=["B11"],
                           n_samples=12_000, seed=0)
    assert m.threshold < 0.5
    ds, y = scene(2)
    fitted, half = _f1(y, m.predict(ds)), _f1(y, m.probability(ds) > 0.5)
    assert fitted > half + 0.1
    _, best = best_f1_threshold(m.probability(ds), y)  # the oracle cut on the test scene
    assert fitted > 0.8 * best
