"""The HDF5 engine: NASA Black Marble tiles (VNP46A2 daily, VNP46A3 monthly) read lazily onto
any GeoBox.

GDAL-based engines (odc-stac, stackstac) cannot read these HDF-EOS5 tiles as georeferenced
rasters, so eocube reads them itself: one Dask task per time step and output chunk crops the
15″ window that covers the chunk from each tile (h5py, opened inside the task — no file handle
lives in the graph), applies fill value (and the declared nodata), scale factor and the
quality mask, and reprojects the window onto the chunk with odc-geo, with the plan's
resampling. Tile grids come from the plan (the items' projection fields, or the h/v index of
``eocube.catalog.tilegrid``), so building the cube reads nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from eocube.cube._read import FAILED, OnError, cause_of, fuse_finite_first, read_error
from eocube.cube.guard import ReadGuard, attempt, record_failure
from eocube.cube.plan import DEFAULT_CHUNKS, LoadPlan
from eocube.errors import ConfigError

FIELDS = "HDFEOS/GRIDS/VIIRS_Grid_DNB_2d/Data Fields"
#: product → (radiance layer, quality layer, quality values kept by default)
PRODUCTS = {
    "vnp46a3": ("AllAngle_Composite_Snow_Free", "AllAngle_Composite_Snow_Free_Quality", (0,)),
    # VNP46A2 Mandatory_Quality_Flag: 0 high-quality persistent, 1 high-quality ephemeral,
    # 2 poor quality, 255 fill
    "vnp46a2": ("DNB_BRDF-Corrected_NTL", "Mandatory_Quality_Flag", (0, 1)),
}
PAD = 2  # source pixels around the window, so bilinear/average see their neighbours


def _window(tile_gb: Any, chunk_gb: Any) -> tuple[slice, slice] | None:
    """The tile pixels (with ``PAD``) that cover ``chunk_gb``; None when they do not meet."""
    ext = chunk_gb.extent.to_crs(tile_gb.crs)
    x0, y0, x1, y1 = ext.boundingbox
    inv = ~tile_gb.transform
    c0, r0 = inv * (x0, y1)
    c1, r1 = inv * (x1, y0)
    ny, nx = tile_gb.shape.yx
    rs = max(int(np.floor(min(r0, r1))) - PAD, 0)
    re_ = min(int(np.ceil(max(r0, r1))) + PAD, ny)
    cs = max(int(np.floor(min(c0, c1))) - PAD, 0)
    ce = min(int(np.ceil(max(c0, c1))) + PAD, nx)
    if rs >= re_ or cs >= ce:
        return None
    return slice(rs, re_), slice(cs, ce)


def read_window(path: str, layer: str, qlayer: str | None, good: Sequence[int],
                win: tuple[slice, slice], *, scale: float = 1.0, offset: float = 0.0,
                nodata: float | None = None) -> np.ndarray:
    """Radiance of ``win`` in physical units, NaN where fill, ``nodata`` or quality is not
    ``good``. The layer's own ``scale_factor`` / ``add_offset`` win over ``scale`` /
    ``offset`` (the plan's, used when the file has none)."""
    import h5py

    with h5py.File(path.removeprefix("file://"), "r") as f:
        g = f[FIELDS]
        ds = g[layer]
        dn = ds[win]
        fill = ds.attrs.get("_FillValue")
        scale = float(np.asarray(ds.attrs.get("scale_factor", scale)).ravel()[0])
        offset = float(np.asarray(ds.attrs.get("add_offset", offset)).ravel()[0])
        out = dn.astype("float32") * np.float32(scale) + np.float32(offset)
        if fill is not None:
            out[dn == np.asarray(fill).ravel()[0]] = np.nan
        if nodata is not None and not np.isnan(nodata):  # (NaN stays NaN anyway)
            out[dn == nodata] = np.nan
        if qlayer is not None:
            q = g[qlayer][win]
            out[~np.isin(q, list(good))] = np.nan
    return out


def _chunk_task(sources: tuple[tuple[Any, ...], ...], layer: str, qlayer: str | None,
                good: tuple[int, ...], chunk_gb: Any, resampling: str,
                on_error: OnError, guard: ReadGuard | None = None) -> np.ndarray:
    from odc.geo.warp import rio_reproject

    dst = np.full(chunk_gb.shape.yx, np.nan, dtype="float32")
    for href, item_id, asset, tile_gb, scale, offset, nodata, sha in sources:
        win = _window(tile_gb, chunk_gb)
        if win is None:
            continue
        g = guard if guard is not None else ReadGuard()
        try:
            src, _ = attempt(functools.partial(read_window, layer=layer, qlayer=qlayer,
                                               good=good, win=win, scale=scale, offset=offset,
                                               nodata=nodata), href, guard=g, sha256=sha)
        except Exception as e:
            if on_error == "raise":
                raise read_error(item_id, asset, href, e) from cause_of(e)
            record_failure(g.load_id, journal=g.journal, item=item_id, asset=asset, href=href,
                           exc=e)
            np.copyto(dst, FAILED, where=~np.isfinite(dst))
            continue
        pix = np.full(chunk_gb.shape.yx, np.nan, dtype="float32")
        rio_reproject(src, pix, tile_gb[win], chunk_gb, resampling=resampling,
                      src_nodata=np.nan, dst_nodata=np.nan)
        fuse_finite_first(dst, pix)
    return dst[None]


def read(plan: LoadPlan, /, *, quality: Sequence[int] | None = None) -> xr.Dataset:
    """The plan's raw (time, y, x) bands from Black Marble HDF5 tiles (lazily).

    ``quality`` lists the quality values kept (default: VNP46A3 0 = good; VNP46A2 0 and 1 =
    high quality); other pixels are NaN.

    Raises
    ------
    ConfigError
        If the plan's profile is not a Black Marble product.
    """
    import dask.array as da
    from dask.base import tokenize
    from odc.geo.geobox import GeoboxTiles

    profile, gb = plan.profile, plan.geobox
    if profile.name not in PRODUCTS:
        raise ConfigError(f"profile {profile.name!r} is not a Black Marble product "
                          f"({sorted(PRODUCTS)}); its items are not HDF5 tiles")
    layer, qlayer, good = PRODUCTS[profile.name]
    good = tuple(quality) if quality is not None else good
    ch = plan.chunks
    cy = int(ch.get("y", ch.get("latitude", DEFAULT_CHUNKS["y"])))
    cx = int(ch.get("x", ch.get("longitude", DEFAULT_CHUNKS["x"])))
    tiles = GeoboxTiles(gb, (min(cy, gb.shape.y), min(cx, gb.shape.x)))
    ny, nx = tiles.shape.yx
    out = {}
    for band in plan.bands:
        method = plan.resampling[band]
        srcs = tuple(
            tuple((s.href, it.id, s.asset, s.grid.geobox(), s.scale, s.offset, s.nodata,
                   s.sha256)
                  for it in g if (s := it.sources.get(band)) is not None)
            for g in plan.groups)
        name = "blackmarble-" + tokenize(srcs, layer, qlayer, good, gb,
                                         tiles.chunk_shape((0, 0)), method, plan.on_error,
                                         plan.guard)
        dsk = {(name, t, iy, ix): (_chunk_task, row, layer, qlayer, good, tiles[iy, ix],
                                   method, plan.on_error, plan.guard)
               for t, row in enumerate(srcs) for iy in range(ny) for ix in range(nx)}
        arr = da.Array(dsk, name, ((1,) * len(srcs), *tiles.chunks), dtype="float32")
        out[band] = xr.DataArray(arr, dims=("time", *gb.dimensions))
    return xr.Dataset(out)
