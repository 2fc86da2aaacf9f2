"""QA classes (eocube.cube.qa) and what ccdc does with them: pyccd's persistent-snow and
insufficient-clear procedures, and the refusal of input that was never masked."""

from __future__ import annotations

import ast
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr

import eocube.change as change_pkg
from eocube.change import STATUS_MEANINGS, ccdc, ccdc_numpy
from eocube.cube.qa import (
    QA_CLASS_VAR,
    QA_CLEAR,
    QA_CLOUD,
    QA_FILL,
    QA_SNOW,
    QA_WATER,
    landsat_qa_classes,
    landsat_saturated,
    mask_landsat,
    mask_s2,
    scl_qa_classes,
)
from eocube.errors import ConfigError, MaskError
from tests.change.series import BUILT, harmonic_series, irregular_dates, to_cube

DATES = irregular_dates()
# Landsat 8/9 Collection 2 QA_PIXEL values as they occur (bits: 0 fill, 1 dilated cloud,
# 2 cirrus, 3 cloud, 4 shadow, 5 snow, 6 clear, 7 water, 8-15 confidences)
QA_VALUES = {1: QA_FILL, 21824: QA_CLEAR, 21952: QA_WATER, 22280: QA_CLOUD, 23888: QA_CLOUD,
             30048: QA_SNOW, 54596: QA_CLOUD, 21826: QA_CLOUD, 0: QA_CLOUD}


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("something computed while the graph was being built")


def test_landsat_qa_pixel_classes():
    qa = xr.DataArray(np.array(list(QA_VALUES), dtype="uint16"))
    np.testing.assert_array_equal(landsat_qa_classes(qa).values, list(QA_VALUES.values()))
    with pytest.raises(ConfigError, match="QA_PIXEL must be an integer band"):
        landsat_qa_classes(qa.astype(float))


def test_landsat_radsat_and_scl_classes():
    radsat = xr.DataArray(np.array([0, 1, 4, 256, 512, 2048], "uint16"))
    np.testing.assert_array_equal(landsat_saturated(radsat).values,
                                  [False, True, True, True, True, False])
    scl = xr.DataArray(np.arange(12, dtype="uint8"))
    np.testing.assert_array_equal(
        scl_qa_classes(scl).values,
        [QA_FILL, QA_CLOUD, QA_CLEAR, QA_CLOUD, QA_CLEAR, QA_CLEAR, QA_WATER, QA_CLEAR,
         QA_CLOUD, QA_CLOUD, QA_CLOUD, QA_SNOW])


def _landsat_cube(n: int = 40) -> xr.Dataset:
    rng = np.random.default_rng(0)
    qa = rng.choice(list(QA_VALUES), size=(n, 2, 3)).astype("uint16")
    radsat = np.where(rng.random((n, 2, 3)) < 0.1, 2, 0).astype("uint16")
    red = rng.uniform(0.02, 0.3, (n, 2, 3))
    t = np.datetime64("2020-01-01") + np.arange(n).astype("timedelta64[D]") * 16
    dims = ("time", "y", "x")
    return xr.Dataset({"red": (dims, red), "qa_pixel": (dims, qa), "qa_radsat": (dims, radsat)},
                      coords={"time": t})


def test_mask_landsat_keeps_clear_water_snow_and_is_lazy():
    cube = _landsat_cube()
    out = mask_landsat(cube)
    cls = landsat_qa_classes(cube["qa_pixel"]).values
    usable = np.isin(cls, [QA_CLEAR, QA_WATER, QA_SNOW]) & (cube["qa_radsat"].values == 0)
    np.testing.assert_array_equal(np.isfinite(out["red"].values), usable)
    np.testing.assert_array_equal(out[QA_CLASS_VAR].values, cls)
    assert set(out.data_vars) == {"red", QA_CLASS_VAR}
    with dask.config.set(scheduler=_raise_on_compute):
        lazy = mask_landsat(cube.chunk({"time": 10}))
    xr.testing.assert_identical(lazy.compute(scheduler="sync"), out)


def test_mask_s2_from_scl():
    scl = np.array([0, 4, 6, 8, 11, 3], "uint8")
    cube = xr.Dataset({"B04": ("time", np.full(6, 0.1)), "SCL": ("time", scl)},
                      coords={"time": np.arange(6).astype("datetime64[D]")})
    out = mask_s2(cube)
    np.testing.assert_array_equal(np.isfinite(out["B04"].values),
                                  [False, True, True, False, True, False])
    with pytest.raises(ConfigError, match="no SCL band"):
        mask_s2(cube.drop_vars("SCL"))


def _snowy(n_pix: int, snow_share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal series where a share of observations is bright snow (class snow)."""
    rng = np.random.default_rng(seed)
    y = harmonic_series(DATES, n_pix, seed=seed)
    qa = np.full(y.shape[:2], QA_CLEAR, np.int16)
    snow = rng.random(y.shape[:2]) < snow_share
    y[snow] = 0.6 + rng.normal(0, 0.05, (snow.sum(), y.shape[-1]))
    qa[snow] = QA_SNOW
    return y, qa


def test_persistent_snow_is_pyccd_s_snow_procedure():
    y, qa = _snowy(6, 0.9)
    # as if nothing were known about snow: the change model runs on the bright observations
    assert (ccdc_numpy(y, DATES)["status"] == 0).all()
    res = ccdc_numpy(y, DATES, qa=qa)
    assert [STATUS_MEANINGS[s] for s in res["status"]] == ["persistent_snow"] * 6
    assert (res["n_breaks"] == 0).all() and not res["is_break"].any()
    assert (res["n_coefs"][:, 0] == 4).all() and (res["n_obs"][:, 0] == y.shape[1]).all()


def test_insufficient_clear_is_pyccd_s_procedure():
    y = harmonic_series(DATES, 4, seed=3)
    y[:, 100:] += BUILT  # a change the clear observations do show
    qa = np.full(y.shape[:2], QA_CLOUD, np.int16)
    qa[:, ::5] = QA_CLEAR  # 20 % clear: under pyccd's 25 %
    y[qa == QA_CLOUD] = np.nan
    assert (ccdc_numpy(y, DATES)["n_breaks"] == 1).all()  # without classes: a break
    res = ccdc_numpy(y, DATES, qa=qa)
    assert [STATUS_MEANINGS[s] for s in res["status"]] == ["insufficient_clear"] * 4
    assert (res["n_breaks"] == 0).all() and (res["n_coefs"][:, 0] == 4).all()
    # fill does not count against the clear share: the same pixels with the clouds as fill
    res = ccdc_numpy(y, DATES, qa=np.where(qa == QA_CLOUD, QA_FILL, qa))
    assert (res["status"] == 0).all() and (res["n_breaks"] == 1).all()


def test_standard_pixels_use_clear_and_water_only_and_backends_agree():
    y, qa = _snowy(8, 0.1, seed=4)  # a little snow: standard procedure, snow left out
    y[:, 120:] += BUILT
    res = ccdc_numpy(y, DATES, qa=qa)
    clean = ccdc_numpy(np.where((qa == QA_SNOW)[..., None], np.nan, y), DATES)
    for k in res:
        np.testing.assert_array_equal(res[k], clean[k], err_msg=k)
    ref = ccdc_numpy(y, DATES, qa=qa, backend="numpy")
    np.testing.assert_array_equal(res["break_day"], ref["break_day"])


def test_ccdc_takes_the_classes_from_the_masked_cube():
    y, qa = _snowy(6, 0.9)
    cube = to_cube(y, DATES, 2, 3)
    cube[QA_CLASS_VAR] = (("time", "y", "x"), qa.reshape(2, 3, -1).transpose(2, 0, 1))
    lazy = cube.chunk({"time": -1, "y": 1})
    with dask.config.set(scheduler=_raise_on_compute):
        out = ccdc(lazy)
    out = out.compute(scheduler="sync")
    assert list(out["band"].values) == ["green", "red", "nir", "swir1"]
    assert (out["status"] == STATUS_MEANINGS.index("persistent_snow")).all()
    xr.testing.assert_identical(ccdc(cube.drop_vars(QA_CLASS_VAR), qa=cube[QA_CLASS_VAR]),
                                out)
    with pytest.raises(ConfigError, match="qa='nope' is not a variable"):
        ccdc(cube, qa="nope")


@pytest.mark.parametrize(("fill", "match"), [
    (-9999.0, r"band 'red' holds \[-9999.0\]"),
    (20000.0, r"band 'red' holds \[20000.0\]"),
])
def test_unmasked_input_is_refused_naming_band_and_helper(fill, match):
    y = harmonic_series(DATES, 6, seed=1)
    y[2, 10, 1] = fill
    cube = to_cube(y, DATES, 2, 3)
    with pytest.raises(MaskError, match=match) as err:
        ccdc(cube)
    assert "eocube.cube.qa.mask_landsat" in str(err.value)
    assert "mask_s2" in str(err.value)
    with dask.config.set(scheduler=_raise_on_compute):
        lazy = ccdc(cube.chunk({"time": -1}))  # lazily: refused when the chunk is computed
    with pytest.raises(MaskError, match=match):
        lazy.compute(scheduler="sync")


def test_zero_in_every_band_is_fill():
    y = harmonic_series(DATES, 2, seed=1)
    y[1, 5] = 0.0
    with pytest.raises(MaskError, match="0 in every band"):
        ccdc_numpy(y, DATES)


def test_core_and_numba_kernels_import_neither_each_other_nor_private_names():
    folder = Path(change_pkg.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not any(a.name.startswith("_") for a in node.names), (path, node.module)
                if path.stem in ("_core", "_numba"):
                    assert node.module not in ("eocube.change._core", "eocube.change._numba")
