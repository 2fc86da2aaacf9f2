"""Where inference runs: a local ``distributed.LocalCluster`` of worker processes,
``dask_cuda.LocalCUDACluster`` (one worker per GPU) when CUDA is present, or any scheduler
address; plus worker plugins that fix torch's thread count and pre-load a model.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed import Nanny
from distributed.diagnostics.plugin import WorkerPlugin

from eocube import _deps
from eocube.errors import ConfigError
from eocube.infer.runtime import WeightsRef, get_model

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

__all__ = ["PreloadModel", "TorchThreads", "WarmUp", "start_client"]


class TorchThreads(WorkerPlugin):
    """Set torch's intra-op threads (and OpenMP's) in every worker process.

    Keeps ``threads_per_worker × torch threads`` within the worker's cores, so workers do not
    oversubscribe the machine. A worker that has not loaded torch yet gets the count in its
    environment (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``), which torch reads when it loads: the
    plugin never imports torch itself, which cost about a second of CPU per worker at start-up
    (more on a loaded machine) even on workers that never run a model.
    """

    name = "eocube-torch-threads"

    def __init__(self, threads: int) -> None:
        self.threads = int(threads)

    def setup(self, worker: Any) -> None:
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(self.threads)
        else:
            os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(self.threads)


class PreloadModel(WorkerPlugin):
    """Build a model in every worker (and every worker that joins later) before tasks run.

    Optional: tasks build the model on first use anyway; pre-loading moves that cost (and a
    bad-weights error) to cluster start.
    """

    def __init__(self, weights: str | Path | WeightsRef, *, device: str = "auto") -> None:
        self.ref = WeightsRef.of(weights)
        self.device = device
        self.name = f"eocube-preload-{self.ref.sha256[:16]}-{device}"

    def setup(self, worker: Any) -> None:
        get_model(self.ref, device=self.device)


class WarmUp(WorkerPlugin):
    """Import modules and build models in a background thread of every worker (and of every
    worker that joins later), while the worker runs the tasks it is given.

    A fresh worker process pays its imports (torch alone about 1.4 s of CPU) and every model
    build on the first task that needs them, and each worker pays them again: on a small area
    those fixed costs made the cluster path slower than the threaded scheduler, whose process
    had them already. :func:`eocube.pipeline.run_pipeline` registers one at the start of a run
    for what its stages will need, so the workers prepare inference while the cubes stage
    reads. Unlike :class:`PreloadModel`, ``setup`` returns at once; a failure is logged, never
    raised (the task that needs the module or model raises it then, with its context).

    Parameters
    ----------
    modules
        Modules to import, in order.
    weights
        Weights to build into the per-process model cache (:func:`get_model`), after the
        modules.
    device, threads
        As the tasks will call :func:`get_model` (the same ``threads``, so the bits are the
        same whichever built the model).
    """

    def __init__(self, modules: Iterable[str] = (), weights: Iterable[str | Path | WeightsRef]
                 = (), *, device: str = "auto", threads: int | None = None) -> None:
        import hashlib

        self.modules = tuple(modules)
        self.weights = tuple(WeightsRef.of(w) for w in weights)
        self.device = device
        self.threads = threads
        key = repr((self.modules, [w.sha256 for w in self.weights], device, threads))
        self.name = f"eocube-warm-up-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        self.thread: threading.Thread | None = None
        self.seconds: float | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("thread", "seconds")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, thread=None, seconds=None)

    def setup(self, worker: Any = None) -> None:
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self.thread.start()

    def run(self) -> None:
        """Do the imports and builds in this thread (``setup`` runs it in the background)."""
        log = logging.getLogger("eocube.infer")
        t0 = time.perf_counter()
        for m in self.modules:
            try:
                importlib.import_module(m)
            except Exception as e:  # the task that needs it raises it with its context
                log.warning("warm-up: import %s failed: %s: %s", m, type(e).__name__, e)
        for ref in self.weights:
            try:
                get_model(ref, device=self.device, threads=self.threads)
            except Exception as e:
                log.warning("warm-up: model %s failed: %s: %s", ref.name or ref.path,
                            type(e).__name__, e)
        self.seconds = time.perf_counter() - t0
        log.debug("warm-up: %d modules, %d models in %.1f s", len(self.modules),
                  len(self.weights), self.seconds)


#: Seconds a closing nanny waits for its worker process to exit before it kills it.
#: distributed waits 4 s (0.8 × its 5 s close timeout); a worker that has loaded torch needs
#: 0.7–0.9 s just to finalise its interpreter on an idle 2-core machine, several times that on a
#: loaded one, so every ``client.close()`` there printed "Worker process still alive after 4.0
#: seconds, killing" and killed workers that were exiting cleanly.
WORKER_EXIT_WAIT = 30.0


class _PatientNanny(Nanny):
    """A Nanny that gives its worker :data:`WORKER_EXIT_WAIT` seconds to exit on close."""

    async def close(self, timeout: float = WORKER_EXIT_WAIT / 0.8,  # type: ignore[override]
                    reason: str = "nanny-close") -> Any:
        return await super().close(timeout=timeout, reason=reason)


def _cuda_available() -> bool:
    if not _deps.has("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _glibc_malloc_defaults() -> Any:
    """Dask config under which nannies spawn workers without ``MALLOC_TRIM_THRESHOLD_``.

    distributed sets it to 64 KiB so freed memory returns to the OS quickly; any explicit value
    also switches off glibc's adaptive mmap threshold, and every torch activation buffer then
    becomes a fresh mmap with its page faults: a U-Net forward pass ran 45 % slower in such a
    worker than in a plain process (0.52 s against 0.36 s, measured here).
    """
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return dask.config.set({"distributed.nanny.pre-spawn-environ": environ})


def start_client(target: str = "auto", /, *, n_workers: int | None = None,
                 threads_per_worker: int = 1, torch_threads: int | None = None,
                 memory_limit: str | float = "auto",
                 preload: str | Path | WeightsRef | None = None, device: str = "auto"
                 ) -> Client:
    """A ``distributed.Client`` for inference.

    Parameters
    ----------
    target
        ``"local"``: a LocalCluster of worker processes on 127.0.0.1; ``"cuda"``: a
        ``dask_cuda.LocalCUDACluster`` with one worker per visible GPU; ``"auto"``: ``"cuda"``
        when torch sees CUDA and dask-cuda is installed, else ``"local"``; anything else is a
        scheduler address (``"tcp://10.0.0.5:8786"``).
    n_workers
        Worker processes of a local cluster (default: 2, or one per GPU for ``"cuda"``).
    threads_per_worker
        Dask threads per worker (tasks run concurrently in a worker).
    torch_threads
        torch intra-op threads per worker (default: 1 on a CPU cluster, so
        ``n_workers × threads_per_worker`` threads in all; unchanged on GPU workers).
    memory_limit
        Per-worker memory limit of a local cluster.
    preload
        Weights to build in every worker at start (:class:`PreloadModel`).
    device
        Device for ``preload``.

    Notes
    -----
    ``client.close()`` also closes a cluster started here for ``"local"``, waiting up to
    :data:`WORKER_EXIT_WAIT` seconds for each worker process to exit on its own before killing
    it; for ``"cuda"`` close ``client.cluster`` too.
    """
    from distributed import Client

    if target == "auto":
        target = "cuda" if _cuda_available() and _deps.has("dask_cuda") else "local"
    # the dashboard on a free loopback port, never the fixed 8787 another user may hold
    dash = "127.0.0.1:0"
    if target == "local":
        n = int(n_workers or 2)
        tt = int(torch_threads or 1)
        env = {"OMP_NUM_THREADS": str(tt), "MKL_NUM_THREADS": str(tt)}
        with _glibc_malloc_defaults():
            client = Client(n_workers=n, threads_per_worker=threads_per_worker,
                            processes=True, host="127.0.0.1", dashboard_address=dash,
                            memory_limit=memory_limit, env=env, worker_class=_PatientNanny)
        client.register_plugin(TorchThreads(tt))
    elif target == "cuda":
        _deps.require("dask_cuda", purpose="start_client('cuda')")
        if not _cuda_available():
            raise ConfigError("start_client('cuda') needs a CUDA device that torch can see; "
                              "use 'local' on a CPU machine")
        from dask_cuda import LocalCUDACluster

        kw: dict[str, Any] = {"threads_per_worker": threads_per_worker,
                              "dashboard_address": dash, "memory_limit": memory_limit,
                              "ip": "127.0.0.1"}
        if n_workers:
            kw["n_workers"] = n_workers
        client = Client(LocalCUDACluster(**kw))
        if torch_threads:
            client.register_plugin(TorchThreads(torch_threads))
    else:
        if "://" not in target and ":" not in target:
            raise ConfigError(f"target={target!r}: use 'auto', 'local', 'cuda' or a scheduler "
                              "address such as 'tcp://10.0.0.5:8786'")
        client = Client(target)
        if torch_threads:
            client.register_plugin(TorchThreads(torch_threads))
    if preload is not None:
        client.register_plugin(PreloadModel(preload, device=device))
    return client
