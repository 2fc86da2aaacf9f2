"""The resumable runner on fake stages: commit order, resume, staleness, lock, foreign folders."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import time

import pytest

from eocube.errors import ConfigError
from eocube.pipeline.config import STAGES, load_config
from eocube.pipeline.runner import MARKER, RunFolder, RunLocked, run_stages


class Fake:
    """Stages that write one small file each and count their runs; one may fail."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def stage(self, name: str):
        def fn(ctx):
            self.calls.append(name)
            if name == self.fail:
                raise RuntimeError(f"{name} broke")
            up = [ctx.input(d, "out.txt").read_text() for d in _deps(name)]
            ctx.output("out.txt").write_text(f"{name}:{ctx.config.section('chunk')}:{up}")

        fn.__qualname__ = f"fake_{name}"
        return fn

    def stages(self):
        return {n: self.stage(n) for n in STAGES}


def _deps(name):
    from eocube.pipeline.config import DEPENDS

    return DEPENDS[name]


def _run(cfg, fake):
    folder = RunFolder(cfg.output)
    folder.create()
    with folder.lock():
        return run_stages(cfg, fake.stages(), log=logging.getLogger("test"))


def test_a_run_commits_every_stage_and_a_second_run_recomputes_nothing(tmp_path):
    cfg = load_config(None, output=tmp_path / "run")
    fake = Fake()
    r = _run(cfg, fake)
    assert r.status == "completed" and r.ran == STAGES and fake.calls == list(STAGES)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert all(man["stages"][s]["status"] == "done" for s in STAGES)
    assert all(len(man["stages"][s]["outputs"][f"{s}/out.txt"]) == 64 for s in STAGES)
    again = Fake()
    r2 = _run(cfg, again)
    assert again.calls == [] and r2.skipped == STAGES and r2.ran == ()


def test_a_failed_stage_is_recorded_and_the_rerun_redoes_only_it_and_what_follows(tmp_path):
    cfg = load_config(None, output=tmp_path / "run")
    with pytest.raises(RuntimeError, match="features broke"):
        _run(cfg, Fake(fail="features"))
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["status"] == "failed" and "features" in man["reason"]
    assert man["stages"]["features"]["status"] == "failed"
    fake = Fake()
    r = _run(cfg, fake)
    k = STAGES.index("features")
    assert fake.calls == list(STAGES[k:]) and r.skipped == STAGES[:k]
    assert r.status == "completed"


def test_changing_one_value_reruns_only_the_stages_downstream_of_it(tmp_path):
    _run(load_config(None, output=tmp_path / "run"), Fake())
    fake = Fake()
    # `inference` covers the inference section; change (reads inference), estimates …
    r = _run(load_config(None, output=tmp_path / "run", inference={"tile": 256}), fake)
    assert "search" in r.skipped and "cubes" in r.skipped and "zones" in r.skipped
    assert fake.calls[0] == "inference"
    assert set(fake.calls) == {"inference", "change", "buildings", "features", "estimates",
                               "evaluation", "report"}


def test_a_tampered_output_is_detected_by_its_checksum_and_recomputed(tmp_path):
    cfg = load_config(None, output=tmp_path / "run")
    _run(cfg, Fake())
    (tmp_path / "run" / "zones" / "out.txt").write_text("tampered")
    fake = Fake()
    _run(cfg, fake)
    assert fake.calls[0] == "zones"


def test_a_folder_with_foreign_files_is_refused_untouched(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="did not create"):
        RunFolder(out).create()
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert not (out / MARKER).exists()


def test_a_folder_holding_only_an_eocube_archive_is_accepted(tmp_path):
    # `eocube synth runs/x/archive`, then `eocube run` with output runs/x
    out = tmp_path / "run"
    (out / "archive").mkdir(parents=True)
    (out / "archive" / "manifest.json").write_text('{"generator": "eocube.synth"}')
    RunFolder(out).create()
    assert (out / MARKER).exists()
    (out / "notes.txt").write_text("mine")
    (out / MARKER).unlink()
    with pytest.raises(ConfigError, match="did not create"):
        RunFolder(out).create()


def _hold_lock(path, ready, release):
    folder = RunFolder(path)
    with folder.lock():
        ready.set()
        release.wait(30)


def _locked_by_a_child(tmp_path):
    """A run folder, and a child process holding its lock (with the event that releases it)."""
    folder = RunFolder(tmp_path / "run")
    folder.create()
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(folder.root, ready, release))
    p.start()
    assert ready.wait(20)
    return folder, p, release


def test_two_runs_cannot_write_into_one_folder(tmp_path):
    folder, p, release = _locked_by_a_child(tmp_path)
    try:
        with pytest.raises(RunLocked, match=f"pid {p.pid}"), folder.lock():
            pass
    finally:
        release.set()
        p.join(20)
    with folder.lock():  # released when its holder is done
        pass


def test_a_killed_holder_releases_the_lock(tmp_path):
    folder, p, _ = _locked_by_a_child(tmp_path)
    os.kill(p.pid, signal.SIGKILL)
    p.join(20)
    t0 = time.monotonic()
    with folder.lock():
        pass
    assert time.monotonic() - t0 < 5


def test_a_stage_whose_upstream_is_missing_is_refused(tmp_path):
    cfg = load_config(None, output=tmp_path / "run", stages=["estimates"])
    with pytest.raises(ConfigError, match="'estimates' reads the outputs of 'buildings'"):
        _run(cfg, Fake())


def test_output_names_are_confined_to_the_stage_folder(tmp_path):
    from eocube.pipeline.runner import StageContext

    cfg = load_config(None, output=tmp_path / "run")
    folder = RunFolder(cfg.output)
    folder.create()
    ctx = StageContext(cfg, folder, "zones", logging.getLogger("test"))
    assert ctx.output("taz.parquet") == tmp_path / "run" / "zones" / "taz.parquet"
    for bad in ("../manifest.json", "/etc/passwd", "a/../../x"):
        with pytest.raises(ConfigError, match="leaves the stage's folder"):
            ctx.output(bad)


def test_a_failed_chunk_is_recorded_and_the_run_completes_with_errors(tmp_path):
    from eocube.pipeline.stages import write_zarr
    from eocube.testing import scenes as scene

    def boom(block, block_info=None):
        if tuple(block_info[0]["chunk-location"]) == (0, 1, 1):
            raise OSError("bad sector")
        return block

    def cubes(ctx):
        c = scene.cube(64, 64, 1, chunks=32)["B02"]
        write_zarr(ctx, c.copy(data=c.data.map_blocks(boom, dtype=c.dtype)), "x.zarr")

    fake = Fake()
    stages = {**fake.stages(), "cubes": cubes}
    cfg = load_config(None, output=tmp_path / "run", stages=["search", "cubes"])
    folder = RunFolder(cfg.output)
    folder.create()
    with folder.lock():
        r = run_stages(cfg, stages, log=logging.getLogger("test"))
    assert r.status == "completed_with_errors"
    (f,) = r.failures
    assert f["stage"] == "cubes" and f["output"] == "cubes/x.zarr" and f["chunk"] == [0, 1, 1]
    assert "bad sector" in f["error"]
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["status"] == "completed_with_errors" and man["failures"] == [f]
