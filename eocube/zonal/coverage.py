"""Coverage of zones on a grid: a sparse zones × pixels matrix, stored in blocks aligned with
the raster chunks and computed once for every time step and band that reuses it.

``exact`` coverage is the fraction of each pixel's area inside the polygon (exactextract's
definition); ``center`` assigns a whole pixel to every zone containing its centre. The blocks
are dask tasks: built lazily, one per spatial chunk, so memory follows the chunk size and the
number of zones per chunk, never zones × chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import shapely

from eocube._deps import require
from eocube.errors import ConfigError, GridError
from eocube.zonal.geometry import prepare_zones, to_pixel_space

if TYPE_CHECKING:
    import geopandas as gpd
    import scipy.sparse
    import xarray as xr
    from odc.geo.geobox import GeoBox

__all__ = ["Coverage", "CoverageBlock", "zonal_coverage"]

Method = Literal["exact", "center"]


@dataclass(frozen=True, eq=False)
class CoverageBlock:
    """The coverage of one raster chunk, as CSR rows for the zones that touch it.

    Attributes
    ----------
    zones
        Positions (0-based, in zone order) of the zones present, ascending.
    indptr
        CSR row pointer into ``pix`` / ``weight``, one row per entry of ``zones``.
    pix
        Row-major pixel index inside the chunk.
    weight
        Covered fraction of the pixel (``float32``, as exactextract stores it).
    shape
        ``(rows, cols)`` of the chunk.
    """

    zones: np.ndarray
    indptr: np.ndarray
    pix: np.ndarray
    weight: np.ndarray
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        """Number of stored (zone, pixel) pairs."""
        return int(self.pix.shape[0])

    def to_scipy(self, nzones: int) -> scipy.sparse.csr_matrix:
        """This block as a ``nzones × pixels-of-chunk`` scipy CSR matrix."""
        import scipy.sparse

        indptr = np.zeros(nzones + 1, np.int64)
        counts = np.diff(self.indptr)
        np.add.at(indptr, self.zones + 1, counts)
        return scipy.sparse.csr_matrix(
            (self.weight, self.pix, np.cumsum(indptr)),
            shape=(nzones, self.shape[0] * self.shape[1]),
        )


@dataclass(frozen=True, eq=False)
class _Ragged:
    """Zones in pixel space as flat arrays the kernel reads (shapely's ragged layout)."""

    coords: np.ndarray
    ring_off: np.ndarray
    poly_off: np.ndarray
    geom_off: np.ndarray
    bounds: np.ndarray


@dataclass(frozen=True, eq=False)
class Coverage:
    """Coverage weights of a zone layer on a chunked grid, ready for :func:`zonal_stats`.

    Build it with :func:`zonal_coverage`. Its blocks are dask tasks until :meth:`compute`
    materialises them; either way, passing the same ``Coverage`` to several ``zonal_stats``
    calls computes the weights once per call graph (or once in all, after ``compute``).

    Attributes
    ----------
    geobox
        The grid the weights belong to.
    chunks
        ``(y_chunks, x_chunks)``: the spatial chunking of the blocks.
    method
        ``"exact"`` or ``"center"``.
    zone
        Zone ids, in the order of the rows of the matrix.
    outside
        True for zones that do not touch the grid (empty, or entirely off the raster).
    name
        Graph-layer name; block ``(iy, ix)`` has key ``(name, iy, ix)``.
    layer
        The task graph (or materialised blocks) behind the keys.
    """

    geobox: GeoBox
    chunks: tuple[tuple[int, ...], tuple[int, ...]]
    method: Method
    zone: pd.Index
    outside: np.ndarray
    name: str
    layer: dict[Any, Any]

    @property
    def nzones(self) -> int:
        """Number of zones (rows of the matrix)."""
        return len(self.zone)

    @property
    def block_shape(self) -> tuple[int, int]:
        """Number of chunks along y and x."""
        return len(self.chunks[0]), len(self.chunks[1])

    def keys(self) -> list[tuple[str, int, int]]:
        """Graph keys of the blocks, row-major over chunks."""
        ny, nx = self.block_shape
        return [(self.name, iy, ix) for iy in range(ny) for ix in range(nx)]

    def compute(self, **kwargs: Any) -> Coverage:
        """Materialise every block (with the current dask scheduler); returns a new Coverage.

        This computes; it is the step to take once before many ``zonal_stats`` calls on
        different rasters of the same grid. ``kwargs`` go to :func:`dask.compute`.
        """
        import dask
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph

        keys = self.keys()
        hlg = HighLevelGraph({self.name: self.layer}, {self.name: set()})
        blocks = dask.compute(*[Delayed(k, hlg, layer=self.name) for k in keys], **kwargs)
        return Coverage(
            geobox=self.geobox, chunks=self.chunks, method=self.method, zone=self.zone,
            outside=self.outside, name=self.name, layer=dict(zip(keys, blocks, strict=True)),
        )

    def to_scipy(self) -> scipy.sparse.csr_matrix:
        """The whole matrix, zones × pixels (row-major over the full grid). Computes.

        Meant for inspection and small grids; zonal statistics never build it.
        """
        import scipy.sparse

        done = self if all(isinstance(v, CoverageBlock) for v in self.layer.values()) \
            else self.compute(scheduler="sync")
        ny, nx = self.geobox.shape.yx
        yedges = np.cumsum((0, *self.chunks[0]))
        xedges = np.cumsum((0, *self.chunks[1]))
        rows, cols, vals = [], [], []
        for (_, iy, ix), blk in done.layer.items():
            counts = np.diff(blk.indptr)
            rows.append(np.repeat(blk.zones, counts))
            r = blk.pix // blk.shape[1] + yedges[iy]
            c = blk.pix % blk.shape[1] + xedges[ix]
            cols.append(r.astype(np.int64) * nx + c)
            vals.append(blk.weight)
        return scipy.sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.nzones, ny * nx),
        )


def normalise_chunks(chunks: Any, shape: tuple[int, int]) -> tuple[tuple[int, ...], ...]:
    """Spatial chunks ``(y_chunks, x_chunks)`` of a ``(rows, cols)`` grid from any dask
    chunk spec (``None``: one chunk)."""
    from dask.array.core import normalize_chunks

    if chunks is None:
        chunks = (-1, -1)
    elif isinstance(chunks, int):
        chunks = (chunks, chunks)
    try:
        return normalize_chunks(chunks, shape=shape, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise GridError(
            f"chunks={chunks!r} does not describe a chunking of a {shape[0]}×{shape[1]} grid "
            "(give an int, a (y, x) pair or explicit tuples of chunk sizes)."
        ) from err


def _ragged(pixel_geoms: np.ndarray) -> _Ragged:
    n = len(pixel_geoms)
    bounds = shapely.bounds(pixel_geoms)
    if n == 0 or shapely.is_empty(pixel_geoms).all():
        z = np.zeros(n + 1, np.int64)
        return _Ragged(np.zeros((0, 2)), np.zeros(1, np.int64), np.zeros(1, np.int64), z,
                       bounds)
    _, coords, offsets = shapely.to_ragged_array(pixel_geoms)
    offsets = [np.asarray(o, np.int64) for o in offsets]
    if len(offsets) == 2:  # all plain polygons: one part each
        offsets.append(np.arange(n + 1, dtype=np.int64))
    ring_off, poly_off, geom_off = offsets
    return _Ragged(np.ascontiguousarray(coords, np.float64), ring_off, poly_off, geom_off,
                   bounds)


def _coverage_block(geoms: _Ragged, zone_idx: np.ndarray, r0: int, c0: int, nr: int, nc: int,
                    exact: bool) -> CoverageBlock:
    from eocube.zonal.kernels import chunk_coverage

    z, pix, w = chunk_coverage(geoms.coords, geoms.ring_off, geoms.poly_off, geoms.geom_off,
                               geoms.bounds, zone_idx, r0, c0, nr, nc, exact)
    if z.size:
        starts = np.flatnonzero(np.r_[True, z[1:] != z[:-1]])
        zones = z[starts]
        indptr = np.r_[starts, z.size].astype(np.int64)
    else:
        zones = np.zeros(0, np.int64)
        indptr = np.zeros(1, np.int64)
    return CoverageBlock(zones=zones, indptr=indptr, pix=pix, weight=w, shape=(nr, nc))


def _chunk_ranges(lo: np.ndarray, hi: np.ndarray, edges: np.ndarray):
    """First and last chunk index touched by pixel ranges ``[lo, hi)`` (hi > lo)."""
    first = np.searchsorted(edges, lo, side="right") - 1
    last = np.searchsorted(edges, hi - 1, side="right") - 1
    return first, last


def zonal_coverage(
    zones: gpd.GeoDataFrame | gpd.GeoSeries,
    grid: GeoBox | xr.DataArray | xr.Dataset,
    /,
    *,
    method: Method = "exact",
    chunks: Any = None,
    id_col: str | None = None,
) -> Coverage:
    """Coverage weights of ``zones`` on a grid, as lazy blocks aligned with its chunks.

    Parameters
    ----------
    zones
        Polygon zones with a CRS; reprojected to the grid's CRS when it differs, invalid
        geometries repaired with a :class:`~eocube.zonal.geometry.GeometryRepairWarning`.
    grid
        A GeoBox, or a cube whose ``.odc.geobox`` (and dask chunks) are used.
    method
        ``"exact"``: fraction of each pixel covered (area of intersection / pixel area, as
        exactextract). ``"center"``: 1 for pixels whose centre is inside the zone (a centre
        exactly on an edge follows the half-open scanline rule: it belongs to the zone on its
        right/below).
    chunks
        Spatial chunking ``(y, x)`` of the blocks; by default the cube's own chunks, or one
        block for a GeoBox.
    id_col
        Column with the zone ids (default: the index).

    Returns
    -------
    Coverage
        Lazy: nothing is computed until a statistic (or :meth:`Coverage.compute`) asks.
    """
    import xarray as xr
    from dask.base import tokenize
    from odc.geo.geobox import GeoBox

    require("numba", purpose="Zonal coverage")
    if method not in ("exact", "center"):
        raise ConfigError(f"method must be 'exact' or 'center', not {method!r}.")
    if isinstance(grid, GeoBox):
        geobox = grid
    elif isinstance(grid, xr.DataArray | xr.Dataset):
        geobox = grid.odc.geobox
        if geobox is None:
            raise GridError(
                "The cube has no GeoBox (no CRS or spatial coordinates); load it with odc-stac "
                "or assign one with .odc.assign_crs(...)."
            )
        if chunks is None and isinstance(grid, xr.DataArray) and grid.chunks is not None:
            ydim, xdim = grid.odc.spatial_dims
            chunks = (grid.chunksizes[ydim], grid.chunksizes[xdim])
    else:
        raise GridError(f"grid must be a GeoBox or an xarray cube, not {type(grid).__name__}.")
    if geobox.crs is None:
        raise GridError("The grid has no CRS; zones cannot be placed on it.")

    series = prepare_zones(zones, crs=geobox.crs, id_col=id_col)
    shape = geobox.shape.yx
    ychunks, xchunks = normalise_chunks(chunks, shape)
    pixel_geoms = to_pixel_space(np.asarray(series.values, dtype=object), geobox.affine)
    geoms = _ragged(pixel_geoms)

    b = geoms.bounds
    with np.errstate(invalid="ignore"):
        ra = np.clip(np.floor(b[:, 1]), 0, shape[0])
        rb = np.clip(np.ceil(b[:, 3]), 0, shape[0])
        ca = np.clip(np.floor(b[:, 0]), 0, shape[1])
        cb = np.clip(np.ceil(b[:, 2]), 0, shape[1])
    touches = np.isfinite(b).all(axis=1) & (rb > ra) & (cb > ca)
    # a bounding box on the raster does not mean the polygon is: test the few that straddle
    straddle = touches & ((b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > shape[1])
                          | (b[:, 3] > shape[0]))
    if straddle.any():
        frame = shapely.box(0, 0, shape[1], shape[0])
        touches[straddle] = shapely.intersects(pixel_geoms[straddle], frame) & ~shapely.touches(
            pixel_geoms[straddle], frame)
    outside = ~touches

    idx = np.flatnonzero(touches)
    yedges = np.cumsum((0, *ychunks))
    xedges = np.cumsum((0, *xchunks))
    iy0, iy1 = _chunk_ranges(ra[idx].astype(np.int64), rb[idx].astype(np.int64), yedges)
    ix0, ix1 = _chunk_ranges(ca[idx].astype(np.int64), cb[idx].astype(np.int64), xedges)
    nyz = iy1 - iy0 + 1
    nxz = ix1 - ix0 + 1
    per = nyz * nxz
    rep = np.repeat(np.arange(idx.size), per)
    off = np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
    cy = iy0[rep] + off // nxz[rep]
    cx = ix0[rep] + off % nxz[rep]
    nbx = len(xchunks)
    chunk_id = cy * nbx + cx
    order = np.argsort(chunk_id, kind="stable")
    chunk_sorted = chunk_id[order]
    zone_sorted = idx[rep[order]]
    bounds_at = np.searchsorted(chunk_sorted, np.arange(len(ychunks) * nbx + 1))

    exact = method == "exact"
    name = "zonal-coverage-" + tokenize(geoms.coords, geoms.ring_off, geoms.poly_off,
                                        geoms.geom_off, geobox, ychunks, xchunks, method)
    gkey = name + "-geoms"
    layer: dict[Any, Any] = {gkey: geoms}
    for iy in range(len(ychunks)):
        for ix in range(nbx):
            k = iy * nbx + ix
            sel = zone_sorted[bounds_at[k]:bounds_at[k + 1]]
            layer[(name, iy, ix)] = (_coverage_block, gkey, sel, int(yedges[iy]),
                                     int(xedges[ix]), int(ychunks[iy]), int(xchunks[ix]), exact)
    return Coverage(geobox=geobox, chunks=(tuple(ychunks), tuple(xchunks)), method=method,
                    zone=series.index, outside=outside, name=name, layer=layer)
