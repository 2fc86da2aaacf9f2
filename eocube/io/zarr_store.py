"""Zarr out: a lazy result computed and written chunk by chunk by region, resumable after a
killed worker or driver, with a STAC Item beside it. This is where results compute."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import dask
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed

from eocube.counters import count
from eocube.errors import ConfigError
from eocube.io.paths import beside, location, write_json
from eocube.io.stac import as_dataset, stac_item

__all__ = ["PROGRESS", "WriteReport", "to_zarr"]

PROGRESS = "_eocube_progress"  # a Zarr group of per-chunk completion markers, removed at the end



@dataclasses.dataclass(frozen=True)
class WriteReport:
    """What :func:`to_zarr` did.

    Attributes
    ----------
    store
        The Zarr store written (a local path, or the URL it was given).
    chunks_total
        Chunks of all variables.
    chunks_skipped
        Chunks already complete from an earlier, interrupted run (not recomputed).
    chunks_written
        Chunks computed and written by this call.
    """

    store: Path | str
    chunks_total: int
    chunks_skipped: int
    chunks_written: int
    chunks_failed: tuple[dict[str, Any], ...] = ()


def _regular(ds: xr.Dataset) -> xr.Dataset:
    """Make every dim's chunks regular (all equal but the last), as region writes need."""
    if not ds.chunks:
        raise ConfigError("to_zarr writes a lazy (dask-backed) result chunk by chunk; this one "
                          "is in memory: use result.to_zarr(...) or result.chunk() first")
    fix = {}
    for dim, c in ds.chunks.items():
        if len(c) > 1 and (len(set(c[:-1])) > 1 or c[-1] > c[0]):
            fix[dim] = max(c)
    return ds.chunk(fix) if fix else ds


def _fingerprint(ds: xr.Dataset) -> str:
    """What identifies the result of a store: provenance, grid, chunks (never dask names)."""
    parts = [(str(k), str(v.dtype), v.dims, v.shape, v.chunks,
              {a: str(b) for a, b in sorted(v.attrs.items())}) for k, v in ds.data_vars.items()]
    coords = [(str(k), np.asarray(c.values).tobytes()) for k, c in ds.coords.items()
              if c.ndim == 1]
    return tokenize(parts, coords, {a: str(b) for a, b in sorted(ds.attrs.items())})


def _write_block(block: np.ndarray, *, store: str, var: str, block_info: Any = None
                 ) -> np.ndarray:
    import zarr

    info = block_info[0]
    where = tuple(info["chunk-location"])
    markers = zarr.open_array(store, path=f"{PROGRESS}/{var}", mode="r+")
    if bool(markers[where]):
        # committed already: a task rerun after its worker died once its write had landed
        count("zarr_chunks_already_committed")
        return np.ones((1,) * block.ndim, dtype=bool)
    region = tuple(slice(a, b) for a, b in info["array-location"])
    zarr.open_array(store, path=var, mode="r+")[region] = block
    # the marker is set only after the chunk is written: a marker means a complete chunk. Each
    # marker is a Zarr chunk of its own, so workers never write the same object
    markers[where] = True
    count("zarr_chunks")
    return np.ones((1,) * block.ndim, dtype=bool)


def _done(root: str, var: str, numblocks: tuple[int, ...]) -> np.ndarray:
    """Which chunks of ``var`` an earlier run completed (none when it left no markers)."""
    import zarr

    try:
        return np.asarray(zarr.open_array(root, path=f"{PROGRESS}/{var}", mode="r")[...], bool)
    except FileNotFoundError:
        return np.zeros(numblocks, bool)


def to_zarr(result: xr.DataArray | xr.Dataset, store: str | Path, /, *,
            mode: Literal["resume", "w"] = "resume", stac: bool = True,
            progress: Callable[[int, int], None] | None = None,
            on_error: Literal["raise", "record"] = "raise") -> WriteReport:
    """Compute ``result`` and write it to a Zarr store chunk by chunk; resumable.

    The store's metadata and coordinates are written first; then one task per chunk computes
    it, writes its region and sets a completion marker (a Zarr array of one flag per chunk,
    inside the store, so this works on object stores as on disk). Each chunk is written as
    soon as it is computed, so a worker holds a few chunks at a time whatever the area. Called
    again after an interruption (a killed worker, a killed process), it computes only the
    chunks without a marker. At the end ``eocube_complete`` is set in the store's attrs, the
    markers are removed and metadata are consolidated.

    Parameters
    ----------
    result
        A lazy prediction (DataArray or Dataset), e.g. from :func:`eocube.infer.predict`.
        Irregular chunks are made regular first (Zarr chunks are).
    store
        Path of the ``.zarr`` directory, or an fsspec URL (``s3://bucket/urban.zarr``; the
        filesystem's package and credentials are the caller's) that every worker can reach.
    mode
        ``"resume"`` (default): continue a store holding the same result, start a new one
        otherwise; ``"w"``: start over.
    stac
        Also write a STAC Item (``<store stem>.stac-item.json`` beside the store).
    progress
        Called with (chunks done, chunks total) as chunks complete (skipped ones count as done).
    on_error
        ``"raise"`` (default): a chunk that fails (its task raises, or kills every worker
        Dask gives it to) fails the write. ``"record"``: the other chunks are written, the
        failed ones are listed in ``WriteReport.chunks_failed`` (variable, chunk index,
        error), the store stays incomplete with their markers unset, and a later call
        computes only them.

    Raises
    ------
    ConfigError
        If ``store`` holds a different result (other weights, parameters, grid or chunks),
        or is a local directory with files that are not a Zarr store (never deleted); the
        message says what to do.

    Notes
    -----
    Runs on the current dask scheduler (a ``distributed.Client`` if one is active); the
    computation is eager, as every writer is.
    """
    import zarr

    if mode not in ("resume", "w"):
        raise ConfigError(f"mode={mode!r}: use 'resume' or 'w'")
    ds = _regular(as_dataset(result))
    root, path = location(store)
    fp = _fingerprint(ds)
    ds = ds.copy()
    ds.attrs = {**ds.attrs, "eocube_fingerprint": fp, "eocube_complete": False}
    for v in ds.data_vars.values():
        v.encoding = {}
    try:
        existing: dict[str, Any] | None = dict(zarr.open_group(root, mode="r").attrs)
    except FileNotFoundError:
        existing = None
        if path is not None and path.is_dir() and any(path.iterdir()):
            raise ConfigError(f"{root!r} is a directory with files but not a Zarr store; "
                              "write to another path (nothing there was changed)") from None
    if mode == "resume" and existing is not None \
            and existing.get("eocube_fingerprint") != fp:
        raise ConfigError(
            f"the Zarr store {root!r} holds another result (fingerprint "
            f"{str(existing.get('eocube_fingerprint'))[:12]}…, this one {fp[:12]}…: other "
            "weights, parameters, grid or chunks); pass mode='w' to overwrite it or write "
            "to another path")
    names = [str(k) for k in ds.data_vars]
    total = sum(int(np.prod(ds[k].data.numblocks)) for k in names)
    report_store: Path | str = path if path is not None else root
    if mode == "resume" and existing is not None and existing.get("eocube_complete"):
        return WriteReport(report_store, total, total, 0)
    if mode == "w" or existing is None:
        ds.to_zarr(root, mode="w", compute=False, consolidated=False)
        markers = zarr.open_group(root, mode="r+").create_group(PROGRESS)
        for k in names:
            nb = ds[k].data.numblocks
            markers.create_array(k, shape=nb, chunks=(1,) * len(nb), dtype=bool,
                                  fill_value=False)
    todo = []
    chunk_of: dict[Any, tuple[str, tuple[int, ...]]] = {}
    for k in names:
        arr = ds[k].data
        stored = arr.map_blocks(_write_block, store=root, var=k, dtype=bool,
                                chunks=tuple((1,) * len(c) for c in arr.chunks),
                                meta=np.empty((0,) * arr.ndim, bool),
                                name=f"eocube-zarr-{tokenize(arr.name, root, k)}")
        g = stored.__dask_graph__()
        done = _done(root, k, arr.numblocks)
        for idx in np.ndindex(*arr.numblocks):
            if not done[idx]:
                todo.append(Delayed((stored.name, *idx), g, layer=stored.name))
                chunk_of[(stored.name, *idx)] = (k, tuple(int(i) for i in idx))
    written = len(todo)
    if progress is not None:
        progress(total - written, total)
    failed: list[tuple[Any, str]] = []
    if todo:
        failed = compute_counting(todo, None if progress is None
                                  else lambda n: progress(total - written + n, total),
                                  record=on_error == "record")
    if failed:
        _consolidate(root)  # readable as it is; incomplete, markers kept for the next call
        records = tuple({"variable": chunk_of[key][0], "chunk": list(chunk_of[key][1]),
                         "error": err} for key, err in failed)
        return WriteReport(report_store, total, total - written, written - len(failed),
                           records)
    group = zarr.open_group(root, mode="r+")
    group.attrs["eocube_complete"] = True
    if PROGRESS in group:
        del group[PROGRESS]
    _consolidate(root)
    if stac:
        item = stac_item(ds, root.rstrip("/").rsplit("/", 1)[-1],
                         media_type="application/vnd+zarr")
        write_json(beside(root, ".stac-item.json"), item)
    return WriteReport(report_store, total, total - written, written)


def _active_client() -> Any:
    """The distributed Client dask computes on now, or None (the scheduler in effect wins: a
    ``dask.config.set(scheduler="threads")`` is honoured even with a Client around)."""
    from dask.base import get_scheduler

    owner = getattr(get_scheduler(), "__self__", None)
    try:
        from distributed import Client
    except ImportError:
        return None
    return owner if isinstance(owner, Client) else None


def compute_counting(todo: list[Delayed], done: Callable[[int], None] | None, /, *,
                     record: bool = False) -> list[tuple[Any, str]]:
    """Compute ``todo`` on the active scheduler, calling ``done(n)`` as the n-th completes.

    With ``record``, a task that fails is returned as (key, error text) instead of raising
    (on a distributed cluster that includes a task that killed every worker it was given).
    """
    failed: list[tuple[Any, str]] = []
    if done is None and not record:
        dask.compute(*todo)
        return failed
    client = _active_client()
    if client is not None:
        from distributed import as_completed

        n = 0
        for fut in as_completed(client.compute(todo)):
            if fut.status == "error" and record:
                failed.append((fut.key, f"{type(fut.exception()).__name__}: {fut.exception()}"))
                continue
            fut.result()  # raises the task's error here
            n += 1
            if done is not None:
                done(n)
        return failed
    if record:  # one task at a time, so one failure does not stop the others
        n = 0
        for d in todo:
            try:
                dask.compute(d)
            except Exception as e:  # recorded and returned, as asked
                failed.append((d.key, f"{type(e).__name__}: {e}"))
                continue
            n += 1
            if done is not None:
                done(n)
        return failed
    from dask.callbacks import Callback

    keys = {d.key for d in todo}
    finished = [0]

    def posttask(key: Any, *_: Any) -> None:
        if key in keys:
            finished[0] += 1
            done(finished[0])

    with Callback(posttask=posttask):
        dask.compute(*todo)
    return failed


def _consolidate(root: str) -> None:
    import warnings

    import zarr

    with warnings.catch_warnings():
        # Zarr 3 calls consolidated metadata an extension; xarray reads it, and it saves
        # listing the store on every open
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(root)
