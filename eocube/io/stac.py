"""STAC Items for outputs: a result's grid, dates and provenance as a STAC Item (a dict)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["PROVENANCE", "as_dataset", "stac_item"]

#: attributes of a result that become ``eocube:<key>`` properties of its STAC Item
PROVENANCE = ("model", "weights", "weights_sha256", "task", "tile", "overlap", "blend",
              "blend_window", "amp", "heads", "units", "time_before", "time_after")


def as_dataset(result: xr.DataArray | xr.Dataset) -> xr.Dataset:
    """A Dataset of ``result`` (a DataArray becomes its one variable)."""
    if isinstance(result, xr.DataArray):
        return result.to_dataset(name=result.name or "prediction", promote_attrs=True)
    return result


def stac_item(result: xr.DataArray | xr.Dataset, href: str, /, *, id: str | None = None,
              media_type: str = "application/vnd+zarr") -> dict[str, Any]:
    """A STAC Item (as a dict) for a written result, its provenance in ``properties``.

    Properties: ``datetime`` (or ``start_datetime``/``end_datetime`` for a series), the
    projection extension (``proj:code``, ``proj:shape``, ``proj:transform``) and
    ``eocube:model``, ``eocube:weights_sha256``, ``eocube:model_spec`` (the ModelSpec as an
    object), ``eocube:tile``, ``eocube:overlap``, ``eocube:blend``, ``eocube:amp`` ….
    Reads coordinates and attributes only; computes nothing.
    """
    ds = as_dataset(result)
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
    for key in PROVENANCE:
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
