"""Open-map layers as the estimates need them: OpenStreetMap tags turned into eocube's POI
types, land-use classes and building hints. A user's own OSM extract (GeoParquet, GeoPackage,
GeoJSON) goes through the same functions as the synthetic city's ``vectors/osm_*`` layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eocube.errors import ConfigError

if TYPE_CHECKING:
    import geopandas as gpd

    from eocube.pipeline.config import RunConfig

__all__ = ["LANDUSE_CLASS", "OSM_POI_TYPE", "building_hints", "config_layer", "osm_landuse",
           "osm_poi_types"]

#: (OSM key, value) → eocube POI type (the keys of ``eocube.estimates`` POI_FUNCTION);
#: ``(key, "*")`` catches every other value of the key.
OSM_POI_TYPE: dict[tuple[str, str], str] = {
    ("building", "apartments"): "residential_complex",
    ("building", "residential"): "residential_complex",
    ("building", "dormitory"): "residential_complex",
    ("shop", "convenience"): "convenience_store", ("shop", "supermarket"): "convenience_store",
    ("shop", "mall"): "shopping_mall", ("shop", "department_store"): "shopping_mall",
    ("shop", "*"): "shop",
    ("amenity", "restaurant"): "restaurant", ("amenity", "cafe"): "restaurant",
    ("amenity", "fast_food"): "restaurant", ("amenity", "bar"): "restaurant",
    ("amenity", "bank"): "bank", ("amenity", "kindergarten"): "kindergarten",
    ("amenity", "school"): "school", ("amenity", "college"): "school",
    ("amenity", "university"): "school", ("amenity", "hospital"): "hospital",
    ("amenity", "clinic"): "hospital", ("amenity", "library"): "library",
    ("amenity", "townhall"): "government", ("amenity", "courthouse"): "government",
    ("amenity", "police"): "government",
    ("office", "government"): "government", ("office", "*"): "office",
    ("tourism", "hotel"): "hotel", ("tourism", "hostel"): "hotel",
    ("tourism", "guest_house"): "hotel", ("tourism", "motel"): "hotel",
    ("leisure", "park"): "park", ("leisure", "garden"): "park",
    ("man_made", "works"): "factory",
    ("industrial", "warehouse"): "warehouse", ("industrial", "logistics"): "logistics",
    ("industrial", "*"): "factory",
}
#: OSM ``landuse`` → eocube land-use class (the keys of LAND_USE_FUNCTION)
LANDUSE_CLASS = {"residential": "residential", "commercial": "commercial",
                 "retail": "commercial", "industrial": "industrial",
                 "institutional": "public_service", "education": "public_service",
                 "religious": "public_service", "military": "public_service",
                 "recreation_ground": "green", "park": "green", "grass": "green",
                 "forest": "green", "meadow": "green", "basin": "water", "reservoir": "water"}
#: OSM ``building`` value → a function hint (None: says nothing)
BUILDING_FUNCTION = {"residential": "residential", "apartments": "residential",
                     "house": "residential", "detached": "residential",
                     "commercial": "commercial", "retail": "commercial", "office": "commercial",
                     "industrial": "industrial", "warehouse": "industrial"}

#: the archive's layer of each configuration key
ARCHIVE_LAYER = {"roads": "osm_roads", "pois": "osm_pois", "buildings": "osm_buildings",
                 "land_use": "osm_landuse", "census": "census"}


def config_layer(cfg: RunConfig, key: str, /, *, crs: object = None) -> gpd.GeoDataFrame:
    """The vector layer of configuration key ``key`` (``vectors.<key>`` if set, else the
    synthetic archive's open-map layer), in ``crs`` when given."""
    import geopandas as gpd

    ref = cfg.vectors.get(key)
    if ref is None:
        if cfg.catalog not in ("synthetic",) and not Path(cfg.catalog).is_dir():
            raise ConfigError(f"vectors.{key}: give a path to the {key} layer (GeoParquet, "
                              "GeoPackage or GeoJSON); this catalog publishes none")
        root = cfg.archive_path() if cfg.catalog == "synthetic" else Path(cfg.catalog)
        path = root / "vectors" / f"{ARCHIVE_LAYER[key]}.parquet"
    else:
        path = Path(ref)
    if not path.exists():
        raise ConfigError(f"vectors.{key}: {str(path)!r} does not exist")
    g = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    if g.crs is None:
        raise ConfigError(f"vectors.{key}: {str(path)!r} has no CRS; set one (EPSG:4326 for OSM)")
    return g.to_crs(crs) if crs is not None else g


def osm_poi_types(pois: gpd.GeoDataFrame, /) -> gpd.GeoDataFrame:
    """POIs with an eocube ``type`` from their OSM tags (an exact key=value first, then a key's
    catch-all); POIs whose tags map to no type are dropped.

    Examples
    --------
    >>> import geopandas as gpd, pandas as pd, shapely
    >>> p = gpd.GeoDataFrame({"shop": pd.array([None, "mall", "bakery"], dtype="string"),
    ...                       "amenity": pd.array(["school", None, None], dtype="string")},
    ...                      geometry=[shapely.Point(0, 0)] * 3, crs=32650)
    >>> osm_poi_types(p)["type"].tolist()
    ['school', 'shopping_mall', 'shop']
    """
    types = pd.Series(None, index=pois.index, dtype="object")
    # exact values first, then the key's catch-all; nullable columns compare to <NA>, so a
    # match is only where the comparison is True
    ordered = sorted(OSM_POI_TYPE.items(), key=lambda kv: kv[0][1] == "*")
    for (key, value), t in ordered:
        if key not in pois.columns:
            continue
        col = pois[key]
        hit = col.notna() if value == "*" else col.eq(value)
        hit = hit.fillna(False).astype(bool) & types.isna()
        types[hit.to_numpy()] = t
    out = pois.assign(type=types)
    return out[out["type"].notna()].reset_index(drop=True)


def osm_landuse(taz: gpd.GeoDataFrame, landuse: gpd.GeoDataFrame, /, *,
                id_col: str = "taz_id") -> pd.Series:
    """The land-use class of each TAZ: the class covering most of it among the mapped
    ``landuse`` polygons; <NA> where none is mapped."""
    import geopandas as gpd

    lu = landuse.assign(cls=landuse["landuse"].map(LANDUSE_CLASS)).dropna(subset=["cls"])
    if lu.empty:
        return pd.Series(pd.NA, index=taz[id_col], dtype="object", name="land_use")
    inter = gpd.overlay(taz[[id_col, "geometry"]], lu[["cls", "geometry"]].to_crs(taz.crs),
                        how="intersection", keep_geom_type=True)
    inter["a"] = inter.area
    best = inter.groupby([id_col, "cls"])["a"].sum().reset_index().sort_values(
        "a", ascending=False).drop_duplicates(id_col).set_index(id_col)["cls"]
    return best.reindex(taz[id_col]).rename("land_use")


def building_hints(buildings: gpd.GeoDataFrame, /) -> pd.DataFrame:
    """``levels`` (from ``building:levels``, numeric where given) and ``function_hint``
    (from ``building``) of OSM footprints."""
    lv = pd.to_numeric(buildings.get("building:levels", pd.Series(np.nan,
                                                                  index=buildings.index)),
                       errors="coerce")
    lv = lv.where((lv >= 1) & (lv <= 200))
    tag = buildings.get("building", pd.Series(None, index=buildings.index, dtype="object"))
    return pd.DataFrame({"levels": lv, "function_hint": tag.map(BUILDING_FUNCTION)},
                        index=buildings.index)
