"""The stackstac engine: ``stackstac.stack`` reads each item onto the output grid, eocube's
readers handle failures, and one task per chunk and time step scales each item, applies its
declared nodata and fuses the items (imported only for this engine).

stackstac reads one band per asset: each requested band becomes an asset of its own, a band of
a multi-band asset (a 3-band ``visual``) read through GDAL's ``vrt://`` connection
(``?bands=N``). stackstac knows no nodata from the items, so the declared nodata is applied
per item before fusing; an item read off its own grid (resampled) also gets it as the warp's
source nodata (``vrt://…?a_nodata=``), so that nodata never blends into valid pixels.
The reader classes live at module level so Dask pickles them by reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr
from stackstac.rio_reader import AutoParallelRioReader

from eocube.cube._read import FAILED, fuse_finite_first, read_error
from eocube.cube.plan import DEFAULT_CHUNKS, BandSource, LoadPlan, ParsedItem
from eocube.errors import ConfigError, GridError


class ReaderRaise(AutoParallelRioReader):  # type: ignore[misc]
    """Raise ``ReadError`` naming the asset on any failure."""

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        try:
            return super().read(window, **kwargs)
        except Exception as e:
            raise read_error(None, None, self.url, e.__cause__ or e) from e


class ReaderNan(AutoParallelRioReader):  # type: ignore[misc]
    """Return the failure marker over the window on any failure."""

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        try:
            return super().read(window, **kwargs)
        except Exception:
            return np.full((int(window.height), int(window.width)), FAILED, dtype=self.dtype)


def _gdal_path(href: str) -> str:
    """``href`` as a GDAL path (``/vsicurl/`` for HTTP, ``/vsis3/`` for S3)."""
    if href.startswith("file://"):
        return href.removeprefix("file://")
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("s3://"):
        return "/vsis3/" + href.removeprefix("s3://")
    return href


def _on_grid(src: BandSource, gb: Any) -> bool:
    """Whether ``src`` lies on ``gb``'s grid (same CRS and pixel size, whole-pixel offset):
    stackstac then reads it without a warp."""
    g = src.grid
    if g.crs is None or g.transform is None or not (g.crs == str(gb.crs) or gb.crs == g.crs):
        return False
    a, b, c, d, e, f = g.transform
    t = gb.transform
    return (b == 0 and d == 0 and a == t.a and e == t.e
            and float((c - t.c) / t.a).is_integer() and float((f - t.f) / t.e).is_integer())


def _href(it: ParsedItem, band: str, src: BandSource, gb: Any) -> str:
    """What stackstac opens for ``band`` of ``it``."""
    opts = []
    if src.n_bands > 1:
        opts.append(f"bands={src.index}")
    if src.nodata is not None and not _on_grid(src, gb):
        opts.append(f"a_nodata={'nan' if math.isnan(src.nodata) else repr(src.nodata)}")
    if not opts:
        return src.href
    if "?" in src.href:
        why = "one band of a multi-band asset" if src.n_bands > 1 else "nodata off its grid"
        raise ConfigError(f"engine='stackstac' cannot read band {band!r} of item {it.id!r} "
                          f"(asset {src.asset!r}, {why}) from a URL with a query string "
                          f"({src.href}); use engine='odc'")
    return f"vrt://{_gdal_path(src.href)}?{'&'.join(opts)}"


def _stack_item(it: ParsedItem, plan: LoadPlan) -> dict[str, Any]:
    """The item as stackstac reads it: one asset per requested band (named as the band),
    ``proj:epsg`` where projection v2 gives ``proj:code`` only."""
    d = it.item.to_dict(include_self_link=False, transform_hrefs=False)
    props = dict(d["properties"])
    assets = {}
    for b, src in it.sources.items():
        a = dict(d["assets"][src.asset])
        a["href"] = _href(it, b, src, plan.geobox)
        code = src.grid.crs
        if code is not None and code.upper().startswith("EPSG:"):
            a["proj:epsg"] = int(code.split(":")[1])
        a.pop("raster:bands", None)  # rescale=False: eocube scales, per item
        assets[b] = a
    code = it.grid.crs
    if props.get("proj:epsg") is None and code is not None and code.upper().startswith("EPSG:"):
        props["proj:epsg"] = int(code.split(":")[1])
    return {**d, "properties": props, "assets": assets}


def read(plan: LoadPlan, /) -> xr.Dataset:
    """The plan's raw (time, y, x) bands, read by stackstac (lazily)."""
    import dask.array as da
    import stackstac
    from rasterio.enums import Resampling

    from eocube.cube.gdal import stackstac_env

    gb = plan.geobox
    epsg = gb.crs.epsg
    if epsg is None:
        raise GridError(f"engine='stackstac' needs a CRS with an EPSG code, not {gb.crs}")
    items = plan.items
    # stackstac drops the items (and assets) that miss the output bounds: ids that are the
    # positions in ``items`` say which ones it kept
    dicts = [{**_stack_item(it, plan), "id": str(i)} for i, it in enumerate(items)]
    bounds = tuple(gb.boundingbox)
    res = (abs(gb.resolution.x), abs(gb.resolution.y))
    reader = ReaderRaise if plan.on_error == "raise" else ReaderNan
    cy = int(plan.chunks.get("y", DEFAULT_CHUNKS["y"]))
    cx = int(plan.chunks.get("x", DEFAULT_CHUNKS["x"]))
    by_method: dict[str, list[str]] = {}
    for b, m in plan.resampling.items():
        by_method.setdefault(m, []).append(b)

    def stack(kept: list[int], bands: list[str], method: str, *, by_step: bool = True) -> Any:
        # one chunk along time per time step, so fusing a step is one task per chunk
        sizes = [sum(p in kept_set for p in range(s0, s0 + len(g)))
                 for g, s0, kept_set in _starts(plan, set(kept))]
        return stackstac.stack(
            [dicts[p] for p in kept], assets=bands, epsg=int(epsg), resolution=res,
            bounds=bounds, snap_bounds=False, dtype=np.dtype("float32"),
            fill_value=np.float32(np.nan), rescale=False, sortby_date=False,
            chunksize=(tuple(n for n in sizes if n) if by_step else 1, 1, cy, cx),
            resampling=Resampling[method], reader=reader, gdal_env=stackstac_env(),
            xy_coords="center")

    def ids(arr: Any) -> list[int]:
        return [int(i) for i in np.atleast_1d(arr["id"].values)]

    out: dict[str, xr.DataArray] = {}
    guess = [p for p, it in enumerate(items) if _may_overlap(it, gb)]
    for m, bs in by_method.items():
        if not guess:
            for b in bs:
                out[b] = xr.DataArray(da.full((len(plan.groups), *gb.shape.yx), np.nan,
                                              dtype="float32", chunks=(1, cy, cx)),
                                      dims=("time", "y", "x"))
            continue
        try:
            arr = stack(guess, bs, m)
        except ValueError:  # chunks that do not add up: stackstac dropped another item
            arr = None
        if arr is None or ids(arr) != guess:
            # ask stackstac which items it keeps (one chunk per item cannot fail), then
            # chunk by time step
            kept = ids(stack(guess, bs, m, by_step=False))
            arr = stack(kept, bs, m)
        kept = ids(arr)
        if arr.shape[-2:] != tuple(gb.shape.yx):
            raise GridError(f"stackstac made a {arr.shape[-2:]} grid for the {gb.shape.yx} "
                            "GeoBox; this is a bug, please report it")
        band_pos = {str(v): j for j, v in enumerate(np.atleast_1d(arr["band"].values))}
        for b in bs:
            out[b] = xr.DataArray(_fuse_steps(arr.data, band_pos.get(b), kept, plan, b),
                                  dims=("time", "y", "x"))
    return xr.Dataset(out)


def _starts(plan: LoadPlan, kept: set[int]) -> list[tuple[Any, int, set[int]]]:
    """(group, position of its first item in ``plan.items``, ``kept``) per time step."""
    out, s0 = [], 0
    for g in plan.groups:
        out.append((g, s0, kept))
        s0 += len(g)
    return out


def _may_overlap(it: ParsedItem, gb: Any) -> bool:
    """Whether stackstac keeps ``it``: some band's asset overlaps the output bounds (as
    stackstac tests it; an asset in another CRS is assumed to, ``read`` checks)."""
    x0, y0, x1, y1 = gb.boundingbox
    for src in it.sources.values():
        b = src.grid.bounds()
        if b is None or src.grid.crs is None or not (src.grid.crs == str(gb.crs)
                                                     or gb.crs == src.grid.crs):
            return True
        if max(b[0], x0) < min(b[2], x1) and max(b[1], y0) < min(b[3], y1):
            return True
    return False


def _fuse_steps(data: Any, j: int | None, kept: list[int], plan: LoadPlan, band: str) -> Any:
    """One task per time step and chunk that fuses the step's items of band ``j`` of
    stackstac's (item, band, y, x) dask array ``data`` (chunked by time step; ``kept``: the
    items' positions in the plan)."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    kept_set = set(kept)
    steps: list[tuple[int | None, list[tuple[float, float, float]]]] = []
    block = 0
    for g, s0, _ in _starts(plan, kept_set):
        units = [_units(it.sources.get(band)) for p, it in enumerate(g, s0) if p in kept_set]
        steps.append((block if units and j is not None else None, units))
        block += bool(units)
    ych, xch = data.chunks[2], data.chunks[3]
    dname = data.name
    name = f"eocube-stackstac-{band}-" + tokenize(dname, j, steps)
    dsk = {(name, t, iy, ix): (_fuse, (dname, k, j, iy, ix) if k is not None else None,
                               units, (ych[iy], xch[ix]))
           for t, (k, units) in enumerate(steps)
           for iy in range(len(ych)) for ix in range(len(xch))}
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    return da.Array(graph, name, ((1,) * len(steps), ych, xch), dtype=np.dtype("float32"))


def _units(src: BandSource | None) -> tuple[float, float, float]:
    """(scale, offset, nodata) of a source; NaN nodata: none declared (NaN is no data)."""
    if src is None:
        return 1.0, 0.0, math.nan
    return src.scale, src.offset, math.nan if src.nodata is None else src.nodata


def _fuse(block: np.ndarray | None, units: list[tuple[float, float, float]],
          shape: tuple[int, int]) -> np.ndarray:
    """One time step of one chunk from its items' stored values (stackstac's block
    (items, 1, y, x); ``None``: no item): each scaled by its own scale and offset, its nodata
    made NaN, fused in order (first finite value, else a failure marker, else NaN)."""
    out = np.full(shape, np.nan, dtype="float32")
    if block is None:
        return out[None]
    if len(set(units)) == 1:
        # the common case, one scale for the step: fuse the stored values (each item's nodata
        # never taken), then scale once; the same float32 arithmetic per pixel
        s, o, nod = units[0]
        for layer in block[:, 0]:
            take = ~np.isfinite(out) & (np.isfinite(layer) | np.isnan(out))
            if not math.isnan(nod):
                take &= layer != np.float32(nod)
            np.copyto(out, layer, where=take)
        if s != 1 or o != 0:
            np.multiply(out, np.float32(s), out=out)
            out += np.float32(o)
        return out[None]
    for layer, (s, o, nod) in zip(block[:, 0], units, strict=True):
        if s != 1 or o != 0:
            v = np.multiply(layer, np.float32(s), dtype="float32")
            v += np.float32(o)
        else:
            v = layer.copy()
        if not math.isnan(nod):
            v[layer == np.float32(nod)] = np.nan
        fuse_finite_first(out, v)
    return out[None]
