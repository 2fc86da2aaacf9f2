"""Writers of inference results: Zarr by region, chunk by chunk and resumable; COG per layer;
a STAC Item beside each output carrying the provenance. This is where results compute.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import shutil
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
        The Zarr store written.
    chunks_total
        Chunks of all variables.
    chunks_skipped
        Chunks already complete from an earlier, interrupted run (not recomputed).
    chunks_written
        Chunks computed and written by this call.
    """

    store: Path
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


def _marker(store: Path, var: str, idx: tuple[int, ...]) -> Path:
    return store / PROGRESS / var / ".".join(map(str, idx))


def _write_block(block: np.ndarray, *, store: str, var: str, block_info: Any = None
                 ) -> np.ndarray:
    import zarr

    info = block_info[0]
    region = tuple(slice(a, b) for a, b in info["array-location"])
    arr = zarr.open_array(store, path=var, mode="r+")
    arr[region] = block
    # the marker is written only after the chunk: a marker means a complete chunk
    m = _marker(Path(store), var, tuple(info["chunk-location"]))
    m.parent.mkdir(parents=True, exist_ok=True)
    m.touch()
    count("zarr_chunks")
    return np.ones((1,) * block.ndim, dtype=bool)


def to_zarr(result: xr.DataArray | xr.Dataset, store: str | Path, /, *,
            mode: Literal["resume", "w"] = "resume", stac: bool = True) -> WriteReport:
    """Compute ``result`` and write it to a local Zarr store chunk by chunk; resumable.

    The store's metadata and coordinates are written first; then one task per chunk computes
    it, writes its region and leaves a completion marker. Each chunk is written as soon as it is
    computed, so a worker holds a few chunks at a time whatever the area. Called again after an
    interruption (a killed worker, a killed process), it computes only the chunks without a
    marker. At the end the markers are removed, ``eocube_complete`` is set in the store's attrs
    and metadata are consolidated.

    Parameters
    ----------
    result
        A lazy prediction (DataArray or Dataset), e.g. from :func:`eocube.infer.predict`.
        Irregular chunks are made regular first (Zarr chunks are).
    store
        Path of the ``.zarr`` directory.
    mode
        ``"resume"`` (default): continue a store holding the same result, start a new one
        otherwise; ``"w"``: start over.
    stac
        Also write a STAC Item (``<store stem>.stac-item.json`` beside the store).

    Raises
    ------
    ConfigError
        If ``store`` holds a different result (other weights, parameters, grid or chunks);
        the message says how to overwrite it.

    Notes
    -----
    Runs on the current dask scheduler (a ``distributed.Client`` if one is active); the
    computation is eager, as every writer is.
    """
    import zarr

    ds = _regular(_as_dataset(result))
    path = Path(store)
    fp = _fingerprint(ds)
    ds = ds.copy()
    ds.attrs = {**ds.attrs, "eocube_fingerprint": fp, "eocube_complete": False}
    for v in ds.data_vars.values():
        v.encoding = {}
    existing = None
    if mode == "resume" and (path / "zarr.json").is_file():
        existing = dict(zarr.open_group(str(path), mode="r").attrs)
        if existing.get("eocube_fingerprint") != fp:
            raise ConfigError(
                f"the Zarr store {str(path)!r} holds another result (fingerprint "
                f"{str(existing.get('eocube_fingerprint'))[:12]}…, this one {fp[:12]}…: other "
                "weights, parameters, grid or chunks); pass mode='w' to overwrite it or write "
                "to another path")
    elif mode not in ("resume", "w"):
        raise ConfigError(f"mode={mode!r}: use 'resume' or 'w'")
    names = [str(k) for k in ds.data_vars]
    total = sum(int(np.prod(ds[k].data.numblocks)) for k in names)
    if existing is not None and existing.get("eocube_complete"):
        return WriteReport(path, total, total, 0)
    if existing is None:
        if path.exists():
            shutil.rmtree(path)
        ds.to_zarr(str(path), mode="w", compute=False, consolidated=False)
        zarr.open_group(str(path), mode="r+").create_group(PROGRESS)
    todo = []
    for k in names:
        arr = ds[k].data
        stored = arr.map_blocks(_write_block, store=str(path), var=k, dtype=bool,
                                chunks=tuple((1,) * len(c) for c in arr.chunks),
                                meta=np.empty((0,) * arr.ndim, bool),
                                name=f"infer-zarr-{tokenize(arr.name, str(path), k)}")
        g = stored.__dask_graph__()
        for idx in np.ndindex(*arr.numblocks):
            if not _marker(path, k, idx).is_file():
                todo.append(Delayed((stored.name, *idx), g, layer=stored.name))
    written = len(todo)
    if todo:
        dask.compute(*todo)
    zarr.open_group(str(path), mode="r+").attrs["eocube_complete"] = True
    shutil.rmtree(path / PROGRESS, ignore_errors=True)
    _consolidate(path)
    if stac:
        item = stac_item(ds, path.name, media_type="application/vnd+zarr")
        _dump(path.with_suffix(".stac-item.json"), item)
    return WriteReport(path, total, total - written, written)


def _consolidate(path: Path) -> None:
    import warnings

    import zarr

    with warnings.catch_warnings():
        # Zarr 3 calls consolidated metadata an extension; xarray reads it, and it saves
        # listing the store on every open
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(str(path))


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


def _dump(path: Path, obj: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
