"""The resumable runner on fake stages: commit order, resume, staleness, lock, foreign folders."""

from __future__ import annotations

import hashlib
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


def _run_logged(cfg, stages, caplog):
    folder = RunFolder(cfg.output)
    folder.create()
    with folder.lock(), caplog.at_level(logging.INFO, logger="test"):
        return run_stages(cfg, stages, log=logging.getLogger("test"))


def tiled_cubes(ctx):
    """A tiled stage: one file per tile, then their merge; FAIL_AT names a tile that raises."""
    def work(tid):
        TILE_CALLS.append(tid)
        if tid == FAIL_AT[0]:
            raise RuntimeError(f"died in tile {tid}")
        ctx.tile_output(tid, "t.txt").write_text(tid)

    ctx.each_tile(["a", "b", "c", "d"], work)
    ctx.output("merged.txt").write_text("".join(
        (ctx.dir / "tiles" / t / "t.txt").read_text() for t in "abcd"))


TILE_CALLS: list[str] = []
FAIL_AT: list[str | None] = [None]


def test_a_tiled_stage_commits_each_tile_and_a_rerun_redoes_only_the_others(tmp_path, caplog):
    cfg = load_config(None, output=tmp_path / "run", stages=["search", "cubes"])
    stages = {**Fake().stages(), "cubes": tiled_cubes}
    TILE_CALLS.clear()
    FAIL_AT[0] = "c"  # the stage dies in its third tile
    with pytest.raises(RuntimeError, match="died in tile c"):
        _run_logged(cfg, stages, caplog)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    tiles = man["stages"]["cubes"]["tiles"]
    assert man["stages"]["cubes"]["status"] == "failed" and sorted(tiles) == ["a", "b"]
    assert tiles["a"]["outputs"] == {"cubes/tiles/a/t.txt": hashlib.sha256(b"a").hexdigest()}
    TILE_CALLS.clear()
    FAIL_AT[0] = None
    caplog.clear()
    r = _run_logged(cfg, stages, caplog)
    assert r.status == "completed" and TILE_CALLS == ["c", "d"]
    assert r.tiles == {"cubes": {"ran": ("c", "d"), "skipped": ("a", "b")}}
    assert "stage cubes: skipped tile a (committed)" in caplog.text
    assert "stage cubes: skipped tile b (committed)" in caplog.text
    assert (tmp_path / "run" / "cubes" / "merged.txt").read_text() == "abcd"
    # a committed tile whose output changed is not committed any more
    (tmp_path / "run" / "cubes" / "tiles" / "b" / "t.txt").write_text("tampered")
    (tmp_path / "run" / "cubes" / "merged.txt").write_text("tampered")
    TILE_CALLS.clear()
    r = _run_logged(cfg, stages, caplog)
    assert TILE_CALLS == ["b"] and r.tiles["cubes"]["skipped"] == ("a", "c", "d")
    TILE_CALLS.clear()
    r = _run_logged(cfg, stages, caplog)
    assert TILE_CALLS == [] and r.ran == () and r.tiles == {}


COMPUTED: list[tuple[int, ...]] = []
BROKEN = [True]


def _flaky(block, block_info=None):
    if block_info is None:  # dask probing the output type
        return block
    where = tuple(block_info[0]["chunk-location"])
    COMPUTED.append(where)
    if where == (0, 1, 1) and BROKEN[0]:
        raise OSError("bad sector")
    return block


def flaky_cubes(ctx):
    """A stage whose chunk (0, 1, 1) fails while BROKEN is set."""
    from eocube.pipeline.stages import write_zarr
    from eocube.testing import scenes as scene

    c = scene.cube(64, 64, 1, chunks=32)["B02"]
    write_zarr(ctx, c.copy(data=c.data.map_blocks(_flaky, dtype=c.dtype)), "x.zarr")


def reads_cubes(ctx):
    import xarray as xr

    x = xr.open_zarr(ctx.input("cubes", "x.zarr"))["B02"]
    ctx.output("out.txt").write_text(str(int(x.isnull().sum())))


def test_a_failed_chunk_is_retried_by_the_next_run_which_then_completes(tmp_path):
    cfg = load_config(None, output=tmp_path / "run", stages=["search", "cubes", "inference"])
    stages = {**Fake().stages(), "cubes": flaky_cubes, "inference": reads_cubes}
    folder = RunFolder(cfg.output)
    folder.create()
    COMPUTED.clear()
    BROKEN[0] = True
    with folder.lock():
        r = run_stages(cfg, stages, log=logging.getLogger("test"))
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert r.status == man["status"] == "completed_with_errors"
    assert man["stages"]["cubes"]["status"] == "incomplete"  # not done: the next run retries
    assert [f["chunk"] for f in man["failures"]] == [[0, 1, 1]]
    assert sorted(COMPUTED) == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]
    assert (tmp_path / "run" / "inference" / "out.txt").read_text() == str(32 * 32)
    COMPUTED.clear()
    BROKEN[0] = False  # same configuration, the fault gone
    with folder.lock():
        r = run_stages(cfg, stages, log=logging.getLogger("test"))
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert COMPUTED == [(0, 1, 1)]  # only the failed chunk
    assert r.status == man["status"] == "completed" and man["failures"] == []
    assert man["stages"]["cubes"]["status"] == "done"
    assert r.ran == ("cubes", "inference")  # its reader reruns on the complete data
    assert (tmp_path / "run" / "inference" / "out.txt").read_text() == "0"
    COMPUTED.clear()
    with folder.lock():
        r = run_stages(cfg, stages, log=logging.getLogger("test"))
    assert r.ran == () and COMPUTED == []


def flaky_tiles(ctx):
    """A tiled stage whose tile "b" has a chunk failing while BROKEN is set."""
    from eocube.pipeline.stages import write_zarr
    from eocube.testing import scenes as scene

    def work(tid):
        TILE_CALLS.append(tid)
        c = scene.cube(64, 64, 1, chunks=32)["B02"]
        data = c.data.map_blocks(_flaky, dtype=c.dtype) if tid == "b" else c.data
        write_zarr(ctx, c.copy(data=data), "x.zarr", tile=tid)

    ctx.each_tile(["a", "b", "c"], work)


def test_a_tile_with_a_failed_chunk_is_retried_alone_by_the_next_run(tmp_path):
    cfg = load_config(None, output=tmp_path / "run", stages=["search", "cubes"])
    stages = {**Fake().stages(), "cubes": flaky_tiles}
    folder = RunFolder(cfg.output)
    folder.create()
    TILE_CALLS.clear()
    COMPUTED.clear()
    BROKEN[0] = True
    with folder.lock():
        r = run_stages(cfg, stages, log=logging.getLogger("test"))
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    tiles = man["stages"]["cubes"]["tiles"]
    assert r.status == "completed_with_errors" and man["stages"]["cubes"]["status"] == "incomplete"
    assert {t: v["status"] for t, v in tiles.items()} == {"a": "done", "b": "incomplete",
                                                          "c": "done"}
    assert [(f["tile"], f["chunk"]) for f in man["failures"]] == [("b", [0, 1, 1])]
    TILE_CALLS.clear()
    COMPUTED.clear()
    BROKEN[0] = False
    with folder.lock():
        r = run_stages(cfg, stages, log=logging.getLogger("test"))
    assert TILE_CALLS == ["b"] and COMPUTED == [(0, 1, 1)]  # the tile resumes its store
    assert r.status == "completed" and r.tiles["cubes"]["skipped"] == ("a", "c")
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["failures"] == [] and man["stages"]["cubes"]["tiles"]["b"]["status"] == "done"


def _record_then_die(out):
    cfg = load_config(None, output=out, stages=["search", "cubes"])
    folder = RunFolder(cfg.output)
    folder.create()

    def cubes(ctx):
        flaky_cubes(ctx)  # records the failed chunk …
        os.kill(os.getpid(), signal.SIGKILL)  # … and the driver dies before the stage commits

    cubes.__qualname__ = "flaky_cubes"
    with folder.lock():
        run_stages(cfg, {**Fake().stages(), "cubes": cubes}, log=logging.getLogger("test"))


def test_a_failure_is_in_the_run_folder_when_the_driver_is_killed(tmp_path):
    from eocube.pipeline.runner import FAILURES_LOG, read_failure_log

    # spawn: a forked child could inherit a lock held by a thread of this test process
    p = multiprocessing.get_context("spawn").Process(target=_record_then_die,
                                                     args=(tmp_path / "run",))
    p.start()
    p.join(120)
    assert p.exitcode == -signal.SIGKILL
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["stages"]["cubes"]["status"] == "running" and man["failures"] == []
    (rec,) = read_failure_log(tmp_path / "run")
    assert (rec["stage"], rec["kind"], rec["output"], rec["chunk"]) == (
        "cubes", "chunk", "cubes/x.zarr", [0, 1, 1])
    assert "bad sector" in rec["error"] and rec["pid"] == p.pid
    assert (tmp_path / "run" / FAILURES_LOG).read_text().count("\n") == 1


def test_a_stage_whose_code_changed_reruns_with_what_follows(tmp_path, monkeypatch):
    # the stage hash carries a digest of the stage's module source: an eocube upgraded from
    # git at the same version number reruns the changed stage instead of keeping its results
    import importlib

    src = tmp_path / "mystage.py"
    src.write_text("def fn(ctx):\n    ctx.output('out.txt').write_text('v1')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("mystage")
    cfg = load_config(None, output=tmp_path / "run")
    fake = Fake()
    stages = {**fake.stages(), "features": mod.fn}
    folder = RunFolder(cfg.output)
    folder.create()
    with folder.lock():
        run_stages(cfg, stages, log=logging.getLogger("test"))
        fake.calls.clear()
        r = run_stages(cfg, stages, log=logging.getLogger("test"))
        assert r.ran == () and fake.calls == []
        src.write_text("def fn(ctx):\n    ctx.output('out.txt').write_text('v2')  # fixed\n")
        mod = importlib.reload(mod)
        r = run_stages(cfg, {**stages, "features": mod.fn}, log=logging.getLogger("test"))
    after = STAGES[STAGES.index("features"):]
    assert r.ran == after and fake.calls == list(after[1:])
    assert (tmp_path / "run" / "features" / "out.txt").read_text() == "v2"


def test_the_warm_up_of_a_run_follows_its_stages_and_models(tmp_path):
    from eocube.pipeline.config import load_config
    from eocube.pipeline.run import warm_up

    cfg = load_config(None, output=str(tmp_path / "run"))
    w = warm_up(cfg)
    assert w.modules.index("rasterio") < w.modules.index("torch") < w.modules.index(
        "eocube.change._numba")  # in flow order
    assert [r.name for r in w.weights] == ["urban_fusion", "change_siamdiff", "buildings_vhr"]
    assert w.threads == 1 and w.device == cfg.inference.device
    no_vhr = warm_up(cfg.model_copy(update={"sensors": ["s2", "s1"]}))
    assert [r.name for r in no_vhr.weights] == ["urban_fusion", "change_siamdiff"]
    early = warm_up(cfg.model_copy(update={"stages": ["search", "cubes"]}))
    assert "torch" not in early.modules and early.weights == ()
    assert warm_up(cfg.model_copy(update={"stages": ["search"]})) is None


def test_the_read_journal_is_kept_by_a_resumed_attempt_and_emptied_by_a_fresh_one(tmp_path):
    import logging

    from eocube.pipeline.config import load_config
    from eocube.pipeline.runner import RunFolder, StageContext
    from eocube.pipeline.stages import READ_JOURNAL, read_journal

    cfg = load_config(None, output=str(tmp_path / "run"))
    folder = RunFolder(cfg.output)
    folder.create()
    ctx = StageContext(cfg, folder, "cubes", logging.getLogger("test"))
    j = ctx.dir / READ_JOURNAL
    j.mkdir(parents=True)
    (j / "x.jsonl").write_text("{}\n")
    (j / "notes.txt").write_text("not eocube's")
    ctx.resume = True
    assert read_journal(ctx) == j and (j / "x.jsonl").exists()
    ctx.resume = False
    assert read_journal(ctx) == j and not (j / "x.jsonl").exists()
    assert (j / "notes.txt").exists()  # only the journal's own files go
    ctx.tile, ctx.tile_fresh = "32N-0001-0002", False
    assert read_journal(ctx) == ctx.dir / "tiles" / "32N-0001-0002" / READ_JOURNAL
