"""Benchmark: the whole pipeline on a synthetic city — seconds per stage, per km², peak memory.

    .venv/bin/python benchmarks/pipeline.py                  # the tiny city, threaded scheduler
    .venv/bin/python benchmarks/pipeline.py --preset demo --cluster local --workers 2

Builds the city first when its archive is missing (timed apart), then runs every stage into a
fresh run folder and prints, per stage, the wall time, the time per km² and the peak resident
memory of this process and its children (Dask workers), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path


class PeakMemory:
    """Peak RSS of this process plus its live children, sampled in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # a child that just exited
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def markdown(df) -> str:
    """A pipe table of ``df`` (floats to 3 decimals)."""
    cols = list(df.columns)
    rows = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        rows.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v)
                                       for v in r) + " |")
    return "\n".join(rows)


def print_evaluation(run: Path) -> None:
    """The evaluation stage's tables (every result beside its baselines), as the README has them."""
    import pandas as pd

    for name in ("builtup", "change", "population", "stock", "greening", "sdg"):
        path = run / "evaluation" / f"{name}.parquet"
        if path.exists():
            print(f"\n{name}:\n{markdown(pd.read_parquet(path).dropna(axis=1, how='all'))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "demo"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cluster", default="threads", choices=["threads", "local"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--archive", default=None, help="archive folder (default runs/<preset>-city)")
    args = ap.parse_args()

    from eocube.pipeline import STAGES, run_pipeline
    from eocube.synth import build_city, resolve_spec

    spec = resolve_spec(args.preset)
    km2 = (spec.size_m / 1000) ** 2
    archive = Path(args.archive or f"runs/{args.preset}-city-seed{args.seed}")
    if not (archive / "manifest.json").exists():
        t0 = time.perf_counter()
        build_city(archive, preset=args.preset, seed=args.seed, workers=args.workers)
        print(f"built the {args.preset} city in {time.perf_counter() - t0:.1f} s")
    out = Path(tempfile.mkdtemp(prefix="eocube-bench-")) / "run"
    try:
        t0 = time.perf_counter()
        with PeakMemory() as mem:
            result = run_pipeline(None, output=out, console=False,
                                  city={"preset": args.preset, "seed": args.seed,
                                        "archive": str(archive)},
                                  cluster={"kind": args.cluster, "workers": args.workers})
        wall = time.perf_counter() - t0
        man = json.loads((out / "manifest.json").read_text())
        print(f"\n{args.preset} city, {km2:.2f} km², cluster {args.cluster} "
              f"({args.workers} workers), status {result.status}")
        print(f"{'stage':<12}{'seconds':>9}{'s/km²':>9}")
        for s in STAGES:
            e = man["stages"][s]
            print(f"{s:<12}{e['seconds']:>9.1f}{e['seconds'] / km2:>9.2f}")
        print(f"{'total':<12}{wall:>9.1f}{wall / km2:>9.2f}   (with cluster start and catalog)")
        print(f"peak RSS of the run and its workers: {mem.peak / 2**20:.0f} MiB")
        print_evaluation(out)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
