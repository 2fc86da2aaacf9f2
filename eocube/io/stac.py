"""STAC JSON, in one place: the Item of a written result (its grid, dates and provenance), and
the Catalog, Collections and Items of a static archive (the synthetic city's).

Archive Items carry the projection (v2, ``proj:code``), eo, raster (``raster:bands`` with
scale/offset/nodata) and, for Sentinel-1, sar and sat extensions — the layout of Earth Search
and Planetary Computer items, so the loaders meet in a local archive what they meet there.
Everything here builds dicts; writing them is :func:`eocube.io.write_json`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

__all__ = ["COG_TYPE", "EXT", "PROVENANCE", "STAC_VERSION", "archive_asset", "archive_catalog",
           "archive_collection", "archive_item", "as_dataset", "footprint", "iso",
           "proj_fields", "raster_band", "stac_item"]

STAC_VERSION = "1.1.0"
#: the STAC extensions archive Items and Collections may name, by short key
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
}
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
LICENSE = "CC-BY-4.0"
_JSON = "application/json"

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
        span = [iso(v) for v in (t.min(), t.max())]
        if span[0] == span[1]:
            props["datetime"] = span[0]
        else:
            props.update({"datetime": None, "start_datetime": span[0], "end_datetime": span[1]})
    else:
        date = attrs.get("time_after")
        props["datetime"] = iso(np.datetime64(date)) if date else iso(np.datetime64("now"))
        if attrs.get("time_before"):
            props.update({"start_datetime": iso(np.datetime64(attrs["time_before"])),
                          "end_datetime": props["datetime"]})
    epsg = gb.crs.epsg
    props.update({"proj:code": f"EPSG:{epsg}" if epsg else None, **proj_fields(gb)})
    for key in PROVENANCE:
        if key in attrs:
            props[f"eocube:{key}"] = attrs[key]
    if "model_spec" in attrs:
        props["eocube:model_spec"] = json.loads(attrs["model_spec"])
    props["eocube:variables"] = [str(v) for v in ds.data_vars]
    ident = id or f"{attrs.get('model', 'prediction')}-{Path(href).stem}"
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": ident,
        "stac_extensions": [EXT["proj"]],
        "geometry": geom, "bbox": [min(xs), min(ys), max(xs), max(ys)], "properties": props,
        "links": [],
        "assets": {"data": {"href": href, "type": media_type, "roles": ["data"],
                            "title": ", ".join(str(v) for v in ds.data_vars)}},
    }


def iso(t: Any, /) -> str:
    """RFC 3339 UTC timestamp with a ``Z``, to the second, of a time (naive times are UTC).

    Examples
    --------
    >>> iso("2020-01-05T10:30:00.7")
    '2020-01-05T10:30:00Z'
    """
    ts = pd.Timestamp(t)
    ts = ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- static archives ------------------------------------------------------------------------

def proj_fields(gb: GeoBox, /) -> dict[str, Any]:
    """``proj:shape`` and ``proj:transform`` of a GeoBox."""
    a = gb.transform
    return {"proj:shape": [int(gb.shape.y), int(gb.shape.x)],
            "proj:transform": [float(v) for v in (a.a, a.b, a.c, a.d, a.e, a.f)]}


def footprint(gb: GeoBox, /) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON polygon (EPSG:4326) and bbox of a GeoBox, rounded to 1e-7° for stable JSON."""
    poly = gb.extent.to_crs("EPSG:4326")
    coords = [[round(x, 7), round(y, 7)] for x, y in poly.exterior.coords]
    xs = [c[0] for c in coords]
    ys = [c[1] for c in coords]
    return ({"type": "Polygon", "coordinates": [coords]},
            [min(xs), min(ys), max(xs), max(ys)])


def raster_band(dtype: str, /, *, nodata: float | None, resolution: float, scale: float = 1.0,
                offset: float = 0.0, unit: str | None = None) -> dict[str, Any]:
    """One entry of ``raster:bands``; scale and offset only where they are not 1 and 0."""
    b: dict[str, Any] = {"data_type": dtype, "spatial_resolution": resolution}
    if nodata is not None:
        b["nodata"] = "nan" if isinstance(nodata, float) and np.isnan(nodata) else nodata
    if scale != 1.0 or offset != 0.0:
        b["scale"], b["offset"] = scale, offset
    if unit:
        b["unit"] = unit
    return b


def archive_asset(href: str, gb: GeoBox, /, *, title: str, roles: tuple[str, ...] = ("data",),
                  **extra: Any) -> dict[str, Any]:
    """A COG asset on ``gb`` (its own ``proj:shape`` and ``proj:transform``)."""
    return {"href": href, "type": COG_TYPE, "title": title, "roles": list(roles),
            **proj_fields(gb), **extra}


def _head(kind: str, ident: str, extensions: tuple[str, ...] | None) -> dict[str, Any]:
    """The opening fields every STAC object shares (``None``: no ``stac_extensions``)."""
    head: dict[str, Any] = {"type": kind, "stac_version": STAC_VERSION}
    if extensions is not None:
        head["stac_extensions"] = [EXT[e] for e in extensions]
    head["id"] = ident
    return head


def _link(rel: str, href: str, kind: str = _JSON) -> dict[str, str]:
    return {"rel": rel, "href": href, "type": kind}


def archive_item(item_id: str, collection: str, gb: GeoBox, /, *,
                 properties: dict[str, Any], assets: dict[str, dict[str, Any]],
                 extensions: tuple[str, ...]) -> dict[str, Any]:
    """An archive Item on ``gb``, stored at ``<collection>/<item_id>/<item_id>.json``.

    ``extensions`` are keys of :data:`EXT`; the projection fields of ``gb`` join
    ``properties``.
    """
    geom, bbox = footprint(gb)
    props = {**properties, "proj:code": str(gb.crs), **proj_fields(gb)}
    return {
        **_head("Feature", item_id, extensions),
        "collection": collection,
        "geometry": geom,
        "bbox": bbox,
        "properties": props,
        "links": [_link("root", "../../catalog.json"), _link("parent", "../collection.json"),
                  _link("collection", "../collection.json")],
        "assets": assets,
    }


def archive_collection(cid: str, /, *, title: str, description: str, bbox: list[float],
                       interval: tuple[str, str], item_ids: list[str],
                       summaries: dict[str, Any], item_assets: dict[str, Any],
                       extensions: tuple[str, ...]) -> dict[str, Any]:
    """An archive Collection, stored at ``<cid>/collection.json``, linking its Items."""
    return {
        **_head("Collection", cid, extensions),
        "title": title,
        "description": description,
        "license": LICENSE,
        "keywords": ["synthetic", "eocube"],
        "providers": [{"name": "eocube synthetic city", "roles": ["producer", "processor",
                                                                 "host"]}],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [list(interval)]}},
        "summaries": summaries,
        "item_assets": item_assets,
        "links": [_link("root", "../catalog.json"), _link("parent", "../catalog.json"),
                  *(_link("item", f"./{i}/{i}.json", "application/geo+json")
                    for i in item_ids)],
    }


def archive_catalog(collection_ids: list[str], /, *, title: str, description: str,
                    id: str = "eocube-synthetic-city") -> dict[str, Any]:
    """The root Catalog of an archive, linking ``<cid>/collection.json`` of each collection."""
    return {
        **_head("Catalog", id, None),
        "title": title,
        "description": description,
        "links": [_link("root", "./catalog.json"),
                  *(_link("child", f"./{c}/collection.json") for c in collection_ids)],
    }
