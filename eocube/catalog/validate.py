"""Offline validation of STAC Items, Collections and Catalogs.

The core objects are checked against the official STAC 1.1.0 JSON Schemas that pystac ships.
Extension schemas live on the network, which eocube never reaches at run time, so the fields
of the extensions eocube writes and reads (projection, eo, raster, sar, sat) are checked here
by rules written from those extensions' specifications, and every prefixed field must belong
to an extension the object declares.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from eocube.errors import EocubeError

_EXT_URL = re.compile(r"^https://stac-extensions\.github\.io/([a-z0-9-]+)/v\d+\.\d+\.\d+/"
                      r"schema\.json$")
_DATA_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float16", "float32", "float64", "cint16", "cint32", "cfloat32", "cfloat64",
               "other"}
_COMMON_NAMES = {"pan", "coastal", "blue", "green", "green05", "yellow", "red", "rededge",
                 "rededge071", "rededge075", "rededge078", "nir", "nir08", "nir09", "cirrus",
                 "swir16", "swir22", "lwir", "lwir11", "lwir12"}


class StacValidationError(EocubeError, ValueError):
    """A STAC object does not validate; the message lists every problem."""


@functools.cache
def _validators() -> dict[str, Any]:
    from jsonschema import Draft7Validator
    from pystac.validation.local_validator import VERSION, get_local_schema_cache
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    cache = get_local_schema_cache()
    registry = Registry().with_resources(
        (uri, Resource.from_contents(schema, default_specification=DRAFT7))
        for uri, schema in cache.items())
    base = f"https://schemas.stacspec.org/v{VERSION}"
    return {
        kind: Draft7Validator(cache[f"{base}/{kind}-spec/json-schema/{kind}.json"],
                              registry=registry)
        for kind in ("item", "collection", "catalog")
    }


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _nodata_ok(x: Any) -> bool:
    return x in ("nan", "inf", "-inf") or (_is_num(x) and not math.isnan(x))


def _check_proj(f: dict[str, Any], where: str) -> Iterator[str]:
    if "proj:code" in f and f["proj:code"] is not None and not (
            isinstance(f["proj:code"], str) and re.match(r"^[A-Z]+:[\w.-]+$", f["proj:code"])):
        yield f"{where}: proj:code {f['proj:code']!r} is not an AUTHORITY:CODE string"
    if "proj:epsg" in f and f["proj:epsg"] is not None and not isinstance(f["proj:epsg"], int):
        yield f"{where}: proj:epsg {f['proj:epsg']!r} is not an integer"
    shp = f.get("proj:shape")
    if shp is not None and not (isinstance(shp, list) and len(shp) == 2
                                and all(isinstance(v, int) and v > 0 for v in shp)):
        yield f"{where}: proj:shape {shp!r} is not [rows, cols] of positive integers"
    tr = f.get("proj:transform")
    if tr is not None and not (isinstance(tr, list) and len(tr) in (6, 9)
                               and all(_is_num(v) for v in tr)):
        yield f"{where}: proj:transform {tr!r} is not a list of 6 or 9 numbers"
    bb = f.get("proj:bbox")
    if bb is not None and not (isinstance(bb, list) and len(bb) in (4, 6)
                               and all(_is_num(v) for v in bb)):
        yield f"{where}: proj:bbox {bb!r} is not a list of 4 or 6 numbers"


def _check_eo(f: dict[str, Any], where: str) -> Iterator[str]:
    cc = f.get("eo:cloud_cover")
    if cc is not None and not (_is_num(cc) and 0 <= cc <= 100):
        yield f"{where}: eo:cloud_cover {cc!r} is not a number in [0, 100]"
    for i, b in enumerate(f.get("eo:bands", []) or []):
        if not isinstance(b, dict):
            yield f"{where}: eo:bands[{i}] is not an object"
            continue
        if "common_name" in b and b["common_name"] not in _COMMON_NAMES:
            yield f"{where}: eo:bands[{i}].common_name {b['common_name']!r} is not a known name"
        for k in ("center_wavelength", "full_width_half_max"):
            if k in b and not (_is_num(b[k]) and b[k] > 0):
                yield f"{where}: eo:bands[{i}].{k} {b[k]!r} is not a positive number"


def _check_raster(f: dict[str, Any], where: str) -> Iterator[str]:
    for i, b in enumerate(f.get("raster:bands", []) or []):
        if not isinstance(b, dict):
            yield f"{where}: raster:bands[{i}] is not an object"
            continue
        if "data_type" in b and b["data_type"] not in _DATA_TYPES:
            yield f"{where}: raster:bands[{i}].data_type {b['data_type']!r} is not a STAC type"
        if "nodata" in b and not _nodata_ok(b["nodata"]):
            yield f"{where}: raster:bands[{i}].nodata {b['nodata']!r} is not a number or nan/inf"
        for k in ("scale", "offset", "spatial_resolution"):
            if k in b and not _is_num(b[k]):
                yield f"{where}: raster:bands[{i}].{k} {b[k]!r} is not a number"


def _check_sar(f: dict[str, Any], where: str, *, item: bool) -> Iterator[str]:
    if item:
        for k in ("sar:instrument_mode", "sar:frequency_band", "sar:polarizations",
                  "sar:product_type"):
            if k not in f:
                yield f"{where}: sar extension requires {k}"
    if "sar:frequency_band" in f and f["sar:frequency_band"] not in (
            "P", "L", "S", "C", "X", "Ku", "K", "Ka"):
        yield f"{where}: sar:frequency_band {f['sar:frequency_band']!r} is not a radar band"
    pols = f.get("sar:polarizations")
    if pols is not None and not (isinstance(pols, list) and pols
                                 and set(pols) <= {"HH", "VV", "HV", "VH"}):
        yield f"{where}: sar:polarizations {pols!r} must be a list of HH, VV, HV, VH"


def _check_sat(f: dict[str, Any], where: str, *, item: bool) -> Iterator[str]:
    st = f.get("sat:orbit_state")
    if st is not None and st not in ("ascending", "descending", "geostationary"):
        yield f"{where}: sat:orbit_state {st!r} is not ascending/descending/geostationary"
    ro = f.get("sat:relative_orbit")
    if ro is not None and not (isinstance(ro, int) and ro >= 1):
        yield f"{where}: sat:relative_orbit {ro!r} is not a positive integer"


_CHECKS: dict[str, Callable[..., Iterator[str]]] = {
    "projection": _check_proj, "eo": _check_eo, "raster": _check_raster,
    "sar": _check_sar, "sat": _check_sat,
}
_PREFIX = {"projection": "proj", "eo": "eo", "raster": "raster", "sar": "sar", "sat": "sat"}


def stac_problems(obj: dict[str, Any], /) -> list[str]:
    """Every problem found in a STAC Item, Collection or Catalog (empty when it validates)."""
    kind = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}.get(
        obj.get("type", ""))
    name = f"{obj.get('type', '?')} {obj.get('id', '?')!r}"
    if kind is None:
        return [f"{name}: type {obj.get('type')!r} is not Feature, Collection or Catalog"]
    problems = [f"{name}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in _validators()[kind].iter_errors(obj)]
    declared = {}
    for url in obj.get("stac_extensions", []):
        m = _EXT_URL.match(url)
        if m:
            declared[m.group(1)] = url
    fields: list[tuple[str, dict[str, Any]]] = [("properties", obj.get("properties", {}))]
    fields += [(f"assets/{k}", a) for k, a in obj.get("assets", {}).items()]
    fields += [(f"item_assets/{k}", a) for k, a in obj.get("item_assets", {}).items()]
    if kind == "collection":
        fields.append(("summaries", {}))
    used = {k.split(":", 1)[0] for _, f in fields for k in f if ":" in k}
    if kind == "collection":
        used |= {k.split(":", 1)[0] for k in obj.get("summaries", {}) if ":" in k}
    known_prefixes = {v: k for k, v in _PREFIX.items()}
    for prefix in sorted(used):
        ext = known_prefixes.get(prefix)
        if ext and ext not in declared:
            problems.append(f"{name}: uses {prefix}:* fields but does not declare the {ext} "
                            "extension in stac_extensions")
    for ext in declared:
        check = _CHECKS.get(ext)
        if check is None:
            continue
        for where, f in fields:
            kw = {"item": where == "properties" and kind == "item"} if ext in ("sar", "sat") \
                else {}
            problems += list(check(f, f"{name} {where}", **kw))
    return problems


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def archive_problems(root: str | os.PathLike[str], /) -> list[str]:
    """The files of an eocube archive that differ from its ``manifest.json`` (missing, of
    another size, another sha256) and the local assets whose ``file:checksum`` (a sha2-256
    multihash, ``1220…``) their file does not match: one line per problem, naming the file
    and what to do. Reads every file once.

    Examples
    --------
    >>> archive_problems(tiny_archive)  # doctest: +SKIP
    []
    """
    root = Path(root)
    mpath = root / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as e:
        return [f"{mpath}: cannot be read as JSON ({e}); rebuild the archive"]
    problems = []
    sums: dict[str, str] = {}
    files = manifest.get("files") or {}
    # the simulator's truth/ may be removed whole (the pipeline must not need it): its files
    # are checked when the folder is there, and not asked for when it is gone
    truth = str((manifest.get("truth") or {}).get("path", "")).strip("/")
    truth_gone = bool(truth) and not (root / truth).exists()
    for rel, entry in sorted(files.items()):
        if truth_gone and rel.startswith(truth + "/"):
            continue
        path = root / rel
        if not os.path.realpath(path).startswith(os.path.realpath(root) + os.sep):
            problems.append(f"{mpath}: file entry {rel!r} points outside the archive")
            continue
        if not path.is_file():
            problems.append(f"{rel}: listed in manifest.json but missing; restore it or "
                            "rebuild the archive")
            continue
        if "bytes" in entry and path.stat().st_size != entry["bytes"]:
            problems.append(f"{rel}: {path.stat().st_size} bytes, manifest.json says "
                            f"{entry['bytes']} (truncated or replaced); restore it")
            continue
        sums[rel] = got = _sha256(path)
        if "sha256" in entry and got != entry["sha256"]:
            problems.append(f"{rel}: sha256 {got} differs from manifest.json's "
                            f"{entry['sha256']} (the file is damaged); restore it")
    for item_path in sorted(root.glob("*/*/*.json")):
        try:
            item = json.loads(item_path.read_text())
        except (OSError, ValueError):
            continue  # stac_problems reports it
        for key, a in (item.get("assets") or {}).items() if isinstance(item, dict) else ():
            mh, href = a.get("file:checksum"), a.get("href", "")
            if not (isinstance(mh, str) and mh.startswith("1220")) or "://" in href:
                continue
            path = (item_path.parent / href).resolve()
            rel = os.path.relpath(path, root.resolve()).replace(os.sep, "/")
            if not path.is_file():
                problems.append(f"{item_path.relative_to(root)} asset {key!r}: {href} is "
                                "missing")
                continue
            got = sums.get(rel) or _sha256(path)
            if got != mh[4:].lower():
                problems.append(f"{item_path.relative_to(root)} asset {key!r}: {href} does "
                                "not match its file:checksum (the file is damaged); restore it")
    return problems


def validate_stac(obj: dict[str, Any], /) -> None:
    """Raise ``StacValidationError`` listing every problem if ``obj`` does not validate."""
    problems = stac_problems(obj)
    if problems:
        raise StacValidationError("\n".join(problems))
