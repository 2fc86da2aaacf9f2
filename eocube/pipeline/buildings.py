"""Buildings from what can be observed: open-map footprints merged with footprints vectorised
from the VHR building model; floors from ``building:levels`` where mapped, else from the height
model (S1 per orbit direction + S2), else from the mapped neighbours; structure inferred from
height and function. Never from the truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["DEFAULT_FLOORS", "estimate_floors", "floors_from_height", "height_inputs",
           "infer_structure", "merge_footprints", "predict_height"]

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


def height_inputs(s1_items: Sequence[Mapping[str, Any]], composite: xr.Dataset, /, *,
                  chunks: Mapping[str, int] | None = None) -> xr.Dataset:
    """The height model's input on the composite's grid, lazily: the yearly median VV and VH
    of each orbit direction apart (``vv_asc``, ``vh_asc``, ``vv_desc``, ``vh_desc``, from the
    items' ``sat:orbit_state``, masked with ``mask_s1``) and the S2 bands of ``composite``, a
    one-year composite whose ``time`` gives the year.

    Raises
    ------
    ConfigError
        If the year has no item of one orbit direction.
    """
    import xarray as xr

    from eocube.cube import load
    from eocube.cube.masks import mask_s1
    from eocube.errors import ConfigError
    from eocube.models.height import HEIGHT_BANDS, ORBIT_SUFFIX

    year = pd.Timestamp(np.asarray(composite["time"].values).ravel()[0]).year
    one = composite.drop_vars("time", errors="ignore")
    if "time" in one.dims:
        one = one.isel(time=0)
    gb = one.odc.geobox
    ch = dict(chunks or {"x": 1024, "y": 1024})
    parts = []
    for orbit, suffix in ORBIT_SUFFIX.items():
        group = [it for it in s1_items
                 if it["properties"].get("sat:orbit_state") == orbit
                 and pd.Timestamp(it["properties"].get("datetime")
                                  or it["properties"].get("start_datetime")).year == year]
        if not group:
            raise ConfigError(f"buildings.height_model: no Sentinel-1 {orbit} item in {year}; "
                              "the height model needs both orbit directions (set "
                              "buildings.height_model: null to use the neighbour fallback)")
        cube = mask_s1(load(group, bands=["vv", "vh"], geobox=gb, chunks={**ch, "time": -1}))
        med = cube[["vv", "vh"]].median("time", skipna=True)
        parts.append(med.rename({"vv": f"vv_{suffix}", "vh": f"vh_{suffix}"}))
    s2 = one[[b for b in HEIGHT_BANDS[4:]]]
    out = xr.merge([*parts, s2], join="override", compat="override")
    return out[list(HEIGHT_BANDS)].astype("float32")


def predict_height(s1_items: Sequence[Mapping[str, Any]], composite: xr.Dataset,
                   weights: str, /, **predict_kw: Any) -> xr.DataArray:
    """Building height (m) per pixel from the height model ``weights`` on
    :func:`height_inputs`, lazily (``predict_kw`` go to :func:`eocube.infer.predict`)."""
    from eocube.infer import predict

    h = predict(height_inputs(s1_items, composite), weights, **predict_kw)
    return h.squeeze("time", drop=True) if "time" in h.dims else h


def floors_from_height(buildings: gpd.GeoDataFrame, levels: pd.Series,
                       height: xr.DataArray | None, /, *, storey_height_m: float = 3.0,
                       **neighbours: Any) -> pd.DataFrame:
    """Floors of each building: its mapped ``levels`` where given (``"osm"``); else the median
    of the model's ``height`` (m, a raster) inside its footprint over ``storey_height_m``
    (``"height_model"``); else :func:`estimate_floors`'s fallback (``"neighbours"``,
    ``"city_median"``, ``"default"``; ``neighbours`` go to it).

    Returns
    -------
    pandas.DataFrame
        ``floors`` (float ≥ 1), ``floors_source`` and ``height_model_m`` (the model's median
        height in the footprint, NaN without one), indexed as ``buildings``.

    Examples
    --------
    >>> import geopandas as gpd, numpy as np, pandas as pd, shapely, xarray as xr
    >>> from odc.geo.geobox import GeoBox
    >>> from odc.geo.xr import xr_coords
    >>> gb = GeoBox.from_bbox((0, 0, 40, 40), crs=32650, resolution=10)
    >>> h = xr.DataArray(np.full((4, 4), 12.0), dims=("y", "x"),
    ...                  coords=xr_coords(gb, crs_coord_name="spatial_ref"))
    >>> b = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 20, 20), shapely.box(20, 20, 40, 40)],
    ...                      crs=32650)
    >>> floors_from_height(b, pd.Series([2.0, None]), h)["floors_source"].tolist()
    ['osm', 'height_model']
    """
    from eocube.models.height import footprint_median

    fl = estimate_floors(buildings, levels, **neighbours)
    model_m = (footprint_median(height, buildings) if height is not None
               else np.full(len(buildings), np.nan))
    use = (fl["floors_source"] != "osm").to_numpy() & np.isfinite(model_m)
    floors = fl["floors"].to_numpy(np.float64).copy()
    floors[use] = np.maximum(np.round(model_m[use] / storey_height_m), 1.0)
    source = fl["floors_source"].to_numpy(object).copy()
    source[use] = "height_model"
    return pd.DataFrame({"floors": floors, "floors_source": source, "height_model_m": model_m},
                        index=buildings.index)
