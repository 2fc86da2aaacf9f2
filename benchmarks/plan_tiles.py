"""Time and peak memory of planning a large AOI on the tile grid (eocube.pipeline.aoi).

One command: ``.venv/bin/python benchmarks/plan_tiles.py`` plans the bounding box of Brazil
(74°W–34°W, 34°S–5.3°N; about 1.8 × 10⁵ tiles of 10.24 km over 16 UTM zones) twice:

- ``plan_tiles`` → one Arrow table in memory;
- ``write_manifest`` → streamed block by block into a GeoParquet file;

each timed (best of ``--repeats``) and, in a fresh process per case (so freed memory that the
allocator keeps does not hide growth), measured for peak memory in two ways: the peak growth of
the resident set over the warmed-up process (psutil, sampled every 2 ms; it sees GEOS and PROJ
too) and the peak of Python-tracked allocations (tracemalloc: numpy and Python objects).
``--aoi africa`` plans Africa's bounding box instead (about 6 × 10⁵ tiles).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from eocube.pipeline.aoi import TileGrid, plan_tiles, write_manifest

AOIS: dict[str, Any] = {"brazil": [-74.0, -34.0, -34.0, 5.3],
                        "africa": [-18.0, -35.0, 52.0, 38.0],
                        "germany": [5.8, 47.2, 15.1, 55.1]}


def outline(seed: int = 0, n: int = 200_000) -> Any:
    """A wiggly, noisy polygon of ``n`` vertices (radius about 18°) with a hole."""
    import numpy as np
    import shapely

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 18 + 1.5 * np.sin(37 * t) + rng.normal(0, 0.05, n)
    hole = np.column_stack([-54 + 3 * np.cos(t[::100]), -14 + 3 * np.sin(t[::100])])
    return shapely.Polygon(np.column_stack([-54 + r * np.cos(t), -14 + r * np.sin(t)]), [hole])


class RssPeak:
    """Peak RSS growth of this process while the block runs (sampled)."""

    def __init__(self, every: float = 0.002) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self.proc = psutil.Process()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every)

    def __enter__(self) -> RssPeak:
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def _case(name: str, aoi: Any, grid: TileGrid, path: Path) -> Callable[[], int]:
    if name == "plan_tiles":
        return lambda: plan_tiles(aoi, grid=grid).num_rows
    return lambda: write_manifest(aoi, path, grid=grid)


def _warm(grid: TileGrid) -> None:
    plan_tiles([8.0, 48.0, 8.1, 48.1], grid=grid)  # imports and PROJ's database


def _memory(name: str, aoi: Any, grid: TileGrid, path: Path, kind: str) -> float:
    """Peak memory (MiB) of one run in this (fresh) process."""
    _warm(grid)
    fn = _case(name, aoi, grid, path)
    if kind == "rss":
        with RssPeak() as rss:
            fn()
        return rss.growth_mib
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def measure(name: str, aoi: Any, grid: TileGrid, path: Path, repeats: int
            ) -> dict[str, float]:
    fn = _case(name, aoi, grid, path)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t0)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        rss = pool.apply(_memory, (name, aoi, grid, path, "rss"))
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        traced = pool.apply(_memory, (name, aoi, grid, path, "traced"))
    return {"tiles": n, "best_s": min(times), "median_s": sorted(times)[len(times) // 2],
            "rss_mib": rss, "traced_mib": traced}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aoi", choices=[*sorted(AOIS), "outline"], default="brazil")
    ap.add_argument("--tile-px", type=int, default=1024)
    ap.add_argument("--resolution", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    grid = TileGrid(tile_px=args.tile_px, resolution=args.resolution)
    aoi = outline() if args.aoi == "outline" else AOIS[args.aoi]
    _warm(grid)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tiles.parquet"
        cases = {"plan_tiles (table in memory)": "plan_tiles",
                 "write_manifest (streamed)": "write_manifest"}
        shown = aoi if isinstance(aoi, list) else f"{len(aoi.exterior.coords)} vertices"
        print(f"AOI {args.aoi} {shown}, tiles of {grid.tile_px} px at {grid.resolution:g} m "
              f"({grid.size / 1000:g} km)")
        print(f"{'case':32} {'tiles':>8} {'best s':>7} {'median s':>8} {'tiles/s':>9} "
              f"{'RSS +MiB':>9} {'traced MiB':>10}")
        for name, case in cases.items():
            r = measure(case, aoi, grid, path, args.repeats)
            print(f"{name:32} {r['tiles']:8d} {r['best_s']:7.2f} {r['median_s']:8.2f} "
                  f"{r['tiles'] / r['best_s']:9.0f} {r['rss_mib']:9.1f} {r['traced_mib']:10.1f}")
        print(f"manifest file: {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
