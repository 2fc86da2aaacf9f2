"""The run folder as a static STAC catalog: one Item per committed stage (its outputs as assets
with checksums, its configuration hash, parameters, model sha256 and input ids), one
Collection, one Catalog — opened by pystac, served by ``eocube serve``, checked by
``eocube validate``."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from eocube.io import write_json
from eocube.pipeline.runner import RunFolder, StageContext

__all__ = ["COLLECTION", "stage_item", "write_run_catalog"]

COLLECTION = "eocube-run"
STAC_VERSION = "1.1.0"
FILE_EXT = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
MEDIA = {".zarr": "application/vnd+zarr", ".parquet": "application/x-parquet",
         ".json": "application/geo+json", ".html": "text/html", ".png": "image/png",
         ".tif": "image/tiff; application=geotiff; profile=cloud-optimized"}


def _geometry(bbox: list[float]) -> dict[str, Any]:
    x0, y0, x1, y1 = bbox
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _run_bbox(folder: RunFolder) -> tuple[list[float], str, str]:
    props = folder.manifest()["stages"].get("search", {}).get("properties", {})
    bbox = props.get("eocube:bbox", [-180.0, -90.0, 180.0, 90.0])
    start, _, end = props.get("eocube:datetime", "1970-01-01/1970-01-01").partition("/")
    return bbox, start, end


def stage_item(ctx: StageContext, sums: dict[str, str], /) -> None:
    """Write the STAC Item of a stage that just ran (``<run>/eocube-run/<stage>/<stage>.json``)."""
    folder = ctx.folder
    if ctx.name == "search":
        bbox = ctx.properties.get("eocube:bbox")
        start, _, end = ctx.properties.get("eocube:datetime", "").partition("/")
    else:
        bbox, start, end = _run_bbox(folder)
    bbox = [float(v) for v in (bbox or [-180.0, -90.0, 180.0, 90.0])]
    from eocube.pipeline.config import DEPENDS

    man = folder.manifest()
    assets = {}
    for rel, sha in sums.items():
        name = rel.split("/", 1)[1]
        assets[name.replace(".", "_")] = {
            "href": f"../../{rel}",
            "type": MEDIA.get(Path(name).suffix, "application/octet-stream"),
            "title": ctx.outputs[rel], "roles": ["data"], "file:checksum": "1220" + sha}
    props: dict[str, Any] = {
        "start_datetime": f"{start or '1970-01-01'}T00:00:00Z",
        "end_datetime": f"{end or start or '1970-01-01'}T23:59:59Z",
        "datetime": None,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eocube:stage": ctx.name,
        "eocube:stage_hash": man["stages"].get(ctx.name, {}).get("hash"),
        "eocube:inputs": [f"{COLLECTION}/{d}" for d in DEPENDS[ctx.name]],
        "eocube:parameters": {k: ctx.config.section(k) for k in _params(ctx.name)},
        **{k: v for k, v in ctx.properties.items() if k.startswith("eocube:")},
    }
    item = {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [FILE_EXT],
        "id": ctx.name, "collection": COLLECTION, "geometry": _geometry(bbox), "bbox": bbox,
        "properties": props, "assets": assets,
        "links": [{"rel": "root", "href": "../../catalog.json", "type": "application/json"},
                  {"rel": "parent", "href": "../collection.json", "type": "application/json"},
                  {"rel": "collection", "href": "../collection.json",
                   "type": "application/json"}],
    }
    write_json(folder.root / COLLECTION / ctx.name / f"{ctx.name}.json", item)


def _params(stage: str) -> tuple[str, ...]:
    from eocube.pipeline.config import PARAMS

    return PARAMS[stage]


def write_run_catalog(folder: RunFolder, /) -> None:
    """Write the run's Collection and Catalog over the Items of its committed stages, and
    record the collection in the manifest (so the run folder opens as an archive)."""
    man = folder.manifest()
    done = [s for s, e in man["stages"].items() if e.get("status") == "done"
            and (folder.root / COLLECTION / s / f"{s}.json").exists()]
    bbox, start, end = _run_bbox(folder)
    col = {
        "type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [],
        "id": COLLECTION, "title": "eocube run", "license": "other",
        "description": f"The committed stages of the eocube run in {folder.root.name}: each "
                       "Item is one stage, its outputs are the assets.",
        "extent": {"spatial": {"bbox": [bbox]},
                   "temporal": {"interval": [[f"{start}T00:00:00Z", f"{end}T23:59:59Z"]]}},
        "links": [{"rel": "root", "href": "../catalog.json", "type": "application/json"},
                  {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
                  *({"rel": "item", "href": f"./{s}/{s}.json", "type": "application/geo+json"}
                    for s in done)],
    }
    write_json(folder.root / COLLECTION / "collection.json", col)
    write_json(folder.root / "catalog.json", {
        "type": "Catalog", "stac_version": STAC_VERSION, "id": f"eocube-run-{folder.root.name}",
        "description": "An eocube run folder: stage outputs with provenance.",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"},
                  {"rel": "child", "href": f"./{COLLECTION}/collection.json",
                   "type": "application/json"}]})
    man["collections"] = {COLLECTION: len(done)}
    folder.write_manifest(man)
