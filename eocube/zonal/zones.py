"""Zones the estimates aggregate to: TAZ built from a road network, admin polygons taken as
given, and the assignment of buildings to them by footprint overlap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import shapely

from eocube.errors import ConfigError, ZoneError
from eocube.zonal.geometry import prepare_zones, repair_polygons

if TYPE_CHECKING:
    import geopandas as gpd
    from pyproj import CRS

__all__ = ["METRIC_TOLERANCE", "admin_zones", "assign_zones", "metric_crs", "road_corridors",
           "taz_from_roads"]


def road_corridors(
    roads: gpd.GeoDataFrame,
    /,
    *,
    width_col: str = "width",
    default_width: float = 10.0,
    cap_style: Literal["flat", "round", "square"] = "flat",
) -> shapely.Geometry:
    """The union of every road buffered by half its width.

    Parameters
    ----------
    roads
        LineStrings (or MultiLineStrings) in a projected CRS; one whose unit is not a true
        metre at the roads (US feet, Web Mercator) is buffered in the local UTM zone
        (:func:`metric_crs`) and the result handed back in the roads' CRS.
    width_col
        Column of full road widths in metres; missing column or NaN → ``default_width``.
    default_width
        Width used where none is given.
    cap_style
        End caps of the buffers; ``"flat"`` ends a road exactly at its last vertex.

    Returns
    -------
    shapely.Geometry
        One (multi)polygon.
    """
    _check_lines(roads)
    if default_width <= 0:
        raise ConfigError(f"default_width must be positive, not {default_width}.")
    local = metric_crs(roads)
    if local is not None:
        # widths are metres: buffer in the local UTM zone, hand the union back in roads' CRS
        import geopandas as gpd

        corridors = road_corridors(roads.to_crs(local), width_col=width_col,
                                   default_width=default_width, cap_style=cap_style)
        return gpd.GeoSeries([corridors], crs=local).to_crs(roads.crs).iloc[0]
    if width_col in roads.columns:
        width = pd.to_numeric(roads[width_col], errors="coerce").to_numpy(np.float64)
        width = np.where(np.isfinite(width) & (width > 0), width, default_width)
    else:
        width = np.full(len(roads), float(default_width))
    buffers = shapely.buffer(roads.geometry.values, width / 2.0, cap_style=cap_style,
                             join_style="mitre")
    return shapely.union_all(buffers)


#: Largest departure of a CRS unit from a metre (scale error at the roads) that is used as is:
#: a UTM zone's edge is 1.0010, a state plane in metres 1.0001, Web Mercator at 30° 1.155.
METRIC_TOLERANCE = 0.005


def metric_crs(frame: gpd.GeoDataFrame | gpd.GeoSeries, /) -> CRS | None:
    """The local metric CRS to work in when ``frame``'s CRS does not measure metres, else None.

    The scale of the CRS at the centre of ``frame``'s bounds is measured against geodesic
    distances on the ellipsoid (east and north); when either departs from one metre per unit
    by more than :data:`METRIC_TOLERANCE` (US survey feet, EPSG:3857 away from the equator),
    the answer is the UTM zone of the centre (``estimate_utm_crs``).

    Parameters
    ----------
    frame
        Features with a projected CRS.

    Returns
    -------
    pyproj.CRS or None
        ``None`` when the CRS is metric where the features are.
    """
    from pyproj import Geod, Transformer

    crs = frame.crs
    x0, y0, x1, y1 = frame.total_bounds
    if not np.all(np.isfinite([x0, y0, x1, y1])):
        return None
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    step = max(x1 - x0, y1 - y0, 1.0) / 100.0
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform([cx, cx + step, cx], [cy, cy, cy + step])
    geod = Geod(ellps="WGS84")
    _, _, east = geod.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, north = geod.inv(lon[0], lat[0], lon[2], lat[2])
    scale = np.array([east, north]) / step
    if np.all(np.abs(scale - 1.0) <= METRIC_TOLERANCE):
        return None
    return frame.estimate_utm_crs()


def _in_local(frame: gpd.GeoDataFrame | gpd.GeoSeries, crs: CRS) -> np.ndarray:
    """The geometries of ``frame`` in ``crs``, coordinates rounded to 1 mm: a junction exact
    in the source CRS (a road ending on another, on the boundary) comes out of the
    reprojection 1e-9 m apart and would no longer be noded."""
    return shapely.set_precision(np.asarray(frame.to_crs(crs).geometry.values, dtype=object),
                                 1e-3, mode="pointwise")


def _check_lines(roads: gpd.GeoDataFrame) -> None:
    if roads.crs is None:
        raise ZoneError("The roads have no CRS; set it with roads.set_crs(...).")
    if roads.crs.is_geographic:
        raise ZoneError(
            f"The roads are in a geographic CRS ({roads.crs.to_string()}); widths and areas "
            "need metres: reproject with roads.to_crs(roads.estimate_utm_crs())."
        )
    types = set(roads.geom_type.dropna())
    if not types <= {"LineString", "MultiLineString"}:
        raise ZoneError(f"Roads must be LineStrings; found {sorted(types)}.")


def taz_from_roads(
    roads: gpd.GeoDataFrame,
    /,
    *,
    boundary: shapely.Geometry | tuple[float, float, float, float] | None = None,
    width_col: str = "width",
    default_width: float = 10.0,
    min_area: float = 500.0,
    cap_style: Literal["flat", "round", "square"] = "flat",
    id_col: str = "taz_id",
) -> gpd.GeoDataFrame:
    """Traffic analysis zones: the faces of a road network minus the road corridors.

    The lines are noded (split at every crossing) and polygonised into faces; with a
    ``boundary``, its outline joins the network and the faces are clipped to it, so the blocks
    between the outermost roads and the city edge are zones too. Each face loses the corridor
    of the roads around it (buffer of half the width); every remaining part becomes a zone,
    parts smaller than ``min_area`` (slivers) are dropped.

    Parameters
    ----------
    roads
        Road centre lines in a projected CRS. A CRS whose unit is not a true metre where the
        roads are (US survey feet such as EPSG:2263, Web Mercator EPSG:3857 whose metres
        grow away from the equator; see :func:`metric_crs`) is handled by building the
        zones in the local UTM zone and reprojecting them back, so widths and areas are
        always metres. A geographic CRS is refused.
    boundary
        Study-area polygon or ``(left, bottom, right, top)`` in the roads' CRS; without it
        only faces closed by roads are zones.
    width_col, default_width, cap_style
        Corridor widths, as in :func:`road_corridors`.
    min_area
        Smallest zone kept, in m².
    id_col
        Name of the id column.

    Returns
    -------
    geopandas.GeoDataFrame
        ``id_col`` (1..n) and ``area`` (m²), in the roads' CRS; ids are stable: zones are
        numbered north to south, then west to east, by a point on their surface, so they do
        not depend on the order of the roads.

    Examples
    --------
    >>> from eocube.synth import make_world
    >>> w = make_world("tiny", seed=0)
    >>> taz = taz_from_roads(w.roads, boundary=w.spec.bounds)
    >>> len(taz) == len(w.taz)
    True
    """
    import geopandas as gpd

    _check_lines(roads)
    if min_area < 0:
        raise ConfigError(f"min_area must be non-negative, not {min_area}.")
    local = metric_crs(roads)
    if local is not None:
        # widths and min_area are metres: build the zones in the local UTM zone and hand
        # them back in the roads' CRS (the ``area`` column stays in m²)
        if boundary is not None:
            b = shapely.box(*boundary) if isinstance(boundary, tuple) else boundary
            boundary = _in_local(gpd.GeoSeries([b], crs=roads.crs), local)[0]
        lroads = roads.set_geometry(_in_local(roads, local), crs=local)
        taz = taz_from_roads(lroads, boundary=boundary, width_col=width_col,
                             default_width=default_width, min_area=min_area,
                             cap_style=cap_style, id_col=id_col)
        return taz.to_crs(roads.crs)
    lines = list(shapely.get_parts(roads.geometry.values))
    if isinstance(boundary, tuple):
        boundary = shapely.box(*boundary)
    if boundary is not None:
        lines.append(shapely.boundary(boundary))
    noded = shapely.union_all(lines)
    faces = np.asarray(shapely.get_parts(shapely.polygonize(shapely.get_parts(noded))))
    if boundary is not None:
        faces = shapely.intersection(faces, boundary)
    corridors = road_corridors(roads, width_col=width_col, default_width=default_width,
                               cap_style=cap_style)
    blocks = shapely.difference(faces, corridors)
    parts = shapely.get_parts(blocks)
    parts = parts[np.isin(shapely.get_type_id(parts), (3,))]
    area = shapely.area(parts)
    keep = area >= max(min_area, 0.0) if min_area > 0 else area > 0
    parts, area = parts[keep], area[keep]
    pts = shapely.point_on_surface(parts)
    # round so ids do not flicker with floating noise of the overlay
    order = np.lexsort((np.round(shapely.get_x(pts), 3), -np.round(shapely.get_y(pts), 3)))
    parts, area = parts[order], area[order]
    return gpd.GeoDataFrame({id_col: np.arange(1, len(parts) + 1, dtype="int32"),
                             "area": area}, geometry=parts, crs=roads.crs)


def admin_zones(
    polygons: gpd.GeoDataFrame,
    /,
    *,
    id_col: str,
    crs: str | None = None,
) -> gpd.GeoDataFrame:
    """Communities and other admin zones, taken as given: validated, repaired, reprojected.

    Parameters
    ----------
    polygons
        The zones, with a CRS and a unique ``id_col``.
    id_col
        Column of zone ids.
    crs
        Reproject to this CRS when given.

    Returns
    -------
    geopandas.GeoDataFrame
        A copy with valid polygonal geometries (repairs are warned about, naming the ids).
    """
    series = prepare_zones(polygons, crs=crs, id_col=id_col)
    out = polygons.copy()
    return out.set_geometry(series.to_numpy(), crs=series.crs)


def assign_zones(
    buildings: gpd.GeoDataFrame,
    zones: gpd.GeoDataFrame,
    /,
    *,
    id_col: str,
    name: str | None = None,
) -> gpd.GeoDataFrame:
    """Assign each building the zone its footprint overlaps most.

    Rule: the zone with the largest area of intersection with the footprint. A tie (within
    1e-9 of the footprint area) goes to the zone containing the footprint's representative
    point (``point_on_surface``), then to the smallest id. A footprint overlapping no zone (in
    a road corridor, outside the study area) gets ``<NA>`` and share 0. Centroids alone are
    not used: a footprint straddling a boundary belongs where most of it lies.

    Parameters
    ----------
    buildings
        Footprint polygons with a CRS; reprojected copies of the zones are used if the CRS
        differ.
    zones
        Polygon zones with a unique ``id_col``.
    id_col
        Zone id column.
    name
        Name of the new column (default ``id_col``); a ``<name>_share`` column holds the
        fraction of the footprint inside the chosen zone.

    Returns
    -------
    geopandas.GeoDataFrame
        A copy of ``buildings`` with the two new columns (its geometries as given).

    Warns
    -----
    GeometryRepairWarning
        When invalid footprints or zones were repaired (``shapely.make_valid``, the rule of
        :func:`~eocube.zonal.zonal_stats`); the message names them by index or zone id.
    """
    if buildings.crs is None:
        raise ZoneError("The buildings have no CRS; set it with buildings.set_crs(...).")
    name = name or id_col
    z = prepare_zones(zones, crs=buildings.crs, id_col=id_col)
    # the same repair rule as the zones (and as zonal_stats): make_valid, warn naming them
    fp = repair_polygons(buildings.geometry.values, buildings.index, what="building footprint")
    bi, zi = z.sindex.query(fp, predicate="intersects")
    zgeom = np.asarray(z.values, dtype=object)
    inter = shapely.area(shapely.intersection(fp[bi], zgeom[zi])) if bi.size else np.zeros(0)
    fp_area = shapely.area(fp)
    rep = shapely.point_on_surface(fp[bi]) if bi.size else np.zeros(0, dtype=object)
    contains = shapely.contains(zgeom[zi], rep) if bi.size else np.zeros(0, bool)
    ids = np.asarray(z.index)
    # score: area rounded to a tolerance, then the representative point, then the smallest id
    tol = 1e-9 * np.maximum(fp_area[bi], 1e-300)
    score_area = np.floor(inter / tol) if bi.size else inter
    id_order = np.argsort(np.argsort(ids, kind="stable"), kind="stable")
    order = np.lexsort((id_order[zi], ~contains, -score_area, bi))
    bi_s, zi_s, inter_s = bi[order], zi[order], inter[order]
    first = np.r_[True, bi_s[1:] != bi_s[:-1]] if bi_s.size else np.zeros(0, bool)
    chosen_b = bi_s[first]
    chosen_z = zi_s[first]
    chosen_a = inter_s[first]
    ok = chosen_a > 0
    out = buildings.copy()
    col = pd.Series(pd.array([pd.NA] * len(out), dtype=_nullable(ids)), index=out.index)
    col.iloc[chosen_b[ok]] = ids[chosen_z[ok]]
    share = np.zeros(len(out))
    with np.errstate(invalid="ignore", divide="ignore"):
        share[chosen_b[ok]] = chosen_a[ok] / fp_area[chosen_b[ok]]
    out[name] = col.to_numpy()
    out[name] = out[name].astype(col.dtype)
    out[f"{name}_share"] = share
    return out


def _nullable(ids: np.ndarray) -> str:
    if np.issubdtype(ids.dtype, np.integer):
        return "Int64"
    return "object"
