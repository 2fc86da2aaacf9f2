"""Failure records are kept in the run folder, not in process memory (#17.3, #17.4): a read
failure recorded by a stage is in ``failures.jsonl`` (item, asset, href without its query,
class, attempts) even when the driver is SIGKILLed before the stage commits, and the next run
reports it although the store it wrote is complete and nothing is read again."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal

from eocube.pipeline.config import load_config
from eocube.pipeline.runner import FAILURES_LOG, RunFolder, read_failure_log, run_stages

#: the items the stage loads and whether it kills its own process after recording
ITEMS: list[dict] = []
DIE = [False]


def search_stage(ctx):
    ctx.output("out.txt").write_text("searched")


def cubes_stage(ctx):
    from eocube.catalog.hrefs import HrefPolicy
    from eocube.cube import FAILURES, load
    from eocube.pipeline.stages import record_read_failures, write_zarr

    cube = load(ITEMS, bands=["B04", "B08"], chunks={"x": 32, "y": 32}, on_error="nan",
                href_policy=HrefPolicy(allow_loopback=True))
    write_zarr(ctx, cube.drop_vars(FAILURES), "c.zarr")
    record_read_failures(ctx, [cube])
    if DIE[0]:  # the driver dies after recording, before the stage commits
        os.kill(os.getpid(), signal.SIGKILL)


def _run(out, items, die):
    ITEMS[:] = items
    DIE[0] = die
    cfg = load_config(None, output=out, stages=["search", "cubes"])
    folder = RunFolder(cfg.output)
    folder.create()
    with folder.lock():
        return run_stages(cfg, {"search": search_stage, "cubes": cubes_stage},
                          log=logging.getLogger("test"))


def test_a_read_failure_survives_a_killed_driver_and_is_reported_by_the_next_run(staged,
                                                                                  tmp_path):
    from eocube.testing.http import Fault, FaultServer

    gone = staged.source[2]
    out = tmp_path / "run"
    with FaultServer(root=staged.root, faults=[Fault(f"/{gone['id']}/B08\\.tif", status=404)]
                     ) as srv:
        items = staged.items(srv.url, query="?sig=SECRET")
        p = multiprocessing.get_context("spawn").Process(target=_run, args=(out, items, True))
        p.start()
        p.join(180)
        assert p.exitcode == -signal.SIGKILL
        man = json.loads((out / "manifest.json").read_text())
        assert man["stages"]["cubes"]["status"] == "running" and man["failures"] == []
        (rec,) = [r for r in read_failure_log(out) if r["kind"] == "read"]
        assert (rec["stage"], rec["item"], rec["asset"], rec["class"]) == (
            "cubes", gone["id"], "B08", "missing")
        assert rec["href"] == f"{srv.url}/{gone['id']}/B08.tif" and rec["attempts"] >= 1
        assert "SECRET" not in (out / FAILURES_LOG).read_text()
        # the store was complete when the driver died: nothing is read again, and yet the
        # run reports the failure (from the run folder) and ends completed_with_errors
        r = _run(out, items, False)
    assert r.status == "completed_with_errors"
    man = json.loads((out / "manifest.json").read_text())
    assert [(f["stage"], f["item"], f["asset"], f["class"], f["href"])
            for f in man["failures"]] == [("cubes", gone["id"], "B08", "missing", rec["href"])]
