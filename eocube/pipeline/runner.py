"""The resumable runner: stages in flow order over one run folder, each committed as data, then
its checksums, then its manifest entry; a killed run redoes only what is missing or stale.

A stage may work tile by tile (:meth:`StageContext.each_tile`): each tile's outputs are
written, checksummed and entered in the stage's manifest record before the next tile starts,
so a rerun with the same stage hash skips the committed tiles and redoes only the others. A
stage (or tile) in which a chunk failed to be written is ``incomplete``, not done: the next run
retries it (only the failed chunks, the stores resuming) and the stages reading it rerun once
it is complete. Every failure is appended to ``failures.jsonl`` in the run folder the moment
the driver learns of it, so a killed run keeps its records.

A run folder is eocube's own: it carries a marker file from its creation, a lock held while a
run writes into it, a ``manifest.json`` (status per stage, config hash, output checksums,
seconds) and a ``run.log``. Nothing outside a folder eocube created is ever written or
deleted, and a folder with files that eocube did not create is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from eocube.errors import ConfigError, EocubeError
from eocube.io import file_sha256, write_json
from eocube.io.paths import append_jsonl, read_jsonl
from eocube.pipeline.config import DEPENDS, RunConfig, stage_hash

__all__ = ["FAILURES_LOG", "MARKER", "RunFolder", "RunResult", "StageContext", "read_failure_log",
           "run_stages"]

MARKER = ".eocube-run"
LOCK = ".eocube.lock"
MANIFEST = "manifest.json"
LOG = "run.log"
#: every failure recorded by a run, one JSON object a line, appended as it is recorded
FAILURES_LOG = "failures.jsonl"


class RunLocked(EocubeError, BlockingIOError):
    """Another eocube run holds the run folder's lock."""


class StageFailed(EocubeError, RuntimeError):
    """A stage raised; the message names it, the manifest records it."""


def now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder as the sorted (relative path, file sha256) list."""
    if path.is_file():
        return file_sha256(path)
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def read_failure_log(root: str | os.PathLike[str], /) -> list[dict[str, Any]]:
    """The failures a run folder's ``failures.jsonl`` holds, oldest first (a line cut short
    by a killed process is left out)."""
    return read_jsonl(Path(root) / FAILURES_LOG)


def _dedupe(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for r in records:
        key = json.dumps(r, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _intact(folder: RunFolder, outputs: Mapping[str, str]) -> bool:
    """Whether every output still exists with its recorded checksum."""
    for rel, sha in outputs.items():
        p = folder.root / rel
        if not p.exists() or tree_sha256(p) != sha:
            return False
    return True


#: stage statuses whose outputs were committed (an incomplete one lacks failed chunks)
COMMITTED = ("done", "incomplete")


def _eocube_archive(path: Path) -> bool:
    """Whether ``path`` is a synthetic-city archive eocube built (its manifest says so)."""
    try:
        return json.loads((path / "manifest.json").read_text()).get("generator") == "eocube.synth"
    except (OSError, ValueError):
        return False


def check_writable(root: Path) -> None:
    """Refuse, before anything is written, an output folder eocube cannot or must not use."""
    if root.exists():
        if not root.is_dir():
            raise ConfigError(f"output: {str(root)!r} exists and is not a folder")
        if not (root / MARKER).exists() and not all(_eocube_archive(p) for p in root.iterdir()):
            raise ConfigError(
                f"output: {str(root)!r} holds files that eocube did not create (no {MARKER}, "
                "and not only eocube archives); "
                "choose a new or empty folder (nothing there was touched)")
        if not os.access(root, os.W_OK):
            raise ConfigError(f"output: {str(root)!r} is not writable")
        return
    parent = root.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"output: cannot create {str(root)!r}: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"output: cannot create {str(root)!r}: {str(parent)!r} is not "
                          "writable")


@dataclasses.dataclass
class RunFolder:
    """A run folder: created with its marker, locked while a run writes into it."""

    root: Path

    def create(self) -> None:
        check_writable(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).touch()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock (fcntl, released by the OS if the process dies)."""
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise RunLocked(f"another eocube run (pid {other}) is writing into "
                                f"{str(self.root)!r}; wait for it or use another output "
                                "folder") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)

    def manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not path.exists():
            return {"eocube": "run", "version": 1, "stages": {}, "failures": []}
        return json.loads(path.read_text())

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        write_json(self.root / MANIFEST, manifest)

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage


@dataclasses.dataclass
class StageContext:
    """What a stage gets: the configuration, its folder, the outputs of the stages before it,
    a logger and the Dask client (None with the threaded scheduler).

    A tiled stage hands its tiles to :meth:`each_tile`; ``tiles`` holds the tile records
    (committed by an earlier attempt with the same stage hash, and by this one), ``tile`` the
    tile being processed, ``commit`` writes the stage's manifest record (set by the runner).
    ``resume`` says whether this attempt continues an unfinished one of the same hash (its
    stores resume) or starts over (its stores are written anew: they may hold another
    result, or one whose files were changed).
    """

    config: RunConfig
    folder: RunFolder
    name: str
    log: logging.Logger
    client: Any = None
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)  # relpath → title
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    progress: Callable[[int, int], None] | None = None
    hash: str = ""
    tiles: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    tiles_ran: list[str] = dataclasses.field(default_factory=list)
    tiles_skipped: list[str] = dataclasses.field(default_factory=list)
    tile: str | None = None
    tile_fresh: bool = True
    resume: bool = False
    commit: Callable[[], None] | None = None
    tile_outputs: dict[str, str] = dataclasses.field(default_factory=dict)

    def record_failure(self, failure: Mapping[str, Any], /) -> None:
        """Record a failure of this stage (of the tile being processed, if any): kept for the
        manifest and appended to the run folder's ``failures.jsonl`` at once; a record this
        stage holds already is not recorded twice."""
        rec = {**failure, **({"tile": self.tile} if self.tile is not None else {})}
        if _dedupe([*self.failures, rec]) == self.failures:  # carried over from the attempt
            return  # before (read back from its failure journal): recorded once
        self.failures.append(rec)
        append_jsonl(self.folder.root / FAILURES_LOG,
                     {"stage": self.name, "hash": self.hash, "recorded": now(),
                      "pid": os.getpid(), **rec})

    def tile_output(self, tile: str, name: str, /, *, title: str | None = None) -> Path:
        """The path of output ``name`` of ``tile`` (``<stage>/tiles/<tile>/<name>``),
        registered for the tile's checksum; confined to the stage's folder."""
        d = self.dir / "tiles" / tile
        path = (d / name).resolve()
        if Path(name).is_absolute() or Path(tile).name != tile or not path.is_relative_to(
                d.resolve()):
            raise ConfigError(f"output name {name!r} of tile {tile!r} of stage {self.name!r} "
                              "leaves the tile's folder; give a plain file name")
        d.mkdir(parents=True, exist_ok=True)
        self.tile_outputs[f"{self.name}/tiles/{tile}/{name}"] = title or name
        return d / name

    def each_tile(self, tiles: Iterable[str], work: Callable[[str], None], /) -> None:
        """Run ``work(tile)`` for each tile, committing each before the next.

        A tile committed by an earlier attempt of this stage (same stage hash, outputs intact)
        is skipped and its failure records kept. Any other tile runs: its outputs are written
        by ``work`` (paths from :meth:`tile_output`), then checksummed, then its record is
        entered in the stage's manifest entry. A tile in which a chunk failed is recorded
        ``incomplete``: the next run retries it, resuming its stores (``tile_fresh`` is False
        then; True for a tile started from nothing, whose stores are written anew).
        """
        tiles = list(tiles)
        for i, tid in enumerate(tiles, 1):
            rec = self.tiles.get(tid)
            if rec and rec.get("status") == "done" and _intact(self.folder, rec["outputs"]):
                self.tiles_skipped.append(tid)
                self.failures.extend(rec.get("failures", []))
                self.log.info("stage %s: skipped tile %s (committed)", self.name, tid)
                continue
            # an incomplete tile resumes: what its earlier attempt wrote stays, and so do the
            # records of it; its failed chunks are retried (recorded again if they fail again)
            resume = bool(rec) and rec.get("status") == "incomplete"
            carried = [f for f in rec.get("failures", []) if f.get("kind") != "chunk"] \
                if resume else []
            n0 = len(self.failures)
            self.tile, self.tile_fresh, self.tile_outputs = tid, not resume, {}
            t0 = time.perf_counter()
            try:
                work(tid)
            finally:
                self.tile = None
            new = self.failures[n0:]
            failures = _dedupe(carried + new)
            del self.failures[n0:]
            self.failures.extend(failures)
            # commit: the tile's data is written; now its checksums, then its manifest record
            sums = {rel: tree_sha256(self.folder.root / rel) for rel in self.tile_outputs}
            status = "incomplete" if any(f.get("kind") == "chunk" for f in new) else "done"
            dt = time.perf_counter() - t0
            self.tiles[tid] = {"status": status, "outputs": sums, "failures": failures,
                               "seconds": round(dt, 2), "finished": now()}
            if self.commit is not None:
                self.commit()
            self.tiles_ran.append(tid)
            self.log.info("stage %s: tile %s %s in %.1f s (%d of %d)", self.name, tid,
                          "committed" if status == "done" else "incomplete (chunks failed)",
                          dt, i, len(tiles))

    @property
    def dir(self) -> Path:
        d = self.folder.stage_dir(self.name)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def output(self, name: str, /, *, title: str | None = None) -> Path:
        """The path of this stage's output ``name`` (registered for its checksum and Item); a
        name is confined to the stage's folder."""
        path = (self.dir / name).resolve()
        if Path(name).is_absolute() or not path.is_relative_to(self.dir.resolve()):
            raise ConfigError(f"output name {name!r} of stage {self.name!r} leaves the stage's "
                              "folder; give a plain file name")
        self.outputs[f"{self.name}/{name}"] = title or name
        return self.dir / name

    def has(self, stage: str, name: str, /) -> bool:
        """Whether an earlier ``stage`` committed an output ``name`` (optional outputs: VHR
        footprints exist only where a VHR image does)."""
        entry = self.folder.manifest()["stages"].get(stage, {})
        return entry.get("status") in COMMITTED and f"{stage}/{name}" in entry.get("outputs", {})

    def input(self, stage: str, name: str, /) -> Path:
        """The path of output ``name`` of an earlier ``stage`` (which must have committed it)."""
        entry = self.folder.manifest()["stages"].get(stage, {})
        rel = f"{stage}/{name}"
        if entry.get("status") not in COMMITTED or rel not in entry.get("outputs", {}):
            raise StageFailed(f"stage {self.name!r} needs {rel!r}, which stage {stage!r} has "
                              "not committed; run it first (add it to stages:)")
        return self.folder.root / rel


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run did: ``status`` (completed, completed_with_errors, failed), the stages run
    and skipped, seconds per stage, the run folder, and for each tiled stage that ran the
    tiles it ran and skipped (``tiles[stage] = {"ran": (...), "skipped": (...)}``)."""

    root: Path
    status: str
    ran: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: dict[str, float]
    failures: tuple[dict[str, Any], ...]
    tiles: dict[str, dict[str, tuple[str, ...]]] = dataclasses.field(default_factory=dict)


Stage = Callable[[StageContext], None]


def stage_code(fn: Stage) -> str:
    """The identity of a stage function in the stage hash: its module and name, and a digest of
    its module's source, so that a changed stage (an upgrade from git at the same version
    number, say) reruns instead of keeping the old results."""
    module = getattr(fn, "__module__", "?")
    path = getattr(sys.modules.get(module), "__file__", None)
    try:
        st = os.stat(path) if path else None
    except OSError:
        st = None
    digest = _source_digest(path, st.st_mtime_ns, st.st_size) if st else "?"
    return f"{module}.{getattr(fn, '__qualname__', repr(fn))}:{digest}"


@functools.lru_cache(maxsize=64)
def _source_digest(path: str, mtime_ns: int, size: int) -> str:
    """The source's digest, cached per version of the file (its modification time and size)."""
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "?"


def _up_to_date(folder: RunFolder, entry: Mapping[str, Any] | None, h: str) -> bool:
    if not entry or entry.get("status") != "done" or entry.get("hash") != h:
        return False
    return _intact(folder, entry.get("outputs", {}))


def _downstream_hash(entry: Mapping[str, Any]) -> str:
    """The hash the stages reading a committed stage see: an incomplete stage's differs from
    the same stage complete, so its readers rerun once its failed chunks are written."""
    return entry["hash"] if entry.get("status") == "done" else f"{entry['hash']}:incomplete"


def run_stages(config: RunConfig, stages: Mapping[str, Stage], /, *, log: logging.Logger,
               client: Any = None, on_stage: Callable[[str, str, float], None] | None = None,
               items: Callable[[StageContext, dict[str, str]], None] | None = None,
               progress: Callable[[str], Callable[[int, int], None]] | None = None
               ) -> RunResult:
    """Run ``config.stage_list`` over the run folder ``config.output``, resuming.

    For each stage: its hash (configuration sections and upstream hashes) is compared with the
    manifest; an up-to-date stage whose outputs still match their checksums is skipped, any
    other stage runs, then its outputs' checksums and its manifest entry are written, in that
    order. A tiled stage commits tile by tile (:meth:`StageContext.each_tile`); rerun with
    the same hash it skips the committed tiles. A stage that recorded a failed chunk ends
    ``incomplete`` and is retried by the next run. A stage that raises marks the run
    ``failed`` with the reason; the stages and tiles committed before it stay committed.

    Parameters
    ----------
    config
        The checked configuration.
    stages
        Stage functions by name.
    log
        Where the run's lines go (the run log and the console).
    client
        The Dask client stages compute on (None: the threaded scheduler).
    on_stage
        Called with (stage, "ran" | "skipped", seconds) after each stage.
    items
        Called after a stage ran, to write its STAC Item(s) (given the outputs' checksums).
    progress
        Gives, for a stage name, the callback its writers report (chunks done, total) to.
    """
    folder = RunFolder(config.output)
    manifest = folder.manifest()
    manifest.update({"config": json.loads(config.model_dump_json()), "status": "running",
                     "started": now(), "pid": os.getpid()})
    manifest.setdefault("failures", [])
    folder.write_manifest(manifest)
    hashes: dict[str, str] = {n: _downstream_hash(e) for n, e in manifest["stages"].items()
                              if e.get("status") in COMMITTED}
    ran, skipped, seconds = [], [], {}
    tiles: dict[str, dict[str, tuple[str, ...]]] = {}
    for name in config.stage_list:
        for dep in DEPENDS[name]:
            if dep not in config.stage_list and dep not in hashes:
                raise ConfigError(f"stages: {name!r} reads the outputs of {dep!r}, which this "
                                  f"run folder does not have; add {dep!r} to stages")
        fn = stages[name]
        h = stage_hash(config, name, hashes, code=stage_code(fn))
        entry = manifest["stages"].get(name)
        if _up_to_date(folder, entry, h):
            skipped.append(name)
            log.info("stage %s: up to date (hash %s), skipped", name, h)
            if on_stage:
                on_stage(name, "skipped", 0.0)
            hashes[name] = h
            continue
        ctx = StageContext(config, folder, name, log, client,
                           progress=progress(name) if progress else None, hash=h)
        ctx.resume = bool(entry) and entry.get("hash") == h and entry.get("status") != "done"
        if entry and entry.get("hash") == h:
            # an earlier attempt of this very stage: its committed tiles stand, and the records
            # of what it wrote (not its failed chunks, which are retried) carry over
            ctx.tiles = dict(entry.get("tiles", {}))
            ctx.failures.extend(_dedupe([
                {k: v for k, v in f.items() if k not in ("stage", "hash", "recorded", "pid")}
                for f in read_failure_log(folder.root)
                if f.get("stage") == name and f.get("hash") == h and "tile" not in f
                and f.get("kind") != "chunk"]))
        log.info("stage %s: running (hash %s)", name, h)
        t0 = time.perf_counter()
        live = {"status": "running", "hash": h, "started": now(), "tiles": ctx.tiles}
        manifest["stages"][name] = live
        folder.write_manifest(manifest)

        ctx.commit = lambda: folder.write_manifest(manifest)  # live["tiles"] is ctx.tiles
        try:
            fn(ctx)
        except BaseException as e:
            reason = f"stage {name!r} failed: {type(e).__name__}: {e}".splitlines()[0]
            manifest["stages"][name] = {"status": "failed", "hash": h, "reason": reason,
                                        "tiles": ctx.tiles, "finished": now()}
            manifest.update({"status": "failed", "reason": reason, "finished": now()})
            folder.write_manifest(manifest)
            log.error(reason)
            raise
        # commit: the data is written; now its checksums, then the manifest entry
        sums = {rel: tree_sha256(folder.root / rel) for rel in ctx.outputs}
        if items:
            items(ctx, sums)
        dt = time.perf_counter() - t0
        incomplete = any(f.get("kind") == "chunk" for f in ctx.failures)
        manifest["stages"][name] = {"status": "incomplete" if incomplete else "done",
                                    "hash": h, "outputs": sums,
                                    "titles": ctx.outputs, "properties": ctx.properties,
                                    "seconds": round(dt, 2), "finished": now(),
                                    **({"tiles": ctx.tiles} if ctx.tiles else {})}
        manifest["failures"] = [f for f in manifest["failures"] if f.get("stage") != name]
        manifest["failures"] += [{"stage": name, **f} for f in ctx.failures]
        folder.write_manifest(manifest)
        hashes[name] = _downstream_hash(manifest["stages"][name])
        ran.append(name)
        seconds[name] = round(dt, 2)
        if ctx.tiles:
            tiles[name] = {"ran": tuple(ctx.tiles_ran), "skipped": tuple(ctx.tiles_skipped)}
            log.info("stage %s: %d tiles ran, %d skipped (committed)", name,
                     len(ctx.tiles_ran), len(ctx.tiles_skipped))
        log.info("stage %s: %s in %.1f s (%d outputs)", name,
                 "incomplete (chunks failed; the next run retries them)" if incomplete
                 else "done", dt, len(sums))
        if on_stage:
            on_stage(name, "ran", dt)
    status = "completed_with_errors" if manifest["failures"] else "completed"
    manifest.update({"status": status, "finished": now()})
    manifest.pop("reason", None)
    folder.write_manifest(manifest)
    return RunResult(folder.root, status, tuple(ran), tuple(skipped), seconds,
                     tuple(manifest["failures"]), tiles)
