"""Writers of inference results: Zarr by region, chunk by chunk and resumable; COG per layer;
a STAC Item beside each output carrying the provenance. This is where results compute.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import dask
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed

from eocube.errors import ConfigError, GridError
from eocube.infer.runtime import count

__all__ = ["WriteReport", "stac_item", "to_cog", "to_zarr"]

PROGRESS = "_eocube_progress"  # a Zarr group of per-chunk completion markers, removed at the end
_PROVENANCE = ("model", "weights", "weights_sha256", "task", "tile", "overlap", "blend",
               "blend_window", "amp", "heads", "units", "time_before", "time_after")


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


def _as_dataset(result: xr.DataArray | xr.Dataset) -> xr.Dataset:
    if isinstance(result, xr.DataArray):
        return result.to_dataset(name=result.name or "prediction", promote_attrs=True)
    return result


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


def _location(store: str | Path) -> tuple[str, Path | None]:
    """(what zarr opens, the local path or None): a local path, ``file://`` URL, or any
    fsspec URL (``s3://…``, ``gs://…``, ``memory://…``)."""
    s = str(store)
    if "://" in s and not s.startswith("file://"):
        return s, None
    p = Path(s.removeprefix("file://"))
    return str(p), p


def _write_block(block: np.ndarray, *, store: str, var: str, block_info: Any = None
                 ) -> np.ndarray:
    import zarr

    info = block_info[0]
    region = tuple(slice(a, b) for a, b in info["array-location"])
    zarr.open_array(store, path=var, mode="r+")[region] = block
    # the marker is set only after the chunk is written: a marker means a complete chunk. Each
    # marker is a Zarr chunk of its own, so workers never write the same object
    zarr.open_array(store, path=f"{PROGRESS}/{var}", mode="r+")[
        tuple(info["chunk-location"])] = True
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
            mode: Literal["resume", "w"] = "resume", stac: bool = True) -> WriteReport:
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
    ds = _regular(_as_dataset(result))
    root, path = _location(store)
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
        progress = zarr.open_group(root, mode="r+").create_group(PROGRESS)
        for k in names:
            nb = ds[k].data.numblocks
            progress.create_array(k, shape=nb, chunks=(1,) * len(nb), dtype=bool,
                                  fill_value=False)
    todo = []
    for k in names:
        arr = ds[k].data
        stored = arr.map_blocks(_write_block, store=root, var=k, dtype=bool,
                                chunks=tuple((1,) * len(c) for c in arr.chunks),
                                meta=np.empty((0,) * arr.ndim, bool),
                                name=f"infer-zarr-{tokenize(arr.name, root, k)}")
        g = stored.__dask_graph__()
        done = _done(root, k, arr.numblocks)
        for idx in np.ndindex(*arr.numblocks):
            if not done[idx]:
                todo.append(Delayed((stored.name, *idx), g, layer=stored.name))
    written = len(todo)
    if todo:
        dask.compute(*todo)
    group = zarr.open_group(root, mode="r+")
    group.attrs["eocube_complete"] = True
    if PROGRESS in group:
        del group[PROGRESS]
    _consolidate(root)
    if stac:
        item = stac_item(ds, root.rstrip("/").rsplit("/", 1)[-1],
                         media_type="application/vnd+zarr")
        _dump(_beside(root, ".stac-item.json"), item)
    return WriteReport(report_store, total, total - written, written)


def _beside(root: str, suffix: str) -> str:
    """``…/name.zarr`` → ``…/name<suffix>`` (a path or URL)."""
    head, _, name = root.rstrip("/").rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{head}/{stem}{suffix}" if head else f"{stem}{suffix}"


def _consolidate(root: str) -> None:
    import warnings

    import zarr

    with warnings.catch_warnings():
        # Zarr 3 calls consolidated metadata an extension; xarray reads it, and it saves
        # listing the store on every open
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(root)


def to_cog(result: xr.DataArray | xr.Dataset, path: str | Path, /, *,
           stac: bool = True, overwrite: bool = True) -> list[Path]:
    """Write each (time step, variable) layer of ``result`` as a Cloud-Optimised GeoTIFF.

    ``path`` names the file for a single layer (``urban.tif``); with several layers it is the
    stem: ``urban_<variable>_<YYYY-MM-DD>.tif``. The provenance goes into the GeoTIFF tags and,
    with ``stac=True``, into a STAC Item ``<file stem>.stac-item.json`` beside each file.

    Eager: each layer is computed and held in memory while it is written (one (y, x) layer at a
    time); use :func:`to_zarr` for areas that do not fit.
    """
    import rasterio

    ds = _as_dataset(result)
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    layers = []
    for k, v in ds.data_vars.items():
        times = list(v["time"].values) if "time" in v.dims else [None]
        for i, t in enumerate(times):
            layer = v.isel(time=i) if t is not None else v
            if layer.ndim != 2:
                raise GridError(f"to_cog writes (y, x) layers; variable {k!r} has dims "
                                f"{layer.dims}")
            layers.append((str(k), t, layer))
    single = len(layers) == 1
    out = []
    for k, t, layer in layers:
        if single:
            f = base.with_suffix(".tif")
        else:
            tag = "" if t is None else "_" + str(np.datetime_as_string(t, unit="D"))
            f = base.with_name(f"{base.stem}_{k}{tag}.tif")
        if f.exists() and not overwrite:
            raise ConfigError(f"{str(f)!r} exists; pass overwrite=True")
        data = np.asarray(layer.compute().values, dtype=np.float32)
        gb = layer.odc.geobox
        h, w = data.shape
        block = 256 if min(h, w) >= 512 else max(16, (min(h, w) // 2) // 16 * 16)
        profile = {"driver": "COG", "width": w, "height": h, "count": 1, "dtype": "float32",
                   "crs": str(gb.crs), "transform": gb.transform, "nodata": float("nan"),
                   "compress": "DEFLATE", "predictor": 3, "blocksize": block,
                   "overview_resampling": "average"}
        tags = {key: _tag(layer.attrs[key]) for key in (*_PROVENANCE, "model_spec")
                if key in layer.attrs}
        with rasterio.open(f, "w", **profile) as dst:
            dst.write(data, 1)
            dst.update_tags(**tags)
            dst.set_band_description(1, k)
        if stac:
            attrs = {**ds.attrs, **layer.attrs}
            one = layer.expand_dims(time=[t]) if t is not None else layer
            item = stac_item(one.to_dataset(name=k).assign_attrs(attrs), f.name,
                             media_type="image/tiff; application=geotiff; "
                                        "profile=cloud-optimized")
            _dump(f.with_suffix(".stac-item.json"), item)
        out.append(f)
    return out


def _tag(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def stac_item(result: xr.DataArray | xr.Dataset, href: str, /, *, id: str | None = None,
              media_type: str = "application/vnd+zarr") -> dict[str, Any]:
    """A STAC Item (as a dict) for a written result, its provenance in ``properties``.

    Properties: ``datetime`` (or ``start_datetime``/``end_datetime`` for a series), the
    projection extension (``proj:code``, ``proj:shape``, ``proj:transform``) and
    ``eocube:model``, ``eocube:weights_sha256``, ``eocube:model_spec`` (the ModelSpec as an
    object), ``eocube:tile``, ``eocube:overlap``, ``eocube:blend``, ``eocube:amp`` ….
    Reads coordinates and attributes only; computes nothing.
    """
    ds = _as_dataset(result)
    first = next(iter(ds.data_vars.values()))
    attrs = {**first.attrs, **ds.attrs}
    gb = ds.odc.geobox
    geom = gb.geographic_extent.json
    xs = [p[0] for p in geom["coordinates"][0]]
    ys = [p[1] for p in geom["coordinates"][0]]
    props: dict[str, Any] = {}
    if "time" in ds.coords and ds["time"].size:
        t = np.atleast_1d(ds["time"].values)
        iso = [_iso(v) for v in (t.min(), t.max())]
        if iso[0] == iso[1]:
            props["datetime"] = iso[0]
        else:
            props.update({"datetime": None, "start_datetime": iso[0], "end_datetime": iso[1]})
    else:
        date = attrs.get("time_after")
        props["datetime"] = _iso(np.datetime64(date)) if date else _iso(np.datetime64("now"))
        if attrs.get("time_before"):
            props.update({"start_datetime": _iso(np.datetime64(attrs["time_before"])),
                          "end_datetime": props["datetime"]})
    epsg = gb.crs.epsg
    props.update({"proj:code": f"EPSG:{epsg}" if epsg else None,
                  "proj:shape": [int(gb.shape.y), int(gb.shape.x)],
                  "proj:transform": [float(v) for v in tuple(gb.transform)[:6]]})
    for key in _PROVENANCE:
        if key in attrs:
            props[f"eocube:{key}"] = attrs[key]
    if "model_spec" in attrs:
        props["eocube:model_spec"] = json.loads(attrs["model_spec"])
    props["eocube:variables"] = [str(v) for v in ds.data_vars]
    ident = id or f"{attrs.get('model', 'prediction')}-{Path(href).stem}"
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": ident,
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
        "geometry": geom, "bbox": [min(xs), min(ys), max(xs), max(ys)], "properties": props,
        "links": [],
        "assets": {"data": {"href": href, "type": media_type, "roles": ["data"],
                            "title": ", ".join(str(v) for v in ds.data_vars)}},
    }


def _iso(t: Any) -> str:
    ts = np.datetime64(t, "s").astype("datetime64[s]").astype(_dt.datetime)
    return ts.replace(tzinfo=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dump(path: str | Path, obj: Mapping[str, Any]) -> None:
    """Write JSON to a local path or an fsspec URL."""
    text = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    url, local = _location(path)
    if local is not None:
        local.write_text(text)
        return
    import fsspec

    with fsspec.open(url, "w") as f:
        f.write(text)
