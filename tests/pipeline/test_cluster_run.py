"""`eocube run --cluster tcp://…` against a scheduler and workers started as separate
``dask scheduler`` / ``dask worker`` processes on loopback: the same outputs as the threaded
run, and a clean shutdown (no worker killed)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eocube.catalog.server import free_port
from eocube.pipeline import STAGES
from tests.pipeline.conftest import output_sums, tiny_config


def _dask() -> str:
    exe = Path(sys.executable).with_name("dask")
    return str(exe) if exe.exists() else shutil.which("dask") or "dask"


def _wait_for_workers(address: str, n: int, timeout: float = 120.0) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as c:
        c.wait_for_workers(n, timeout=timeout)


@pytest.fixture
def dask_processes(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("scheduler", "worker")}
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    sched = subprocess.Popen([_dask(), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--dashboard-address", "127.0.0.1:0", "--no-show"],
                             stdout=logs["scheduler"], stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
    worker = subprocess.Popen([_dask(), "worker", address, "--nworkers", "2", "--nthreads", "1",
                               "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                               "--memory-limit", "4GiB"],
                              stdout=logs["worker"], stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
    try:
        _wait_for_workers(address, 2)
        yield address, tmp_path
    finally:
        for p in (worker, sched):
            with_timeout = time.monotonic() + 30
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
            while p.poll() is None and time.monotonic() < with_timeout:
                time.sleep(0.1)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for f in logs.values():
            f.close()


def test_a_run_on_separate_scheduler_and_worker_processes(tiny_archive, tiny_run, dask_processes):
    address, tmp_path = dask_processes
    out = tmp_path / "run"
    cfg = tiny_config(tiny_archive, out)
    r = subprocess.run([sys.executable, "-m", "eocube.cli", "run", str(cfg), "--cluster",
                        address], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (out / "run.log").read_text()
    assert "dask: 2 workers; dashboard at http://127.0.0.1:" in log
    # the same outputs as the threaded run (search holds only this run's own item paths)
    same = STAGES[1: STAGES.index("evaluation") + 1]
    assert output_sums(out, same) == output_sums(tiny_run, same)
    # the work ran on the workers, and the run left them alive and unharmed
    from distributed import Client

    with Client(address, timeout=30) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        # the run warmed the workers in the background (imports and the three models, each
        # built once per worker however many tasks used it), then took its plugin back
        assert re.search(r"dask: the workers import \d+ modules and build 3 models", log)
        from eocube.infer import WeightsRef

        warmed = {WeightsRef.of(m).sha256 for m in ("urban_fusion", "change_siamdiff",
                                                    "buildings_vhr")}

        def cache() -> tuple[list[str], int]:
            from eocube.counters import stats
            from eocube.infer.runtime import _MODELS
            return [k[0] for k in _MODELS], stats()["models_built"]

        for shas, built in c.run(cache).values():
            assert warmed <= set(shas) and built == len(shas), (shas, built)
        plugins = c.run(lambda dask_worker: list(dask_worker.plugins))
        assert not any(n.startswith("eocube-warm-up") for ns in plugins.values() for n in ns)
    text = r.stdout + r.stderr
    assert "still alive" not in text and "killing" not in text.lower()
