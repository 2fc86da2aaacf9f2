"""The resumable runner: stages in flow order over one run folder, each committed as data, then
its checksums, then its manifest entry; a killed run redoes only what is missing or stale.

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
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from eocube.errors import ConfigError, EocubeError
from eocube.io import file_sha256, write_json
from eocube.pipeline.config import DEPENDS, RunConfig, stage_hash

__all__ = ["MARKER", "RunFolder", "RunResult", "StageContext", "run_stages"]

MARKER = ".eocube-run"
LOCK = ".eocube.lock"
MANIFEST = "manifest.json"
LOG = "run.log"


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
    a logger and the Dask client (None with the threaded scheduler)."""

    config: RunConfig
    folder: RunFolder
    name: str
    log: logging.Logger
    client: Any = None
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)  # relpath → title
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    progress: Callable[[int, int], None] | None = None

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
        return entry.get("status") == "done" and f"{stage}/{name}" in entry.get("outputs", {})

    def input(self, stage: str, name: str, /) -> Path:
        """The path of output ``name`` of an earlier ``stage`` (which must have committed it)."""
        entry = self.folder.manifest()["stages"].get(stage, {})
        rel = f"{stage}/{name}"
        if entry.get("status") != "done" or rel not in entry.get("outputs", {}):
            raise StageFailed(f"stage {self.name!r} needs {rel!r}, which stage {stage!r} has "
                              "not committed; run it first (add it to stages:)")
        return self.folder.root / rel


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run did: ``status`` (completed, completed_with_errors, failed), the stages run
    and skipped, seconds per stage, and the run folder."""

    root: Path
    status: str
    ran: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: dict[str, float]
    failures: tuple[dict[str, Any], ...]


Stage = Callable[[StageContext], None]


def stage_code(fn: Stage) -> str:
    """The identity of a stage function in the stage hash (its module and name)."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _up_to_date(folder: RunFolder, entry: Mapping[str, Any] | None, h: str) -> bool:
    if not entry or entry.get("status") != "done" or entry.get("hash") != h:
        return False
    for rel, sha in entry.get("outputs", {}).items():
        p = folder.root / rel
        if not p.exists() or tree_sha256(p) != sha:
            return False
    return True


def run_stages(config: RunConfig, stages: Mapping[str, Stage], /, *, log: logging.Logger,
               client: Any = None, on_stage: Callable[[str, str, float], None] | None = None,
               items: Callable[[StageContext, dict[str, str]], None] | None = None,
               progress: Callable[[str], Callable[[int, int], None]] | None = None
               ) -> RunResult:
    """Run ``config.stage_list`` over the run folder ``config.output``, resuming.

    For each stage: its hash (configuration sections and upstream hashes) is compared with the
    manifest; an up-to-date stage whose outputs still match their checksums is skipped, any
    other stage runs, then its outputs' checksums and its manifest entry are written, in that
    order. A stage that raises marks the run ``failed`` with the reason; the stages committed
    before it stay committed.

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
    hashes: dict[str, str] = {n: e["hash"] for n, e in manifest["stages"].items()
                              if e.get("status") == "done"}
    ran, skipped, seconds = [], [], {}
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
                           progress=progress(name) if progress else None)
        log.info("stage %s: running (hash %s)", name, h)
        t0 = time.perf_counter()
        manifest["stages"][name] = {"status": "running", "hash": h, "started": now()}
        folder.write_manifest(manifest)
        try:
            fn(ctx)
        except BaseException as e:
            reason = f"stage {name!r} failed: {type(e).__name__}: {e}".splitlines()[0]
            manifest["stages"][name] = {"status": "failed", "hash": h, "reason": reason,
                                        "finished": now()}
            manifest.update({"status": "failed", "reason": reason, "finished": now()})
            folder.write_manifest(manifest)
            log.error(reason)
            raise
        # commit: the data is written; now its checksums, then the manifest entry
        sums = {rel: tree_sha256(folder.root / rel) for rel in ctx.outputs}
        if items:
            items(ctx, sums)
        dt = time.perf_counter() - t0
        manifest["stages"][name] = {"status": "done", "hash": h, "outputs": sums,
                                    "titles": ctx.outputs, "properties": ctx.properties,
                                    "seconds": round(dt, 2), "finished": now()}
        manifest["failures"] = [f for f in manifest["failures"] if f.get("stage") != name]
        manifest["failures"] += [{"stage": name, **f} for f in ctx.failures]
        folder.write_manifest(manifest)
        hashes[name] = h
        ran.append(name)
        seconds[name] = round(dt, 2)
        log.info("stage %s: done in %.1f s (%d outputs)", name, dt, len(sums))
        if on_stage:
            on_stage(name, "ran", dt)
    status = "completed_with_errors" if manifest["failures"] else "completed"
    manifest.update({"status": status, "finished": now()})
    manifest.pop("reason", None)
    folder.write_manifest(manifest)
    return RunResult(folder.root, status, tuple(ran), tuple(skipped), seconds,
                     tuple(manifest["failures"]))
