"""Benchmark: read throughput of eocube.cube.load against the practical limit and the engines.

    .venv/bin/python benchmarks/cube_load.py                  # demo city if built, else tiny
    .venv/bin/python benchmarks/cube_load.py --archive PATH --dates 8 --workers 1 2 4

Reads Sentinel-2 B04 and B08 (uint16 COGs, 10 m) of the first ``--dates`` acquisitions over
the whole city from the local STAC API and times, for 1, 2 and 4 workers (Dask threads, or a
thread pool for rasterio):

- ``rasterio``: a plain windowed read of every COG straight into its place in the output
  array (each tile is aligned with the city grid: no resampling) — the practical limit;
- ``eocube``: ``eocube.cube.load`` (odc-stac engine; scaled float32, nodata → NaN);
- ``eocube-stackstac``: the same with ``engine="stackstac"``;
- ``odc-stac`` and ``stackstac``: the engines called directly (raw values, no scaling).

Throughput is output megapixels per second (one pixel = one band at one date); peak memory is
the largest resident-set growth over the run, sampled every 10 ms. Each case is run once after
one warm-up read (the page cache holds the files, as it would after the first pass).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np
import psutil

BANDS = ("B04", "B08")


class PeakRSS:
    """Largest RSS growth (MiB) while the block runs, sampled in a thread."""

    def __enter__(self) -> PeakRSS:
        self._p = psutil.Process()
        self._base = self._p.memory_info().rss
        self.peak = self._base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._p.memory_info().rss)

    def __exit__(self, *a: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._p.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self._base) / 2**20


def rasterio_read(items: list[Any], gb: Any, workers: int) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    from eocube.cube.load import group_items

    groups = group_items(items)
    out = np.zeros((len(groups), len(BANDS), *gb.shape.yx), dtype="uint16")
    inv = ~gb.transform
    jobs = []
    for t, g in enumerate(groups):
        for it in g:
            for b, band in enumerate(BANDS):
                jobs.append((t, b, it.assets[band].href))

    def one(job: tuple[int, int, str]) -> None:
        t, b, href = job
        with rasterio.open(href) as ds:
            c0, r0 = (int(round(v)) for v in inv * (ds.transform.c, ds.transform.f))
            ds.read(1, out=out[t, b, r0:r0 + ds.height, c0:c0 + ds.width],
                    window=Window(0, 0, ds.width, ds.height))

    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, jobs))
    return out


def run_case(name: str, fn: Any, workers: int, npix: int) -> dict[str, Any]:
    with dask.config.set(scheduler="threads", num_workers=workers), PeakRSS() as mem:
        t0 = time.perf_counter()
        fn(workers)
        dt = time.perf_counter() - t0
    return {"case": name, "workers": workers, "seconds": dt, "mpix_s": npix / dt / 1e6,
            "peak_mib": mem.mib}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", default=None, help="city archive (default: "
                    "/tmp/runs/demo/archive or runs/demo/archive if complete, else a tiny city)")
    ap.add_argument("--dates", type=int, default=6)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--chunk", type=int, default=512)
    args = ap.parse_args()

    import odc.stac
    import stackstac

    from eocube.catalog import LocalStacApi, open_archive
    from eocube.catalog.search import search
    from eocube.cube import load
    from eocube.cube.load import _with_epsg, group_items, target_geobox
    from eocube.errors import ArchiveError
    from eocube.synth import build_city

    archive = args.archive
    if archive is None:
        for cand in ("/tmp/runs/demo/archive", "runs/demo/archive"):
            try:
                open_archive(cand)
                archive = cand
                break
            except ArchiveError:
                continue
    if archive is None:
        archive = str(build_city(Path(tempfile.mkdtemp()) / "tiny", preset="tiny"))
    with LocalStacApi(archive) as api:
        items = list(search(api, profile="s2"))
    groups = group_items(items)[: args.dates]
    items = [it for g in groups for it in g]
    from eocube.catalog.profiles import SENTINEL2_L2A

    gb = target_geobox(items, profile=SENTINEL2_L2A, bands=list(BANDS), resolution=10)
    npix = len(groups) * len(BANDS) * gb.shape.x * gb.shape.y
    chunks = {"x": args.chunk, "y": args.chunk}
    dicts = [_with_epsg(it.to_dict(transform_hrefs=False)) for it in items]
    print(f"archive {archive}: {len(items)} items, {len(groups)} dates, grid "
          f"{gb.shape.y}×{gb.shape.x} at 10 m, bands {BANDS}, chunks {args.chunk}; "
          f"{npix / 1e6:.1f} Mpix per run; {psutil.cpu_count()} CPUs", flush=True)

    cases = {
        "rasterio": lambda w: rasterio_read(items, gb, w),
        "eocube": lambda w: load(items, bands=list(BANDS), geobox=gb, chunks=chunks).compute(),
        "eocube-stackstac": lambda w: load(items, bands=list(BANDS), geobox=gb, chunks=chunks,
                                           engine="stackstac").compute(),
        "odc-stac": lambda w: odc.stac.load(items, bands=list(BANDS), geobox=gb, chunks=chunks,
                                            groupby="solar_day").compute(),
        "stackstac": lambda w: stackstac.stack(
            dicts, assets=list(BANDS), epsg=32650, resolution=10,
            bounds=tuple(gb.boundingbox), snap_bounds=False, dtype=np.dtype("float32"),
            fill_value=np.float32(np.nan), rescale=False,
            chunksize=(1, 1, args.chunk, args.chunk)).compute(),
    }
    rasterio_read(items, gb, 2)  # warm the page cache
    rows = []
    for w in args.workers:
        for name, fn in cases.items():
            rows.append(run_case(name, fn, w, npix))
            r = rows[-1]
            print(f"  {name:17s} workers={w}  {r['seconds']:6.2f} s  {r['mpix_s']:7.1f} Mpix/s"
                  f"  peak +{r['peak_mib']:6.0f} MiB", flush=True)
    print("\nworkers  case               Mpix/s   vs rasterio  peak MiB")
    for w in args.workers:
        base = next(r for r in rows if r["workers"] == w and r["case"] == "rasterio")
        for r in (r for r in rows if r["workers"] == w):
            ratio = r["mpix_s"] / base["mpix_s"]
            print(f"{w:7d}  {r['case']:17s} {r['mpix_s']:7.1f}   {ratio:9.2f}"
                  f"   {r['peak_mib']:7.0f}")


if __name__ == "__main__":
    main()
