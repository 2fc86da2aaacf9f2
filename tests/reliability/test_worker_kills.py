"""Killed workers during a resumable inference write (#17, Dask): one of four worker
processes killed at 30 % and again at 70 % of the chunks; the store equals an undisturbed
run bit for bit, and every chunk is committed (each commit logged by the worker that made
it, through a worker plugin that outlives the restarts)."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from eocube.testing import scenes as scene

distributed = pytest.importorskip("distributed")
pytest.importorskip("torch")
KW = dict(tile=64, overlap=16, device="cpu", batch_size=4)


class CommitLog(distributed.WorkerPlugin):
    """Logs each committed Zarr chunk to ``path`` (one line, appended) and slows each
    forward pass by ``slow`` seconds so that the kills land mid-write (test instrumentation,
    installed again on every restarted worker)."""

    name = "eocube-commit-log"

    def __init__(self, path: str, slow: float) -> None:
        self.path, self.slow = path, slow

    def setup(self, worker) -> None:
        import eocube.infer.blocks as blocks
        import eocube.infer.runtime as runtime
        import eocube.io.zarr_store as zs

        write, path, slow = zs._write_block, self.path, self.slow
        if getattr(write, "logged", False):
            return

        def logged(block, *, store, var, block_info=None):
            out = write(block, store=store, var=var, block_info=block_info)
            with open(path, "a") as f:
                f.write(f"{var} {tuple(block_info[0]['chunk-location'])} {os.getpid()}\n")
            return out

        logged.logged = True  # type: ignore[attr-defined]
        zs._write_block = logged
        forward = runtime.forward

        def slowed(*a, _f=forward):
            time.sleep(slow)
            return _f(*a)

        blocks.forward = slowed


def test_two_kills_of_four_workers_leave_the_store_bit_identical(tmp_path):
    from eocube.infer import predict, start_client, to_zarr

    weights = scene.unet_weights(tmp_path / "unet.safetensors")
    c = scene.cube(128, 256, 2, chunks=64)  # 2 dates × 2 × 4 chunks
    log = tmp_path / "commits.log"
    client = start_client("local", n_workers=4, threads_per_worker=1, torch_threads=1,
                          memory_limit="1GiB")
    try:
        with client.as_current():  # the undisturbed run, on the same workers
            to_zarr(predict(c, weights, **KW), tmp_path / "undisturbed.zarr")
        client.register_plugin(CommitLog(str(log), 0.1))
        store = tmp_path / "kills.zarr"
        result: dict = {}
        t = threading.Thread(target=lambda: result.setdefault(
            "r", to_zarr(predict(c, weights, **KW), store)))
        killed = []
        with client.as_current():
            t.start()
            deadline = time.time() + 240
            for share in (0.3, 0.7):
                while t.is_alive() and time.time() < deadline and (
                        _lines(log) < share * 16):
                    time.sleep(0.01)
                assert t.is_alive(), f"the write finished before the kill at {share:.0%}"
                pids = list(client.run(os.getpid).values())
                victim = next(p for p in pids if p not in killed)
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
            t.join(240)
        assert not t.is_alive(), "the write did not finish within 4 minutes"
    finally:
        client.close()
    report = result["r"]
    assert report.chunks_total == report.chunks_written == 16
    back = xr.open_zarr(store)
    assert back.attrs["eocube_complete"]
    ref = xr.open_zarr(tmp_path / "undisturbed.zarr")["builtup"].values
    np.testing.assert_array_equal(back["builtup"].values, ref)  # bit for bit
    commits = collections.Counter(line.rsplit(" ", 1)[0] for line in
                                  log.read_text().splitlines())
    assert len(commits) == 16
    again = {k: n for k, n in commits.items() if n > 1}
    print(f"\n2 workers of 4 killed; {sum(commits.values())} commits for 16 chunks, "
          f"recommitted: {again}")
    # a chunk is committed again only if the killed worker had committed it and its result
    # (needed by the client) died with it: identical bytes rewritten
    assert sum(commits.values()) - 16 <= 2 * 4


def _lines(p: Path) -> int:
    return len(p.read_text().splitlines()) if p.exists() else 0
