"""Time of change from built-up probability series, yearly maps, two-date change."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from eocube.change import (
    TOC_STATES,
    backscatter_log_ratio,
    bitemporal_change,
    time_of_change,
    time_of_change_numpy,
    yearly_change,
)
from eocube.errors import ConfigError, GridError
from tests.change.series import irregular_dates

DATES = irregular_dates(years=4, revisit=12)
DAYS = DATES.astype("datetime64[D]").astype(float)


def _prob(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pixel, time) probabilities: 0 stable bare, 1 stable built, 2.. built at known index."""
    rng = np.random.default_rng(seed)
    n = 40
    onset = np.full(n, -1)
    onset[2:] = rng.integers(20, DATES.size - 10, n - 2)
    built = np.zeros((n, DATES.size), bool)
    built[1] = True
    for p in range(2, n):
        built[p, onset[p]:] = True
    prob = np.where(built, 0.85, 0.15) + rng.normal(0, 0.08, built.shape)
    prob[:, 5] = 0.95  # one spurious bright date everywhere: must not count
    prob[rng.random(prob.shape) < 0.2] = np.nan
    return np.clip(prob, 0, 1), onset


def test_time_of_change_numpy():
    prob, onset = _prob()
    res = time_of_change_numpy(prob, DAYS, threshold=0.5, k=3)
    state = [TOC_STATES[s] for s in res["state"]]
    assert state[:2] == ["not_built", "built_throughout"]
    assert set(state[2:]) == {"changed"}
    # the change date is the first valid observation at or after the onset
    first_valid = [DAYS[o:][np.isfinite(prob[p, o:])][0] for p, o in enumerate(onset) if o >= 0]
    np.testing.assert_array_equal(res["change_day"][2:], first_valid)
    assert (res["confidence"][2:] > 0.9).all() and np.isnan(res["confidence"][:2]).all()
    np.testing.assert_allclose(res["magnitude"][2:], 0.7, atol=0.1)


def test_reverting_and_short_series():
    v = np.array([[0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1], [0.9, np.nan, 0.9, np.nan, np.nan, 0.1,
                                                        np.nan]])
    res = time_of_change_numpy(v, np.arange(7.0), k=3)
    assert [TOC_STATES[s] for s in res["state"]] == ["not_built", "insufficient_data"]
    assert np.isnan(res["change_day"]).all()


def test_time_of_change_xarray_lazy_equals_eager():
    prob, _ = _prob(1)
    da = xr.DataArray(prob.reshape(5, 8, -1).transpose(2, 0, 1), dims=("time", "y", "x"),
                      coords={"time": DATES})
    eager = time_of_change(da, k=3)
    with dask.config.set(scheduler=lambda *a, **k: (_ for _ in ()).throw(AssertionError)):
        lazy = time_of_change(da.chunk({"y": 2, "x": 4, "time": -1}), k=3)
    xr.testing.assert_identical(lazy.compute(scheduler="sync"), eager)
    assert eager["change_date"].dtype == np.dtype("datetime64[ns]")
    with pytest.raises(GridError, match=r"cube\.chunk\(time=-1\)"):
        time_of_change(da.chunk({"time": 10}))
    with pytest.raises(ConfigError, match="k=0"):
        time_of_change(da, k=0)


def test_yearly_change():
    prob, _onset = _prob(2)
    da = xr.DataArray(prob[None], dims=("y", "x", "time"), coords={"time": DATES})
    toc = time_of_change(da.transpose("time", "y", "x"), k=3)
    maps = yearly_change(toc)
    assert list(maps["year"].values) == [2017, 2018, 2019, 2020]
    years = toc["change_date"].dt.year.values[0]
    for i, y in enumerate(maps["year"].values):
        np.testing.assert_array_equal(maps.sel(year=y).values[0], years == y, err_msg=str(i))
    assert int(maps.sum()) == int(np.isfinite(years).sum())


def test_bitemporal_change():
    prob, onset = _prob(3)
    da = xr.DataArray(prob[None], dims=("y", "x", "time"), coords={"time": DATES})
    da = da.transpose("time", "y", "x")
    out = bitemporal_change(da, before="2017-06-01", after="2020-10-01", window="45D",
                            threshold=0.5)
    changed_between = (onset > np.searchsorted(DATES, np.datetime64("2017-07-15"))) & (
        onset < np.searchsorted(DATES, np.datetime64("2020-08-15")))
    np.testing.assert_array_equal(out["change"].values[0][changed_between], True)
    assert not out["change"].values[0][:2].any()
    bands = xr.Dataset({"a": da, "b": 2 * da})
    cva = bitemporal_change(bands, before="2017-06-01", after="2020-10-01", window="45D")
    np.testing.assert_allclose(cva["magnitude"], np.sqrt(5) * np.abs(out["difference"]))
    with pytest.raises(ConfigError, match="earlier"):
        bitemporal_change(da, before="2020-01-01", after="2019-01-01")


def test_backscatter_log_ratio_feeds_time_of_change():
    rng = np.random.default_rng(4)
    built = np.arange(DATES.size)[:, None, None] >= np.array([[60, 1000]])[None]
    vv = 0.05 * np.where(built, 4.0, 1.0) * rng.gamma(20, 1 / 20, (DATES.size, 1, 2))
    vh = 0.01 * np.where(built, 3.0, 1.0) * rng.gamma(20, 1 / 20, (DATES.size, 1, 2))
    cube = xr.Dataset({"vv": (("time", "y", "x"), vv), "vh": (("time", "y", "x"), vh)},
                      coords={"time": DATES})
    lr = backscatter_log_ratio(cube, baseline=("2017-01-01", "2017-12-31"))
    assert lr.attrs["units"] == "dB"
    toc = time_of_change(lr, threshold=3.0, k=3)
    assert toc["change_date"].values[0, 0] == DATES[60]
    assert np.isnat(toc["change_date"].values[0, 1])
