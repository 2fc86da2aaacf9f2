from __future__ import annotations

import time

import numpy as np
import pystac
import pytest
from odc.geo.geobox import GeoBox

from eocube.catalog.hrefs import HrefPolicy
from eocube.cube import load
from eocube.io import stac


def _fake_items(n: int) -> list[pystac.Item]:
    """n S2-like items (4 tiles × n/4 dates) whose files do not exist."""
    gb = GeoBox.from_bbox((200_000, 2_500_000, 220_480, 2_520_480), "EPSG:32650",
                          resolution=10)
    half = gb.shape.y // 2
    tiles = [gb[:half, :half], gb[:half, half:], gb[half:, :half], gb[half:, half:]]
    out = []
    for i in range(n):
        sub = tiles[i % 4]
        t = np.datetime64("2020-01-01T02:55") + np.timedelta64(5 * (i // 4), "D")
        assets = {b: stac.archive_asset(f"/nonexistent/{i}/{b}.tif", sub, title=b, **{
            "raster:bands": [stac.raster_band("uint16", nodata=0, resolution=10,
                                              scale=1e-4, offset=-0.1)]})
            for b in ("B04", "B08")}
        d = stac.archive_item(f"fake-{i}", "sentinel-2-l2a", sub,
                              properties={"datetime": f"{t}:00Z",
                                          "s2:processing_baseline": "05.10"},
                              assets=assets, extensions=("proj", "raster"))
        d["links"] = []
        out.append(pystac.Item.from_dict(d))
    return out, gb


@pytest.mark.parametrize("engine", ["odc", "stackstac"])
def test_building_a_cube_over_1000_items_is_fast_reads_nothing_and_graph_is_per_chunk(
        monkeypatch, engine):
    items, gb = _fake_items(1000)
    import rasterio

    def no_read(*a, **k):
        raise AssertionError("a raster was opened while building the cube")

    monkeypatch.setattr(rasterio, "open", no_read)
    monkeypatch.setattr(rasterio.io.DatasetReader, "__init__", no_read)
    t0 = time.perf_counter()
    cube = load(items, bands=["B04", "B08"], geobox=gb, chunks={"x": 512, "y": 512},
                engine=engine, href_policy=HrefPolicy(roots=("/nonexistent",)))
    took = time.perf_counter() - t0
    assert took < 0.5 * len(items) / 100, f"{took:.2f} s for {len(items)} items"
    assert cube.sizes["time"] == 250
    n_chunks = sum(v.data.npartitions for v in cube.data_vars.values())
    tasks = len(dict(cube.__dask_graph__()))
    # a constant number of tasks per chunk, never per pixel: odc-stac per output chunk and
    # source; stackstac per item and chunk of its (item, band, y, x) array before mosaicking
    spatial = n_chunks // (2 * cube.sizes["time"])
    bound = (8 * n_chunks + 12 * len(items) if engine == "odc"
             else 6 * len(items) * 2 * spatial)
    assert tasks < bound, (tasks, n_chunks)
