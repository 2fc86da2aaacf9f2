from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from eocube.cube.composite import composite
from eocube.cube.masks import cloud_mask, mask_clouds, mask_s1, ndbi, ndvi, ndwi, s1_valid
from eocube.errors import ConfigError

GB = GeoBox.from_bbox((0, 0, 40, 30), "EPSG:32650", resolution=10)  # 3 × 4 pixels


def _cube(values: np.ndarray, times: list[str], name: str = "B04") -> xr.Dataset:
    return xr.Dataset({name: (("time", "y", "x"), values.astype("float32"))},
                      coords={"time": pd.DatetimeIndex(times), **xr_coords(GB)})


def _series():
    rng = np.random.default_rng(3)
    times = ["2020-01-03", "2020-01-20", "2020-02-11", "2020-04-02", "2020-04-30",
             "2020-05-15", "2021-01-01"]
    v = rng.uniform(0, 1, (len(times), 3, 4))
    v[1, 0, 0] = np.nan
    v[2, :, :] = np.nan  # February all clouds
    return _cube(v, times), v, pd.DatetimeIndex(times)


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("period,starts", [
    ("month", ["2020-01-01", "2020-02-01", "2020-04-01", "2020-05-01", "2021-01-01"]),
    ("quarter", ["2020-01-01", "2020-04-01", "2021-01-01"]),
    ("year", ["2020-01-01", "2021-01-01"])])
def test_composites_match_a_hand_computed_answer(lazy, period, starts):
    cube, v, times = _series()
    if lazy:
        cube = cube.chunk(time=1, x=2, y=2)
    key = {"month": "M", "quarter": "Q", "year": "Y"}[period]
    labels = times.to_period(key).start_time
    for stat, fn in (("median", np.nanmedian), ("mean", np.nanmean), ("max", np.nanmax),
                     ("count", lambda a, axis: np.isfinite(a).sum(axis))):
        out = composite(cube, period=period, stat=stat)
        assert (out.B04.chunks is not None) == lazy
        assert list(out.time.values) == list(pd.DatetimeIndex(starts).values)
        for s in starts:
            sel = v[labels == pd.Timestamp(s)]
            with np.errstate(all="ignore"), pytest.warns(RuntimeWarning) if (
                    stat != "count" and np.isnan(sel).all(axis=0).any()) else _nullctx():
                want = fn(sel, axis=0)
            np.testing.assert_allclose(out.B04.sel(time=s).values, want, rtol=1e-6)
    assert out.B04.dtype == np.int16


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_composite_refuses_bad_arguments_and_skips_class_bands():
    cube, _, _ = _series()
    cube["SCL"] = cube.B04.fillna(0).astype("uint8")
    assert list(composite(cube, period="year")) == ["B04"]
    with pytest.raises(ConfigError, match="period='week'"):
        composite(cube, period="week")
    with pytest.raises(ConfigError, match="stat='p90'"):
        composite(cube, stat="p90")


@pytest.mark.parametrize("lazy", [False, True])
def test_masks_and_indices_numpy_equals_dask(lazy):
    rng = np.random.default_rng(5)
    shape = (2, 3, 4)
    scl = rng.integers(0, 12, shape).astype("uint8")
    b = {k: rng.uniform(0.01, 0.5, shape) for k in ("B03", "B04", "B08", "B11")}
    cube = xr.Dataset({**{k: (("time", "y", "x"), v.astype("float32")) for k, v in b.items()},
                       "SCL": (("time", "y", "x"), scl)},
                      coords={"time": pd.date_range("2020-01-01", periods=2), **xr_coords(GB)})
    if lazy:
        cube = cube.chunk(x=2)
    np.testing.assert_array_equal(cloud_mask(cube).values, np.isin(scl, (3, 8, 9, 10)))
    clear = mask_clouds(cube, classes=(8, 9))
    np.testing.assert_array_equal(np.isnan(clear.B04.values), np.isin(scl, (8, 9)))
    f32 = {k: v.astype("float32") for k, v in b.items()}
    np.testing.assert_allclose(ndvi(cube).values, (f32["B08"] - f32["B04"]) /
                               (f32["B08"] + f32["B04"]), rtol=1e-5)
    np.testing.assert_allclose(ndbi(cube).values, (f32["B11"] - f32["B08"]) /
                               (f32["B11"] + f32["B08"]), rtol=1e-5)
    np.testing.assert_allclose(ndwi(cube).values, (f32["B03"] - f32["B08"]) /
                               (f32["B03"] + f32["B08"]), rtol=1e-5)
    assert (ndvi(cube).chunks is not None) == lazy


def test_s1_mask_removes_nodata_and_zero_border():
    vv = np.full((1, 3, 4), 0.05, "float32")
    vh = np.full((1, 3, 4), 0.01, "float32")
    vv[0, :, 0] = 0.0  # swath border
    vh[0, 1, 2] = np.nan  # nodata
    cube = xr.Dataset({"vv": (("time", "y", "x"), vv), "vh": (("time", "y", "x"), vh)},
                      coords={"time": pd.date_range("2020-01-01", periods=1), **xr_coords(GB)})
    ok = s1_valid(cube).values[0]
    assert ok.sum() == 12 - 3 - 1
    m = mask_s1(cube)
    assert np.isnan(m.vv.values[0, :, 0]).all() and np.isnan(m.vv.values[0, 1, 2])


def test_yearly_median_is_the_masked_composite_of_each_year(tiny_archive):
    """The pipeline's and the training data's one compositing path: per year of items, the
    median of mask(load(items)); each year read with its dates in one chunk; and with
    ``loaded``, the years' cubes handed back for their read failures."""
    from eocube.catalog import open_archive
    from eocube.cube import load
    from eocube.cube.composite import yearly_median

    items = list(open_archive(tiny_archive).items("sentinel-2-l2a"))
    bands = ["B04", "B08", "SCL"]
    gb = load(items, bands=["SCL"], resolution=20, chunks={}).odc.geobox
    loaded: list[xr.Dataset] = []
    got = yearly_median(items, bands=bands, geobox=gb, chunks={"x": 32, "y": 32},
                        mask=mask_clouds, loaded=loaded)
    dates = pd.DatetimeIndex(sorted({it["properties"]["datetime"] for it in items}))
    assert [len(c["time"]) for c in loaded] == [int((dates.year == y).sum())
                                                for y in (2020, 2021)]  # one step a date
    assert all(c.chunks["time"] == (c.sizes["time"],) for c in loaded)
    assert list(got.data_vars) == ["B04", "B08"]
    assert list(pd.DatetimeIndex(got["time"].values).year) == [2020, 2021]
    want = composite(mask_clouds(load(items, bands=bands, geobox=gb, chunks={})),
                     period="year", stat="median")
    xr.testing.assert_allclose(got.compute(), want.compute())
    assert float(got["B04"].isnull().mean()) < 0.01  # clouds masked, clear dates remain
