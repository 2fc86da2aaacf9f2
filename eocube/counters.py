"""Counters of this process (chunks written, tiles run, models built …), read by tests and
benchmarks to prove what ran where: ``client.run(stats)`` gathers them from Dask workers."""

from __future__ import annotations

import collections
import os
import threading

__all__ = ["count", "reset_stats", "stats"]

_LOCK = threading.Lock()
_STATS: collections.Counter[str] = collections.Counter()


def count(key: str, n: int = 1) -> None:
    """Add ``n`` to the counter ``key`` of this process."""
    with _LOCK:
        _STATS[key] += n


def stats() -> dict[str, int]:
    """Counters of this process: ``models_built``, ``chunks`` (tile blocks run), ``tiles``,
    ``batches``, ``zarr_chunks``; with ``pid``. Gather them from workers with
    ``client.run(stats)``."""
    with _LOCK:
        return {**_STATS, "pid": os.getpid()}


def reset_stats() -> None:
    """Zero this process's counters."""
    with _LOCK:
        _STATS.clear()
