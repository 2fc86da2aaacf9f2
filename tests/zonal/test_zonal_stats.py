"""zonal_stats: equality with exactextract, numpy = dask, laziness, reuse, edge cases."""

from __future__ import annotations

import warnings

import dask
import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import wrap_xr

from eocube.errors import ConfigError, GridError, ZoneError
from eocube.testing.polygons import exactextract_stats, random_polygons, random_raster
from eocube.zonal import GeometryRepairWarning, zonal_coverage, zonal_stats, zonal_sums

pytest.importorskip("exactextract")

ALL = ["sum", "mean", "count", "min", "max", "std", "median", "majority"]
EE_NAME = {"std": "stdev", "majority": "mode"}


@pytest.fixture(scope="module")
def zones(gbox):
    # thousands of zones: sub-pixel ones, holes, multipolygons, many across chunk borders
    return random_polygons(3000, gbox, seed=11, size=(0.2, 25.0))


@pytest.fixture(scope="module")
def raster(gbox):
    return random_raster(gbox, seed=5, nan_fraction=0.03)


def _check(ours: np.ndarray, ref: np.ndarray, rtol: float = 1e-6) -> None:
    ref = np.asarray(ref, np.float64)
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=1e-9, equal_nan=True)


def test_equals_exactextract_on_thousands_of_polygons(gbox, zones, raster):
    ds = zonal_stats(raster.chunk(x=64, y=48), zones, stats=ALL).compute()
    inside = ~ds.outside.values
    b = zones.bounds.to_numpy()
    col0, col1 = (b[:, 0] - 500_000) // 640, (b[:, 2] - 500_000) // 640
    row0, row1 = (3_002_000 - b[:, 3]) // 480, (3_002_000 - b[:, 1]) // 480
    assert ((col0 != col1) | (row0 != row1)).sum() > 300  # zones across chunk borders
    assert (zones.area < 100).sum() > 300  # zones smaller than a pixel
    assert (zones.geom_type == "MultiPolygon").sum() > 100
    assert (zones.geometry.interiors.str.len() > 0).sum() > 100  # with holes
    assert 100 < (~inside).sum() < 1000 and inside.sum() > 2000
    ref = exactextract_stats(raster.values, gbox, zones,
                             stats=tuple(EE_NAME.get(s, s) for s in ALL))
    for s in ALL:
        _check(ds[s].values[inside], ref[EE_NAME.get(s, s)].to_numpy()[inside])
    # outside zones: NaN and flagged (exactextract reports 0 for sum and count)
    assert np.isnan(ds["sum"].values[~inside]).all()


def test_majority_and_median_on_a_categorical_raster(gbox, zones):
    rng = np.random.default_rng(1)
    classes = wrap_xr(rng.integers(0, 6, gbox.shape.yx).astype(np.float64), gbox)
    ds = zonal_stats(classes.chunk(x=100, y=50), zones, stats=["majority", "median"]).compute()
    ref = exactextract_stats(classes.values, gbox, zones, stats=("mode", "median"))
    inside = ~ds.outside.values
    _check(ds["majority"].values[inside], ref["mode"].to_numpy()[inside], rtol=0)
    _check(ds["median"].values[inside], ref["median"].to_numpy()[inside])


def test_weighted_statistics_equal_exactextract(gbox, zones, raster):
    w = wrap_xr(np.random.default_rng(2).uniform(0, 3, gbox.shape.yx), gbox)
    stats = ["weighted_sum", "weighted_mean", "weighted_std"]
    ds = zonal_stats(raster.chunk(x=128, y=64), zones, stats=stats,
                     weights=w.chunk(x=128, y=64)).compute()
    ref = exactextract_stats(raster.values, gbox, zones,
                             stats=("weighted_sum", "weighted_mean", "weighted_stdev"),
                             weights=w.values)
    inside = ~ds.outside.values
    for s, r in zip(stats, ("weighted_sum", "weighted_mean", "weighted_stdev"), strict=True):
        _check(ds[s].values[inside], ref[r].to_numpy()[inside])


def test_numpy_and_dask_paths_agree(gbox, zones, raster):
    z = zones.iloc[:500]
    eager = zonal_stats(raster, z, stats=ALL)
    assert isinstance(eager["sum"].data, np.ndarray)
    same_chunks = zonal_stats(raster.chunk(x=-1, y=-1), z, stats=ALL).compute()
    other_chunks = zonal_stats(raster.chunk(x=37, y=23), z, stats=ALL).compute()
    for s in ALL:
        np.testing.assert_array_equal(eager[s].values, same_chunks[s].values)
        np.testing.assert_allclose(eager[s].values, other_chunks[s].values, rtol=1e-12,
                                   atol=1e-12, equal_nan=True)


def test_lazy_graph_proportional_to_chunks_and_coverage_computed_once(gbox, zones,
                                                                      no_compute):
    cube = random_raster(gbox, seed=1, time=6, chunks={"time": 2, "y": 100, "x": 100})
    with no_compute():
        small = zonal_stats(cube, zones.iloc[:100], stats=["mean", "median"])
        big = zonal_stats(cube, zones, stats=["mean", "median"])
    graph = dict(big["mean"].data.__dask_graph__())
    assert len(graph) == len(dict(small["mean"].data.__dask_graph__()))
    cov_tasks = [k for k in graph if isinstance(k, tuple) and k[0].startswith("zonal-coverage")]
    assert len(cov_tasks) == 6  # 2 × 3 spatial chunks, shared by the 3 time chunks
    assert big["mean"].dims == ("time", "zone") and big["mean"].chunks == ((2, 2, 2), (3000,))
    # each time step equals the statistic of that step alone
    got = big["mean"].isel(time=[1, 4]).values
    for row, t in zip(got, [1, 4], strict=True):
        one = zonal_stats(cube.isel(time=t).compute(), zones, stats="mean")["mean"].values
        np.testing.assert_allclose(row, one, rtol=1e-12, equal_nan=True)


def test_time_and_band_dims_together(gbox, zones):
    rng = np.random.default_rng(3)
    arr = rng.normal(size=(2, 3, *gbox.shape.yx))
    grid = wrap_xr(arr[0, 0], gbox)
    cube = xr.DataArray(arr, dims=("time", "band", *grid.dims),
                        coords={**grid.coords, "time": [10, 20], "band": ["r", "g", "b"]})
    cube = cube.chunk(time=1, band=2, y=64, x=64)
    ds = zonal_stats(cube, zones.iloc[:300], stats=["mean", "max"])
    assert ds["mean"].dims == ("time", "band", "zone")
    assert list(ds.band.values) == ["r", "g", "b"] and list(ds.time.values) == [10, 20]
    one = zonal_stats(cube.isel(time=1, band=2).compute(), zones.iloc[:300],
                      stats=["mean", "max"])
    for s in ("mean", "max"):
        np.testing.assert_allclose(ds[s].isel(time=1, band=2).values, one[s].values,
                                   rtol=1e-12, equal_nan=True)


def test_a_computed_coverage_is_reused(gbox, zones, raster):
    cov = zonal_coverage(zones, raster.chunk(x=150, y=100)).compute()
    a = zonal_stats(raster.chunk(x=150, y=100), cov, stats="sum")
    assert not any(isinstance(k, tuple) and k[0].startswith("zonal-coverage")
                   and not isinstance(v, type(next(iter(cov.layer.values()))))
                   for k, v in dict(a["sum"].data.__dask_graph__()).items())
    b = zonal_stats(raster.chunk(x=150, y=100), zones, stats="sum")
    np.testing.assert_array_equal(a["sum"].values, b["sum"].values)


def test_zones_in_another_crs_are_reprojected(gbox, raster):
    z = random_polygons(200, gbox, seed=4)
    a = zonal_stats(raster, z.to_crs(4326), stats=["sum", "count"])
    b = zonal_stats(raster, z.to_crs(4326).to_crs(gbox.crs), stats=["sum", "count"])
    np.testing.assert_allclose(a["sum"].values, b["sum"].values, rtol=1e-12, equal_nan=True)


def test_invalid_geometry_is_repaired_with_a_warning_naming_it(gbox, raster):
    x0, y0 = 500_100, 3_000_100
    bowtie = shapely.Polygon([(x0, y0), (x0 + 100, y0 + 100), (x0 + 100, y0), (x0, y0 + 100)])
    z = gpd.GeoDataFrame({"name": ["ok", "bowtie"]},
                         geometry=[shapely.box(x0, y0, x0 + 50, y0 + 50), bowtie], crs=gbox.crs)
    with pytest.warns(GeometryRepairWarning, match=r"1 invalid zone geometry.*'bowtie'"):
        ds = zonal_stats(raster.fillna(0), z, stats="count", id_col="name")
    np.testing.assert_allclose(ds["count"].sel(zone="bowtie"), 50.0, rtol=1e-6)
    assert list(ds.zone.values) == ["ok", "bowtie"]


def test_results_join_back_to_the_zones(gbox, raster):
    z = random_polygons(50, gbox, seed=9)
    df = zonal_stats(raster, z, stats=["mean", "count"], id_col="zone_id").to_dataframe()
    joined = z.join(df[["mean", "count", "outside"]], on="zone_id")
    assert len(joined) == 50 and joined["outside"].dtype == bool
    assert joined.loc[~joined["outside"], "count"].gt(0).any()


def test_dataset_and_integer_nodata(gbox):
    arr = np.full(gbox.shape.yx, 7, np.int16)
    arr[:, :150] = -1
    cube = xr.Dataset({"a": wrap_xr(arr, gbox, nodata=-1), "b": wrap_xr(arr * 2, gbox)})
    cube["a"].attrs["nodata"] = -1
    z = gpd.GeoDataFrame(geometry=[shapely.box(500_000, 3_000_000, 503_000, 3_002_000)],
                         crs=gbox.crs)
    ds = zonal_stats(cube, z, stats=["mean", "count"])
    assert ds["mean"].dims == ("band", "zone")
    np.testing.assert_allclose(ds["mean"].sel(band="a"), 7.0)
    np.testing.assert_allclose(ds["count"].sel(band="a"), 200 * 150)
    np.testing.assert_allclose(ds["mean"].sel(band="b"), 6.0)


def test_errors(gbox, raster, zones):
    with pytest.raises(ConfigError, match=r"Unknown zonal statistic 'avg'; choose from"):
        zonal_stats(raster, zones, stats=["avg"])
    with pytest.raises(ConfigError, match="need a weights raster"):
        zonal_stats(raster, zones, stats=["weighted_mean"])
    dup = zones.iloc[:3].copy()
    dup.index = [1, 1, 2]
    with pytest.raises(ZoneError, match=r"unique; duplicated: \[1\]"):
        zonal_stats(raster, dup)
    other = GeoBox.from_bbox((0, 0, 100, 100), gbox.crs, resolution=10)
    cov = zonal_coverage(zones.iloc[:3], other)
    with pytest.raises(GridError, match="another grid"):
        zonal_stats(raster, cov)
    with pytest.raises(GridError, match="GeoBox"):
        zonal_stats(xr.DataArray(np.zeros((3, 3)), dims=("y", "x")), zones)


def test_sums_across_resolutions(gbox):
    coarse = GeoBox.from_bbox(gbox.extent.boundingbox, gbox.crs, resolution=500)
    fine = GeoBox.from_bbox(gbox.extent.boundingbox, gbox.crs, resolution=100)
    ntl = wrap_xr(np.full(coarse.shape.yx, 2.0), coarse)  # a density: per m²
    mobile = wrap_xr(np.full(fine.shape.yx, 3.0), fine).chunk(x=7, y=7)  # counts per pixel
    z = gpd.GeoDataFrame(geometry=[shapely.box(500_120, 3_000_330, 501_870, 3_001_410)],
                         crs=gbox.crs)
    ds = zonal_sums({"ntl": ntl, "mobile": mobile}, z, density={"ntl": True})
    area = z.area.iloc[0]
    np.testing.assert_allclose(ds["ntl"].values, [2.0 * area], rtol=1e-9)
    np.testing.assert_allclose(ds["mobile"].compute().values, [3.0 * area / 100**2], rtol=1e-6)


def test_center_mode_counts_whole_pixels(gbox, raster):
    z = gpd.GeoDataFrame(geometry=[shapely.box(500_003, 3_000_003, 500_052, 3_000_041)],
                         crs=gbox.crs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ds = zonal_stats(raster.fillna(0), z, stats=["count", "sum"], method="center")
    assert float(ds["count"][0]) == 5 * 4
    # center mode sum is the sum of the 20 whole pixels
    vals = raster.fillna(0).values[-4:, :5]
    np.testing.assert_allclose(float(ds["sum"][0]), vals.sum(), rtol=1e-12)


def test_no_compute_under_the_distributed_style_check(gbox, raster, no_compute):
    with no_compute(), dask.config.set({"array.chunk-size": "1MiB"}):
        ds = zonal_stats(raster.chunk(x=50, y=50), random_polygons(20, gbox), stats=ALL)
    assert isinstance(ds["median"].data, dask.array.Array)


# ---- fill values of float rasters (issue 16.2) ----------------------------------------------

FILL_STATS = ["sum", "mean", "count", "min", "max", "median", "std"]


def _with_fill(raster, fill=-9999.0):
    """The raster with its NaN written as ``fill`` (what a GeoTIFF with nodata holds)."""
    return raster.fillna(fill).astype("float32"), raster.astype("float32")


def test_float_fill_value_attribute_is_not_data(gbox, raster, zones):
    filled, nan = _with_fill(raster)
    want = zonal_stats(nan, zones.iloc[:300], stats=FILL_STATS)
    for attr in ("_FillValue", "nodata", "missing_value"):
        got = zonal_stats(filled.assign_attrs({attr: -9999.0}), zones.iloc[:300],
                          stats=FILL_STATS)
        for s in FILL_STATS:
            np.testing.assert_allclose(got[s], want[s], rtol=1e-12, equal_nan=True,
                                       err_msg=f"{attr}: {s}")
    # the lazy path and a Dataset (per-variable fill) alike
    lazy = zonal_stats(filled.assign_attrs(_FillValue=-9999.0).chunk(x=64, y=64),
                       zones.iloc[:300], stats=["min", "sum"])
    np.testing.assert_allclose(lazy["min"].compute(), want["min"], equal_nan=True)
    ds = zonal_stats(xr.Dataset({"a": filled.assign_attrs(nodata=-9999.0), "b": nan}),
                     zones.iloc[:300], stats=["sum"])
    np.testing.assert_allclose(ds["sum"].sel(band="a"), ds["sum"].sel(band="b"), rtol=1e-12)


def test_rioxarray_fill_values_are_not_data(gbox, raster, zones, tmp_path):
    rioxarray = pytest.importorskip("rioxarray")
    filled, nan = _with_fill(raster)
    want = zonal_stats(nan, zones.iloc[:200], stats=["sum", "min", "count"])
    path = tmp_path / "fill.tif"
    filled.rio.write_nodata(-9999.0).rio.to_raster(path)
    # open_rasterio's default: the fill stays in the values, _FillValue in the attributes
    opened = rioxarray.open_rasterio(path).squeeze("band", drop=True)
    assert float(opened.min()) == -9999.0 and "_FillValue" in opened.attrs
    masked = rioxarray.open_rasterio(path, masked=True).squeeze("band", drop=True)
    set_on_accessor = filled.copy()
    set_on_accessor.rio.set_nodata(-9999.0, inplace=True)  # not in attrs: on the accessor
    encoded = filled.copy()
    encoded.encoding["_FillValue"] = -9999.0
    for name, cube in [("open_rasterio", opened), ("masked", masked),
                       ("rio.set_nodata", set_on_accessor), ("encoding", encoded)]:
        got = zonal_stats(cube, zones.iloc[:200], stats=["sum", "min", "count"])
        for s in ("sum", "min", "count"):
            np.testing.assert_allclose(got[s], want[s], rtol=1e-6, equal_nan=True,
                                       err_msg=f"{name}: {s}")


def test_zonal_sums_density_keeps_the_fill_out(gbox):
    coarse = GeoBox.from_bbox(gbox.extent.boundingbox, gbox.crs, resolution=500)
    a = np.full(coarse.shape.yx, 2.0)
    a[0, :] = -9999.0
    ntl = wrap_xr(a, coarse).assign_attrs(_FillValue=-9999.0)
    z = gpd.GeoDataFrame(geometry=[shapely.box(*gbox.extent.boundingbox)], crs=gbox.crs)
    ds = zonal_sums({"ntl": ntl}, z, density=True)
    valid_area = (a != -9999.0).sum() * 500.0**2
    np.testing.assert_allclose(ds["ntl"].values, [2.0 * valid_area], rtol=1e-9)


def test_fill_value_is_compared_in_the_data_dtype(gbox):
    z = gpd.GeoDataFrame(geometry=[shapely.box(*gbox.extent.boundingbox)], crs=gbox.crs)
    a = np.full(gbox.shape.yx, 2.0, "float32")
    a[:, :100] = 0.1  # a float32 fill written to the attributes as the float64 0.1
    ds = zonal_stats(wrap_xr(a, gbox).assign_attrs(nodata=0.1), z, stats=["count", "min"])
    np.testing.assert_allclose(ds["count"], 200 * 200)
    np.testing.assert_allclose(ds["min"], 2.0)
    # a fill no pixel can hold (−1 on uint8) masks nothing: 255 stays data
    u = np.full(gbox.shape.yx, 255, "uint8")
    ds = zonal_stats(wrap_xr(u, gbox).assign_attrs(nodata=-1), z, stats=["count"])
    np.testing.assert_allclose(ds["count"], 200 * 300)
