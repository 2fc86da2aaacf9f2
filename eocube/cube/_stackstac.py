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
    dicts = [_stack_item(it, plan) for it in items]
    bounds = tuple(gb.boundingbox)
    res = (abs(gb.resolution.x), abs(gb.resolution.y))
    reader = ReaderRaise if plan.on_error == "raise" else ReaderNan
    cy = int(plan.chunks.get("y", DEFAULT_CHUNKS["y"]))
    cx = int(plan.chunks.get("x", DEFAULT_CHUNKS["x"]))
    sizes = tuple(len(g) for g in plan.groups)
    out: dict[str, xr.DataArray] = {}
    by_method: dict[str, list[str]] = {}
    for b, m in plan.resampling.items():
        by_method.setdefault(m, []).append(b)
    for m, bs in by_method.items():
        # one chunk along time per group of items, so fusing a group is one task per chunk
        arr = stackstac.stack(
            dicts, assets=bs, epsg=int(epsg), resolution=res, bounds=bounds,
            snap_bounds=False, dtype=np.dtype("float32"), fill_value=np.float32(np.nan),
            rescale=False, sortby_date=False, chunksize=(sizes, 1, cy, cx),
            resampling=Resampling[m], reader=reader, gdal_env=stackstac_env(),
            xy_coords="center")
        if arr.shape[-2:] != tuple(gb.shape.yx):
            raise GridError(f"stackstac made a {arr.shape[-2:]} grid for the {gb.shape.yx} "
                            "GeoBox; this is a bug, please report it")
        for b in bs:
            a = arr.sel(band=b).data
            units = np.array([_units(it.sources.get(b)) for it in items], "float32")
            s, o, n = (da.from_array(units[:, k, None, None], chunks=(sizes, 1, 1))
                       for k in range(3))
            fused = da.map_blocks(_fuse, a, s, o, n, dtype=a.dtype,
                                  chunks=((1,) * len(sizes), *a.chunks[1:]))
            out[b] = xr.DataArray(fused, dims=("time", "y", "x"))
    return xr.Dataset(out)


def _units(src: BandSource | None) -> tuple[float, float, float]:
    """(scale, offset, nodata) of a source; NaN nodata: none declared (NaN is no data)."""
    if src is None:
        return 1.0, 0.0, math.nan
    return src.scale, src.offset, math.nan if src.nodata is None else src.nodata


def _fuse(a: np.ndarray, scale: np.ndarray, offset: np.ndarray, nodata: np.ndarray
          ) -> np.ndarray:
    """One time step of one chunk: the items' stored values ``a`` (items, y, x), each scaled
    by its own scale and offset and its nodata made NaN, fused in order (first finite value,
    else a failure marker, else NaN); the others are (items, 1, 1)."""
    out = np.full(a.shape[1:], np.nan, dtype=a.dtype)
    for layer, s, o, nod in zip(a, scale.ravel(), offset.ravel(), nodata.ravel(), strict=True):
        if s != 1 or o != 0:
            v = np.multiply(layer, s, dtype=a.dtype)
            v += o
        else:
            v = layer.copy()
        if not np.isnan(nod):
            v[layer == nod] = np.nan
        fuse_finite_first(out, v)
    return out[None]
