"""Tiling maths for seamless inference, pure numpy: tiles laid on the *global* grid and the
blending windows that weight them. Nothing here knows about dask chunks, which is why the result
cannot depend on them.

Along an axis of ``n`` pixels, tiles of ``t = min(tile, n)`` pixels start at ``0, s, 2s, …``
(``s = tile - overlap``) and one last tile is shifted back to end exactly at ``n``, so no tile
reaches outside the image and nothing is padded. Each tile is weighted by a window that tapers
only towards its neighbours (never at the image edge); the blended value at a pixel is the
weighted mean of the tiles covering it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, get_args

import numpy as np

from eocube.errors import ConfigError

Blend = Literal["trim", "cosine", "gaussian"]
BLENDS: tuple[str, ...] = get_args(Blend)

#: the defaults of ``predict`` and of a run's ``inference``: on the overlap study
#: (``benchmarks/overlap.py``) 512 / 24 with the "trim" window is closer to the model run on
#: the whole image than 384 / 32 with "cosine" (the defaults before), while the model sees
#: 1.10× the pixels instead of 1.19×
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 24
DEFAULT_BLEND: Blend = "trim"


@dataclasses.dataclass(frozen=True)
class Tiling:
    """How a grid is cut into overlapping tiles and how they are blended.

    Attributes
    ----------
    tile
        Side of a square tile in pixels (the model sees ``min(tile, n)`` along an axis of
        ``n`` pixels).
    overlap
        Pixels shared by neighbouring tiles; the blending window ramps over them. Choose it
        about the model's effective receptive field so tile borders, where the network lacks
        context, get little weight.
    blend
        ``"trim"`` (the default): weight 0 on the outer quarter of the ``overlap`` pixels next
        to a neighbour, where the network lacks context most, a raised-cosine ramp (sin²) over
        the middle half and 1 beyond, so two neighbours' weights still sum to exactly 1 and
        change smoothly; ``"cosine"``: the ramp over all ``overlap`` pixels (the tile's edge
        pixels keep a little weight); ``"gaussian"``: a Gaussian of σ = tile / 8 around the
        centre, flat towards the image edge. At the same overlap ``"trim"`` is closer to the
        model run on the whole image than ``"cosine"`` (``benchmarks/overlap.py``).
    """

    tile: int
    overlap: int
    blend: Blend = DEFAULT_BLEND

    def __post_init__(self) -> None:
        if int(self.tile) != self.tile or self.tile < 1:
            raise ConfigError(f"tile={self.tile!r} must be a positive number of pixels")
        if int(self.overlap) != self.overlap or not 0 <= self.overlap < self.tile:
            raise ConfigError(f"overlap={self.overlap!r} must be ≥ 0 and smaller than "
                              f"tile={self.tile}; use e.g. overlap={self.tile // 8}")
        if self.blend not in BLENDS:
            raise ConfigError(f"blend={self.blend!r}: use one of {', '.join(map(repr, BLENDS))}")

    @property
    def dead(self) -> int:
        """Pixels at a tile's edge towards a neighbour that get weight 0 (``"trim"``: the
        outer quarter of the overlap; 0 for the other windows)."""
        return _dead(self.overlap, self.blend)

    @property
    def stride(self) -> int:
        """Distance between the origins of neighbouring tiles (before the last one)."""
        return self.tile - self.overlap

    def size(self, n: int) -> int:
        """Tile length along an axis of ``n`` pixels."""
        return min(self.tile, n)

    def origins(self, n: int) -> np.ndarray:
        """Global origins of the tiles along an axis of ``n`` pixels, ascending."""
        return _origins(self.tile, self.overlap, n)

    def window(self, n: int, origin: int) -> np.ndarray:
        """Weights (float64, length ``size(n)``) of the tile at ``origin`` on an axis of ``n``."""
        return _window(self.tile, self.overlap, self.blend, n, int(origin))

    def weight_sum(self, n: int, start: int, stop: int) -> np.ndarray:
        """Sum of the 1-D windows of all tiles over pixels ``start:stop`` of an axis of ``n``.

        The 2-D windows are outer products of 1-D ones over a full grid of tiles, so the 2-D
        sum is the outer product of the two 1-D sums.
        """
        t = self.size(n)
        out = np.zeros(stop - start)
        for o in self.origins(n):
            a, b = max(o, start), min(o + t, stop)
            if a < b:
                out[a - start:b - start] += self.window(n, o)[a - o:b - o]
        return out

    def tiles_fraction(self, n: int) -> float:
        """Pixels the model sees per output pixel along one axis (≥ 1; overlap costs this)."""
        return len(self.origins(n)) * self.size(n) / n


@functools.lru_cache(maxsize=256)
def _origins(tile: int, overlap: int, n: int) -> np.ndarray:
    if n <= tile:
        return np.zeros(1, dtype=np.int64)
    o = list(range(0, n - tile, tile - overlap))
    o.append(n - tile)
    return np.asarray(o, dtype=np.int64)


@functools.lru_cache(maxsize=1024)
def _window(tile: int, overlap: int, blend: str, n: int, origin: int) -> np.ndarray:
    t = min(tile, n)
    lo, hi = origin > 0, origin + t < n  # taper only where a neighbour takes over
    i = np.arange(t, dtype=np.float64)
    if blend == "gaussian":
        c, sigma = (t - 1) / 2, t / 8
        w = np.exp(-((i - c) ** 2) / (2 * sigma**2))
        if not lo:
            w[i <= c] = 1.0
        if not hi:
            w[i >= c] = 1.0
        w.setflags(write=False)
        return w
    w = np.ones(t)
    if overlap:
        ramp = _ramp(overlap, _dead(overlap, blend))
        k = min(overlap, t)
        if lo:
            w[:k] = np.minimum(w[:k], ramp[:k])
        if hi:
            w[t - k:] = np.minimum(w[t - k:], ramp[:k][::-1])
    w.setflags(write=False)
    return w


def _dead(overlap: int, blend: str) -> int:
    return overlap // 4 if blend == "trim" else 0


def _ramp(overlap: int, dead: int) -> np.ndarray:
    """A tile's weights over the ``overlap`` pixels towards its neighbour, inner side last:
    0 on the ``dead`` pixels at the edge, a sin² ramp over the middle, 1 on the last ``dead``
    pixels; ``ramp + ramp[::-1] == 1``, so two neighbours' weights sum to 1."""
    i = np.arange(overlap, dtype=np.float64)
    w = np.sin(np.pi * (i - dead + 0.5) / (2 * (overlap - 2 * dead))) ** 2
    w[:dead] = 0.0
    w[overlap - dead:] = 1.0
    return w
