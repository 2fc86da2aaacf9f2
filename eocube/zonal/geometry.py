"""Zone layers made fit for raster work: CRS, validity, polygonal type, unique ids.

Every zonal function passes its polygons through :func:`prepare_zones` first, so the checks
and the repair warning are the same everywhere.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import shapely

from eocube.errors import GridError, ZoneError

if TYPE_CHECKING:
    import geopandas as gpd
    from pyproj import CRS

__all__ = ["GeometryRepairWarning", "prepare_zones", "repair_polygons"]


class GeometryRepairWarning(UserWarning):
    """Invalid polygons (zones, footprints) were repaired with ``shapely.make_valid``; the
    message names them."""


_POLYGONAL = ("Polygon", "MultiPolygon")


def _names(index: pd.Index, mask: np.ndarray, *, limit: int = 10) -> str:
    ids = [repr(v) for v in index[mask][:limit]]
    more = int(mask.sum()) - len(ids)
    return ", ".join(ids) + (f" and {more} more" if more > 0 else "")


def _polygonal_part(geom: shapely.Geometry) -> shapely.Geometry:
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in _POLYGONAL]
    if not parts:
        return shapely.Polygon()
    return shapely.union_all(parts) if len(parts) > 1 else parts[0]


def repair_polygons(
    geoms: np.ndarray,
    index: pd.Index,
    /,
    *,
    what: str = "polygon",
    stacklevel: int = 3,
) -> np.ndarray:
    """Polygonal geometries made valid, the one repair rule of every zonal function.

    Invalid geometries (a self-intersecting footprint, a bow-tie zone) are repaired with
    ``shapely.make_valid`` (its ``"structure"`` method where the default one returns an
    invalid result) and a :class:`GeometryRepairWarning` naming them by ``index``;
    the repair and any geometry collection are reduced to their polygonal part. Missing
    geometries become empty polygons. Valid polygons are returned as they are.

    Parameters
    ----------
    geoms
        Geometries (an object array or anything ``numpy.asarray`` makes one).
    index
        The ids the warning names, one per geometry (zone ids, building index …).
    what
        What the geometries are, in the singular, for the warning (``"zone geometry"``,
        ``"building footprint"``).
    stacklevel
        Of the warning, so that it points at the user's call.

    Returns
    -------
    numpy.ndarray
        A new object array when something was repaired or filled, else ``geoms`` itself.

    Warns
    -----
    GeometryRepairWarning
        When invalid geometries were repaired; the message lists their ids.
    """
    arr = np.asarray(geoms, dtype=object)
    missing = pd.isna(arr)
    if missing.any():
        arr = arr.copy()
        arr[missing] = shapely.Polygon()
    empty = shapely.is_empty(arr)
    invalid = ~shapely.is_valid(arr) & ~empty
    collection = shapely.get_type_id(arr) == 7
    if not (invalid.any() or collection.any()):
        return arr
    arr = arr.copy()
    if invalid.any():
        n = int(invalid.sum())
        noun = what if n == 1 else (what[:-1] + "ies" if what.endswith("y") else what + "s")
        warnings.warn(
            f"Repaired {n} invalid {noun} with shapely.make_valid: {_names(index, invalid)}. "
            "Fix the source layer to silence this warning.",
            GeometryRepairWarning,
            stacklevel=stacklevel,
        )
        fixed = shapely.make_valid(arr[invalid])
        # GEOS's default ("linework") repair can itself return an invalid polygon on
        # near-degenerate input (a sliver with a 1e-124 coordinate, its area negative);
        # the "structure" method rebuilds the polygon from its rings instead
        bad = ~shapely.is_valid(fixed)
        if bad.any():
            fixed[bad] = shapely.make_valid(arr[invalid][bad], method="structure")
        arr[invalid] = fixed
    fix = invalid | collection
    arr[fix] = [_polygonal_part(g) for g in arr[fix]]
    return arr


def prepare_zones(
    zones: gpd.GeoDataFrame | gpd.GeoSeries,
    /,
    *,
    crs: CRS | str | None = None,
    id_col: str | None = None,
) -> gpd.GeoSeries:
    """Return the zones as a polygonal GeoSeries in ``crs``, indexed by unique zone ids.

    Parameters
    ----------
    zones
        Polygons or multipolygons with a CRS. Empty geometries are kept (they are outside
        every raster).
    crs
        Target CRS; the zones are reprojected when theirs differs.
    id_col
        Column holding the zone ids; the index is used when ``None``.

    Returns
    -------
    geopandas.GeoSeries
        A new series (the input is not modified) with the zone ids as index.

    Raises
    ------
    ZoneError
        No CRS on the zones, a non-polygonal geometry, missing or duplicated ids.

    Warns
    -----
    GeometryRepairWarning
        When invalid geometries were repaired; the message lists their ids.
    """
    import geopandas as gpd

    if isinstance(zones, gpd.GeoDataFrame):
        if id_col is not None:
            if id_col not in zones.columns:
                raise ZoneError(
                    f"id_col={id_col!r} is not a column of the zones; columns are "
                    f"{list(zones.columns)}."
                )
            index = pd.Index(zones[id_col].to_numpy(), name=id_col)
        else:
            index = zones.index
        geoms = zones.geometry
    elif isinstance(zones, gpd.GeoSeries):
        if id_col is not None:
            raise ZoneError("id_col is only meaningful for a GeoDataFrame; got a GeoSeries.")
        index, geoms = zones.index, zones
    else:
        raise ZoneError(
            f"zones must be a GeoDataFrame or GeoSeries of polygons, not {type(zones).__name__}."
        )
    if geoms.crs is None:
        raise ZoneError(
            "The zones have no CRS; set it with zones.set_crs(...) before zonal statistics."
        )
    if index.hasnans:
        raise ZoneError(f"Zone ids must not be missing; {int(index.isna().sum())} are.")
    if not index.is_unique:
        dup = index[index.duplicated()].unique()[:10]
        raise ZoneError(f"Zone ids must be unique; duplicated: {list(dup)}.")

    arr = np.asarray(geoms.values, dtype=object)
    missing = pd.isna(arr)
    if missing.any():
        arr = arr.copy()
        arr[missing] = shapely.Polygon()
    types = shapely.get_type_id(arr)
    empty = shapely.is_empty(arr)
    bad_type = ~np.isin(types, (3, 6, 7)) & ~empty  # Polygon, MultiPolygon, collection
    if bad_type.any():
        raise ZoneError(
            "Zones must be polygons or multipolygons; not so for zone(s) "
            f"{_names(index, bad_type)} ({sorted(set(shapely.get_type_id(arr[bad_type])))} "
            "are shapely type ids). Buffer points or lines first if you meant areas."
        )
    arr = repair_polygons(arr, index, what="zone geometry", stacklevel=4)
    out = gpd.GeoSeries(arr, index=index, crs=geoms.crs)
    if crs is not None and not out.crs.equals(crs):
        out = out.to_crs(crs)
    return out


def to_pixel_space(geoms: np.ndarray, affine) -> np.ndarray:
    """Geometries in the pixel space of an axis-aligned affine: x = column, y = row."""
    if affine.b != 0 or affine.d != 0:
        raise GridError(
            f"Zonal statistics need an axis-aligned grid; this one is rotated or sheared "
            f"({affine!r}). Reproject the raster to a north-up grid first "
            "(data.odc.reproject(...))."
        )
    a, c, e, f = affine.a, affine.c, affine.e, affine.f

    def _tf(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(((xy[:, 0] - c) / a, (xy[:, 1] - f) / e))

    return shapely.transform(geoms, _tf)
