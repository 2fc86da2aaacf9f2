"""The last step of a load: an engine's raw bands → the cube.

Failure markers become NaN (``on_error="nan"``), class bands return to their integer dtype
with their ``nodata``, variables get their units, the time and spatial coordinates come from
the plan, and ``read_failed`` records where reads failed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from eocube.cube._read import FAILED
from eocube.cube.plan import LoadPlan
from eocube.errors import ConfigError, GridError

#: name of the variable that records read failures under ``on_error="nan"``
FAILURES = "read_failed"


def finish(raw: xr.Dataset, plan: LoadPlan, /) -> xr.Dataset:
    """The cube from an engine's ``raw`` bands (``eocube.cube.engines``), lazily.

    Raises
    ------
    GridError
        If the engine's output does not have the plan's time steps and grid (a bug).
    """
    from odc.geo.xr import xr_coords

    gb = plan.geobox
    want = (len(plan.groups), *gb.shape.yx)
    coords = {"time": plan.times(), **xr_coords(gb)}
    out: dict[str, xr.DataArray] = {}
    failed: dict[str, xr.DataArray] = {}
    for band, spec in plan.specs.items():
        if raw[band].shape != want:
            raise GridError(f"the engine made band {band!r} of shape {raw[band].shape} for "
                            f"{want} (time, y, x); this is a bug, please report it")
        r = xr.DataArray(raw[band].data, dims=("time", *gb.dimensions))
        if spec.is_class:
            nod = spec.nodata if spec.nodata is not None else 0
            v = r.where(np.isfinite(r), nod).astype(spec.dtype)
            attrs: dict[str, Any] = {"nodata": nod}
        else:
            v = _markers_to_nan(r) if plan.on_error == "nan" else r
            attrs = {}
        if spec.unit:
            attrs["units"] = spec.unit
        elif spec.role == "reflectance":
            attrs["units"] = "1"
        out[band] = v.assign_attrs(attrs)
        if plan.on_error == "nan":
            missing = np.array([any(band not in it.sources for it in g) for g in plan.groups])
            failed[band] = (r == FAILED).any(gb.dimensions) | xr.DataArray(missing, dims="time")
    ds = xr.Dataset(out, coords=coords, attrs={"eocube:profile": plan.profile.name})
    if plan.on_error == "nan":
        ids = [",".join(it.id for it in g) for g in plan.groups]
        flags = xr.concat(list(failed.values()), dim=xr.Variable("band", list(failed)))
        ds[FAILURES] = flags.transpose("time", "band").assign_attrs(
            {"description": "True where reading the band at that time failed (pixels NaN)",
             "items": ids, "assets": [plan.asset_band(b)[0] for b in failed],
             "eocube:load": plan.guard.load_id,
             **({"eocube:failure_journal": plan.guard.journal} if plan.guard.journal else {})})
    return ds


def _nan_markers(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out[np.isinf(out)] = np.nan
    return out


def _markers_to_nan(r: xr.DataArray) -> xr.DataArray:
    """``r`` with failure markers (+inf) as NaN, in one task per chunk."""
    if r.chunks is None:
        return r.copy(data=_nan_markers(r.values))
    import dask.array as da

    return r.copy(data=da.map_blocks(_nan_markers, r.data, dtype="float32"))


def read_failures(cube: xr.Dataset, /, *, compute: bool = True) -> list[dict[str, Any]]:
    """The read failures recorded by ``load(..., on_error="nan")``: for each failed
    (time, band), one dict per failing item and asset. Computes ``read_failed``; with
    ``compute=False`` it lists, without reading anything, the records that the reads run
    so far have made (after the cube, or something made from it, was computed or written:
    a pipeline stage asks after its writes, and reads nothing twice), those in the load's
    ``failure_journal`` included (reads of an earlier, killed attempt).

    Each record holds ``time``, ``band``, ``items`` (the ids of the step's items), ``item``
    and ``asset`` (the one that failed), ``href`` (without its query string; ``None`` for
    an asset the item lacks), ``class`` (``"transient"``, ``"corrupt"``, ``"missing"`` or
    ``"forbidden"``), ``attempts`` and ``error`` (redacted). The records are kept by the
    processes that read (Dask workers too, collected through the active distributed
    client); a step whose failing item no process recorded (engine ``"stackstac"``, a
    worker since lost) gets one record with ``item`` and ``class`` ``None``.

    Raises
    ------
    ConfigError
        If the cube was not loaded with ``on_error="nan"``.
    """
    import pandas as pd

    from eocube.cube.guard import failure_records

    if FAILURES not in cube:
        raise ConfigError(f"the cube has no {FAILURES!r} variable; load it with "
                          "on_error='nan' to record read failures")
    f = cube[FAILURES]
    ids = f.attrs.get("items", [""] * f.shape[0])
    assets = f.attrs.get("assets", [None] * f.shape[1])
    load_id = f.attrs.get("eocube:load")
    journal = f.attrs.get("eocube:failure_journal")
    if not compute:
        recs = failure_records(load_id, journal=journal) if load_id else []
        vals = np.array([[any(r["item"] in ids[t].split(",") and r["asset"] == a
                              for r in recs) for a in assets] for t in range(f.shape[0])],
                        dtype=bool).reshape(f.shape)
    else:
        vals = np.asarray(f.values)
        recs = failure_records(load_id, journal=journal) if load_id and vals.any() else []
    out = []
    for t, b in zip(*np.nonzero(vals), strict=True):
        step = ids[t].split(",")
        base = {"time": pd.Timestamp(f["time"].values[t]), "band": str(f["band"].values[b]),
                "items": step}
        found = sorted((r for r in recs if r["item"] in step and r["asset"] == assets[b]),
                       key=lambda r: step.index(r["item"]))
        out += [{**base, **r} for r in found] or [
            {**base, "item": None, "asset": assets[b], "href": None, "class": None,
             "attempts": None, "error": "no process recorded which item failed"}]
    return out
