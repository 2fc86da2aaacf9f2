"""Seeded zone and raster factories for the zonal tests and benchmark (no files, no network).

Also the bridge to exactextract, the reference for exact coverage, so tests and the benchmark
call it the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import shapely

from eocube._deps import require

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import xarray as xr
    from odc.geo.geobox import GeoBox

__all__ = ["exactextract_stats", "random_polygons", "random_raster"]


def _star(rng: np.random.Generator, cx: float, cy: float, r: float, n: int) -> shapely.Polygon:
    ang = np.sort(rng.uniform(0.0, 2 * np.pi, n))
    rad = r * rng.uniform(0.4, 1.0, n)
    g = shapely.Polygon(np.column_stack((cx + rad * np.cos(ang), cy + rad * np.sin(ang))))
    return g if shapely.is_valid(g) else shapely.convex_hull(g)


def random_polygons(
    n: int,
    geobox: GeoBox,
    /,
    *,
    seed: int = 0,
    size: tuple[float, float] = (0.3, 30.0),
    vertices: tuple[int, int] = (4, 24),
    margin: float = 0.1,
) -> gpd.GeoDataFrame:
    """``n`` random zones over ``geobox``: star polygons, polygons with holes, multipolygons.

    Parameters
    ----------
    n
        Number of zones.
    geobox
        Grid whose extent (and CRS) the zones fall in; ``margin`` of the extent lies outside.
    seed
        Seed of ``numpy.random.default_rng``.
    size
        Range of radii in pixels; sizes are log-uniform, so many zones are smaller than a
        pixel and some span several chunks.
    vertices
        Range of vertex counts of each ring.
    margin
        Fraction of the extent added on every side, so some zones straddle the raster edge
        or miss it.

    Returns
    -------
    geopandas.GeoDataFrame
        Column ``zone_id`` (0..n−1, also the index) and valid geometries.
    """
    import geopandas as gpd

    rng = np.random.default_rng(seed)
    res = abs(geobox.resolution.x)
    x0, y0, x1, y1 = geobox.extent.boundingbox
    wx, wy = x1 - x0, y1 - y0
    geoms = []
    for _ in range(n):
        cx = rng.uniform(x0 - margin * wx, x1 + margin * wx)
        cy = rng.uniform(y0 - margin * wy, y1 + margin * wy)
        r = res * np.exp(rng.uniform(np.log(size[0]), np.log(size[1])))
        kind = rng.uniform()
        nv = int(rng.integers(vertices[0], vertices[1] + 1))
        g = _star(rng, cx, cy, r, nv)
        if kind < 0.2:
            hole = _star(rng, cx, cy, 0.35 * r, max(3, nv // 2))
            g = shapely.difference(g, hole)
        elif kind < 0.4:
            other = _star(rng, cx + rng.uniform(-3, 3) * r, cy + rng.uniform(-3, 3) * r,
                          r * rng.uniform(0.2, 1.0), nv)
            g = shapely.union(g, other)
        geoms.append(shapely.make_valid(g) if not shapely.is_valid(g) else g)
    geoms = [g if g.geom_type in ("Polygon", "MultiPolygon")
             else shapely.union_all([p for p in shapely.get_parts(g)
                                     if p.geom_type in ("Polygon", "MultiPolygon")])
             for g in geoms]
    return gpd.GeoDataFrame({"zone_id": np.arange(n)}, geometry=geoms, crs=geobox.crs,
                            index=np.arange(n))


def random_raster(
    geobox: GeoBox,
    /,
    *,
    seed: int = 0,
    time: int | None = None,
    nan_fraction: float = 0.0,
    chunks: dict[str, int] | None = None,
) -> xr.DataArray:
    """A float64 raster on ``geobox`` (``(time, y, x)`` when ``time`` is given), smooth plus noise.

    ``nan_fraction`` of the pixels are NaN (nodata); ``chunks`` makes it dask-backed.
    """
    import pandas as pd
    from odc.geo.xr import wrap_xr

    rng = np.random.default_rng(seed)
    ny, nx = geobox.shape.yx
    yy, xx = np.meshgrid(np.linspace(0, 6, ny), np.linspace(0, 6, nx), indexing="ij")
    nt = 1 if time is None else time
    base = 10 + 5 * np.sin(xx) * np.cos(yy)
    arr = base[None] + rng.normal(0, 2, (nt, ny, nx)) + np.arange(nt)[:, None, None] * 0.1
    if nan_fraction > 0:
        arr[rng.uniform(size=arr.shape) < nan_fraction] = np.nan
    if time is None:
        da = wrap_xr(arr[0], geobox)
    else:
        da = wrap_xr(arr, geobox, time=pd.date_range("2020-01-01", periods=nt, freq="MS"))
    return da.chunk(chunks) if chunks else da


def exactextract_stats(
    values: np.ndarray,
    geobox: GeoBox,
    zones: gpd.GeoDataFrame,
    /,
    *,
    stats: tuple[str, ...] = ("sum", "mean", "count"),
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """exactextract's answer for a 2-D numpy raster on an axis-aligned ``geobox``.

    Runs in the calling thread; the index of the result is the index of ``zones``.
    """
    require("exactextract", purpose="The exactextract reference")
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    x0, y0, x1, y1 = geobox.extent.boundingbox
    wkt = geobox.crs.to_wkt()

    def src(a: np.ndarray, name: str) -> NumPyRasterSource:
        a = np.asarray(a, np.float64)
        if geobox.affine.e > 0:  # exactextract reads north-up rows
            a = a[::-1]
        return NumPyRasterSource(a, x0, y0, x1, y1, nodata=np.nan, srs_wkt=wkt, name=name)

    df = exact_extract(src(values, "v"), zones[["geometry"]].reset_index(drop=True),
                       list(stats), weights=None if weights is None else src(weights, "w"),
                       output="pandas")
    df.index = zones.index
    return df
