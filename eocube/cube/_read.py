"""The readers of the engines (the only module that wraps readers): per-asset failure
handling, and for odc-stac a read that scales each source into physical units, applies its
declared nodata, and pastes tiles that lie on the output grid straight from the file.

A failed read either raises ``ReadError`` naming the item and asset, or — under
``on_error="nan"`` — returns +inf over the chunk. +inf never occurs in the stored data of the
products eocube reads (their scaled values are finite or nodata), so after the engine has
fused items into time steps, +inf marks exactly the pixels a failure left without data; the
load turns it into NaN and records which (time, band) had a failure. Items are fused with
finite values first, so a failed item never hides valid data another item brings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, NamedTuple

import numpy as np

from eocube.catalog.hrefs import redact, redact_text
from eocube.cube.guard import (
    ReadGuard,
    attempt,
    check_size,
    classify,
    record_failure,
    size_checked,
)
from eocube.errors import CauseText, ChecksumError, ReadError

OnError = Literal["raise", "nan"]
FAILED = np.float32(np.inf)


def read_error(item: str | None, asset: str | None, uri: str, e: BaseException) -> ReadError:
    """The ``ReadError`` for a failed read of ``asset`` of ``item`` at ``uri``: the href
    without its query string, the cause's text redacted, its failure class (``failure``)
    and the attempts made. Raise it ``from cause_of(e)``: the original cause may quote a
    signed URL."""
    shown = redact(uri)
    who = f"asset {asset!r} of item {item!r}" if item else f"asset {shown!r}"
    failure = classify(e)
    attempts = int(getattr(e, "eocube_attempts", 1))
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    cls = ChecksumError if isinstance(e, ChecksumError) else ReadError
    return cls(f"could not read {who} at {shown} ({failure}{tried}): "
                     f"{redact_text(f'{type(e).__name__}: {e}')}. Pass on_error='nan' to load "
                     "the rest with this asset's pixels as NaN", item=item, asset=asset,
                     href=shown, failure=failure)


def cause_of(e: BaseException) -> CauseText:
    """``e`` as the redacted text that a ``ReadError`` carries as its cause."""
    return CauseText(redact_text(f"{type(e).__module__}.{type(e).__qualname__}: {e}"))


def missing_asset_error(item: str, band: str, assets: Iterable[str]) -> ReadError:
    """The ``ReadError`` for an item whose metadata lacks ``band``'s asset."""
    return read_error(item, band, "(no such asset in the item)",
                      KeyError(f"item has assets {sorted(assets)}"))


def fuse_finite_first(dst: np.ndarray, src: np.ndarray) -> None:
    """odc-loader fuser: take ``src`` where ``dst`` has no finite value yet (NaN or a failure
    marker), but never replace a failure marker by NaN."""
    take = ~np.isfinite(dst) & (np.isfinite(src) | np.isnan(dst))
    np.copyto(dst, src, where=take)


FUSER = f"{__name__}.fuse_finite_first"


# ---- odc-stac ----------------------------------------------------------------------------

class SourceInfo(NamedTuple):
    """What eocube attaches to each odc-loader source: names for error messages, the
    scale/offset that turn the stored values into physical units and the declared nodata
    (``None``: the file's own), all applied by the reader."""

    item: str
    asset: str
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None
    sha256: str | None = None


#: (item id, asset key, one-based band index) → its ``SourceInfo``
SourceTable = Mapping[tuple[str, str, int], SourceInfo]


def _odc_parser(infos: SourceTable) -> Any:
    from eocube.cube._odc_private import StacMDParser

    class _Parser(StacMDParser):  # type: ignore[misc]
        """Attaches a ``SourceInfo`` to each source."""

        def driver_data(self, md: Any, band_key: Any) -> Any:
            return infos.get((md.id, band_key[0], band_key[1]), SourceInfo(md.id, band_key[0]))

    return _Parser({})


def with_nodata(cfg: Any, nodata: float | None) -> Any:
    """``cfg`` (``RasterLoadParams``) with ``nodata`` as the source's nodata whatever the
    file says (``None``: ``cfg`` unchanged, the file's tag decides)."""
    return cfg if nodata is None else dataclasses.replace(cfg, src_nodata_override=nodata)


class _Reader:
    def __init__(self, src: Any, ctx: Any, on_error: OnError,
                 guard: ReadGuard | None = None) -> None:
        self._src, self._ctx, self._on_error = src, ctx, on_error
        self._guard = guard if guard is not None else ReadGuard()

    def read(self, cfg: Any, dst_geobox: Any, *, dst: np.ndarray | None = None,
             selection: Any = None, claim: Claim | None = None
             ) -> tuple[tuple[slice, slice], np.ndarray]:
        from odc.loader import RioReader

        dd = self._src.driver_data
        info = dd if isinstance(dd, SourceInfo) else SourceInfo("", "")
        cfg = with_nodata(cfg, info.nodata)
        guard = self._guard

        def once(uri: str) -> tuple[tuple[slice, slice], np.ndarray]:
            src = self._src if uri == self._src.uri else dataclasses.replace(self._src, uri=uri)
            out = None
            if dst is None and selection is None:
                out = _read_pasted(src, cfg, dst_geobox, info.scale, info.offset, claim,
                                   guard)
            if out is None:
                _check_header(uri, guard)
                out = RioReader(src, self._ctx).read(cfg, dst_geobox, dst=dst,
                                                     selection=selection)
                _scale_inplace(out[1], info.scale, info.offset)
            return out

        try:
            out, _ = attempt(once, self._src.uri, guard=guard, sha256=info.sha256)
        except Exception as e:
            if self._on_error == "raise":
                raise read_error(info.item or None, info.asset or None, self._src.uri,
                                 e) from cause_of(e)
            record_failure(guard.load_id, journal=guard.journal, item=info.item, asset=info.asset,
                           href=self._src.uri, exc=e)
            out_ = np.full(dst_geobox.shape.yx, FAILED, dtype=cfg.dtype)
            return (slice(0, out_.shape[0]), slice(0, out_.shape[1])), out_
        return out


def _check_header(uri: str, guard: ReadGuard) -> None:
    """The raster size cap on ``uri``'s header (opened once per process and source)."""
    import rasterio

    if size_checked(uri):
        return
    with rasterio.open(uri, "r", sharing=False) as rdr:
        check_size(rdr.width, rdr.height, uri=uri, guard=guard)


def _scale_inplace(pix: np.ndarray, scale: float, offset: float) -> None:
    """``pix × scale + offset`` in float32, as ``_read_pasted`` computes it (NaN stays NaN)."""
    if scale != 1.0:
        pix *= np.float32(scale)
    if offset != 0.0:
        pix += np.float32(offset)


#: ``claim(roi)``: where to write the read's pixels directly (a view of the chunk), or None
Claim = Callable[[tuple[slice, slice]], "np.ndarray | None"]


def _read_pasted(src: Any, cfg: Any, gbox: Any, scale: float, offset: float,
                 claim: Claim | None = None, guard: ReadGuard | None = None
                 ) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The part of ``gbox`` that ``src`` covers, read straight from the file and scaled as it
    is read, when the file's pixels coincide with ``gbox``'s (the common case of tiles loaded
    on their own grid); ``None`` when they do not, to leave it to odc-loader's read.

    odc-loader pastes such sources too, but first plans a reprojection for each read; here
    the window comes from the two transforms. The values are those of odc-loader's read then
    scaled: the same float32 arithmetic in the same order (``tests/cube/test_read.py``).
    ``claim`` (asked once the file is read) may hand out the destination to write into.
    """
    import rasterio
    from odc.loader import resolve_src_nodata

    from eocube.cube._odc_private import nodata_mask

    out_dtype = np.dtype(cfg.dtype) if cfg.dtype is not None else None
    if (out_dtype is None or out_dtype.kind != "f" or src.subdataset is not None
            or not isinstance(src.band, int)):
        return None
    # the STAC grid decides without opening the file; the file's own grid decides the read
    if src.geobox is not None and _paste_window(src.geobox.transform, src.geobox.crs,
                                                src.geobox.shape.yx, gbox) is None:
        return None
    with rasterio.open(src.uri, "r", sharing=False) as rdr:
        check_size(rdr.width, rdr.height, uri=src.uri, guard=guard or ReadGuard())
        if src.band > rdr.count:
            return None
        win = _paste_window(rdr.transform, _FileCRS(rdr), (rdr.height, rdr.width), gbox)
        if win is None:
            return None
        roi_dst, roi_src = win
        if roi_dst[0].start == roi_dst[0].stop or roi_dst[1].start == roi_dst[1].stop:
            return (slice(0, 0), slice(0, 0)), np.empty((0, 0), out_dtype)
        dn = np.empty((roi_src[0].stop - roi_src[0].start, roi_src[1].stop - roi_src[1].start),
                      dtype=rdr.dtypes[src.band - 1])
        # (odc-loader sets VSI_CACHE=FALSE around this read; GDAL reads that option when it
        # opens the file, so it changes nothing there and is left out)
        rdr.read(src.band, out=dn, window=roi_src)
        nodata = resolve_src_nodata(rdr.nodatavals[src.band - 1], cfg)
    pix = claim(roi_dst) if claim is not None else None
    if pix is None:
        pix = np.empty(dn.shape, out_dtype)
    if scale != 1.0:
        np.multiply(dn, np.float32(scale), out=pix, dtype=out_dtype)
    else:
        np.copyto(pix, dn, casting="unsafe")
    if offset != 0.0:
        pix += np.float32(offset)
    if nodata is not None:
        fill = cfg.fill_value if cfg.fill_value is not None else np.nan
        np.copyto(pix, out_dtype.type(fill), where=nodata_mask(dn, nodata))
    return roi_dst, pix


class _FileCRS:
    """A file's CRS, compared with the output CRS lazily and once per distinct WKT."""

    def __init__(self, rdr: Any) -> None:
        self._rdr = rdr

    def same_as(self, crs: Any) -> bool:
        c = self._rdr.crs
        # keyed by strings: hashing a CRS object serialises it each time
        return c is not None and _same_crs(c.to_wkt(), str(crs))


@functools.lru_cache(maxsize=64)
def _same_crs(wkt: str, crs: str) -> bool:
    from odc.geo.crs import CRS

    return CRS(wkt) == CRS(crs)


def _paste_window(transform: Any, crs: Any, shape: tuple[int, int], gbox: Any
                  ) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """(rows, cols) of ``gbox`` and of the source that overlap when the source grid is
    ``gbox``'s shifted by whole pixels; ``None`` otherwise."""
    d = gbox.transform
    t = transform
    if t.b != 0 or t.d != 0 or d.b != 0 or d.d != 0:
        return None
    if abs(t.a - d.a) > 1e-9 * abs(d.a) or abs(t.e - d.e) > 1e-9 * abs(d.e):
        return None
    col, row = (t.c - d.c) / d.a, (t.f - d.f) / d.e
    c0, r0 = round(col), round(row)
    if abs(col - c0) > 1e-6 or abs(row - r0) > 1e-6:
        return None
    same = crs.same_as(gbox.crs) if isinstance(crs, _FileCRS) else crs == gbox.crs
    if not same:
        return None
    ny, nx = gbox.shape.yx
    ys, ye = max(r0, 0), min(r0 + shape[0], ny)
    xs, xe = max(c0, 0), min(c0 + shape[1], nx)
    if ys >= ye or xs >= xe:
        return (slice(0, 0), slice(0, 0)), (slice(0, 0), slice(0, 0))
    return ((slice(ys, ye), slice(xs, xe)),
            (slice(ys - r0, ye - r0), slice(xs - c0, xe - c0)))


def odc_driver(on_error: OnError, infos: SourceTable | None = None,
               guard: ReadGuard | None = None) -> Any:
    """An odc-loader ``ReaderDriver``: the rasterio driver with eocube's failure policy and
    read guard (``guard``: href policy, checksums, signing, retries, failure records).

    ``infos`` (used while the graph is built) makes the reader return physical units with
    each source's declared nodata applied. No auxiliary-band reader: eocube loads none.
    """
    from odc.loader import RioDriver

    class _Driver(RioDriver):  # type: ignore[misc]
        def __init__(self, on_error: OnError) -> None:
            super().__init__(md_parser=_odc_parser(infos or {}))
            self.on_error = on_error

        def open(self, src: Any, ctx: Any) -> _Reader:
            return _Reader(src, ctx, self.on_error, guard)

        def __reduce__(self) -> Any:
            # the parser (and its scale table) is only needed to build the graph
            return (odc_driver, (self.on_error, None, guard))

    return _Driver(on_error)


def load_chunk(srcs: list[Any], gbox: Any, cfg: Any, on_error: OnError,
               env: dict[str, Any], guard: ReadGuard | None = None) -> np.ndarray:
    """One (1, y, x) chunk of the fast path (``_pasted``): what odc-loader's load task makes
    from the same sources — filled, then each source's read fused in order — in one task
    that opens the files itself, inside one GDAL environment.

    A read that lands where no earlier one did is copied in place of the fuse: on a region
    still holding only the fill value (NaN) both fusers take every source pixel.
    """
    from odc.loader import RioDriver, resolve_dst_nodata, resolve_fuser, resolve_src_nodata

    from eocube.cube._odc_private import fuser_for_nodata

    dtype = np.dtype(cfg.dtype)
    # odc-loader's fill value: its destination nodata, else zero
    fill = resolve_dst_nodata(dtype, cfg, resolve_src_nodata(cfg.fill_value, cfg))
    fill = dtype.type(0) if fill is None else fill
    fresh = bool(np.isnan(fill)) if dtype.kind == "f" else False
    dst = np.empty((1, *gbox.shape.yx), dtype=dtype)
    # with a NaN fill, only the pixels no read reaches are filled (at the end, or before the
    # first fuse: a fuser reads what is there); tiles usually cover the chunk, so this
    # saves a pass over it
    filled = not fresh
    if filled or not srcs:
        np.copyto(dst, fill)
        if not srcs:
            return dst
    fuse = resolve_fuser(cfg.fuser_fqn) if cfg.fuser_fqn is not None else None
    if fuse is None:
        fuse = fuser_for_nodata(fill)
    done: list[tuple[slice, slice]] = []
    placed: list[tuple[slice, slice]] = []

    def claim(roi: tuple[slice, slice]) -> np.ndarray | None:
        if not fresh or any(_overlap(roi, r) for r in done):
            return None
        placed.append(roi)
        return dst[0][roi]

    driver = RioDriver()
    with driver.restore_env(env, driver.new_load(gbox)):
        for src in srcs:
            placed.clear()
            roi, pix = _Reader(src, None, on_error, guard).read(cfg, gbox, claim=claim)
            if pix.size == 0:
                continue
            if placed and placed[0] == roi and pix.base is dst:
                done.append(roi)
                continue
            roi = tuple(slice(*s.indices(n)[:2]) for s, n in zip(roi, dst.shape[1:],
                                                                 strict=True))
            view = dst[0][roi]
            if fresh and not any(_overlap(roi, r) for r in done):
                view[...] = pix
            else:
                if not filled:
                    fill_outside(dst[0], done, fill)
                    filled = True
                fuse(view, pix)
            done.append(roi)
    if not filled:
        fill_outside(dst[0], done, fill)
    return dst


def _overlap(a: tuple[slice, slice], b: tuple[slice, slice]) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b, strict=True))


def fill_outside(a: np.ndarray, rects: list[tuple[slice, slice]], value: Any) -> None:
    """Set the pixels of the 2-D ``a`` outside every (rows, cols) rectangle of ``rects`` (with
    explicit, in-bounds starts and stops) to ``value``: the rectangles' edges cut ``a`` into
    a small grid of cells, and the cells no rectangle covers are filled."""
    ny, nx = a.shape
    ys = sorted({0, ny, *(r[0].start for r in rects), *(r[0].stop for r in rects)})
    xs = sorted({0, nx, *(r[1].start for r in rects), *(r[1].stop for r in rects)})
    covered = np.zeros((len(ys) - 1, len(xs) - 1), bool)
    for ry, rx in rects:
        covered[ys.index(ry.start):ys.index(ry.stop), xs.index(rx.start):xs.index(rx.stop)] = True
    for i, j in zip(*np.nonzero(~covered), strict=True):
        a[ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = value
