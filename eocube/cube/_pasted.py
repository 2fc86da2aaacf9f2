"""The odc engine's fast path: when every tile lies on the output grid (same CRS, whole-pixel
offsets, same resolution), the load graph is built here from the plan's grids, one task per
output chunk that reads and fuses its tiles, instead of by ``odc.stac.load``.

It makes the cube odc-stac would (same sources per chunk in the same order, the same reader,
fill value and fuser; ``tests/cube/test_pasted.py``) without parsing the items again or an
open task per file. ``plan`` returns ``None`` whenever an assumption fails; the load then goes
through odc-stac (``_odc``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from eocube.cube._read import FUSER, OnError, SourceInfo, odc_driver
from eocube.cube.guard import ReadGuard
from eocube.cube.plan import LoadPlan


def _aligned(tr: Sequence[float], gb: Any) -> bool:
    """``tr`` is ``gb``'s transform shifted by whole pixels (exactly, in floats)."""
    d = gb.transform
    if len(tr) < 6 or tr[1] != 0 or tr[3] != 0 or tr[0] != d.a or tr[4] != d.e:
        return False
    return float((tr[2] - d.c) / d.a).is_integer() and float((tr[5] - d.f) / d.e).is_integer()


def plan(load_plan: LoadPlan, /) -> dict[str, list[dict[tuple[int, int], list[Any]]]] | None:
    """Band → per time step → chunk (row, col) → the ``RasterSource``s odc-stac would read
    there, in its order; ``None`` when the fast path does not apply."""
    from affine import Affine
    from odc.geo import wh_
    from odc.geo.geobox import GeoBox, GeoboxTiles
    from odc.loader import RasterSource

    gb, chunks = load_plan.geobox, load_plan.chunks
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
    bands = load_plan.bands
    out: dict[str, list[dict[tuple[int, int], list[Any]]]] = {b: [] for b in bands}
    for g in load_plan.groups:
        steps: dict[str, dict[tuple[int, int], list[Any]]] = {b: {} for b in bands}
        for it in g:
            if not it.proj_ext:
                return None  # odc-stac would ignore the proj: fields and bin by geometry
            grid = None
            for src in it.sources.values():
                code = src.grid.crs
                if code is None:
                    return None
                if code not in crs_ok:
                    crs_ok[code] = code == str(gb.crs) or gb.crs == code
                shape, tr = src.grid.shape, src.grid.transform
                if not crs_ok[code] or shape is None or tr is None or not _aligned(tr, gb):
                    return None
                if grid is not None and (shape, tr) != grid:
                    return None  # odc-stac would bin the item by one of its grids
                grid = (shape, tr)
            if grid is None:
                continue  # none of the assets: nothing to read
            binned = bins.get(grid)
            if binned is None:
                (h, w), tr6 = grid
                src_gb = GeoBox(wh_(w, h), Affine(*tr6), gb.crs)
                # odc-stac bins an item by its image footprint; the same call, once per grid
                binned = bins[grid] = (list(gbt.tiles(src_gb.extent)), src_gb)
            tiles, src_gb = binned
            for b, src in it.sources.items():
                rs = RasterSource(src.href, band=src.index, geobox=src_gb,
                                  driver_data=SourceInfo(it.id, src.asset, src.scale,
                                                         src.offset, src.nodata, src.sha256))
                for t in tiles:
                    steps[b].setdefault(t, []).append(rs)
        for b in bands:
            out[b].append(steps[b])
    return out


def read(load_plan: LoadPlan, /) -> xr.Dataset | None:
    """The raw (time, y, x) bands odc-stac would make for ``load_plan``, one task per chunk;
    ``None`` when some tile is off the output grid."""
    from odc.loader import RasterLoadParams

    plans = plan(load_plan)
    if plans is None:
        return None
    fuser = FUSER if load_plan.on_error == "nan" else None
    # the load parameters odc-stac resolves for the same load (``_odc.read``)
    cfgs = {b: RasterLoadParams("float32", fill_value=np.nan, use_overviews=True,
                                resampling=m, fail_on_error=True, fuser_fqn=fuser)
            for b, m in load_plan.resampling.items()}
    return build(plans, load_plan.geobox, load_plan.chunks, cfgs, load_plan.on_error,
                 odc_driver(load_plan.on_error).capture_env(), load_plan.guard)


def build(plans: dict[str, list[dict[tuple[int, int], list[Any]]]], gb: Any,
          chunks: Mapping[str, Any], cfgs: Mapping[str, Any], on_error: OnError,
          env: dict[str, Any], guard: ReadGuard | None = None) -> xr.Dataset:
    """The raw (time, y, x) float32 bands, one dask task per chunk (``guard``: the load's
    read guard, ``eocube.cube.guard``)."""
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
            gb, gbt.chunks, cfg, on_error, env, guard)
        dsk: dict[Any, Any] = {}
        for t, st in enumerate(srcs):
            for iy in range(ny):
                for ix in range(nx):
                    dsk[(name, t, iy, ix)] = (load_chunk, st[iy * nx + ix], gbt[iy, ix], cfg,
                                              on_error, env, guard)
        arr = da.Array(HighLevelGraph.from_collections(name, dsk, dependencies=()), name,
                       ((1,) * len(steps), *gbt.chunks), dtype=np.dtype(cfg.dtype))
        out[b] = xr.DataArray(arr, dims=("time", "y", "x"))
    return xr.Dataset(out)
