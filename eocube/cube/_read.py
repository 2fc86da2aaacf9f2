"""Per-asset read failure handling for the two engines (the only module that wraps readers).

A failed read either raises ``ReadError`` naming the item and asset, or — under
``on_error="nan"`` — returns +inf over the chunk. +inf never occurs in the stored data of the
products eocube reads (their scaled values are finite or nodata), so after the engine has
fused items into time steps, +inf marks exactly the pixels a failure left without data; the
load turns it into NaN and records which (time, band) had a failure. Items are fused with
finite values first, so a failed item never hides valid data another item brings.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from eocube.errors import ReadError

OnError = Literal["raise", "nan"]
FAILED = np.float32(np.inf)


def read_error(item: str | None, asset: str | None, uri: str, e: BaseException) -> ReadError:
    who = f"asset {asset!r} of item {item!r}" if item else f"asset {uri!r}"
    return ReadError(f"could not read {who} at {uri}: {type(e).__name__}: {e}. Pass "
                     "on_error='nan' to load the rest with this asset's pixels as NaN")


def fuse_finite_first(dst: np.ndarray, src: np.ndarray) -> None:
    """odc-loader fuser: take ``src`` where ``dst`` has no finite value yet (NaN or a failure
    marker), but never replace a failure marker by NaN."""
    take = ~np.isfinite(dst) & (np.isfinite(src) | np.isnan(dst))
    np.copyto(dst, src, where=take)


FUSER = f"{__name__}.fuse_finite_first"


# ---- odc-stac ---------------------------------------------------------------------------

def _odc_parser() -> Any:
    from odc.stac._mdtools import StacMDParser

    class _Parser(StacMDParser):  # type: ignore[misc]
        """Adds (item id, asset key) to each source so errors can name them."""

        def driver_data(self, md: Any, band_key: Any) -> Any:
            return (md.id, band_key[0])

    return _Parser({})


class _Reader:
    def __init__(self, src: Any, ctx: Any, on_error: OnError) -> None:
        self._src, self._ctx, self._on_error = src, ctx, on_error

    def read(self, cfg: Any, dst_geobox: Any, *, dst: np.ndarray | None = None,
             selection: Any = None) -> tuple[tuple[slice, slice], np.ndarray]:
        from odc.loader._rio import rio_read

        try:
            return rio_read(self._src, cfg, dst_geobox, dst=dst, selection=selection)
        except Exception as e:
            dd = self._src.driver_data
            item, asset = dd if isinstance(dd, tuple) else (None, None)
            if self._on_error == "raise":
                raise read_error(item, asset, self._src.uri, e) from e
            out = np.full(dst_geobox.shape.yx, FAILED, dtype=cfg.dtype)
            return (slice(0, out.shape[0]), slice(0, out.shape[1])), out


def odc_driver(on_error: OnError) -> Any:
    """An odc-loader ``ReaderDriver``: the rasterio driver with eocube's failure policy."""
    from odc.loader._rio import RioDriver
    from odc.stac._mdtools import StacAuxReader

    class _Driver(RioDriver):  # type: ignore[misc]
        def __init__(self, on_error: OnError) -> None:
            super().__init__(md_parser=_odc_parser(), aux_reader=StacAuxReader())
            self.on_error = on_error

        def open(self, src: Any, ctx: Any) -> _Reader:
            return _Reader(src, ctx, self.on_error)

        def __reduce__(self) -> Any:
            return (odc_driver, (self.on_error,))

    return _Driver(on_error)
