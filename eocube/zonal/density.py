"""Point kernel density on a grid (POI density for the TAZ features of the estimates).

Evaluated exactly at pixel centres, chunk by chunk: each chunk sees only the points within a
bandwidth of it, so the result is lazy and the grid can be larger than memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from eocube.errors import ConfigError, GridError, ZoneError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr
    from odc.geo.geobox import GeoBox

__all__ = ["kernel_density"]

_KERNELS = ("quartic", "gaussian", "uniform")


def _chunk(points: np.ndarray, r0: int, c0: int, nr: int, nc: int, x0: float, dx: float,
           y0: float, dy: float, h: float, kind: int) -> np.ndarray:
    from eocube.zonal.kernels import GAUSS_CUT, kde_block

    reach = h * (GAUSS_CUT if kind == 1 else 1.0)
    bx0 = x0 + c0 * dx
    bx1 = x0 + (c0 + nc) * dx
    by0, by1 = sorted((y0 + r0 * dy, y0 + (r0 + nr) * dy))
    px, py = points[:, 0], points[:, 1]
    near = ((px >= bx0 - reach) & (px <= bx1 + reach) & (py >= by0 - reach)
            & (py <= by1 + reach))
    p = points[near]
    return kde_block(p[:, 0], p[:, 1], p[:, 2], bx0, dx, y0 + r0 * dy, dy, nr, nc, h, kind)


def kernel_density(
    points: gpd.GeoDataFrame | gpd.GeoSeries,
    grid: GeoBox | xr.DataArray,
    /,
    *,
    bandwidth: float,
    kernel: Literal["quartic", "gaussian", "uniform"] = "quartic",
    weight_col: str | None = None,
    chunks: int | tuple[int, int] = 2048,
) -> xr.DataArray:
    """Kernel density of points, in points per CRS unit² (per m²), at pixel centres.

    Parameters
    ----------
    points
        Point layer with a CRS (reprojected to the grid's); multipoints count each part.
    grid
        The output grid (a GeoBox or a cube whose GeoBox is used).
    bandwidth
        Kernel radius (quartic, uniform) or standard deviation (Gaussian), CRS units.
    kernel
        ``"quartic"`` (``3/(πh²)·(1 − d²/h²)²``, the usual GIS kernel), ``"gaussian"``
        (cut at 4h, losing 3e-4 of the mass) or ``"uniform"`` (``1/(πh²)`` inside h).
        Each integrates to 1 per point (up to discretisation), so the sum over pixels ×
        pixel area ≈ the number of points.
    weight_col
        Column of per-point weights (default 1).
    chunks
        Output chunking.

    Returns
    -------
    xarray.DataArray
        Lazy (dask) float64 density on the grid; ``units`` attr says per CRS unit².
    """
    import dask.array as da
    import shapely
    import xarray as xr
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import wrap_xr

    from eocube._deps import require
    from eocube.zonal.coverage import normalise_chunks

    require("numba", purpose="kernel_density")
    if kernel not in _KERNELS:
        raise ConfigError(f"kernel must be one of {list(_KERNELS)}, not {kernel!r}.")
    if not bandwidth > 0:
        raise ConfigError(f"bandwidth must be positive, not {bandwidth!r}.")
    geobox = grid if isinstance(grid, GeoBox) else grid.odc.geobox
    if not isinstance(grid, GeoBox | xr.DataArray | xr.Dataset) or geobox is None:
        raise GridError("grid must be a GeoBox or a cube with a GeoBox.")
    aff = geobox.affine
    if aff.b != 0 or aff.d != 0:
        raise GridError("kernel_density needs an axis-aligned grid; reproject it north-up.")
    if points.crs is None:
        raise ZoneError("The points have no CRS; set it with points.set_crs(...).")
    pts = points.to_crs(geobox.crs) if not points.crs.equals(geobox.crs) else points
    geoms = np.asarray(pts.geometry.values, dtype=object)
    w = (np.ones(len(pts)) if weight_col is None
         else np.asarray(pts[weight_col], dtype=np.float64))
    parts, idx = shapely.get_parts(geoms, return_index=True)
    if len(parts) and not np.all(shapely.get_type_id(parts) == 0):
        raise ZoneError("kernel_density takes points; found non-point geometries.")
    xy = shapely.get_coordinates(parts) if len(parts) else np.zeros((0, 2))
    data = np.ascontiguousarray(np.column_stack((xy, w[idx] if len(parts) else np.zeros(0))))

    shape = geobox.shape.yx
    ychunks, xchunks = normalise_chunks(chunks, shape)
    kind = _KERNELS.index(kernel)
    name = "kernel-density-" + tokenize(data, geobox, ychunks, xchunks, bandwidth, kind)
    pkey = name + "-points"
    layer: dict[Any, Any] = {pkey: data}
    yedges = np.cumsum((0, *ychunks))
    xedges = np.cumsum((0, *xchunks))
    for iy, ny in enumerate(ychunks):
        for ix, nx in enumerate(xchunks):
            layer[(name, iy, ix)] = (_chunk, pkey, int(yedges[iy]), int(xedges[ix]), int(ny),
                                     int(nx), aff.c, aff.a, aff.f, aff.e, float(bandwidth), kind)
    arr = da.Array(HighLevelGraph.from_collections(name, layer, dependencies=[]), name,
                   chunks=(ychunks, xchunks), dtype=np.float64)
    out = wrap_xr(arr, geobox)
    out.name = "density"
    unit = geobox.crs.units[0] if geobox.crs.units else "unit"
    out.attrs["units"] = f"points per {unit}^2"
    out.attrs["kernel"] = kernel
    out.attrs["bandwidth"] = float(bandwidth)
    return out
