"""`ccdc` over cubes: numpy vs dask vs torch equality, laziness, the time-chunk rule."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from eocube._deps import has
from eocube.change import ccdc, ccdc_numpy
from eocube.errors import ConfigError, GridError
from tests.change.series import BUILT, harmonic_series, irregular_dates, to_cube

DATES = irregular_dates(years=4)
NY, NX = 4, 5


def _values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = harmonic_series(DATES, NY * NX, seed=seed)
    for p in range(0, NY * NX, 2):
        y[p, rng.integers(50, 100):] += BUILT
    y[rng.random(y.shape[:2]) < 0.3] = np.nan
    return y


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("something computed while the graph was being built")


@pytest.fixture(scope="module")
def cube() -> xr.Dataset:
    return to_cube(_values(), DATES, NY, NX)


@pytest.fixture(scope="module")
def eager(cube) -> xr.Dataset:
    return ccdc(cube)


def test_matches_the_numpy_core(cube, eager):
    res = ccdc_numpy(_values(), DATES)
    np.testing.assert_array_equal(eager["n_breaks"].values.ravel(), res["n_breaks"])
    bd = eager["break"].isel(segment=0).values.ravel()
    days = np.where(np.isnat(bd), np.nan,
                    bd.astype("datetime64[s]").astype("int64") / 86400.0)
    np.testing.assert_array_equal(days, res["break_day"][:, 0])
    coef = eager["coefficients"].transpose("y", "x", "segment", "band", "coef").values
    np.testing.assert_array_equal(coef.reshape(NY * NX, *coef.shape[2:]), res["coefficients"])
    assert eager["coefficients"].dims == ("segment", "band", "coef", "y", "x")
    assert eager["magnitude"].dims == ("segment", "band", "y", "x")
    assert list(eager["band"].values) == ["green", "red", "nir", "swir1"]
    assert eager["break"].dtype == np.dtype("datetime64[ns]")
    assert eager.attrs["time_start"] == str(DATES[0])[:10]


def test_dask_equals_numpy_and_is_lazy(cube, eager):
    lazy_cube = cube.chunk({"time": -1, "y": 2, "x": 3})
    with dask.config.set(scheduler=_raise_on_compute):
        lazy = ccdc(lazy_cube)
    assert lazy["n_breaks"].chunks is not None
    xr.testing.assert_identical(lazy.compute(scheduler="sync"), eager)


def test_dataarray_with_band_dim(cube, eager):
    da = cube.to_dataarray("band").transpose("time", "band", "y", "x")
    xr.testing.assert_identical(ccdc(da), eager)


def test_time_in_several_chunks_is_a_clear_error(cube):
    with pytest.raises(GridError, match=r"cube\.chunk\(time=-1\)"):
        ccdc(cube.chunk({"time": 20}))


def test_bad_inputs(cube):
    with pytest.raises(ConfigError, match="'blue'"):
        ccdc(cube, bands=["blue"])
    with pytest.raises(ConfigError, match="NaN"):
        ccdc((cube.fillna(0) * 1000).astype("int16"))
    with pytest.raises(ConfigError, match="sortby"):
        ccdc(cube.isel(time=slice(None, None, -1)))
    with pytest.raises(ConfigError, match="unknown ccdc option"):
        ccdc(cube, not_an_option=1)


def test_single_band_dataarray_and_detection_bands(cube):
    ndbi = (cube["swir1"] - cube["nir"]) / (cube["swir1"] + cube["nir"])
    out = ccdc(ndbi.rename("ndbi"))
    assert list(out["band"].values) == ["ndbi"]
    assert int(out["n_breaks"].sum()) >= NY * NX // 2 - 1
    only_green = ccdc(cube, detection_bands=["green"])
    assert only_green.sizes["band"] == 4


@pytest.mark.skipif(not has("torch"), reason="torch is not installed")
def test_torch_backend_on_cpu_matches_numpy(cube, eager):
    out = ccdc(cube, backend="torch", device="cpu")
    for v in ("n_breaks", "status", "n_clear", "break", "start", "end", "n_obs", "n_coefs"):
        xr.testing.assert_identical(out[v], eager[v])
    for v in ("coefficients", "rmse", "magnitude"):
        xr.testing.assert_allclose(out[v], eager[v], rtol=1e-9, atol=1e-12)


@pytest.mark.gpu
def test_torch_backend_on_cuda_matches_numpy(cube, eager):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    out = ccdc(cube, backend="torch", device="cuda")
    xr.testing.assert_identical(out["break"], eager["break"])
    xr.testing.assert_allclose(out["coefficients"], eager["coefficients"], rtol=1e-8,
                               atol=1e-10)
