"""The odc-stac reader's own read of tiles on the output grid equals odc-loader's read."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.loader import RasterLoadParams, RasterSource
from odc.loader._rio import rio_read

from eocube.catalog.search import search
from eocube.cube import load
from eocube.cube._read import SourceInfo, _read_pasted, _Reader


@pytest.fixture(scope="module")
def b04(stac_api):
    it = next(iter(search(stac_api, profile="s2", datetime="2020-05-01/2020-06-30")))
    a = it.assets["B04"]
    gb = GeoBox(tuple(a.extra_fields["proj:shape"]), Affine(*a.extra_fields["proj:transform"]),
                it.properties["proj:code"])
    return RasterSource(a.get_absolute_href(), geobox=gb), gb


def _odc(src, cfg, gbox, scale, offset):
    roi, pix = rio_read(src, cfg, gbox)
    return roi, pix * np.float32(scale) + np.float32(offset)


@pytest.mark.parametrize("shift", [(0, 0), (-7, 5), (30, -40), (200, 0), (-300, -300)])
@pytest.mark.parametrize("override", [False, True])
def test_pasted_read_equals_odc_loader_read(b04, shift, override):
    import rasterio

    src, gb = b04
    dy, dx = shift
    with rasterio.open(src.uri) as ds:  # a DN the chunk holds (if any), as nodata
        dn = ds.read(1)
    y, x = min(max(dy, 0) + 3, dn.shape[0] - 1), min(max(dx, 0) + 2, dn.shape[1] - 1)
    nodata = float(dn[y, x]) if override else None
    # a chunk on the tile's grid, whole pixels away: partly, fully or not overlapping
    chunk = GeoBox((48, 40), gb.transform * Affine.translation(dx, dy), gb.crs)
    cfg = RasterLoadParams(dtype="float32", fill_value=np.nan, src_nodata_override=nodata)
    got = _read_pasted(src, cfg, chunk, 1e-4, -0.1)
    want = _odc(src, cfg, chunk, 1e-4, -0.1)
    assert got is not None
    if got[1].size == 0:  # no overlap: odc-loader returns nothing or only fill
        assert want[1].size == 0 or np.isnan(want[1]).all()
        return
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    assert not override or np.isnan(got[1]).any()


def test_off_grid_chunks_are_left_to_odc_loader(b04):
    src, gb = b04
    cfg = RasterLoadParams(dtype="float32", fill_value=np.nan)
    half = GeoBox((32, 32), gb.transform * Affine.translation(0.5, 0), gb.crs)
    coarse = GeoBox((16, 16), gb.transform * Affine.scale(2), gb.crs)
    other_crs = GeoBox((16, 16), gb.transform, "EPSG:32651")
    for chunk in (half, coarse, other_crs):
        assert _read_pasted(src, cfg, chunk, 1.0, 0.0) is None
    # ... and the reader then scales odc-loader's read
    r = _Reader(src.patch(driver_data=SourceInfo("i", "B04", 1e-4, -0.1)), None, "raise")
    roi, pix = r.read(cfg, half)
    want = _odc(src, cfg, half, 1e-4, -0.1)
    assert roi == want[0]
    np.testing.assert_array_equal(pix, want[1])


def test_values_are_scaled_inside_the_load_task(stac_api, tiny_scene):
    items = search(stac_api, profile="s2", datetime="2020-05-01/2020-06-30")
    cube = load(items, bands=["B04"], geobox=tiny_scene.geobox, chunks={"x": 32, "y": 32})
    layers = cube.B04.data.__dask_graph__().layers
    # odc-stac's open and load layers (and its small config entries), no scaling layer
    assert not any("scale" in name for name in layers), list(layers)


def test_fill_outside_fills_exactly_the_uncovered_pixels():
    from eocube.cube._read import fill_outside

    rng = np.random.default_rng(5)
    for _ in range(200):
        ny, nx = (int(v) for v in rng.integers(1, 40, 2))
        rects, covered = [], np.zeros((ny, nx), bool)
        for _ in range(int(rng.integers(0, 6))):
            y0, y1 = sorted(int(v) for v in rng.integers(0, ny + 1, 2))
            x0, x1 = sorted(int(v) for v in rng.integers(0, nx + 1, 2))
            rects.append((slice(y0, y1), slice(x0, x1)))
            covered[y0:y1, x0:x1] = True
        a = np.zeros((ny, nx), "float32")
        fill_outside(a, rects, np.nan)
        np.testing.assert_array_equal(np.isnan(a), ~covered)


@pytest.mark.parametrize("claims", [False, True])
def test_load_chunk_fills_and_fuses_like_a_prefilled_chunk(monkeypatch, claims):
    """Sources that overlap, leave gaps and hold NaN: the chunk (filled only where no read
    lands) equals filling it all with NaN first and taking each pixel's first non-NaN."""
    from eocube.cube import _read

    rng = np.random.default_rng(11)
    gbox = GeoBox((30, 40), Affine(10, 0, 0, 0, -10, 0), "EPSG:32650")
    for _ in range(50):
        reads = []
        for _ in range(int(rng.integers(1, 5))):
            y0, y1 = sorted(int(v) for v in rng.choice(31, 2, replace=False))
            x0, x1 = sorted(int(v) for v in rng.choice(41, 2, replace=False))
            pix = rng.normal(size=(y1 - y0, x1 - x0)).astype("float32")
            pix[rng.uniform(size=pix.shape) < 0.2] = np.nan
            reads.append(((slice(y0, y1), slice(x0, x1)), pix))

        class Fake:
            def __init__(self, src, ctx, on_error, guard=None):
                self.roi, self.pix = src

            def read(self, cfg, gbox, claim=None):
                dst = claim(self.roi) if claims and claim is not None else None
                if dst is None:
                    return self.roi, self.pix.copy()
                dst[...] = self.pix
                return self.roi, dst

        monkeypatch.setattr(_read, "_Reader", Fake)
        cfg = RasterLoadParams(dtype="float32", fill_value=np.nan)
        got = _read.load_chunk(reads, gbox, cfg, "raise", {})[0]
        want = np.full(gbox.shape.yx, np.nan, "float32")
        for roi, pix in reads:
            np.copyto(want[roi], pix, where=np.isnan(want[roi]))
        np.testing.assert_array_equal(got, want)
