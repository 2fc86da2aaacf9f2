"""What a real city publishes about itself: open-map layers shaped like OpenStreetMap extracts
and a census table, derived from the hidden ``World`` with the gaps and errors of the real ones.

The archive writes these under ``vectors/``; the ``World`` they come from goes under ``truth/``.
Nothing here carries occupants, floors (beyond ``building:levels`` on a minority), height,
structure, material stock, construction dates or the simulator's ids, so a method that reads
only these layers cannot read the answer back. All randomness comes from one generator per
layer seeded from the city seed, so the same seed gives the same layers.
"""

from __future__ import annotations

import dataclasses

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from eocube.synth.world import World

#: The archive's open-map layers and auxiliary tables, by layer name (files under ``vectors/``).
OPEN_LAYERS = ("osm_roads", "osm_pois", "osm_buildings", "osm_landuse", "census")

#: The class a mapper may give a road instead of its true ``highway`` class (classification of
#: neighbouring classes is a judgement call in OSM), and how often that happens.
HIGHWAY_NEIGHBOUR = {"primary": "secondary", "secondary": "primary", "tertiary": "residential",
                     "residential": "tertiary", "service": "service"}
HIGHWAY_CONFUSED = 0.1
#: Lanes of each ``highway`` class (where tagged).
LANES = {"primary": 4, "secondary": 4, "tertiary": 2, "residential": 2, "service": 1}
#: Street-name suffix of each road kind.
_NAME_SUFFIX = {"arterial": "Avenue", "local": "Street", "service": "Close"}

#: OSM key and value of each simulated POI type.
POI_TAGS: dict[str, tuple[str, str]] = {
    "residential_complex": ("building", "apartments"), "convenience_store": ("shop", "convenience"),
    "restaurant": ("amenity", "restaurant"), "kindergarten": ("amenity", "kindergarten"),
    "shop": ("shop", "general"), "bank": ("amenity", "bank"), "office": ("office", "company"),
    "hotel": ("tourism", "hotel"), "shopping_mall": ("shop", "mall"),
    "factory": ("man_made", "works"), "warehouse": ("industrial", "warehouse"),
    "logistics": ("industrial", "logistics"), "school": ("amenity", "school"),
    "hospital": ("amenity", "hospital"), "government": ("office", "government"),
    "library": ("amenity", "library"), "park": ("leisure", "park"),
}
POI_KEYS = ("amenity", "shop", "office", "tourism", "leisure", "man_made", "industrial",
            "building")

#: OSM ``building`` values a mapper gives each true function: (value, probability) choices.
BUILDING_TAG = {
    "residential": (("residential", 0.6), ("yes", 0.4)),
    "mixed": (("residential", 0.3), ("commercial", 0.3), ("yes", 0.4)),
    "commercial": (("commercial", 0.6), ("yes", 0.4)),
    "industrial": (("industrial", 0.5), ("yes", 0.5)),
    "public": (("yes", 1.0),),
}

#: OSM ``landuse`` values of the true land uses.
LANDUSE_TAG = {"residential": "residential", "commercial": "commercial",
               "industrial": "industrial", "public_service": "institutional",
               "green": "recreation_ground", "water": "basin"}

_OSM_ID0 = {"osm_roads": 10_000_000, "osm_pois": 20_000_000, "osm_buildings": 30_000_000,
            "osm_landuse": 40_000_000}


@dataclasses.dataclass(frozen=True)
class OpenMapRates:
    """How complete and how precise the open-map layers are.

    Attributes
    ----------
    buildings_mapped
        Range the city's share of mapped buildings is drawn from (one draw per city).
    new_buildings_factor
        Mapped share of buildings completed during the series, relative to the others
        (mappers lag behind construction).
    levels_share
        Share of mapped buildings with ``building:levels``.
    levels_off_by_one
        Share of those levels that are one storey off.
    shift_m, vertex_m, rotation_deg
        Imagery misregistration per zone (standard deviation, m), tracing error per vertex
        (m) and per outline (degrees).
    pois_mapped, poi_shift_m
        Share of POIs mapped, and their position error (standard deviation, m). The world's
        POI table already lacks the shops of mixed buildings nobody listed
        (``eocube.synth.world.MIXED_SHOP_LISTED``), so the open map holds about
        ``pois_mapped × MIXED_SHOP_LISTED`` of those shops.
    landuse_mapped
        Share of zones with a ``landuse`` polygon.
    road_width_tagged
        Share of roads (arterial, other) with a ``width`` tag.
    """

    buildings_mapped: tuple[float, float] = (0.70, 0.85)
    new_buildings_factor: float = 0.5
    levels_share: float = 0.30
    levels_off_by_one: float = 0.15
    shift_m: float = 2.0
    vertex_m: float = 0.5
    rotation_deg: float = 1.5
    pois_mapped: float = 0.85
    poi_shift_m: float = 1.5
    landuse_mapped: float = 0.60
    road_width_tagged: tuple[float, float] = (0.6, 0.2)


def open_map_layers(world: World, /, *, rates: OpenMapRates | None = None
                    ) -> dict[str, gpd.GeoDataFrame]:
    """The open-map layers and census table a real city would publish, from ``world``.

    Parameters
    ----------
    world
        The hidden city.
    rates
        Completeness and precision of the layers (defaults: ``OpenMapRates()``).

    Returns
    -------
    dict of str to geopandas.GeoDataFrame
        ``osm_roads`` (``highway``, ``name``, ``lanes``, ``width`` where tagged),
        ``osm_pois`` (OSM keys such as ``amenity``, ``shop``, ``office``), ``osm_buildings``
        (part of the footprints, shifted and traced imprecisely, with ``building`` and
        ``building:levels`` on a minority), ``osm_landuse`` (``landuse`` polygons where
        mapped) and ``census`` (population per community on the first and last day of the
        series, with the community polygons). All in the city's CRS.

    Examples
    --------
    >>> from eocube.synth import make_world
    >>> w = make_world("tiny", seed=0)
    >>> layers = open_map_layers(w)
    >>> 0.6 < len(layers["osm_buildings"]) / len(w.buildings) < 0.9
    True
    >>> "occupants" in layers["osm_buildings"]
    False
    """
    r = rates or OpenMapRates()
    ss = np.random.SeedSequence([world.seed, 0x05A1])
    g_roads, g_pois, g_bld, g_lu = (np.random.default_rng(s) for s in ss.spawn(4))
    return {"osm_roads": _roads(world, r, g_roads), "osm_pois": _pois(world, r, g_pois),
            "osm_buildings": _buildings(world, r, g_bld), "osm_landuse": _landuse(world, r, g_lu),
            "census": census_table(world)}


def census_table(world: World, /) -> gpd.GeoDataFrame:
    """Population per community on the first and the last day of the series (``pop_start``,
    ``pop_end``, ``year_start``, ``year_end``) with the community polygons."""
    return world.census[["community_id", "pop_start", "pop_end", "year_start", "year_end",
                         "geometry"]].copy()


def _choose(rng: np.random.Generator, keys: np.ndarray,
            table: dict[str, tuple[tuple[str, float], ...]]) -> np.ndarray:
    """For each key, a value drawn from ``table[key]`` (value, probability) choices."""
    out = np.empty(keys.size, dtype=object)
    u = rng.uniform(size=keys.size)
    for k, choices in table.items():
        m = keys == k
        edges = np.cumsum([p for _, p in choices])
        idx = np.minimum((u[m, None] >= edges).sum(axis=1), len(choices) - 1)
        out[m] = np.array([v for v, _ in choices], dtype=object)[idx]
    return out


def _osm_ids(layer: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """OSM-like ids in an order that has nothing to do with the simulator's."""
    return (_OSM_ID0[layer] + rng.permutation(n) * 7 + rng.integers(0, 7, n)).astype("int64")


def _roads(world: World, r: OpenMapRates, rng: np.random.Generator) -> gpd.GeoDataFrame:
    roads = world.roads
    n = len(roads)
    kind = roads["kind"].to_numpy()
    arterial = kind == "arterial"
    tagged = rng.uniform(size=n) < np.where(arterial, *r.road_width_tagged)
    width = np.where(tagged, np.round(roads["width"].to_numpy() + rng.normal(0, 1.0, n)),
                     np.nan)
    true_class = roads["highway"].to_numpy().astype(str)
    confused = rng.uniform(size=n) < HIGHWAY_CONFUSED
    highway = np.where(confused, [HIGHWAY_NEIGHBOUR[h] for h in true_class], true_class)
    lanes = pd.array([LANES[h] for h in highway], dtype="Int64")
    lanes[rng.uniform(size=n) < 0.5] = pd.NA
    named = rng.uniform(size=n) < 0.8
    names = [f"{_NAME_SUFFIX[k]} {i}" if ok else None
             for i, (k, ok) in enumerate(zip(kind, named, strict=True), start=1)]
    out = gpd.GeoDataFrame(
        {"osm_id": _osm_ids("osm_roads", n, rng), "highway": highway.astype(str),
         "name": pd.array(names, dtype="string"), "lanes": lanes, "width": width},
        geometry=roads.geometry.to_numpy(), crs=roads.crs)
    return out.sort_values("osm_id").reset_index(drop=True)


def _pois(world: World, r: OpenMapRates, rng: np.random.Generator) -> gpd.GeoDataFrame:
    pois = world.pois
    n = len(pois)
    keep = rng.uniform(size=n) < r.pois_mapped
    ids = _osm_ids("osm_pois", n, rng)
    x = shapely.get_x(pois.geometry.values) + rng.normal(0, r.poi_shift_m, n)
    y = shapely.get_y(pois.geometry.values) + rng.normal(0, r.poi_shift_m, n)
    types = pois["type"].to_numpy()
    cols: dict[str, pd.arrays.StringArray] = {}
    for key in POI_KEYS:
        vals = [POI_TAGS[t][1] if POI_TAGS[t][0] == key else None for t in types]
        cols[key] = pd.array(vals, dtype="string")[keep]
    out = gpd.GeoDataFrame({"osm_id": ids[keep], **cols},
                           geometry=shapely.points(x[keep], y[keep]), crs=pois.crs)
    return out.sort_values("osm_id").reset_index(drop=True)


def _buildings(world: World, r: OpenMapRates, rng: np.random.Generator) -> gpd.GeoDataFrame:
    b = world.buildings
    n = len(b)
    share = rng.uniform(*r.buildings_mapped)
    p = np.where(b["built_in_series"].to_numpy(), share * r.new_buildings_factor, share)
    keep = rng.uniform(size=n) < p
    if "replaces_id" in b:  # a rebuilt lot is mapped once: the rebuild, where it is mapped
        keep &= ~np.isin(b["building_id"].to_numpy(), b["replaces_id"].to_numpy()[keep])
    # misregistration of the imagery a zone was traced on, then per outline and vertex errors
    taz_ids = world.taz["taz_id"].to_numpy()
    shift = rng.normal(0, r.shift_m, (taz_ids.max() + 1, 2))
    dxy = shift[b["taz_id"].to_numpy()]
    angle = rng.normal(0, r.rotation_deg, n)
    # the units of a terrace are traced together, as one row split at its party walls: one
    # turn per zone for them, so a unit's outline does not swing onto its neighbour's
    zone_angle = rng.normal(0, r.rotation_deg, taz_ids.max() + 1)
    if "shape" in b:
        terrace = (b["shape"] == "terrace").to_numpy()
        angle[terrace] = zone_angle[b["taz_id"].to_numpy()[terrace]]
    geoms = []
    for g, (dx, dy), a in zip(b.geometry.values, dxy, angle, strict=True):
        c = shapely.centroid(g)
        t = np.deg2rad(a)
        turn = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        rings = []
        for ring in (g.exterior, *g.interiors):  # a courtyard's hole is traced too
            rel = np.asarray(ring.coords)[:-1] - np.array([c.x, c.y])
            rings.append(rel @ turn + np.array([c.x + dx, c.y + dy])
                         + rng.normal(0, r.vertex_m, rel.shape))
        traced = shapely.Polygon(rings[0], rings[1:])
        if not traced.is_valid:  # a narrow wing can fold under tracing noise
            parts = shapely.get_parts(shapely.make_valid(traced))
            parts = parts[shapely.get_type_id(parts) == 3]
            traced = parts[np.argmax(shapely.area(parts))]
        geoms.append(traced)
    func = b["function"].to_numpy()
    tag = _choose(rng, func, BUILDING_TAG)
    has_levels = rng.uniform(size=n) < r.levels_share
    off = np.where(rng.uniform(size=n) < r.levels_off_by_one, rng.choice([-1, 1], n), 0)
    levels = pd.array(np.maximum(b["floors"].to_numpy() + off, 1), dtype="Int64")
    levels[~has_levels] = pd.NA
    out = gpd.GeoDataFrame(
        {"osm_id": _osm_ids("osm_buildings", n, rng)[keep],
         "building": np.asarray(tag[keep], dtype=str), "building:levels": levels[keep]},
        geometry=np.asarray(geoms, dtype=object)[keep], crs=b.crs)
    return out.sort_values("osm_id").reset_index(drop=True)


def _landuse(world: World, r: OpenMapRates, rng: np.random.Generator) -> gpd.GeoDataFrame:
    taz = world.taz
    n = len(taz)
    keep = rng.uniform(size=n) < r.landuse_mapped
    # mappers draw land use a little inside the streets and with fewer vertices
    geoms = shapely.simplify(shapely.buffer(taz.geometry.values, -2.0, join_style="mitre"), 2.0)
    out = gpd.GeoDataFrame(
        {"osm_id": _osm_ids("osm_landuse", n, rng)[keep],
         "landuse": taz["land_use"].map(LANDUSE_TAG).to_numpy()[keep].astype(str)},
        geometry=geoms[keep], crs=taz.crs)
    return out.sort_values("osm_id").reset_index(drop=True)
