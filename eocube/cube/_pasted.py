"""The odc engine's fast path: when every tile lies on the output grid (same CRS, whole-pixel
offsets, same resolution), the load graph is built here from the items' ``proj:`` fields,
one task per output chunk that reads and fuses its tiles, instead of by ``odc.stac.load``.

It makes the cube odc-stac would (same sources per chunk in the same order, the same reader,
fill value and fuser; ``tests/cube/test_pasted.py``) without parsing the items or an open
task per file. ``plan`` returns ``None`` whenever an assumption fails; the load then goes
through odc-stac.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from eocube.cube._read import OnError, ScaleTable, SourceInfo


def _proj(item: Any, asset: Any, key: str) -> Any:
    v = asset.extra_fields.get(key)
    return item.properties.get(key) if v is None else v


def _crs_code(item: Any, asset: Any) -> str | None:
    code = _proj(item, asset, "proj:code")
    if code is None:
        epsg = _proj(item, asset, "proj:epsg")
        code = f"EPSG:{epsg}" if epsg is not None else None
    return code if isinstance(code, str) else None


def _aligned(tr: Sequence[float], gb: Any) -> bool:
    """``tr`` is ``gb``'s transform shifted by whole pixels (exactly, in floats)."""
    d = gb.transform
    if len(tr) < 6 or tr[1] != 0 or tr[3] != 0 or tr[0] != d.a or tr[4] != d.e:
        return False
    return float((tr[2] - d.c) / d.a).is_integer() and float((tr[5] - d.f) / d.e).is_integer()


def plan(groups: list[list[Any]], gb: Any, parts: Mapping[str, tuple[str, int]],
         chunks: Mapping[str, Any], scales: ScaleTable
         ) -> dict[str, list[dict[tuple[int, int], list[Any]]]] | None:
    """Band → per time step → chunk (row, col) → the ``RasterSource``s odc-stac would read
    there, in its order; ``None`` when the fast path does not apply."""
    from affine import Affine
    from odc.geo import wh_
    from odc.geo.geobox import GeoBox, GeoboxTiles
    from odc.loader import RasterSource
    from odc.stac._mdtools import has_proj_ext

    if not isinstance(gb, GeoBox) or tuple(gb.dimensions) != ("y", "x"):
        return None
    d = gb.transform
    if d.b != 0 or d.d != 0 or set(chunks) - {"x", "y", "time"}:
        return None
    cy, cx, ct = chunks.get("y"), chunks.get("x"), chunks.get("time", 1)
    if not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in (cy, cx)) \
            or ct != 1:
        return None
    gbt = GeoboxTiles(gb, (min(cy, gb.shape.y), min(cx, gb.shape.x)))
    crs_ok: dict[str, bool] = {}
    bins: dict[tuple[Any, ...], tuple[list[tuple[int, int]], Any]] = {}
    out: dict[str, list[dict[tuple[int, int], list[Any]]]] = {b: [] for b in parts}
    assets = {a for a, _ in parts.values()}
    for g in groups:
        steps = {b: {} for b in parts}
        for it in g:
            if not has_proj_ext(it):
                return None  # odc-stac would ignore the proj: fields and bin by geometry
            grid = None
            for a in assets:
                asset = it.assets.get(a)
                if asset is None:
                    continue
                code = _crs_code(it, asset)
                if code is None:
                    return None
                if code not in crs_ok:
                    crs_ok[code] = code == str(gb.crs) or gb.crs == code
                shape, tr = _proj(it, asset, "proj:shape"), _proj(it, asset, "proj:transform")
                if not crs_ok[code] or shape is None or tr is None or not _aligned(tr, gb):
                    return None
                g_ = (tuple(int(v) for v in shape), tuple(float(v) for v in tr[:6]))
                if grid is not None and g_ != grid:
                    return None  # odc-stac would bin the item by one of its grids
                grid = g_
            if grid is None:
                continue  # none of the assets: nothing to read
            binned = bins.get(grid)
            if binned is None:
                (h, w), tr6 = grid
                src_gb = GeoBox(wh_(w, h), Affine(*tr6), gb.crs)
                # odc-stac bins an item by its image footprint; the same call, once per grid
                binned = bins[grid] = (list(gbt.tiles(src_gb.extent)), src_gb)
            tiles, src_gb = binned
            hrefs: dict[str, str] = {}
            for b, (a, bidx) in parts.items():
                asset = it.assets.get(a)
                if asset is None:
                    continue
                if a not in hrefs:
                    hrefs[a] = asset.get_absolute_href() or asset.href
                s, o = scales.get((it.id, a, bidx), (1.0, 0.0))
                src = RasterSource(hrefs[a], band=bidx, geobox=src_gb,
                                   driver_data=SourceInfo(it.id, a, s, o))
                for t in tiles:
                    steps[b].setdefault(t, []).append(src)
        for b in parts:
            out[b].append(steps[b])
    return out


def build(plans: dict[str, list[dict[tuple[int, int], list[Any]]]], gb: Any,
          chunks: Mapping[str, Any], cfgs: Mapping[str, Any], on_error: OnError,
          env: dict[str, Any]) -> xr.Dataset:
    """The raw (time, y, x) float32 bands, one dask task per chunk."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    from odc.geo.geobox import GeoboxTiles

    from eocube.cube._read import load_chunk

    gbt = GeoboxTiles(gb, (min(chunks["y"], gb.shape.y), min(chunks["x"], gb.shape.x)))
    ny, nx = gbt.shape.yx
    out = {}
    for b, steps in plans.items():
        cfg = cfgs[b]
        # lists, not tuples: dask hashes tuple arguments (a GeoBox hashes its CRS's WKT)
        srcs = [[list(steps[t].get((iy, ix), ())) for iy in range(ny) for ix in range(nx)]
                for t in range(len(steps))]
        name = f"eocube-load-{b}-" + tokenize(
            [[[(s.uri, s.band, s.driver_data) for s in c] for c in st] for st in srcs],
            gb, gbt.chunks, cfg, on_error, env)
        dsk: dict[Any, Any] = {}
        for t, st in enumerate(srcs):
            for iy in range(ny):
                for ix in range(nx):
                    dsk[(name, t, iy, ix)] = (load_chunk, st[iy * nx + ix], gbt[iy, ix], cfg,
                                              on_error, env)
        arr = da.Array(HighLevelGraph.from_collections(name, dsk, dependencies=()), name,
                       ((1,) * len(steps), *gbt.chunks), dtype=np.dtype(cfg.dtype))
        out[b] = xr.DataArray(arr, dims=("time", "y", "x"))
    return xr.Dataset(out)
