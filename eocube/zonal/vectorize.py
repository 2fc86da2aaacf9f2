"""From a building mask (or probabilities) to footprint polygons with shape metrics and the
raster statistics under each — the step between building segmentation and the estimates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import shapely

from eocube.errors import ConfigError, GridError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["regularize_footprints", "vectorize_mask"]


def regularize_footprints(
    geoms: np.ndarray | Sequence[shapely.Geometry],
    /,
    *,
    rectangularity: float = 0.8,
    tolerance: float = 0.0,
) -> np.ndarray:
    """Orthogonal regularisation of footprints, a simple and predictable rule.

    A footprint that fills at least ``rectangularity`` of its minimum rotated rectangle
    becomes that rectangle scaled about its centre to the footprint's area (so area is kept);
    any other is rotated into the frame of that rectangle, simplified by ``tolerance``, its
    edges snapped to the two rectangle axes (each vertex takes the x of its predecessor or the
    y, whichever moves it least), and rotated back. Pixel staircases thus become straight,
    right-angled walls aligned with the building.

    Parameters
    ----------
    geoms
        Polygons in a projected CRS.
    rectangularity
        Area / minimum-rotated-rectangle area above which a footprint becomes a rectangle.
    tolerance
        Douglas–Peucker tolerance (CRS units) before snapping.

    Returns
    -------
    numpy.ndarray
        New polygons, same order.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        out[i] = _regularize_one(g, rectangularity, tolerance)
    return out


def _regularize_one(g: shapely.Geometry, rectangularity: float, tolerance: float):
    if g is None or g.is_empty or g.geom_type != "Polygon":
        return g
    rect = shapely.oriented_envelope(g)
    if rect.geom_type != "Polygon" or rect.area == 0:
        return g
    c = shapely.centroid(rect)
    if g.area / rect.area >= rectangularity:
        k = np.sqrt(g.area / rect.area)
        xy = shapely.get_coordinates(rect)
        cx, cy = c.x, c.y
        return shapely.Polygon(np.column_stack((cx + k * (xy[:, 0] - cx),
                                                cy + k * (xy[:, 1] - cy))))
    xy = shapely.get_coordinates(shapely.get_exterior_ring(rect))
    ang = np.arctan2(xy[1, 1] - xy[0, 1], xy[1, 0] - xy[0, 0])
    cos, sin = np.cos(-ang), np.sin(-ang)

    centre = np.array([c.x, c.y])

    def rot(pts: np.ndarray, cs: float, sn: float) -> np.ndarray:
        d = pts - centre
        return np.column_stack((d[:, 0] * cs - d[:, 1] * sn, d[:, 0] * sn + d[:, 1] * cs)) \
            + centre

    simple = shapely.simplify(g, tolerance) if tolerance > 0 else g
    ring = rot(shapely.get_coordinates(simple.exterior)[:-1], cos, sin)
    snapped = [ring[0]]
    for p in ring[1:]:
        q = snapped[-1]
        # keep the wall direction that moves the vertex least
        snapped.append(np.array([p[0], q[1]]) if abs(p[1] - q[1]) < abs(p[0] - q[0])
                       else np.array([q[0], p[1]]))
    snapped = np.asarray(snapped)
    back = rot(snapped, np.cos(ang), np.sin(ang))
    poly = shapely.make_valid(shapely.Polygon(back))
    parts = [p for p in shapely.get_parts(poly) if p.geom_type == "Polygon"]
    if not parts:
        return g
    return max(parts, key=lambda p: p.area)


def vectorize_mask(
    mask: xr.DataArray,
    /,
    *,
    threshold: float | None = None,
    connectivity: Literal[4, 8] = 4,
    min_area: float = 0.0,
    simplify: float | None = None,
    regularize: bool = False,
    values: xr.DataArray | Mapping[str, xr.DataArray] | None = None,
    stats: Sequence[str] = ("mean",),
    id_col: str = "building_id",
) -> gpd.GeoDataFrame:
    """Turn a building mask into footprint polygons with area, perimeter and compactness.

    Eager: the mask is computed (held whole) and polygonised with ``rasterio.features.shapes``
    along pixel edges; the statistics of ``values`` under each footprint are exact zonal
    statistics (they stay lazy until this function computes them).

    Parameters
    ----------
    mask
        2-D boolean / integer mask on a GeoBox, or probabilities with ``threshold``.
    threshold
        Pixels with ``mask >= threshold`` are buildings; required for a float mask.
    connectivity
        4 or 8 neighbour connectivity of a footprint's pixels.
    min_area
        Drop footprints smaller than this (CRS units², m²).
    simplify
        Douglas–Peucker tolerance (CRS units) applied to every footprint (topology kept).
    regularize
        Apply :func:`regularize_footprints` (after ``simplify``).
    values
        Raster(s) on any grid whose statistics under each footprint are added, as columns
        ``{stat}`` (one raster) or ``{name}_{stat}`` (a mapping).
    stats
        Statistics for ``values`` (see :data:`eocube.zonal.STATS`).
    id_col
        Name of the id column (1..n, north-west first as rasterio scans).

    Returns
    -------
    geopandas.GeoDataFrame
        ``id_col``, ``area``, ``perimeter``, ``compactness`` (Polsby–Popper, 4πA/P², 1 for
        a disc, π/4 for a square) and the statistics.
    """
    import geopandas as gpd
    import rasterio.features

    from eocube.zonal.stats import zonal_stats

    geobox = mask.odc.geobox
    if geobox is None:
        raise GridError("The mask has no GeoBox; assign one with mask.odc.assign_crs(...).")
    if mask.ndim != 2:
        raise ConfigError(
            f"vectorize_mask takes a 2-D mask; this one has dims {mask.dims}. Select one time "
            "step or band first, e.g. mask.isel(time=-1)."
        )
    if connectivity not in (4, 8):
        raise ConfigError(f"connectivity must be 4 or 8, not {connectivity}.")
    arr = np.asarray(mask.transpose(*mask.odc.spatial_dims).values)
    if np.issubdtype(arr.dtype, np.floating) and threshold is None:
        raise ConfigError(
            "The mask is float (probabilities?); pass threshold=0.5 (or another cut-off)."
        )
    with np.errstate(invalid="ignore"):
        binary = arr >= threshold if threshold is not None else arr.astype(bool)
    binary = np.ascontiguousarray(binary, dtype=np.uint8)
    geoms = [shapely.geometry.shape(g) for g, _ in rasterio.features.shapes(
        binary, mask=binary.astype(bool), connectivity=connectivity, transform=geobox.affine)]
    geoms = np.asarray(geoms, dtype=object) if geoms else np.zeros(0, dtype=object)
    if len(geoms) and min_area > 0:
        geoms = geoms[shapely.area(geoms) >= min_area]
    if simplify:
        geoms = shapely.simplify(geoms, simplify, preserve_topology=True)
    if regularize and len(geoms):
        geoms = regularize_footprints(geoms)
    area = shapely.area(geoms)
    perimeter = shapely.length(geoms)
    with np.errstate(invalid="ignore", divide="ignore"):
        compact = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, np.nan)
    out = gpd.GeoDataFrame({id_col: np.arange(1, len(geoms) + 1, dtype="int64"), "area": area,
                            "perimeter": perimeter, "compactness": compact},
                           geometry=list(geoms), crs=geobox.crs)
    if values is not None and len(out):
        named = values if isinstance(values, Mapping) else {"": values}
        for name, v in named.items():
            res = zonal_stats(v, out, stats=list(stats), id_col=id_col).compute()
            for s in res.data_vars:
                out[f"{name}_{s}" if name else s] = res[s].transpose("zone", ...).values \
                    if res[s].ndim == 1 else list(res[s].transpose("zone", ...).values)
    return out
