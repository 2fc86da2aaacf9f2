"""CCDC core on hand-made series: step, ramp, seasonality, gaps and clouds, too little data."""

from __future__ import annotations

import numpy as np
import pytest

from eocube.change import (
    COEF_NAMES,
    STATUS_MEANINGS,
    CCDCParams,
    ccdc_numpy,
    design_matrix,
)
from eocube.errors import ConfigError
from tests.change.series import BUILT, harmonic_series, irregular_dates

DATES = irregular_dates()
DAYS = DATES.astype("datetime64[D]").astype(float)
OK, INSUFFICIENT, NO_STABLE = (STATUS_MEANINGS.index(s) for s in
                               ("ok", "insufficient_data", "no_stable_model"))


def first_break(res: dict) -> np.ndarray:
    bd = np.where(res["is_break"], res["break_day"], np.inf).min(1)
    return np.where(np.isfinite(bd), bd, np.nan)


def test_step_is_found_at_the_first_changed_observation():
    y = harmonic_series(DATES, 40, seed=1)
    t_change = np.random.default_rng(2).integers(60, 150, size=40)  # index of first new obs
    for p, t in enumerate(t_change):
        y[p, t:] += BUILT
    res = ccdc_numpy(y, DATES)
    assert (res["status"] == OK).all()
    assert (res["n_breaks"] == 1).all()
    np.testing.assert_array_equal(first_break(res), DAYS[t_change])
    # magnitude: signed median residual ≈ the step, per band
    mag = res["magnitude"][:, 0]
    np.testing.assert_allclose(mag, np.broadcast_to(BUILT, mag.shape), atol=0.01)
    # two segments: before and after, meeting at the break
    assert (res["n_obs"][:, :2] > 0).all() and (res["n_obs"][:, 2:] == 0).all()
    np.testing.assert_array_equal(res["start_day"][:, 1], DAYS[t_change])
    assert not res["is_break"][:, 1].any()


def test_ramp_slow_trend_is_modelled_not_broken():
    y = harmonic_series(DATES, 30, seed=3)
    years = (DAYS - DAYS[0]) / 365.2425
    y += 0.004 * years[None, :, None]  # a slow drift: 2.4 % reflectance over 6 years
    res = ccdc_numpy(y, DATES)
    assert (res["n_breaks"] == 0).all()
    slope = res["coefficients"][:, 0, :, COEF_NAMES.index("slope")]
    np.testing.assert_allclose(slope.mean(0), 0.004, atol=0.0015)


def test_ramp_fast_is_a_break_inside_the_ramp():
    y = harmonic_series(DATES, 30, seed=4)
    start, stop = 80, 92  # a ~4-month construction ramp
    w = np.clip((np.arange(DATES.size) - start) / (stop - start), 0, 1)
    y += w[None, :, None] * BUILT
    res = ccdc_numpy(y, DATES)
    bd = first_break(res)
    assert np.isfinite(bd).all()
    assert ((bd >= DAYS[start]) & (bd <= DAYS[stop])).all()


def test_seasonality_without_change_gives_no_break():
    y = harmonic_series(DATES, 200, seed=5, amp=np.array([0.02, 0.04, 0.12, 0.06]))
    res = ccdc_numpy(y, DATES)
    assert (res["status"] == OK).all()
    assert (res["n_breaks"] == 0).mean() >= 0.99
    # one segment with 8 coefficients, whose annual harmonic is the true amplitude
    assert (res["n_coefs"][:, 0] == 8).all()
    c = res["coefficients"][:, 0, :, :]
    amp = np.hypot(c[..., COEF_NAMES.index("cos1")], c[..., COEF_NAMES.index("sin1")])
    np.testing.assert_allclose(np.median(amp, 0), [0.02, 0.04, 0.12, 0.06], rtol=0.1)


def test_gaps_and_clouds():
    rng = np.random.default_rng(6)
    y = harmonic_series(DATES, 60, seed=7)
    t_change = 150
    y[:, t_change:] += BUILT
    y[rng.random(y.shape[:2]) < 0.4] = np.nan  # 40 % cloudy
    gap = (DAYS[0] + 2 * 365 < DAYS) & (DAYS[0] + 2 * 365 + 200 > DAYS)
    y[:, gap] = np.nan  # a 200-day outage
    # residual clouds the mask missed: bright outliers, one at a time
    clear = np.isfinite(y[..., 0])
    bright = clear & (rng.random(clear.shape) < 0.03)
    y[bright] += 0.3
    res = ccdc_numpy(y, DATES)
    assert (res["n_clear"] == np.isfinite(y[..., 0]).sum(1)).all()
    bd = first_break(res)
    # the break is the first clear observation at or after the change
    expected = np.array([DAYS[t_change:][clear_p[t_change:]][0]
                         for clear_p in np.isfinite(y[..., 0])])
    hit = bd == expected
    assert hit.mean() >= 0.9
    assert (res["n_breaks"] <= 2).all()


def test_too_few_observations_is_insufficient_data_not_a_break():
    y = harmonic_series(DATES, 3, seed=8)
    y[:, 40:] += BUILT
    y[0, :] = np.nan
    y[0, ::25] = harmonic_series(DATES, 1, seed=9)[0, ::25]  # 9 clear observations
    y[1, 100:] = np.nan
    y[1, :70] = np.nan  # 30 clear observations over < 1 year
    y[2, :] = np.nan  # nothing clear at all
    res = ccdc_numpy(y, DATES)
    np.testing.assert_array_equal(res["status"], [INSUFFICIENT] * 3)
    np.testing.assert_array_equal(res["n_breaks"], [0, 0, 0])
    assert np.isnan(res["break_day"]).all() and np.isnan(res["coefficients"]).all()
    np.testing.assert_array_equal(res["n_clear"], [9, 30, 0])


def test_enough_data_but_no_stable_start():
    # 20 clear observations over two years whose second year is one long disturbance
    y = harmonic_series(DATES, 1, seed=10)
    keep = np.zeros(DATES.size, bool)
    keep[np.linspace(0, 72, 20).astype(int)] = True
    y[:, ~keep] = np.nan
    y[:, keep] += np.random.default_rng(0).normal(0, 0.2, (1, keep.sum(), 4))
    res = ccdc_numpy(y, DATES)
    assert res["status"][0] == NO_STABLE
    assert res["n_breaks"][0] == 0
    assert res["n_obs"][0, 0] > 0 and res["n_coefs"][0, 0] == 4  # pyccd's closing fit


def test_detection_bands_restrict_the_test():
    y = harmonic_series(DATES, 10, seed=11)
    y[:, 100:, 2] += 0.2  # change in NIR only
    assert (ccdc_numpy(y, DATES)["n_breaks"] == 1).all()
    assert (ccdc_numpy(y, DATES, detection_bands=[0, 1, 3])["n_breaks"] == 0).all()


def test_max_segments_keeps_counting():
    y = harmonic_series(DATES, 5, seed=12)
    for t in (60, 120, 180):
        y[:, t:] += BUILT
    res = ccdc_numpy(y, DATES, params=CCDCParams(max_segments=2))
    assert (res["n_breaks"] == 3).all()
    assert res["is_break"].shape == (5, 2) and res["is_break"].all()


def test_design_matrix_columns():
    x = design_matrix(np.array([10957.0, 10957.0 + 365.2425]))
    np.testing.assert_allclose(x[:, :2], [[1, 0], [1, 1]])
    assert x.shape == (2, len(COEF_NAMES))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"params": CCDCParams(consecutive=3)} | {"detection_bands": [7]}, "detection_bands"),
    ({"backend": "cupy"}, "backend"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ccdc_numpy(harmonic_series(DATES, 1), DATES, **kwargs)


def test_unsorted_dates_and_bad_params():
    with pytest.raises(ConfigError, match=r"cube.sortby\('time'\)"):
        ccdc_numpy(harmonic_series(DATES, 1), DATES[::-1])
    with pytest.raises(ConfigError, match="min_obs=3 must be at least 5"):
        CCDCParams(min_obs=3)


def test_change_inside_the_first_year_is_found_looking_back():
    # the first stable window can only start after the change; looking back from it finds
    # the change, and the short first segment ends in a break (pyccd keeps no break there)
    y = harmonic_series(DATES, 20, seed=13)
    y[:, 20:] += BUILT  # ~200 days into the series, before any 1-year window fits
    res = ccdc_numpy(y, DATES)
    assert (res["n_breaks"] == 1).all()
    # less precise than a break found monitoring: the first stable window may open a few
    # observations before the change (its stability test allows that), never after it
    lag = DAYS[20] - first_break(res)
    assert ((lag >= 0) & (lag <= 31)).all()
    np.testing.assert_allclose(res["magnitude"][:, 0], np.broadcast_to(BUILT, (20, 4)),
                               atol=0.03)
