"""STAC JSON for the synthetic archive: Collections and Items shaped like the public catalogs'.

Items carry the projection (v2, ``proj:code``), eo (``eo:bands``), raster (``raster:bands``
with scale/offset/nodata) and, for Sentinel-1, sar and sat extensions — the layout of Earth
Search and Planetary Computer items, so the loaders meet here what they meet there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from odc.geo.geobox import GeoBox

STAC_VERSION = "1.1.0"
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
}
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
LICENSE = "CC-BY-4.0"

#: Sentinel-2 band metadata: common name, centre wavelength (µm), FWHM (µm), resolution (m).
S2_BAND_META = {
    "B02": ("blue", 0.490, 0.098, 10), "B03": ("green", 0.560, 0.045, 10),
    "B04": ("red", 0.665, 0.038, 10), "B08": ("nir", 0.842, 0.145, 10),
    "B11": ("swir16", 1.610, 0.143, 20), "B12": ("swir22", 2.190, 0.242, 20),
}


def iso(t: pd.Timestamp) -> str:
    """RFC 3339 UTC timestamp with a ``Z``."""
    t = pd.Timestamp(t)
    t = t.tz_convert("UTC") if t.tzinfo else t.tz_localize("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def footprint(gb: GeoBox) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON polygon (EPSG:4326) and bbox of a GeoBox, rounded for stable JSON."""
    poly = gb.extent.to_crs("EPSG:4326")
    coords = [[round(x, 7), round(y, 7)] for x, y in poly.exterior.coords]
    xs = [c[0] for c in coords]
    ys = [c[1] for c in coords]
    return ({"type": "Polygon", "coordinates": [coords]},
            [min(xs), min(ys), max(xs), max(ys)])


def proj_fields(gb: GeoBox) -> dict[str, Any]:
    a = gb.transform
    return {"proj:shape": [int(gb.shape.y), int(gb.shape.x)],
            "proj:transform": [float(v) for v in (a.a, a.b, a.c, a.d, a.e, a.f)]}


def raster_band(dtype: str, *, nodata: float | None, resolution: float, scale: float = 1.0,
                offset: float = 0.0, unit: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"data_type": dtype, "spatial_resolution": resolution}
    if nodata is not None:
        b["nodata"] = "nan" if isinstance(nodata, float) and np.isnan(nodata) else nodata
    if scale != 1.0 or offset != 0.0:
        b["scale"], b["offset"] = scale, offset
    if unit:
        b["unit"] = unit
    return b


def asset(href: str, gb: GeoBox, *, title: str, roles: tuple[str, ...] = ("data",),
          **extra: Any) -> dict[str, Any]:
    return {"href": href, "type": COG_TYPE, "title": title, "roles": list(roles),
            **proj_fields(gb), **extra}


def item(item_id: str, collection: str, gb: GeoBox, *, properties: dict[str, Any],
         assets: dict[str, dict[str, Any]], extensions: tuple[str, ...]) -> dict[str, Any]:
    geom, bbox = footprint(gb)
    props = {**properties, "proj:code": str(gb.crs), **proj_fields(gb)}
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EXT[e] for e in extensions],
        "id": item_id,
        "collection": collection,
        "geometry": geom,
        "bbox": bbox,
        "properties": props,
        "links": [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
        ],
        "assets": assets,
    }


def collection(cid: str, *, title: str, description: str, bbox: list[float],
               interval: tuple[str, str], item_ids: list[str], summaries: dict[str, Any],
               item_assets: dict[str, Any], extensions: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EXT[e] for e in extensions],
        "id": cid,
        "title": title,
        "description": description,
        "license": LICENSE,
        "keywords": ["synthetic", "eocube"],
        "providers": [{"name": "eocube synthetic city", "roles": ["producer", "processor",
                                                                 "host"]}],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [list(interval)]}},
        "summaries": summaries,
        "item_assets": item_assets,
        "links": [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
            *({"rel": "item", "href": f"./{i}/{i}.json", "type": "application/geo+json"}
              for i in item_ids),
        ],
    }


def catalog(collection_ids: list[str], *, title: str, description: str) -> dict[str, Any]:
    return {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "eocube-synthetic-city",
        "title": title,
        "description": description,
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            *({"rel": "child", "href": f"./{c}/collection.json", "type": "application/json"}
              for c in collection_ids),
        ],
    }
