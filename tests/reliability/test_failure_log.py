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

#: the items the stage loads and whether it kills its own process after recording (or, with
#: "written", after its write and before it records: the window a journal closes)
ITEMS: list[dict] = []
DIE: list[bool | str] = [False]


def search_stage(ctx):
    ctx.output("out.txt").write_text("searched")


def cubes_stage(ctx):
    from eocube.catalog.hrefs import HrefPolicy
    from eocube.cube import FAILURES, load
    from eocube.pipeline.stages import read_journal, record_read_failures, write_zarr

    cube = load(ITEMS, bands=["B04", "B08"], chunks={"x": 32, "y": 32}, on_error="nan",
                href_policy=HrefPolicy(allow_loopback=True),
                failure_journal=read_journal(ctx) if JOURNAL[0] else None)
    write_zarr(ctx, cube.drop_vars(FAILURES), "c.zarr")
    if DIE[0] == "written":  # the driver dies with the store written, nothing recorded yet
        os.kill(os.getpid(), signal.SIGKILL)
    record_read_failures(ctx, [cube])
    if DIE[0]:  # the driver dies after recording, before the stage commits
        os.kill(os.getpid(), signal.SIGKILL)


JOURNAL = [True]


def _run(out, items, die, journal=True):
    ITEMS[:] = items
    DIE[0] = die
    JOURNAL[0] = journal
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


def _killed_after_the_write(staged, tmp_path, journal: bool):
    from eocube.testing.http import Fault, FaultServer

    gone = staged.source[2]
    out = tmp_path / "run"
    with FaultServer(root=staged.root, faults=[Fault(f"/{gone['id']}/B08\\.tif", status=404)]
                     ) as srv:
        items = staged.items(srv.url, query="?sig=SECRET")
        p = multiprocessing.get_context("spawn").Process(target=_run,
                                                         args=(out, items, "written", journal))
        p.start()
        p.join(180)
        assert p.exitcode == -signal.SIGKILL
        assert not [r for r in read_failure_log(out) if r["kind"] == "read"]  # none yet
        r = _run(out, items, False, journal)  # resumes: the complete store is not read again
    return r, gone, out


def test_a_read_failure_of_a_write_killed_before_it_was_recorded_is_kept_by_the_journal(
        staged, tmp_path):
    r, gone, out = _killed_after_the_write(staged, tmp_path, journal=True)
    assert r.status == "completed_with_errors"
    man = json.loads((out / "manifest.json").read_text())
    assert [(f["stage"], f["item"], f["asset"], f["class"]) for f in man["failures"]] == [
        ("cubes", gone["id"], "B08", "missing")]
    journal = out / "cubes" / "read_failures"
    assert "SECRET" not in "".join(p.read_text() for p in journal.glob("*.jsonl"))


def test_without_the_journal_that_failure_is_lost(staged, tmp_path):
    # what the journal is for: the same kill, and the resumed run reports nothing
    r, _, out = _killed_after_the_write(staged, tmp_path, journal=False)
    assert r.status == "completed"
    assert json.loads((out / "manifest.json").read_text())["failures"] == []


def test_a_journalled_failure_outlives_the_memory_of_the_process_that_read(staged, tmp_path):
    import pytest

    from eocube.catalog.hrefs import HrefPolicy
    from eocube.cube import FAILURES, load, read_failures
    from eocube.cube.guard import forget_failures
    from eocube.errors import ConfigError
    from eocube.testing.http import Fault, FaultServer

    gone = staged.source[1]
    kw = dict(bands=["B04", "B08"], chunks={"x": 32, "y": 32},
              href_policy=HrefPolicy(allow_loopback=True))
    with FaultServer(root=staged.root, faults=[Fault(f"/{gone['id']}/B04\\.tif", status=404)]
                     ) as srv:
        items = staged.items(srv.url, query="?sig=SECRET")
        with pytest.raises(ConfigError, match="on_error='nan'"):
            load(items, on_error="raise", failure_journal=tmp_path / "j", **kw)
        cube = load(items, on_error="nan", failure_journal=tmp_path / "j", **kw)
        cube.drop_vars(FAILURES).compute()
    forget_failures()  # as if the reading process had died
    (rec,) = read_failures(cube, compute=False)
    assert (rec["item"], rec["asset"], rec["class"]) == (gone["id"], "B04", "missing")
    assert "SECRET" not in rec["href"]
    bare = cube.copy()
    bare[FAILURES].attrs.pop("eocube:failure_journal")
    assert read_failures(bare, compute=False) == []  # without the journal: gone with it
