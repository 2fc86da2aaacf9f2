"""Buildings from what can be observed: open-map footprints merged with footprints vectorised
from the VHR building model, floors from ``building:levels`` where mapped and from the mapped
neighbours elsewhere, structure inferred from height and function. Never from the truth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["DEFAULT_FLOORS", "estimate_floors", "infer_structure", "merge_footprints"]

#: floors of a building when no mapped building has levels (a low-rise default)
DEFAULT_FLOORS = 2.0


def merge_footprints(mapped: gpd.GeoDataFrame, derived: gpd.GeoDataFrame | None, /, *,
                     min_area: float = 20.0, overlap: float = 0.2) -> gpd.GeoDataFrame:
    """Open-map footprints plus the derived footprints that no mapped one covers.

    A derived footprint is kept when less than ``overlap`` of its area lies under mapped
    footprints (the mapped outline wins where both exist: it carries tags). Footprints smaller
    than ``min_area`` m² are dropped. Returns ``building_id`` (1…n), ``source``
    (``"osm"`` / ``"vhr"``) and the mapped layer's columns.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> m = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 10, 10)], crs=32650)
    >>> d = gpd.GeoDataFrame(geometry=[shapely.box(1, 1, 9, 9), shapely.box(20, 0, 30, 10)],
    ...                      crs=32650)
    >>> merge_footprints(m, d)["source"].tolist()
    ['osm', 'vhr']
    """
    import geopandas as gpd
    import shapely

    m = mapped.assign(source="osm")
    parts = [m]
    if derived is not None and len(derived):
        d = derived.to_crs(mapped.crs)
        tree = shapely.STRtree(np.asarray(m.geometry.values, dtype=object))
        dg = np.asarray(d.geometry.values, dtype=object)
        covered = np.zeros(len(d))
        i_d, i_m = tree.query(dg, predicate="intersects")
        if len(i_d):
            a = shapely.area(shapely.intersection(dg[i_d], np.asarray(m.geometry.values,
                                                                       dtype=object)[i_m]))
            np.add.at(covered, i_d, a)
        keep = covered < overlap * shapely.area(dg)
        parts.append(gpd.GeoDataFrame({"source": "vhr"}, geometry=list(dg[keep]),
                                       crs=mapped.crs, index=range(int(keep.sum()))))
    out = pd.concat(parts, ignore_index=True)
    out = gpd.GeoDataFrame(out, geometry="geometry", crs=mapped.crs)
    out = out[out.geometry.area >= min_area].reset_index(drop=True)
    out.insert(0, "building_id", np.arange(1, len(out) + 1))
    return out


def estimate_floors(buildings: gpd.GeoDataFrame, levels: pd.Series, /, *, k: int = 8,
                    max_distance: float = 500.0) -> pd.DataFrame:
    """Floors of each building: its mapped ``levels`` where given, else the median levels of
    the ``k`` nearest mapped buildings within ``max_distance`` m, else the median of all
    mapped levels, else :data:`DEFAULT_FLOORS`.

    Returns
    -------
    pandas.DataFrame
        ``floors`` (float ≥ 1) and ``floors_source`` (``"osm"``, ``"neighbours"``,
        ``"city_median"`` or ``"default"``), indexed as ``buildings``.

    Examples
    --------
    >>> import geopandas as gpd, shapely, pandas as pd
    >>> b = gpd.GeoDataFrame(geometry=[shapely.box(i * 20, 0, i * 20 + 10, 10)
    ...                                for i in range(3)], crs=32650)
    >>> estimate_floors(b, pd.Series([4.0, None, 6.0]), k=2)["floors"].tolist()
    [4.0, 5.0, 6.0]
    """
    from scipy.spatial import cKDTree

    lv = pd.to_numeric(pd.Series(np.asarray(levels), index=buildings.index), errors="coerce")
    known = lv.notna().to_numpy()
    floors = lv.to_numpy(np.float64).copy()
    source = np.where(known, "osm", "default").astype(object)
    if known.any():
        c = buildings.geometry.centroid
        xy = np.column_stack([c.x.to_numpy(), c.y.to_numpy()])
        tree = cKDTree(xy[known])
        kk = min(k, int(known.sum()))
        dist, idx = tree.query(xy[~known], k=kk)
        dist, idx = dist.reshape(len(dist), -1), idx.reshape(len(idx), -1)
        vals = floors[known][idx]
        vals = np.where(dist <= max_distance, vals, np.nan)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(vals, axis=1)
        near = np.isfinite(med)
        fill = np.where(near, med, np.median(floors[known]))
        floors[~known] = fill
        source[~known] = np.where(near, "neighbours", "city_median")
    else:
        floors[:] = DEFAULT_FLOORS
    return pd.DataFrame({"floors": np.maximum(np.round(floors), 1.0), "floors_source": source},
                        index=buildings.index)


def infer_structure(floors: np.ndarray | pd.Series, function_hint: pd.Series, /) -> np.ndarray:
    """Structure type from height and function, by a published-style rule of thumb:
    industrial buildings are steel frames; seven floors and more need reinforced concrete;
    three to six floors are brick-concrete; one or two floors brick-wood.

    Examples
    --------
    >>> import pandas as pd
    >>> infer_structure([1, 4, 9, 2], pd.Series([None, None, None, "industrial"])).tolist()
    ['brick_wood', 'brick_concrete', 'reinforced_concrete', 'steel']
    """
    f = np.asarray(floors, dtype=np.float64)
    hint = pd.Series(function_hint).astype("object").to_numpy()
    return np.where(hint == "industrial", "steel",
                    np.where(f >= 7, "reinforced_concrete",
                             np.where(f >= 3, "brick_concrete", "brick_wood"))).astype(object)
