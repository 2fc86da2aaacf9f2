"""Start-up and close of ``eocube.infer.start_client("auto")`` on this machine.

    .venv/bin/python benchmarks/cluster_start.py [--repeats 3]

Interleaved repeats of: ``start_client("auto")`` (on a CPU machine a 2-worker LocalCluster
with the torch-threads plugin) and, as the reference, the same cluster with a plugin that
imports torch in every worker at start (what ``TorchThreads`` did before it learned to leave
torch unloaded). Each is closed with ``client.close()``; the seconds of start and close and
the nanny warnings "Worker process still alive … killing" seen on close are printed.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from distributed.diagnostics.plugin import WorkerPlugin


class ImportTorch(WorkerPlugin):
    """The reference: torch imported in every worker at start."""

    name = "bench-import-torch"

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(1)


class Killed(logging.Handler):
    """Counts the nannies' "killing" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += "killing" in record.getMessage()


def once(with_torch: bool, killed: Killed) -> tuple[float, float, int]:
    from eocube.infer import start_client

    before = killed.n
    t0 = time.perf_counter()
    client = start_client("auto")
    if with_torch:
        client.register_plugin(ImportTorch())
    t1 = time.perf_counter()
    client.close()
    return t1 - t0, time.perf_counter() - t1, killed.n - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    killed = Killed()
    logging.getLogger("distributed.nanny").addHandler(killed)
    once(False, killed)  # warm the page cache for both
    runs: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
    for _ in range(a.repeats):
        for with_torch in (False, True):
            runs[with_torch].append(once(with_torch, killed))
    print(f"{'':44s}{'start s (runs)':>24s}{'close s':>9s}{'killed':>8s}")
    for with_torch, what in ((False, 'start_client("auto")'),
                             (True, "the same + torch imported in every worker")):
        r = runs[with_torch]
        print(f"{what:44s}{' '.join(f'{s:.1f}' for s, _, _ in r):>24s}"
              f"{statistics.median(c for _, c, _ in r):9.1f}{sum(k for _, _, k in r):8d}")
    paired = [t[0] / f[0] for f, t in zip(runs[False], runs[True], strict=True)]
    print("start with torch imported / without, per repeat: "
          + " ".join(f"{p:.2f}" for p in paired) + " (2-core machine, shared)")


if __name__ == "__main__":
    main()
