"""Does the pipeline's cost grow linearly with the area? Its heavy stages on 1×, 4× and 16× the
area, on a LocalCluster and on the threaded scheduler, and what that means at planetary scale.

    .venv/bin/python benchmarks/scaling.py                       # 1×, 4×, 16× of 1.28 km
    .venv/bin/python benchmarks/scaling.py --base-m 640 --sizes 1 4
    .venv/bin/python benchmarks/scaling.py --cache ~/.cache/eocube-bench --chunk 128

The cities are the tiny preset's layout (blocks, buildings, sensors, two years) over
``base-m × √k`` metres, built once with ``eocube.synth.build_city`` into ``--cache`` (outside
the repository) and reused. Each run executes the stages search → cubes → inference → change →
zones → features with ``eocube.pipeline.run_pipeline`` into a fresh folder, with ``chunk``
pixels per chunk (default 128, so 1× is one chunk and 16× sixteen), on

* ``cluster``: a ``LocalCluster`` of ``--workers`` worker processes (one thread each) that the
  run reaches by its address, so that the workers' resident memory can be sampled (psutil,
  every 0.1 s, each worker process on its own);
* ``threads``: the threaded scheduler of this process with as many threads (its resident memory
  sampled the same way).

Per size it prints the seconds of each stage and of the heavy ones together, s/km², the ratio
to linear (time / (k × time at 1×)), the peak worker memory against 1×, and per stage the tasks
submitted to Dask and the seconds spent outside Dask's execution (building graphs, reading
metadata, vector work, writing manifests). Then the km²/s per worker of the largest size, and a
table of hours and worker-hours for a city, a country and a continent, with the stage that
dominates. The machine is shared (2 cores): runs alternate between the two schedulers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HEAVY = ("cubes", "inference", "change", "zones", "features")
STAGES = ("search", *HEAVY)
#: what each heavy stage is limited by, for the planetary table
LIMIT = {"cubes": "I/O (read, mask, composite)", "inference": "inference",
         "change": "change detection", "zones": "zonal (zones)", "features": "zonal (features)"}
AREAS = (("a city", 1_000.0), ("a country", 500_000.0), ("a continent", 1e7))


class Sampler:
    """Peak resident memory of each of ``pids``, sampled in a thread; with a ``log``, also the
    largest one per stage in progress (``by_stage``)."""

    def __init__(self, pids: list[int], interval: float = 0.1, log: StageLog | None = None
                 ) -> None:
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.peak = dict.fromkeys(pids, 0)
        self.log = log
        self.by_stage: dict[str, int] = {}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.procs:
                try:
                    rss = p.memory_info().rss
                except Exception:  # a worker restarting
                    continue
                self.peak[p.pid] = max(self.peak[p.pid], rss)
                stage = self.log.stage if self.log else None
                if stage is not None:
                    self.by_stage[stage] = max(self.by_stage.get(stage, 0), rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class StageLog:
    """Per stage: Dask tasks submitted and the seconds Dask was executing them.

    Fed by a dask ``Callback`` (threaded scheduler) or a scheduler plugin (LocalCluster, whose
    scheduler runs in this process); the stage in progress is set by the wrapped stage
    functions."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.tasks: dict[str, int] = {}
        self.graphs: dict[str, int] = {}
        self.busy: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self._t0: float | None = None  # threads: start of the compute in progress
        self._window: tuple[float, float] | None = None  # cluster: first submit, last done

    def wrap(self, name: str, fn: Any) -> Any:
        def stage(ctx: Any) -> Any:
            self.stage, self._window = name, None
            t0 = time.perf_counter()
            try:
                return fn(ctx)
            finally:
                self.seconds[name] = time.perf_counter() - t0
                if self._window is not None:  # cluster: one window from submit to done
                    self.busy[name] = self.busy.get(name, 0.0) + (
                        self._window[1] - self._window[0])
                self.stage = None

        return stage

    def submitted(self, n: int) -> None:
        if self.stage is None:
            return
        self.tasks[self.stage] = self.tasks.get(self.stage, 0) + n
        self.graphs[self.stage] = self.graphs.get(self.stage, 0) + 1

    # threaded scheduler (dask.callbacks.Callback)
    def start(self, dsk: Any) -> None:
        self.submitted(len(dsk))
        self._t0 = time.perf_counter()

    def finish(self, dsk: Any, state: Any, errored: bool) -> None:
        if self.stage is not None and self._t0 is not None:
            self.busy[self.stage] = self.busy.get(self.stage, 0.0) + (
                time.perf_counter() - self._t0)

    # LocalCluster (scheduler plugin hooks)
    def graph(self, n: int) -> None:
        self.submitted(n)
        now = time.perf_counter()
        if self.stage is not None and self._window is None:
            self._window = (now, now)

    def done(self) -> None:
        if self.stage is not None and self._window is not None:
            self._window = (self._window[0], time.perf_counter())


def scheduler_plugin(log: StageLog) -> Any:
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Counter(SchedulerPlugin):
        name = "eocube-bench-stage-log"

        def update_graph(self, scheduler: Any, *, tasks: Any = None, **kw: Any) -> None:
            log.graph(len(tasks or ()))

        def transition(self, key: Any, start: str, finish: str, *a: Any, **kw: Any) -> None:
            if finish in ("memory", "erred"):
                log.done()

    return Counter()


def city(cache: Path, k: int, base_m: int, workers: int) -> tuple[Path, float]:
    """The archive of the k× city (built once) and its area in km²."""
    import math

    from eocube.synth import build_city, resolve_spec

    side = int(round(base_m * math.sqrt(k)))
    spec = resolve_spec("tiny", size_m=side)  # the tiny preset's layout (name kept: its preset)
    path = cache / f"scaling-tiny-{side}m-seed0" / "archive"
    if not (path / "manifest.json").exists():
        t0 = time.perf_counter()
        build_city(path, preset=spec, seed=0, workers=workers, overwrite=path.exists())
        print(f"  built the {side} m city in {time.perf_counter() - t0:.0f} s at {path}",
              flush=True)
    return path, (side / 1000) ** 2


def run(archive: Path, kind: str, workers: int, chunk: int, tile: int | None = None
        ) -> dict[str, Any]:
    """One run of the stages; per-stage seconds, tasks and Dask busy time, peak memory."""
    from dask.callbacks import Callback

    from eocube.pipeline import run_pipeline
    from eocube.pipeline.stages import (
        change_stage,
        cubes_stage,
        features_stage,
        inference_stage,
        search_stage,
        zones_stage,
    )

    fns = {"search": search_stage, "cubes": cubes_stage, "inference": inference_stage,
           "change": change_stage, "zones": zones_stage, "features": features_stage}
    log = StageLog()
    wrapped = {s: log.wrap(s, f) for s, f in fns.items()}
    out = Path(tempfile.mkdtemp(prefix="eocube-scaling-")) / "run"
    kw: dict[str, Any] = dict(output=out, console=False, stages=list(STAGES), chunk=chunk,
                              **({"inference": {"tile": tile, "overlap": tile // 8}}
                                 if tile else {}),
                              city={"preset": "tiny", "seed": 0, "archive": str(archive)})
    try:
        if kind == "threads":
            import dask
            import psutil

            kw["cluster"] = {"kind": "threads"}
            with dask.config.set(num_workers=workers), Callback(
                    start=log.start, finish=log.finish), Sampler([psutil.Process().pid],
                                                                  log=log) as mem:
                idle = psutil.Process().memory_info().rss
                t0 = time.perf_counter()
                result = run_pipeline(None, stage_functions=wrapped, **kw)
                wall = time.perf_counter() - t0
        else:
            from eocube.infer import start_client

            with start_client("local", n_workers=workers, threads_per_worker=1,
                              torch_threads=1) as client:
                client.cluster.scheduler.add_plugin(scheduler_plugin(log))
                pids = list(client.run(os.getpid).values())
                idle = max(client.run(lambda: __import__("psutil").Process().memory_info().rss)
                           .values())
                kw["cluster"] = {"kind": "address", "address": client.scheduler.address}
                with Sampler(pids, log=log) as mem:
                    t0 = time.perf_counter()
                    result = run_pipeline(None, stage_functions=wrapped, **kw)
                    wall = time.perf_counter() - t0
        if result.status != "completed":
            raise RuntimeError(f"the {kind} run ended {result.status}; see {out}/run.log")
        return {"seconds": dict(log.seconds), "tasks": dict(log.tasks),
                "graphs": dict(log.graphs), "busy": dict(log.busy), "wall": wall,
                "peak": max(mem.peak.values()), "idle": idle, "peak_by_stage": mem.by_stage}
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def heavy_s(r: dict[str, Any]) -> float:
    return sum(r["seconds"].get(s, 0.0) for s in HEAVY)


def report(results: dict[tuple[str, int], dict[str, Any]], km2: dict[int, float],
           sizes: list[int], kinds: list[str], workers: int) -> None:
    mib = 2**20
    for kind in kinds:
        base = results[(kind, sizes[0])]
        print(f"\n{kind} ({workers} {'worker processes' if kind == 'cluster' else 'threads'})")
        print(f"{'area':>6s}{'km²':>8s}{'heavy s':>9s}{'s/km²':>8s}{'× linear':>10s}"
              f"{'peak MiB':>10s}{'× 1×':>7s}   per stage: seconds / tasks / s outside Dask")
        for k in sizes:
            r = results[(kind, k)]
            lin = heavy_s(r) / (heavy_s(base) * km2[k] / km2[sizes[0]])
            per = "  ".join(
                f"{s} {r['seconds'].get(s, 0):.1f}/{r['tasks'].get(s, 0)}/"
                f"{max(0.0, r['seconds'].get(s, 0) - r['busy'].get(s, 0)):.1f}" for s in HEAVY)
            print(f"{k:5d}×{km2[k]:8.2f}{heavy_s(r):9.1f}{heavy_s(r) / km2[k]:8.2f}{lin:10.2f}"
                  f"{r['peak'] / mib:10.0f}{r['peak'] / base['peak']:7.2f}   {per}")
            print(f"{'':58s}peak MiB by stage: " + "  ".join(
                f"{s} {r['peak_by_stage'].get(s, 0) / mib:.0f}" for s in HEAVY))
    big = sizes[-1]
    if "cluster" in kinds and "threads" in kinds:
        print("\ncluster / threaded time of the heavy stages: " + "  ".join(
            f"{k}× {heavy_s(results[('cluster', k)]) / heavy_s(results[('threads', k)]):.2f}"
            for k in sizes))
        # the workers warm up (imports, models) in the background from the run's start, so a
        # part of their fixed cost falls in the search stage: the whole run is the fair total
        wall = {key: r["wall"] for key, r in results.items()}
        print("cluster / threaded time of the whole run (search included): " + "  ".join(
            f"{k}× {wall[('cluster', k)] / wall[('threads', k)]:.2f}" for k in sizes))
    kind = "cluster" if "cluster" in kinds else kinds[0]
    r = results[(kind, big)]
    rate = km2[big] / heavy_s(r) / workers  # km²/s per worker
    share = {s: r["seconds"].get(s, 0.0) / heavy_s(r) for s in HEAVY}
    top = sorted(share, key=share.get, reverse=True)
    print(f"\nat {big}× on the {kind} path: {rate * 3600:.1f} km² per worker-hour "
          f"({rate:.4f} km²/s per worker, {workers} workers on a shared 2-core machine); "
          "time by stage: " + ", ".join(f"{s} {share[s]:.0%}" for s in top))
    print("\n| area | km² | worker-hours | hours on 10 workers | on 100 workers | "
          "on 1,000 workers | limited by |\n|---|---|---|---|---|---|---|")
    for name, a in AREAS:
        wh = a / rate / 3600
        print(f"| {name} | {a:,.0f} | {wh:,.0f} | {wh / 10:,.1f} | {wh / 100:,.1f} | "
              f"{wh / 1000:,.2f} | {LIMIT[top[0]]} ({share[top[0]]:.0%}), then "
              f"{LIMIT[top[1]]} ({share[top[1]]:.0%}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16],
                    help="area multiples of the base city (squares: 1, 4, 16 …)")
    ap.add_argument("--base-m", type=int, default=1280, help="side of the 1× city in metres")
    ap.add_argument("--kinds", nargs="+", default=["cluster", "threads"],
                    choices=["cluster", "threads"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--tile", type=int, default=None,
                    help="inference tile side (overlap tile/8; default: the run's 512 / 24). "
                         "A model's memory grows with its tile until the area fills one: "
                         "a tile no larger than the 1× area compares like with like")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "eocube-bench"),
                    help="where the cities are built once (outside the repository)")
    a = ap.parse_args()
    cache = Path(a.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    archives, km2 = {}, {}
    for k in a.sizes:
        archives[k], km2[k] = city(cache, k, a.base_m, a.workers)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for k in a.sizes:
        for kind in a.kinds:
            t0 = time.perf_counter()
            results[(kind, k)] = r = run(archives[k], kind, a.workers, a.chunk, a.tile)
            print(f"  {k}× {kind}: heavy stages {heavy_s(r):.1f} s, run {r['wall']:.1f} s, "
                  f"peak {r['peak'] / 2**20:.0f} MiB (idle {r['idle'] / 2**20:.0f}) "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    report(results, km2, a.sizes, a.kinds, a.workers)


if __name__ == "__main__":
    main()
