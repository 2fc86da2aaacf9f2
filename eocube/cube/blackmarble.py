"""Read NASA Black Marble HDF5 tiles (VNP46A2 daily, VNP46A3 monthly) lazily onto any GeoBox.

GDAL-based engines (odc-stac, stackstac) cannot read these HDF-EOS5 tiles as georeferenced
rasters, so eocube reads them itself: one Dask task per time step and output chunk crops the
15″ window that covers the chunk from each tile (h5py, opened inside the task — no file handle
lives in the graph), applies fill value, scale factor and the quality mask, and reprojects the
window onto the chunk with odc-geo. Tile grids come from the items' projection fields (or the
h/v index), so building the cube reads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from eocube.catalog.profiles import SensorProfile
from eocube.cube._read import FAILED, OnError, fuse_finite_first, read_error
from eocube.errors import ConfigError, GridError

FIELDS = "HDFEOS/GRIDS/VIIRS_Grid_DNB_2d/Data Fields"
#: product → (radiance layer, quality layer, quality values kept by default)
PRODUCTS = {
    "vnp46a3": ("AllAngle_Composite_Snow_Free", "AllAngle_Composite_Snow_Free_Quality", (0,)),
    # VNP46A2 Mandatory_Quality_Flag: 0 high-quality persistent, 1 high-quality ephemeral,
    # 2 poor quality, 255 fill
    "vnp46a2": ("DNB_BRDF-Corrected_NTL", "Mandatory_Quality_Flag", (0, 1)),
}
PAD = 2  # source pixels around the window, so bilinear/average see their neighbours


def _tile_geobox(item: Any, asset: str) -> Any:
    from odc.geo.geobox import GeoBox
    from rasterio.transform import Affine

    a = item.assets[asset].extra_fields
    shape = a.get("proj:shape") or item.properties.get("proj:shape")
    tr = a.get("proj:transform") or item.properties.get("proj:transform")
    if shape and tr:
        return GeoBox(tuple(shape), Affine(*tr[:6]), "EPSG:4326")
    import re

    m = re.search(r"h(\d\d)v(\d\d)", item.id)
    if not m:
        raise GridError(f"item {item.id!r} has no proj:shape/proj:transform and no hXXvYY "
                        "tile index in its id; cannot place its Black Marble tile")
    from eocube.synth.blackmarble import tile_geobox  # the tile math is the product's

    return tile_geobox(int(m.group(1)), int(m.group(2)))


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
                win: tuple[slice, slice]) -> np.ndarray:
    """Radiance of ``win`` in physical units, NaN where fill or quality is not ``good``."""
    import h5py

    with h5py.File(path.removeprefix("file://"), "r") as f:
        g = f[FIELDS]
        ds = g[layer]
        dn = ds[win]
        fill = ds.attrs.get("_FillValue")
        scale = float(np.asarray(ds.attrs.get("scale_factor", 1.0)).ravel()[0])
        offset = float(np.asarray(ds.attrs.get("add_offset", 0.0)).ravel()[0])
        out = dn.astype("float32") * np.float32(scale) + np.float32(offset)
        if fill is not None:
            out[dn == np.asarray(fill).ravel()[0]] = np.nan
        if qlayer is not None:
            q = g[qlayer][win]
            out[~np.isin(q, list(good))] = np.nan
    return out


def _chunk_task(sources: tuple[tuple[str, str, str, Any], ...], layer: str, qlayer: str | None,
                good: tuple[int, ...], chunk_gb: Any, resampling: str,
                on_error: OnError) -> np.ndarray:
    from odc.geo.warp import rio_reproject

    dst = np.full(chunk_gb.shape.yx, np.nan, dtype="float32")
    for href, item_id, asset, tile_gb in sources:
        win = _window(tile_gb, chunk_gb)
        if win is None:
            continue
        try:
            src = read_window(href, layer, qlayer, good, win)
        except Exception as e:
            if on_error == "raise":
                raise read_error(item_id, asset, href, e) from e
            np.copyto(dst, FAILED, where=~np.isfinite(dst))
            continue
        pix = np.full(chunk_gb.shape.yx, np.nan, dtype="float32")
        rio_reproject(src, pix, tile_gb[win], chunk_gb, resampling=resampling,
                      src_nodata=np.nan, dst_nodata=np.nan)
        fuse_finite_first(dst, pix)
    return dst[None]


def load_blackmarble(items: Sequence[Any], /, *, geobox: Any, profile: SensorProfile,
                     bands: Sequence[str], chunks: Mapping[str, int] | None = None,
                     groupby: str = "solar_day", on_error: OnError = "raise",
                     quality: Sequence[int] | None = None,
                     resampling: str | None = None) -> xr.Dataset:
    """Black Marble items → a lazy cube on ``geobox`` (called by ``eocube.cube.load``).

    ``quality`` lists the quality values kept (default: VNP46A3 0 = good; VNP46A2 0 and 1 =
    high quality); other pixels are NaN. Same output contract as ``load``.
    """
    import dask.array as da
    from dask.base import tokenize
    from odc.geo.geobox import GeoboxTiles

    from eocube.cube.load import DEFAULT_CHUNKS, _finish, group_items, missing_asset_error

    if profile.name not in PRODUCTS:
        raise ConfigError(f"profile {profile.name!r} is not a Black Marble product "
                          f"({sorted(PRODUCTS)})")
    layer, qlayer, good = PRODUCTS[profile.name]
    good = tuple(quality) if quality is not None else good
    band = next(iter(bands))
    spec = profile.band(band)
    method = resampling or spec.resampling
    groups = group_items(list(items), groupby=groupby)  # type: ignore[arg-type]
    ch = dict(chunks or {})
    cy = int(ch.get("y", ch.get("latitude", DEFAULT_CHUNKS["y"])))
    cx = int(ch.get("x", ch.get("longitude", DEFAULT_CHUNKS["x"])))
    tiles = GeoboxTiles(geobox, (min(cy, geobox.shape.y), min(cx, geobox.shape.x)))
    srcs = []
    for g in groups:
        row = []
        for it in g:
            key = profile.asset_key(it, band)
            if key is None:
                if on_error == "raise":
                    raise missing_asset_error(it, band)
                continue
            row.append((it.assets[key].href, it.id, key, _tile_geobox(it, key)))
        srcs.append(tuple(row))
    name = "blackmarble-" + tokenize(srcs, layer, qlayer, good, geobox, tiles.chunk_shape((0, 0)),
                                     method, on_error)
    dsk = {}
    ny, nx = tiles.shape.yx
    for t, row in enumerate(srcs):
        for iy in range(ny):
            for ix in range(nx):
                dsk[(name, t, iy, ix)] = (_chunk_task, row, layer, qlayer, good,
                                          tiles[iy, ix], method, on_error)
    chunks_t = ((1,) * len(srcs), *tiles.chunks)
    arr = da.Array(dsk, name, chunks_t, dtype="float32")
    raw = xr.Dataset({band: (("time", *geobox.dimensions), arr)})
    return _finish(raw, groups, profile, {band: spec}, {band: "h5"}, geobox, on_error,
                   prescaled=True)
