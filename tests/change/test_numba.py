"""The numba CPU fast path against the batched numpy reference: same decisions, same numbers.

Every field must be identical but the fitted floats (coefficients, RMSE, magnitudes), which
may differ by the rounding of the small solves, within the tolerance the torch path is held
to in test_ccdc.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from eocube.change import CCDCParams, ccdc, ccdc_numpy
from eocube.errors import ConfigError
from tests.change.series import BUILT, harmonic_series, irregular_dates, to_cube

DATES = irregular_dates()
DAYS = DATES.astype("datetime64[D]").astype(float)
FITTED = ("coefficients", "rmse", "magnitude")


def assert_same(fast: dict, ref: dict) -> None:
    assert fast.keys() == ref.keys()
    for name, want in ref.items():
        got = fast[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        if name in FITTED:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)


def both(values: np.ndarray, dates: np.ndarray = DATES, **kwargs) -> tuple[dict, dict]:
    return (ccdc_numpy(values, dates, backend="numba", **kwargs),
            ccdc_numpy(values, dates, backend="numpy", **kwargs))


def _steps(seed: int, n_pix: int, steps: tuple[int, ...]) -> np.ndarray:
    y = harmonic_series(DATES, n_pix, seed=seed)
    for t in steps:
        y[:, t:] += BUILT
    return y


def _clouds_and_outages(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = _steps(seed, 60, (150,))
    y[rng.random(y.shape[:2]) < 0.4] = np.nan
    y[:, (DAYS[0] + 730 < DAYS) & (DAYS[0] + 930 > DAYS)] = np.nan
    clear = np.isfinite(y[..., 0])
    y[clear & (rng.random(clear.shape) < 0.03)] += 0.3  # residual clouds: outliers, Tmask
    return y


def _too_little_and_unstable(seed: int) -> np.ndarray:
    y = _steps(seed, 4, (40,))
    y[0, :] = np.nan
    y[0, ::25] = harmonic_series(DATES, 1, seed=9)[0, ::25]  # 9 clear observations
    y[1, :70] = np.nan
    y[1, 100:] = np.nan  # 30 clear observations over < 1 year
    y[2, :] = np.nan
    keep = np.zeros(DATES.size, bool)
    keep[np.linspace(0, 72, 20).astype(int)] = True
    y[3, ~keep] = np.nan
    y[3, keep] += np.random.default_rng(0).normal(0, 0.2, (keep.sum(), 4))  # no stable start
    return y


@pytest.mark.parametrize(("make", "kwargs"), [
    (lambda: _steps(1, 40, (100,)), {}),  # step found monitoring
    (lambda: _steps(13, 20, (20,)), {}),  # change inside the first year: found looking back
    (lambda: _steps(12, 5, (60, 120, 180)), {"params": CCDCParams(max_segments=2)}),
    (lambda: _steps(11, 10, (100,)), {"detection_bands": [0, 1, 3]}),
    (lambda: _clouds_and_outages(6), {}),
    (lambda: _too_little_and_unstable(8), {}),
    (lambda: harmonic_series(DATES, 50, seed=5, amp=np.array([0.02, 0.04, 0.12, 0.06])), {}),
], ids=["step", "lookback", "max-segments", "detection-bands", "clouds-outages",
        "too-little-unstable", "seasonal"])
def test_numba_equals_numpy_on_hand_made_series(make, kwargs):
    fast, ref = both(make(), **kwargs)
    assert_same(fast, ref)


@pytest.mark.parametrize("seed", range(4))
def test_numba_equals_numpy_on_random_series_with_gaps(seed):
    rng = np.random.default_rng(seed)
    n_pix = 150
    y = harmonic_series(DATES, n_pix, seed=100 + seed, noise=rng.uniform(0.003, 0.02))
    for p in range(n_pix):  # 0 to 3 steps of random size and sign
        for t in rng.integers(0, DATES.size, size=rng.integers(0, 4)):
            y[p, t:] += rng.normal(0, 1.5, 4) * BUILT
    y[rng.random(y.shape[:2]) < rng.uniform(0.1, 0.6)] = np.nan
    for p in rng.choice(n_pix, n_pix // 3, replace=False):  # outages of up to a year
        t0 = rng.integers(0, DATES.size)
        y[p, t0:t0 + rng.integers(5, 37)] = np.nan
    y[:3, 30:] = np.nan  # under a year of data: insufficient
    clear = np.isfinite(y[..., 0])
    y[clear & (rng.random(clear.shape) < 0.02)] += 0.25
    params = CCDCParams(consecutive=int(rng.integers(3, 7)), min_obs=int(rng.integers(8, 16)),
                        max_segments=int(rng.integers(2, 6)))
    det = None if seed % 2 else [0, 2, 3]
    fast, ref = both(y, params=params, detection_bands=det)
    assert_same(fast, ref)
    assert (ref["n_breaks"] > 0).any() and (ref["status"] > 0).any()  # the paths were taken


def test_numba_is_the_cpu_default_and_cpu_only():
    y = _steps(1, 3, (100,))
    assert_same(ccdc_numpy(y, DATES), ccdc_numpy(y, DATES, backend="numba"))
    with pytest.raises(ConfigError, match='needs backend="torch"'):
        ccdc_numpy(y, DATES, backend="numba", device="cuda")


def test_cube_numba_and_numpy_backends_agree():
    y = _clouds_and_outages(3)[:20]
    cube = to_cube(y, DATES, 4, 5).chunk({"time": -1, "y": 2, "x": 5})
    fast = ccdc(cube).compute(scheduler="sync")
    ref = ccdc(cube, backend="numpy").compute(scheduler="sync")
    for v in fast.data_vars:
        if v in FITTED:
            xr.testing.assert_allclose(fast[v], ref[v], rtol=1e-9, atol=1e-12)
        else:
            xr.testing.assert_identical(fast[v], ref[v])
