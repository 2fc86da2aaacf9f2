"""Tiled, blended, batched model inference over lazy cubes: one date, every step of a time
series, or two dates for change models. Builds a graph; computes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from eocube.errors import ConfigError, GridError, ModelSpecError
from eocube.infer.blocks import TileJob, blended_tile_graph
from eocube.infer.runtime import RunOptions, WeightsRef
from eocube.infer.tiling import DEFAULT_BLEND, DEFAULT_OVERLAP, DEFAULT_TILE, Blend, Tiling
from eocube.models.spec import InputSpec, ModelSpec, band_aliases, check_input

if TYPE_CHECKING:
    pass

__all__ = ["predict", "predict_change", "provenance"]

#: heads of the dense architectures (what ``heads=`` may name)
HEADS = {"unet": ("out",), "dual_stream_unet": ("out", "sar", "optical"),
         "siam_diff_dual_task": ("out", "seg_t1", "seg_t2")}
DEFAULT_CHUNK = 1024

Cube = xr.Dataset | xr.DataArray


def predict(cube: Cube | Mapping[str, Cube], weights: str | Path | WeightsRef, /, *,
            tile: int | None = None, overlap: int | None = None, blend: Blend = DEFAULT_BLEND,
            batch_size: int | None = None, device: str = "auto", amp: bool = False,
            threads: int | None = None, heads: str | Sequence[str] = "out",
            chunks: Mapping[str, int] | None = None) -> xr.DataArray | xr.Dataset:
    """Lazy model predictions over a cube, seamless across tiles and independent of chunking.

    The grid is cut into overlapping tiles laid on the global grid (see
    :class:`~eocube.infer.tiling.Tiling`); each chunk runs the tiles that start in it, batched,
    reading a halo of one tile from its neighbours; overlapping tiles are blended with a smooth
    window. Every time step of the cube is predicted separately. Tasks carry a reference to the
    weights (path and sha256), never the model: each worker process builds the model once.

    Parameters
    ----------
    cube
        A Dataset with one variable per band on (time, y, x) or (y, x), a DataArray with a
        ``band`` dimension, or a mapping from the model's input names to such cubes (all on
        one grid). Bands are selected by name in the model's order; a band the model names by
        its asset key (``B04``) may be given by an alias of the input's sensor profile
        (``red``, see :mod:`eocube.catalog.profiles`), as ``eocube.cube.load`` names them.
    weights
        Shipped weights name, ``.safetensors`` path or :class:`WeightsRef`; its ModelSpec
        (bands, normalisation, outputs) is read from the file header, without torch.
    tile, overlap
        Tile side and overlap in pixels; default ``max(512, patch_size)`` and 24. The overlap
        should be about the model's effective receptive field; the halo read from
        neighbouring chunks is one tile, so it always covers it.
    blend
        The blending window (:class:`~eocube.infer.tiling.Tiling`): ``"trim"`` (weight 0 on
        the outer quarter of the overlap, a sin² ramp over its middle half), ``"cosine"`` (the
        ramp over the whole overlap) or ``"gaussian"``.
    batch_size
        Tiles per forward pass; by default as many as fit
        :data:`~eocube.infer.runtime.BATCH_PIXELS` of the worker's device (on a CPU one 512²
        tile, or two of 256²: larger batches run slower per pixel there).
    device
        ``"auto"`` (each worker's GPU when it has one, else CPU), ``"cpu"``, ``"cuda"`` …;
        resolved on the worker.
    amp
        bf16 autocast (on CUDA, or CPU); results then differ from fp32 by ~1e-2.
    threads
        torch intra-op threads per worker process (set when the model is built there).
    heads
        Output head(s): ``"out"`` (the primary output) or e.g. ``("out", "seg_t1")``. A
        single name gives a DataArray, a sequence a Dataset with one variable per head.
    chunks
        Rechunk the spatial / time dims first, e.g. ``{"x": 2048, "y": 2048, "time": 1}``;
        numpy-backed cubes get ``time=1`` and 1024-pixel chunks when not given.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        float32 probabilities (segmentation, change) or regression values in the spec's units,
        on the cube's grid and time axis, NaN where a pixel has no data in any band. Its
        ``attrs`` carry the provenance (see :func:`provenance`).

    Raises
    ------
    ModelSpecError
        If the cube lacks a band the model needs, or the model is not a dense model.
    GridError
        If the inputs are not on one grid.

    Examples
    --------
    >>> prob = predict(cube, "urban_s2", tile=512, overlap=24)   # doctest: +SKIP
    >>> prob.compute()                                            # doctest: +SKIP
    """
    ref = WeightsRef.of(weights)
    spec = ref.spec()
    return _predict(_sources(cube, spec), ref, spec, tile=tile, overlap=overlap, blend=blend,
                    batch_size=batch_size, device=device, amp=amp, threads=threads,
                    heads=heads, chunks=chunks)


def predict_change(before: Cube, after: Cube, weights: str | Path | WeightsRef, /, *,
                   tile: int | None = None, overlap: int | None = None,
                   blend: Blend = DEFAULT_BLEND, batch_size: int | None = None,
                   device: str = "auto", amp: bool = False, threads: int | None = None,
                   heads: str | Sequence[str] = "out",
                   chunks: Mapping[str, int] | None = None) -> xr.DataArray | xr.Dataset:
    """Lazy predictions of a two-date (change) model over two cubes of one grid.

    ``before`` and ``after`` feed the model's first and second inputs (``t1``, ``t2``); each is a
    single date: a cube without ``time`` or with one time step. ``heads=("out", "seg_t1",
    "seg_t2")`` gives the change probability and both dates' built-up probability. The other
    parameters are those of :func:`predict`; the result has no ``time`` dimension and records
    both dates in ``attrs`` (``time_before``, ``time_after``).
    """
    ref = WeightsRef.of(weights)
    spec = ref.spec()
    if len(spec.inputs) != 2:
        raise ModelSpecError(f"model {spec.name!r} takes inputs {[i.name for i in spec.inputs]};"
                             " a change model takes two dates")
    dates = {}
    one = {}
    for key, c in (("before", before), ("after", after)):
        if "time" in c.dims:
            if c.sizes["time"] != 1:
                raise ConfigError(f"{key} has {c.sizes['time']} time steps; pass one date, e.g. "
                                  f"{key}.isel(time=[k])")
            dates[key] = str(np.datetime_as_string(c["time"].values[0], unit="D"))
            c = c.isel(time=0, drop=True)
        elif "time" in c.coords:
            dates[key] = str(np.datetime_as_string(c["time"].values, unit="D"))
            c = c.drop_vars("time")
        one[key] = c
    src = {spec.inputs[0].name: one["before"], spec.inputs[1].name: one["after"]}
    out = _predict(_sources(src, spec), ref, spec, tile=tile, overlap=overlap, blend=blend,
                   batch_size=batch_size, device=device, amp=amp, threads=threads, heads=heads,
                   chunks=chunks)
    for k, v in dates.items():
        out.attrs[f"time_{k}"] = v
    return out


def provenance(spec: ModelSpec, ref: WeightsRef, tiling: Tiling, *, amp: bool,
               heads: Sequence[str]) -> dict[str, Any]:
    """The attributes every prediction carries: weights sha256 and file, ModelSpec (JSON),
    tile, overlap, blending window and precision."""
    return {"model": spec.name, "weights": Path(ref.path).name, "weights_sha256": ref.sha256,
            "model_spec": spec.to_json(), "task": spec.task, "tile": tiling.tile,
            "overlap": tiling.overlap, "blend": tiling.blend,
            "blend_window": _window_doc(tiling), "amp": "bf16" if amp else "fp32",
            "heads": list(heads), "units": spec.units or "1",
            "history": "eocube.infer.predict"}


def _window_doc(t: Tiling) -> str:
    if t.blend == "cosine":
        return f"sin^2 ramp over {t.overlap} px towards neighbouring tiles, 1 elsewhere"
    if t.blend == "trim":
        return (f"0 over the {t.dead} px next to a neighbouring tile, sin^2 ramp over the next "
                f"{t.overlap - 2 * t.dead} px, 1 elsewhere")
    return f"gaussian sigma={t.tile / 8:g} px, flat towards the image edge"


# ---- inputs -------------------------------------------------------------------------------

def _sources(cube: Cube | Mapping[str, Cube], spec: ModelSpec) -> list[xr.DataArray]:
    """One (time, band, y, x) DataArray per model input, bands in the model's order."""
    if spec.architecture not in HEADS:
        raise ModelSpecError(f"model {spec.name!r} ({spec.architecture}) is not a dense model; "
                             "tiled inference runs the pixel-wise architectures "
                             f"{sorted(HEADS)}")
    if isinstance(cube, Mapping) and not isinstance(cube, xr.Dataset):
        missing = [i.name for i in spec.inputs if i.name not in cube]
        if missing:
            raise ModelSpecError(f"model {spec.name!r} needs inputs "
                                 f"{[i.name for i in spec.inputs]}; missing {missing} from "
                                 f"the mapping given {sorted(cube)}")
        per = {i.name: cube[i.name] for i in spec.inputs}
    else:
        per = {i.name: cube for i in spec.inputs}
    out = []
    for inp in spec.inputs:
        c = _canonical_bands(per[inp.name], inp)
        bands = check_input(c, spec, input=inp.name)
        if isinstance(c, xr.Dataset):
            arr = c[list(bands)].to_dataarray("band")
        elif isinstance(c, xr.DataArray) and "band" in c.dims:
            arr = c.sel(band=list(bands))
        else:
            raise ConfigError(f"input {inp.name!r}: give a Dataset of bands or a DataArray with "
                              f"a 'band' dimension, not {type(c).__name__}")
        ydim, xdim = (str(d) for d in arr.odc.spatial_dims)
        if "time" not in arr.dims:
            arr = arr.drop_vars("time", errors="ignore").expand_dims("time")
        extra = [d for d in arr.dims if d not in ("time", "band", ydim, xdim)]
        if extra:
            raise GridError(f"input {inp.name!r} has extra dimensions {extra}; select them away")
        out.append(arr.transpose("time", "band", ydim, xdim))
    ref = out[0]
    for inp, a in zip(spec.inputs[1:], out[1:], strict=True):
        if a.odc.geobox != ref.odc.geobox:
            raise GridError(f"input {inp.name!r} is on grid {a.odc.geobox!r}, input "
                            f"{spec.inputs[0].name!r} on {ref.odc.geobox!r}; align them first "
                            "(eocube.cube.align)")
        if a.sizes["time"] != ref.sizes["time"]:
            raise GridError(f"input {inp.name!r} has {a.sizes['time']} time steps, "
                            f"{spec.inputs[0].name!r} {ref.sizes['time']}")
    return out


def _canonical_bands(c: Cube, inp: InputSpec) -> Cube:
    """``c`` with the aliases of the bands the model needs (``red``, ``nir``, ``swir16`` …)
    renamed to the names it was trained on (:func:`eocube.models.band_aliases`)."""
    if isinstance(c, xr.Dataset):
        names = [str(v) for v in c.data_vars]
    elif isinstance(c, xr.DataArray) and "band" in c.coords:
        names = [str(v) for v in np.atleast_1d(c["band"].values).tolist()]
    else:
        return c  # check_input / _sources say what is wrong
    best = band_aliases(names, inp)
    if not best:
        return c
    if isinstance(c, xr.Dataset):
        return c.rename(best)
    return c.assign_coords(band=[best.get(n, n) for n in names])



def _predict(arrs: list[xr.DataArray], ref: WeightsRef, spec: ModelSpec, *, tile: int | None,
             overlap: int | None, blend: Blend, batch_size: int | None, device: str, amp: bool,
             threads: int | None, heads: str | Sequence[str],
             chunks: Mapping[str, int] | None) -> xr.DataArray | xr.Dataset:
    single = isinstance(heads, str)
    hs = (heads,) if single else tuple(heads)
    known = HEADS[spec.architecture]
    bad = [h for h in hs if h not in known]
    if bad or not hs:
        raise ModelSpecError(f"model {spec.name!r} ({spec.architecture}) has heads "
                             f"{list(known)}; heads={heads!r} names {bad or 'none'}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be ≥ 1 (or None: by the device)")
    tiling = Tiling(int(tile or max(DEFAULT_TILE, spec.patch_size)),
                    DEFAULT_OVERLAP if overlap is None else int(overlap), blend)
    channels = tuple(len(spec.outputs) if h == "out" else 1 for h in hs)
    opts = RunOptions(heads=hs, channels=channels,
                      batch_size=None if batch_size is None else int(batch_size),
                      device=str(device), amp=bool(amp), threads=threads)
    x = xr.concat(arrs, dim="band", coords="minimal", compat="override", join="override")
    ydim, xdim = x.dims[2], x.dims[3]
    want: dict[str, Any] = {"band": -1}
    if chunks:
        unknown = sorted(set(chunks) - {"time", ydim, xdim})
        if unknown:
            raise ConfigError(f"chunks names {unknown}; use 'time', {ydim!r} and {xdim!r}")
        want.update(chunks)
    elif x.chunks is None:
        want.update({"time": 1, ydim: DEFAULT_CHUNK, xdim: DEFAULT_CHUNK})
    x = x.chunk(want)
    job = TileJob(ref=ref, opts=opts, tiling=tiling, inputs=spec.inputs,
              shape=(x.sizes[ydim], x.sizes[xdim]))
    data = blended_tile_graph(x.data, job)
    coords = {k: v for k, v in x.coords.items() if "band" not in v.dims}
    attrs = provenance(spec, ref, tiling, amp=amp, heads=hs)
    names = [spec.outputs[0] if h == "out" and len(spec.outputs) == 1 else h for h in hs]
    out_vars = {}
    k = 0
    for name, h, c in zip(names, hs, channels, strict=True):
        part = data[:, k:k + c]
        k += c
        if c == 1:
            da_ = xr.DataArray(part[:, 0], dims=("time", ydim, xdim), coords=coords,
                               name=name, attrs={**attrs, "head": h})
        else:
            da_ = xr.DataArray(part, dims=("time", "class", ydim, xdim),
                               coords={**coords, "class": list(spec.outputs)}, name=name,
                               attrs={**attrs, "head": h})
        if "time" not in arrs[0].coords:  # the cube had no time axis: give none back
            da_ = da_.isel(time=0, drop=True)
        out_vars[name] = da_
    if single:
        return out_vars[names[0]]
    return xr.Dataset(out_vars, attrs=attrs)
