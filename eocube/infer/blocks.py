"""The dask graph of tiled inference, on plain dask arrays of shape (time, band, y, x).

Two tasks per chunk, so the graph grows with the number of chunks, never with pixels:

1. *tiles*: runs the model on every global tile whose origin lies in the chunk (so each tile is
   computed exactly once), reading the chunk plus a halo of one tile from the neighbouring
   input chunks, and accumulates window-weighted predictions on a canvas that reaches up to
   one tile past the chunk;
2. *blend*: adds the parts of the canvases of the chunk and its upper/left neighbours that
   fall on the chunk (overlap-add) and divides by the global sum of weights.

Because tiles and weights are defined on the global grid, the result at a pixel does not depend
on the chunking, up to float rounding of the sum.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from eocube.errors import GridError
from eocube.infer.runtime import RunOptions, WeightsRef, batch_size, count, forward
from eocube.infer.tiling import Tiling
from eocube.models.spec import InputSpec, normalize

__all__ = ["Box", "TileJob", "blended_tile_graph"]


@dataclasses.dataclass(frozen=True)
class TileJob:
    """What every task of one tiled prediction shares."""

    ref: WeightsRef
    opts: RunOptions
    tiling: Tiling
    inputs: tuple[InputSpec, ...]
    shape: tuple[int, int]  # (ny, nx) of the whole grid


@dataclasses.dataclass(frozen=True)
class Box:
    """A global pixel window ``[y0, y1) × [x0, x1)``."""

    y0: int
    y1: int
    x0: int
    x1: int


def _bounds(chunks: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _reach(tiling: Tiling, n: int, start: int, stop: int) -> tuple[int, ...]:
    """Origins of the tiles starting in ``[start, stop)``."""
    o = tiling.origins(n)
    return tuple(int(v) for v in o[(o >= start) & (o < stop)])


def blended_tile_graph(x: da.Array, job: TileJob, /) -> da.Array:
    """Lazy blended predictions of shape (time, channels, y, x) for ``x`` (time, band, y, x).

    ``x`` must hold its bands in one chunk, in the order of ``job.inputs``.
    """
    if x.ndim != 4:
        raise GridError(f"expected a (time, band, y, x) array, got shape {x.shape}")
    if len(x.chunks[1]) != 1:
        raise GridError("the band axis must be a single chunk; rechunk with {'band': -1}")
    nb = sum(len(i.bands) for i in job.inputs)
    if x.shape[1] != nb:
        raise GridError(f"the array has {x.shape[1]} bands, the model's inputs take {nb}")
    ny, nx = job.shape
    by, bx = _bounds(x.chunks[2]), _bounds(x.chunks[3])
    t = job.tiling
    ty, tx = t.size(ny), t.size(nx)
    # region read and canvas written by the tiles task of each chunk, per axis
    ry = []
    for i in range(len(by) - 1):
        o = _reach(t, ny, by[i], by[i + 1])
        ry.append((int(by[i]), max(int(by[i + 1]), o[-1] + ty if o else 0), o))
    rx = []
    for j in range(len(bx) - 1):
        o = _reach(t, nx, bx[j], bx[j + 1])
        rx.append((int(bx[j]), max(int(bx[j + 1]), o[-1] + tx if o else 0), o))

    def src(bounds: np.ndarray, a: int, b: int) -> list[int]:
        return [k for k in range(len(bounds) - 1) if bounds[k] < b and bounds[k + 1] > a]

    token = tokenize(x.name, job)
    tiles_name, blend_name = f"infer-tiles-{token}", f"infer-blend-{token}"
    tiles_layer: dict = {}
    for ti in range(len(x.chunks[0])):
        for (i, (y0, y1, oy)), (j, (x0, x1, ox)) in itertools.product(enumerate(ry),
                                                                      enumerate(rx)):
            ys, xs = src(by, y0, y1), src(bx, x0, x1)
            blocks = [[(x.name, ti, 0, a, b) for b in xs] for a in ys]
            tiles_layer[(tiles_name, ti, i, j)] = (
                _tiles, blocks, job, Box(int(by[ys[0]]), 0, int(bx[xs[0]]), 0),
                Box(y0, y1, x0, x1), Box(int(by[i]), int(by[i + 1]), int(bx[j]), int(bx[j + 1])),
                oy, ox)
    blend_layer: dict = {}
    for ti in range(len(x.chunks[0])):
        for i, j in itertools.product(range(len(by) - 1), range(len(bx) - 1)):
            own = Box(int(by[i]), int(by[i + 1]), int(bx[j]), int(bx[j + 1]))
            srcs = [(a, b) for a in range(len(ry)) for b in range(len(rx))
                    if ry[a][0] < own.y1 and ry[a][1] > own.y0
                    and rx[b][0] < own.x1 and rx[b][1] > own.x0]
            blend_layer[(blend_name, ti, 0, i, j)] = (
                _blend, [(tiles_name, ti, a, b) for a, b in srcs],
                [Box(ry[a][0], ry[a][1], rx[b][0], rx[b][1]) for a, b in srcs],
                srcs.index((i, j)), job, own)
    g1 = HighLevelGraph.from_collections(tiles_name, tiles_layer, dependencies=[x])
    tiles = _Opaque(g1, tiles_name)
    g2 = HighLevelGraph.from_collections(blend_name, blend_layer, dependencies=[tiles])
    nch = sum(job.opts.channels)
    return da.Array(g2, blend_name, chunks=(x.chunks[0], (nch,), x.chunks[2], x.chunks[3]),
                    dtype=np.float32, meta=np.empty((0, 0, 0, 0), np.float32))


class _Opaque:
    """A minimal dask collection wrapping the tiles layer so the blend layer can depend on it."""

    def __init__(self, graph: HighLevelGraph, name: str) -> None:
        self.graph, self.name = graph, name

    def __dask_graph__(self) -> HighLevelGraph:
        return self.graph

    def __dask_layers__(self) -> tuple[str, ...]:
        return (self.name,)


def _tiles(blocks: list[list[np.ndarray]], job: TileJob, win: Box, region: Box, own: Box,
           oy: tuple[int, ...], ox: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Run the tiles starting in ``own``; return (weighted canvas over ``region``, own-valid).

    ``blocks`` are the input chunks under ``region`` (the first starts at ``win``'s origin);
    each tile is normalised piece by piece straight from them into the batch buffer, so the
    region is never concatenated nor normalised as a whole (that was most of what predict
    spent outside the model)."""
    ey = np.cumsum([win.y0] + [row[0].shape[-2] for row in blocks])  # global block edges
    ex = np.cumsum([win.x0] + [b.shape[-1] for b in blocks[0]])
    own_a = blocks[int(np.searchsorted(ey, own.y0))][int(np.searchsorted(ex, own.x0))]
    # a pixel without any data in any band gives NaN, not a guess from zeros
    valid = ~np.isnan(own_a).all(axis=1) if own_a.dtype.kind == "f" else np.ones(
        (own_a.shape[0], *own_a.shape[2:]), bool)
    ny, nx = job.shape
    t = job.tiling
    ty, tx = t.size(ny), t.size(nx)
    nch = sum(job.opts.channels)
    nt = own_a.shape[0]
    canvas = np.zeros((nt, nch, region.y1 - region.y0, region.x1 - region.x0), np.float32)
    todo = [(ti, y, x) for ti in range(nt) for y in oy for x in ox]
    bs = batch_size(job.opts, ty * tx)
    # one buffer per input, reused by every batch: the tiles are written into it band-last,
    # so the (B, C, H, W) view handed to the model is already channels-last (what a prepared
    # CPU model runs) and each pixel is copied once, not stacked and then re-laid out
    bands = np.cumsum([0] + [len(i.bands) for i in job.inputs])
    bufs = [np.empty((min(bs, len(todo)), ty, tx, len(i.bands)), np.float32)
            for i in job.inputs]
    for s in range(0, len(todo), bs):
        batch = todo[s:s + bs]
        for b, (ti, y, x) in enumerate(batch):
            _fill(bufs, b, blocks, ey, ex, job.inputs, bands, ti, y, x, ty, tx)
        heads = forward(job.ref, job.opts, [buf[:len(batch)].transpose(0, 3, 1, 2)
                                            for buf in bufs])
        p = heads[0] if len(heads) == 1 else np.concatenate(heads, axis=1)
        for (ti, y, x), pb in zip(batch, p, strict=True):
            np.multiply(pb, _window2d(t, ny, nx, y, x), out=pb)
            canvas[ti, :, y - region.y0:y - region.y0 + ty,
                   x - region.x0:x - region.x0 + tx] += pb
    count("chunks")
    return canvas, valid


def _fill(bufs: list[np.ndarray], b: int, blocks: list[list[np.ndarray]], ey: np.ndarray,
          ex: np.ndarray, inputs: Sequence[InputSpec], bands: np.ndarray, ti: int, y: int,
          x: int, ty: int, tx: int) -> None:
    """Write the normalised tile at global ``(y, x)`` of time ``ti`` into slot ``b`` of each
    input's buffer, from the pieces of the blocks it covers."""
    for a in range(int(np.searchsorted(ey, y, "right")) - 1, len(ey) - 1):
        if ey[a] >= y + ty:
            break
        y0, y1 = max(y, int(ey[a])), min(y + ty, int(ey[a + 1]))
        for c in range(int(np.searchsorted(ex, x, "right")) - 1, len(ex) - 1):
            if ex[c] >= x + tx:
                break
            x0, x1 = max(x, int(ex[c])), min(x + tx, int(ex[c + 1]))
            piece = blocks[a][c][ti, :, y0 - ey[a]:y1 - ey[a], x0 - ex[c]:x1 - ex[c]]
            for inp, buf, k in zip(inputs, bufs, bands[:-1], strict=True):
                z = normalize(piece[k:k + len(inp.bands)], inp, axis=0, fill=0.0)
                np.copyto(buf[b, y0 - y:y1 - y, x0 - x:x1 - x], z.transpose(1, 2, 0))


def _window2d(t: Tiling, ny: int, nx: int, y: int, x: int) -> np.ndarray:
    """The 2-D blending weights (float32, read-only) of the tile at (y, x).

    A window depends on its origin only through which sides have a neighbour, so at most nine
    of them exist per grid: they are cached by those sides, not by origin."""
    def side(o: int, n: int, size: int) -> int:  # 0, an inner origin (1) or the last one
        return 0 if o == 0 else (n - size if o + size >= n else 1)

    return _window2d_sides(t, ny, nx, side(y, ny, t.size(ny)), side(x, nx, t.size(nx)))


@functools.lru_cache(maxsize=32)
def _window2d_sides(t: Tiling, ny: int, nx: int, y: int, x: int) -> np.ndarray:
    w = np.outer(t.window(ny, y), t.window(nx, x)).astype(np.float32)
    w.setflags(write=False)
    return w


def _blend(parts: list[tuple[np.ndarray, np.ndarray]], regions: list[Box], me: int, job: TileJob,
           own: Box) -> np.ndarray:
    """Overlap-add the canvases that fall on ``own`` and divide by the global weight sum."""
    first = parts[0][0]
    out = np.zeros((first.shape[0], first.shape[1], own.y1 - own.y0, own.x1 - own.x0),
                   np.float32)
    for (canvas, _), r in zip(parts, regions, strict=True):
        y0, y1 = max(r.y0, own.y0), min(r.y1, own.y1)
        x0, x1 = max(r.x0, own.x0), min(r.x1, own.x1)
        out[..., y0 - own.y0:y1 - own.y0, x0 - own.x0:x1 - own.x0] += canvas[
            ..., y0 - r.y0:y1 - r.y0, x0 - r.x0:x1 - r.x0]
    ny, nx = job.shape
    out /= np.outer(job.tiling.weight_sum(ny, own.y0, own.y1),
                    job.tiling.weight_sum(nx, own.x0, own.x1)).astype(np.float32)
    np.copyto(out, np.float32(np.nan), where=~parts[me][1][:, None])
    return out
