"""The ground truth of the synthetic city: roads, TAZ, communities, land use, buildings, trees,
POIs.

Everything here is vector truth and tables; the sensors that observe it live in
``eocube.synth.sensors``. All randomness comes from one ``numpy.random.Generator`` per layer,
seeded from the city seed, so a seed fixes the city.

Urban form (world v2), and why the numbers are what they are
------------------------------------------------------------
*Roads.* Two families of roads cross the city, roughly north–south and east–west, one line per
``block_m``. Every line is a smooth curve: its offset from a straight line is the sum of two
sinusoids with random phases, wavelengths of a few hundred metres and amplitudes that are a
fraction of the block size. That is how arterials follow old field boundaries, rivers and
contours, and it keeps two lines of one family from ever crossing (the largest offsets plus the
jitter stay under half a block), so the faces of the network stay well formed. Every third line
is an arterial (primary or secondary, 20–36 m between building lines); the others are local
streets (tertiary 14–18 m, residential 9–13 m). Inside a community, a share of local street
segments between two crossings is missing (superblocks, T-junctions), so blocks differ in size
and shape. Cul-de-sacs (service roads, 5–7 m) reach from a street into some large blocks and
end inside them; they never split a block, so TAZ stay the faces of the network.

*Buildings.* Each TAZ is cut into lots on a grid turned to the block's orientation (its minimum
rotated rectangle); lot size varies per TAZ around a size per land use. A lot holds a rectangle,
an L, a U, a courtyard block (a polygon with a hole) or a terrace (a row of attached units that
share walls, each its own building); the shape mix follows function (courtyard perimeter blocks
and U shapes in central mixed and commercial use, terraces for houses, big rectangles for
industry). A share of buildings is turned at random (free-standing public buildings, sheds),
shrunk until it fits its lot. Footprints are ``_SETBACK_M`` back from the road surface.

*Trees.* Street trees stand in the verge 2.5 m from the carriageway every 10–16 m (where not
blocked), park trees fill green TAZ, and yard trees stand close to a wall; crowns of 2–6 m
radius reach over road and roof, so sensors see canopy where a footprint is.

*POIs.* Shops on the ground floor of mixed buildings are counted in ``shop_units``; only
``MIXED_SHOP_LISTED`` of them reach the POI table (small shops are the least mapped features of
open maps), so a POI-based typing of buildings misses part of the mixed use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import cached_property

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from odc.geo.geobox import GeoBox

from eocube.synth.cityspec import CITY_CRS, CitySpec, resolve_spec
from eocube.synth.construction import construction_schedule
from eocube.synth.households import households
from eocube.synth.materials import material_stock

LAND_USES = ("residential", "commercial", "industrial", "public_service", "green", "water")
FUNCTIONS = ("residential", "mixed", "commercial", "industrial", "public")
STRUCTURES = ("reinforced_concrete", "brick_concrete", "brick_wood", "steel")
#: Footprint shapes of the buildings.
SHAPES = ("rectangle", "L", "U", "courtyard", "terrace")
#: Storey height in metres by building function.
STOREY_HEIGHT = {"residential": 3.0, "mixed": 3.3, "commercial": 4.0, "industrial": 6.0,
                 "public": 4.0}

#: POI type mix (type → weight) and mean POIs per building, by building function. Mixed
#: buildings' shops are counted apart (``MIXED_SHOPS``): this row holds their other POIs.
POI_MIX: dict[str, tuple[float, dict[str, float]]] = {
    "residential": (0.35, {"residential_complex": 6, "convenience_store": 2, "restaurant": 1,
                           "kindergarten": 1}),
    "mixed": (0.6, {"residential_complex": 3, "office": 1}),
    "commercial": (3.0, {"office": 4, "shop": 3, "restaurant": 2, "hotel": 1, "bank": 1,
                         "shopping_mall": 1}),
    "industrial": (0.6, {"factory": 5, "warehouse": 3, "logistics": 2}),
    "public": (1.2, {"school": 3, "hospital": 1, "government": 2, "library": 1}),
}
#: Ground-floor shop types of mixed buildings (type → weight).
MIXED_SHOPS = {"shop": 3, "restaurant": 3, "convenience_store": 1, "bank": 1}
#: Share of the shop units of mixed buildings that appear as a POI at all: small ground-floor
#: shops are among the least complete features of volunteered maps (the open-map layer then
#: drops a further share of every POI, ``OpenMapRates.pois_mapped``).
MIXED_SHOP_LISTED = 0.55
#: Ground-floor frontage per shop unit (m² of footprint per unit beyond the first).
_SHOP_UNIT_M2 = 250.0

# --- roads -----------------------------------------------------------------------------------
#: Every ``_ARTERIAL_EVERY``-th line of a family is an arterial.
_ARTERIAL_EVERY = 3
#: Jitter of a line's mean position, as a share of the block size.
_LINE_JITTER = 0.08
#: Largest offset of a curve from its straight line (share of the block), and its wavelength
#: range (m): arterials meander more than local streets; both stay below half a block together
#: with the jitter, so lines of one family never cross.
_AMPLITUDE = {"arterial": 0.20, "local": 0.08}
_WAVELENGTH_M = {"arterial": (350.0, 700.0), "local": (250.0, 600.0)}
#: Vertex spacing of the curves (m).
_VERTEX_M = 10.0
#: Share of local street segments inside a community that are missing (merged blocks).
_P_DROP_SEGMENT = 0.2
#: OSM ``highway`` class of each road kind (class, probability) and its width range (m).
HIGHWAY_CLASS = {"arterial": (("primary", 0.5), ("secondary", 0.5)),
                 "local": (("tertiary", 0.25), ("residential", 0.75)),
                 "service": (("service", 1.0),)}
ROAD_WIDTH_M = {"primary": (28.0, 36.0), "secondary": (20.0, 28.0), "tertiary": (14.0, 18.0),
                "residential": (9.0, 13.0), "service": (5.0, 7.0)}
#: Chance a block (of at least half a nominal block) gets a cul-de-sac, its length as a share
#: of the distance from the street to the block's centre, and the clearance its end keeps from
#: every other road surface (m).
_P_CUL_DE_SAC = 0.35
_CUL_DE_SAC_REACH = (0.45, 0.75)
_CUL_DE_SAC_CLEAR_M = 18.0

# --- buildings ---------------------------------------------------------------------------------
_LOT_M = {"residential": 36.0, "commercial": 48.0, "industrial": 64.0, "public_service": 56.0}
#: Lot size of a TAZ varies around ``_LOT_M`` by this factor range (plot subdivision differs by
#: period and developer).
_LOT_SCALE = (0.8, 1.3)
_LOT_FILL = {"residential": 0.8, "commercial": 0.85, "industrial": 0.7, "public_service": 0.6}
_FUNCTION_BY_LAND_USE = {
    "residential": {"residential": 0.84, "mixed": 0.11, "commercial": 0.05},
    "commercial": {"commercial": 0.5, "mixed": 0.35, "residential": 0.15},
    "industrial": {"industrial": 0.88, "commercial": 0.12},
    "public_service": {"public": 0.8, "residential": 0.2},
}
#: Footprint shape mix by function (weights over ``SHAPES``).
_SHAPE_MIX = {
    "residential": (0.45, 0.15, 0.05, 0.10, 0.25),
    "mixed": (0.30, 0.20, 0.15, 0.25, 0.10),
    "commercial": (0.45, 0.20, 0.15, 0.20, 0.0),
    "industrial": (0.70, 0.20, 0.10, 0.0, 0.0),
    "public": (0.40, 0.20, 0.20, 0.20, 0.0),
}
#: Share of buildings turned at random rather than to the block, by land use.
_P_RANDOM_ORIENTATION = {"residential": 0.08, "commercial": 0.05, "industrial": 0.15,
                         "public_service": 0.25}
#: Wall depth of courtyard, U and L wings (m): daylight limits a wing to ~8–14 m.
_WING_M = (8.0, 14.0)
#: Width of one terrace unit (m).
_TERRACE_UNIT_M = (6.0, 9.0)
#: Gap kept between a footprint and the edge of its lot (m).
_LOT_MARGIN_M = 1.0
_SETBACK_M = 6.0

# --- trees -------------------------------------------------------------------------------------
#: Street trees: spacing along the road (m), distance of the trunk from the carriageway (m),
#: share of planted positions, crown radius (m) and height (m).
_STREET_TREE_SPACING_M = (10.0, 16.0)
_STREET_TREE_VERGE_M = 2.5
_P_STREET_TREE = 0.55
_STREET_CROWN_M = (2.5, 4.5)
_STREET_TREE_HEIGHT_M = (6.0, 14.0)
#: Park trees per m² of green TAZ, crown radius, height.
_PARK_TREE_DENSITY = 1 / 300.0
_PARK_CROWN_M = (3.0, 6.0)
_PARK_TREE_HEIGHT_M = (8.0, 22.0)
#: Chance a building has a yard tree, its trunk's distance from the wall, crown, height.
_P_YARD_TREE = 0.3
_YARD_TREE_WALL_M = (0.5, 3.0)
_YARD_CROWN_M = (2.0, 5.0)
_YARD_TREE_HEIGHT_M = (4.0, 14.0)


@dataclasses.dataclass(frozen=True)
class World:
    """The synthetic city's vector truth. All layers are in ``CITY_CRS``.

    Attributes
    ----------
    spec, seed
        What made it.
    roads
        LineStrings with ``road_id``, ``kind`` (arterial/local/service), ``highway`` (OSM
        class: primary, secondary, tertiary, residential, service) and ``width`` (m).
    taz
        Traffic analysis zones: the faces of the road network, ``taz_id`` (1..n, north to
        south then west to east), ``land_use``, ``centrality`` (0 edge … 1 centre),
        ``occupancy``, ``community_id``.
    communities
        Groups of neighbouring TAZ with ``community_id``, each one polygon covering its TAZ
        and the road corridors between them.
    buildings
        Footprints with ``shape``, ``orientation_deg``, function, ``shop_units``, floors,
        height, structure, roof material, year built, built date, capacity terms, occupants
        and material stock.
    pois
        Points with ``poi_id``, ``type`` and the ``building_id`` they sit in (0 outside).
    trees
        Crown polygons with ``tree_id``, ``height`` (m) and ``setting`` (street, park, yard).
    """

    spec: CitySpec
    seed: int
    roads: gpd.GeoDataFrame
    taz: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame
    trees: gpd.GeoDataFrame

    @property
    def crs(self) -> str:
        return CITY_CRS

    def geobox(self, resolution: float = 10.0) -> GeoBox:
        """The city's grid at ``resolution`` metres."""
        return GeoBox.from_bbox(self.spec.bounds, crs=CITY_CRS, resolution=resolution)

    @cached_property
    def census(self) -> gpd.GeoDataFrame:
        """Population per community at the start and the end of the series.

        ``pop_start`` counts occupants of buildings standing on the first day,
        ``pop_end`` those standing on the last day (demolished ones excluded, see
        ``construction.standing``); the latter is the census used for DEFF.
        """
        from eocube.synth.construction import standing

        b = self.buildings
        start = pd.Timestamp(self.spec.start)
        standing_at_start = (b["built_date"] < start) & standing(b, start)
        pop_end = b[standing(b, pd.Timestamp(self.spec.end))].groupby("community_id")[
            "occupants"].sum()
        pop_start = b[standing_at_start].groupby("community_id")["occupants"].sum()
        out = self.communities[["community_id", "geometry"]].copy()
        out["pop_start"] = out["community_id"].map(pop_start).fillna(0).astype("int64")
        out["pop_end"] = out["community_id"].map(pop_end).fillna(0).astype("int64")
        out["year_start"] = self.spec.start.year
        out["year_end"] = self.spec.end.year
        return out


def make_world(preset: str | CitySpec = "tiny", /, *, seed: int = 0) -> World:
    """Generate the vector truth of a synthetic city.

    Parameters
    ----------
    preset
        A preset name (``"tiny"``, ``"demo"``) or a ``CitySpec``.
    seed
        The city seed; the same seed gives the same city.

    Examples
    --------
    >>> w = make_world("tiny", seed=0)
    >>> from eocube.synth.construction import standing
    >>> b = w.buildings  # demolished buildings are not counted at the end
    >>> int(w.census["pop_end"].sum()) == int(b["occupants"][standing(b, w.spec.end)].sum())
    True
    """
    spec = resolve_spec(preset)
    ss = np.random.SeedSequence([seed, 0x5EED])
    rng_roads, rng_lu, rng_bld, rng_poi, rng_tree = (np.random.default_rng(s)
                                                     for s in ss.spawn(5))
    roads, grid = _make_roads(spec, rng_roads)
    taz = _make_taz(spec, roads, grid)
    taz = _assign_land_use(spec, taz, rng_lu)
    communities = _make_communities(spec, taz, roads)
    buildings = _make_buildings(spec, taz, rng_bld)
    pois = _make_pois(spec, taz, buildings, rng_poi)
    trees = _make_trees(spec, roads, taz, buildings, rng_tree)
    return World(spec=spec, seed=seed, roads=roads, taz=taz, communities=communities,
                 buildings=buildings, pois=pois, trees=trees)


@dataclasses.dataclass(frozen=True)
class _Grid:
    """The full curves of both road families, before any segment was dropped: where a point
    lies among them gives its block row and column."""

    x0: float
    y0: float
    t: np.ndarray  # positions along each line's own axis, from its start (m)
    v: np.ndarray  # (lines, len(t)): x of each north–south line at y = y0 + t
    h: np.ndarray  # (lines, len(t)): y of each east–west line at x = x0 + t

    def cell(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Block (row from the south, column from the west) of each point."""
        vx = np.stack([np.interp(y - self.y0, self.t, line) for line in self.v], axis=1)
        hy = np.stack([np.interp(x - self.x0, self.t, line) for line in self.h], axis=1)
        return (hy < y[:, None]).sum(axis=1), (vx < x[:, None]).sum(axis=1)


def _choose_class(rng: np.random.Generator, kind: str) -> tuple[str, float]:
    """An OSM highway class for a road of ``kind`` and a width within that class."""
    names, p = zip(*HIGHWAY_CLASS[kind], strict=True)
    cls = str(rng.choice(names, p=np.asarray(p) / sum(p)))
    return cls, float(rng.uniform(*ROAD_WIDTH_M[cls]))


def _make_roads(spec: CitySpec, rng: np.random.Generator) -> tuple[gpd.GeoDataFrame, _Grid]:
    """Curved arterials and local streets in two families, some local segments missing,
    then cul-de-sacs into large blocks."""
    x0, y0 = spec.bounds[:2]
    n = max(int(round(spec.size_m / spec.block_m)), 2)
    step = spec.size_m / n
    g = spec.community_taz
    m = int(round(spec.size_m / _VERTEX_M)) + 1
    t = np.linspace(0.0, float(spec.size_m), m)

    def family() -> tuple[np.ndarray, list[str]]:
        pos, kinds = [], []
        for i in range(1, n):
            kind = "arterial" if i % _ARTERIAL_EVERY == 0 else "local"
            amp = _AMPLITUDE[kind] * step * rng.uniform(0.6, 1.0)
            lam = rng.uniform(*_WAVELENGTH_M[kind], 2)
            ph = rng.uniform(0.0, 2 * np.pi, 2)
            off = amp * (0.7 * np.sin(2 * np.pi * t / lam[0] + ph[0])
                         + 0.3 * np.sin(2 * np.pi * t / lam[1] + ph[1]))
            pos.append(i * step + rng.uniform(-_LINE_JITTER, _LINE_JITTER) * step + off)
            kinds.append(kind)
        return np.asarray(pos), kinds

    v_off, v_kinds = family()
    h_off, h_kinds = family()
    grid = _Grid(x0=x0, y0=y0, t=t, v=x0 + v_off, h=y0 + h_off)
    v_xy = [np.column_stack([x0 + o, y0 + t]) for o in v_off]
    h_xy = [np.column_stack([x0 + t, y0 + o]) for o in h_off]
    v_lines = shapely.linestrings(v_xy)
    h_lines = shapely.linestrings(h_xy)
    cross = shapely.intersection(v_lines[:, None], h_lines[None, :])  # (v, h) points
    cx, cy = shapely.get_x(cross), shapely.get_y(cross)

    rows: list[tuple[str, str, float, shapely.Geometry]] = []

    def runs(xy: np.ndarray, along: np.ndarray, cuts: np.ndarray, cut_pts: np.ndarray,
             kind: str, internal: bool) -> None:
        # segment k lies between cut k-1 and cut k (the line's ends outside the cuts)
        nseg = cuts.size + 1
        keep = np.ones(nseg, dtype=bool)
        if kind == "local" and internal:
            keep = rng.uniform(size=nseg) >= _P_DROP_SEGMENT
        bounds = np.concatenate([[-np.inf], cuts, [np.inf]])
        ends = np.concatenate([xy[:1], cut_pts, xy[-1:]])
        k = 0
        while k < nseg:
            if not keep[k]:
                k += 1
                continue
            e = k
            while e + 1 < nseg and keep[e + 1]:
                e += 1
            inside = (along > bounds[k]) & (along < bounds[e + 1])
            coords = np.concatenate([ends[k:k + 1], xy[inside], ends[e + 1:e + 2]])
            cls, width = _choose_class(rng, kind)
            rows.append((kind, cls, width, shapely.LineString(coords)))
            k = e + 1

    for i, xy in enumerate(v_xy, start=1):
        internal = (i - 1) // g == i // g
        runs(xy, xy[:, 1], cy[i - 1], np.column_stack([cx[i - 1], cy[i - 1]]),
             v_kinds[i - 1], internal)
    for j, xy in enumerate(h_xy, start=1):
        internal = (j - 1) // g == j // g
        runs(xy, xy[:, 0], cx[:, j - 1], np.column_stack([cx[:, j - 1], cy[:, j - 1]]),
             h_kinds[j - 1], internal)
    main = gpd.GeoDataFrame({"kind": [r[0] for r in rows], "highway": [r[1] for r in rows],
                             "width": [r[2] for r in rows]},
                            geometry=[r[3] for r in rows], crs=CITY_CRS)
    stubs = _cul_de_sacs(spec, main, step, rng)
    roads = pd.concat([main, stubs], ignore_index=True)
    roads.insert(0, "road_id", np.arange(1, len(roads) + 1, dtype="int32"))
    roads["width"] = roads["width"].astype("float64")
    return gpd.GeoDataFrame(roads, geometry="geometry", crs=CITY_CRS), grid


def _cul_de_sacs(spec: CitySpec, main: gpd.GeoDataFrame, step: float,
                 rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Service roads that leave a street and end inside a large block without splitting it."""
    faces = shapely.get_parts(shapely.box(*spec.bounds).difference(road_surface(main)))
    tree = shapely.STRtree(main.geometry.values)
    geoms, widths = [], []
    for f in faces:
        if f.area < 0.5 * step**2 or rng.uniform() >= _P_CUL_DE_SAC:
            continue
        centre = shapely.point_on_surface(f)
        for _ in range(4):
            q = f.exterior.interpolate(rng.uniform(), normalized=True)
            road = main.geometry.values[tree.nearest(q)]
            p0 = np.array(road.interpolate(road.project(q)).coords[0])
            d = np.array(centre.coords[0]) - p0
            dist = float(np.hypot(*d))
            if dist < 40.0:
                continue
            u = d / dist
            perp = np.array([-u[1], u[0]])
            length = rng.uniform(*_CUL_DE_SAC_REACH) * dist
            bend = rng.uniform(-0.2, 0.2) * length
            s = np.linspace(0.0, 1.0, 6)[:, None]
            # a gentle arc: the offset from the chord is a parabola through both ends
            xy = p0 + s * length * u + (4 * s * (1 - s)) * bend * perp
            stub = shapely.LineString(xy)
            width = rng.uniform(*ROAD_WIDTH_M["service"])
            end = shapely.Point(xy[-1])
            if not f.contains(end) or f.exterior.distance(end) < _CUL_DE_SAC_CLEAR_M + width:
                continue
            if shapely.get_num_geometries(stub.intersection(f)) != 1:
                continue
            cut = f.difference(stub.buffer(width / 2, cap_style="flat", join_style="mitre"))
            if shapely.get_type_id(cut) != 3:  # the block must stay one polygon
                continue
            geoms.append(stub)
            widths.append(width)
            break
    return gpd.GeoDataFrame({"kind": ["service"] * len(geoms),
                             "highway": ["service"] * len(geoms), "width": widths},
                            geometry=geoms, crs=CITY_CRS)


def road_surface(roads: gpd.GeoDataFrame) -> shapely.Geometry:
    """The union of every road buffered by half its width (flat caps, mitred joins)."""
    return shapely.union_all(
        shapely.buffer(roads.geometry.values, roads["width"].to_numpy() / 2.0,
                       cap_style="flat", join_style="mitre")
    )


def _make_taz(spec: CitySpec, roads: gpd.GeoDataFrame, grid: _Grid) -> gpd.GeoDataFrame:
    x0, y0, x1, y1 = spec.bounds
    faces = shapely.box(x0, y0, x1, y1).difference(road_surface(roads))
    parts = np.asarray(shapely.get_parts(faces))
    pts = shapely.point_on_surface(parts)
    px, py = shapely.get_x(pts), shapely.get_y(pts)
    # north to south, then west to east, like zonal.taz_from_roads numbers the faces it finds
    order = np.lexsort((np.round(px, 3), -np.round(py, 3)))
    parts, px, py = parts[order], px[order], py[order]
    taz = gpd.GeoDataFrame({"taz_id": np.arange(1, len(parts) + 1, dtype="int32")},
                           geometry=parts, crs=CITY_CRS)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cen = shapely.centroid(taz.geometry.values)
    d = np.hypot(shapely.get_x(cen) - cx, shapely.get_y(cen) - cy)
    taz["centrality"] = np.clip(1.0 - d / (0.72 * spec.size_m), 0.0, 1.0)
    # communities: blocks of community_taz × community_taz grid cells (segments are only
    # dropped inside such a group, so a merged block never straddles two communities)
    row, col = grid.cell(px, py)
    g = spec.community_taz
    key = pd.DataFrame({"gr": -(row // g), "gc": col // g})
    taz["community_id"] = (key.groupby(["gr", "gc"]).ngroup() + 1).astype("int32").to_numpy()
    return taz[["taz_id", "community_id", "centrality", "geometry"]]


def _assign_land_use(spec, taz, rng) -> gpd.GeoDataFrame:
    c = taz["centrality"].to_numpy()
    n = len(taz)
    u = rng.uniform(size=n)
    p_water = np.where(c < 0.5, 0.04, 0.0)
    p_green = np.full(n, 0.08)
    p_public = np.full(n, 0.08)
    p_comm = 0.55 * c**2
    p_ind = 0.4 * (1 - c) ** 2
    edges = np.cumsum(np.stack([p_water, p_green, p_public, p_comm, p_ind], axis=1), axis=1)
    idx = (u[:, None] >= edges).sum(axis=1)
    names = np.array(["water", "green", "public_service", "commercial", "industrial",
                      "residential"])
    taz = taz.copy()
    taz["land_use"] = names[idx]
    # occupancy rises with centrality: the TAZ (external environment) matters for population
    occ = 0.4 + 0.5 * c + rng.normal(0.0, 0.04, n)
    taz["occupancy"] = np.clip(occ, 0.2, 1.0)
    return taz


def _make_communities(spec, taz, roads) -> gpd.GeoDataFrame:
    # a community covers its TAZ and the road corridors between them: a mitred closing wide
    # enough to bridge the widest road
    r = float(roads["width"].max())
    geoms, ids = [], []
    for cid, grp in taz.groupby("community_id", sort=True):
        u = shapely.union_all(grp.geometry.values)
        closed = u.buffer(r, join_style="mitre").buffer(-r, join_style="mitre")
        if shapely.get_type_id(closed) != 3:
            raise AssertionError(f"community {cid} is not one polygon; the road layout is broken")
        geoms.append(closed)
        ids.append(int(cid))
    return gpd.GeoDataFrame({"community_id": np.asarray(ids, dtype="int32")}, geometry=geoms,
                            crs=CITY_CRS)


def _block_angle(poly: shapely.Geometry) -> float:
    """Direction (radians) of the longest side of a polygon's minimum rotated rectangle."""
    xy = np.asarray(shapely.oriented_envelope(poly).exterior.coords)
    d = np.diff(xy[:3], axis=0)
    k = int(np.argmax(np.hypot(d[:, 0], d[:, 1])))
    return float(np.arctan2(d[k, 1], d[k, 0]))


def _lots(spec: CitySpec, taz: gpd.GeoDataFrame, rng) -> pd.DataFrame:
    """Lot centres on a grid turned to each block, with the lot's size, function, shape and
    the footprint's turn relative to the lot."""
    cols: dict[str, list] = {k: [] for k in (
        "taz_id", "community_id", "centrality", "occupancy", "land_use", "function", "cx",
        "cy", "lot", "theta", "turn", "filled", "inner")}
    for t in taz.itertuples(index=False):
        if t.land_use not in _LOT_M:
            continue
        inner = t.geometry.buffer(-_SETBACK_M, join_style="mitre")
        if inner.is_empty:
            continue
        theta = _block_angle(t.geometry)
        lot = _LOT_M[t.land_use] * rng.uniform(*_LOT_SCALE)
        c = np.array(inner.centroid.coords[0])
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        local = (np.asarray(inner.exterior.coords) - c) @ rot  # into the block's frame
        (bx0, by0), (bx1, by1) = local.min(axis=0), local.max(axis=0)
        ox, oy = rng.uniform(0, lot, 2)
        gx, gy = np.meshgrid(np.arange(bx0 - lot + ox, bx1, lot) + lot / 2,
                             np.arange(by0 - lot + oy, by1, lot) + lot / 2)
        centres = np.column_stack([gx.ravel(), gy.ravel()]) @ rot.T + c
        k = len(centres)
        mix = _FUNCTION_BY_LAND_USE[t.land_use]
        funcs = rng.choice(list(mix), size=k, p=np.array(list(mix.values())))
        free = rng.uniform(size=k) < _P_RANDOM_ORIENTATION[t.land_use]
        turn = np.where(free, rng.uniform(0, np.pi, k), np.deg2rad(rng.normal(0, 2.0, k)))
        per_lot = {"taz_id": t.taz_id, "community_id": t.community_id,
                   "centrality": t.centrality, "occupancy": t.occupancy,
                   "land_use": t.land_use, "function": funcs, "cx": centres[:, 0],
                   "cy": centres[:, 1], "lot": lot, "theta": theta + turn, "turn": turn,
                   "filled": rng.uniform(size=k) < _LOT_FILL[t.land_use], "inner": inner}
        for key, v in per_lot.items():
            cols[key].append(v if isinstance(v, np.ndarray)
                             else np.full(k, v, dtype=object if key == "inner" else None))
    lots = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    shapes = np.empty(len(lots), dtype=object)
    for f, w in _SHAPE_MIX.items():
        m = (lots["function"] == f).to_numpy()
        shapes[m] = rng.choice(SHAPES, size=m.sum(), p=np.asarray(w) / sum(w))
    lots["shape"] = shapes
    return lots


def _footprints(lots: pd.DataFrame, rng) -> tuple[np.ndarray, np.ndarray]:
    """Footprint polygons (one per building: a terrace gives several) and their lot index."""
    n = len(lots)
    lot = lots["lot"].to_numpy()
    shape = lots["shape"].to_numpy().astype(object)
    terrace = shape == "terrace"
    a = lot * np.where(terrace, rng.uniform(0.75, 0.92, n), rng.uniform(0.55, 0.9, n))
    b = np.where(terrace, rng.uniform(9.0, 14.0, n), lot * rng.uniform(0.55, 0.9, n))
    big = np.isin(shape, ["courtyard", "U"])
    a = np.where(big, lot * rng.uniform(0.78, 0.92, n), a)
    b = np.where(big, lot * rng.uniform(0.78, 0.92, n), b)
    # shrink what is turned against its lot until its bounding box fits the lot
    phi = lots["turn"].to_numpy()
    half = lot / 2 - _LOT_MARGIN_M
    ex = (np.abs(a * np.cos(phi)) + np.abs(b * np.sin(phi))) / 2
    ey = (np.abs(a * np.sin(phi)) + np.abs(b * np.cos(phi))) / 2
    s = np.minimum(1.0, np.minimum(half / ex, half / ey))
    a, b = a * s, b * s
    wing = rng.uniform(*_WING_M, n)
    # a wing needs room: a courtyard at least 6 m across, a U arm and an L leg 6 m wide
    shape[(shape == "courtyard") & (np.minimum(a, b) < 2 * wing + 6.0)] = "rectangle"
    shape[(shape == "U") & (np.minimum(a, b) < 2 * 6.0 + 6.0)] = "rectangle"
    shape[(shape == "L") & (np.minimum(a, b) < 14.0)] = "rectangle"
    geoms = shapely.box(-a / 2, -b / 2, a / 2, b / 2)
    m = shape == "L"
    ca, cb = a * rng.uniform(0.4, 0.6, n), b * rng.uniform(0.4, 0.6, n)
    geoms[m] = shapely.difference(geoms[m], shapely.box(a[m] / 2 - ca[m], b[m] / 2 - cb[m],
                                                        a[m] / 2 + 1, b[m] / 2 + 1))
    m = shape == "U"
    nw = np.minimum(a * rng.uniform(0.3, 0.5, n), a - 12.0)
    nd = np.minimum(b * rng.uniform(0.4, 0.6, n), b - 6.0)
    geoms[m] = shapely.difference(geoms[m], shapely.box(-nw[m] / 2, b[m] / 2 - nd[m],
                                                        nw[m] / 2, b[m] / 2 + 1))
    m = shape == "courtyard"
    w = wing
    geoms[m] = shapely.difference(geoms[m], shapely.box(-a[m] / 2 + w[m], -b[m] / 2 + w[m],
                                                        a[m] / 2 - w[m], b[m] / 2 - w[m]))
    lots_idx = np.arange(n)
    # terraces: the row split into units that share their party walls
    t_idx = np.flatnonzero(shape == "terrace")
    units = np.maximum(np.floor(a[t_idx] / rng.uniform(*_TERRACE_UNIT_M, t_idx.size)), 2)
    rep = np.repeat(t_idx, units.astype(int))
    i = np.concatenate([np.arange(k) for k in units.astype(int)]) if t_idx.size else rep
    u = a[rep] / units.repeat(units.astype(int))
    unit_geoms = shapely.box(-a[rep] / 2 + i * u, -b[rep] / 2, -a[rep] / 2 + (i + 1) * u,
                             b[rep] / 2)
    keep = shape != "terrace"
    geoms = np.concatenate([geoms[keep], unit_geoms])
    lots_idx = np.concatenate([lots_idx[keep], rep])
    lots["shape"] = shape
    # into place: mirror (so L and U open to any side), turn, move to the lot centre
    mirror = rng.choice([-1.0, 1.0], size=(n, 2))
    xy, which = shapely.get_coordinates(geoms, return_index=True)
    li = lots_idx[which]
    xy = xy * mirror[li]
    th = lots["theta"].to_numpy()[li]
    cos, sin = np.cos(th), np.sin(th)
    xy = np.column_stack([xy[:, 0] * cos - xy[:, 1] * sin + lots["cx"].to_numpy()[li],
                          xy[:, 0] * sin + xy[:, 1] * cos + lots["cy"].to_numpy()[li]])
    geoms = shapely.set_coordinates(geoms.copy(), xy)
    return shapely.make_valid(geoms) if not shapely.is_valid(geoms).all() else geoms, lots_idx


def _make_buildings(spec: CitySpec, taz: gpd.GeoDataFrame, rng) -> gpd.GeoDataFrame:
    lots = _lots(spec, taz, rng)
    geoms, li = _footprints(lots, rng)
    inner = lots["inner"].to_numpy()
    shapely.prepare(inner)
    keep = shapely.contains_properly(inner[li], geoms) & lots["filled"].to_numpy()[li]
    geoms, li = geoms[keep], li[keep]
    cols = ["taz_id", "community_id", "function", "centrality", "occupancy", "land_use",
            "shape"]
    b = gpd.GeoDataFrame(lots[cols].iloc[li].reset_index(drop=True), geometry=geoms,
                         crs=CITY_CRS)
    b["orientation_deg"] = np.mod(np.rad2deg(lots["theta"].to_numpy()[li]), 180.0)
    n = len(b)
    b.insert(0, "building_id", np.arange(1, n + 1, dtype="int32"))
    func = b["function"].to_numpy()
    c = b["centrality"].to_numpy()
    floors = np.ones(n)
    hi = {"residential": (2, 6 + 26 * c), "mixed": (3, 5 + 22 * c),
          "commercial": (2, 4 + 40 * c**1.5), "industrial": (1, 3 + 0 * c),
          "public": (2, 4 + 4 * c)}
    for f, (lo, top) in hi.items():
        m = func == f
        floors[m] = np.floor(lo + rng.uniform(0, 1, m.sum()) * (top[m] - lo + 1))
    # a terrace is built as one row: every unit has the row's 2–4 storeys
    row_floors = rng.integers(2, 5, len(lots))
    floors = np.where(b["shape"].to_numpy() == "terrace", row_floors[li], floors)
    floors = np.clip(floors, 1, 60).astype("int32")
    storey = np.array([STOREY_HEIGHT[f] for f in func])
    height = floors * storey + rng.uniform(0.5, 2.5, n)
    structure = np.where(
        func == "industrial", "steel",
        np.where(floors >= 7, "reinforced_concrete",
                 np.where(rng.uniform(size=n) < 0.7, "brick_concrete", "brick_wood")))
    roof = np.where(structure == "steel", "metal",
                    np.where(structure == "brick_wood", "tile", "concrete"))
    b["floors"] = floors
    b["height"] = height.astype("float32")
    b["structure"] = structure
    b["roof_material"] = roof
    b["area"] = b.geometry.area.to_numpy()
    # ground-floor shop units of mixed buildings, one per _SHOP_UNIT_M2 of footprint or so
    b["shop_units"] = np.where(func == "mixed",
                               1 + rng.poisson(b["area"].to_numpy() / _SHOP_UNIT_M2), 0
                               ).astype("int32")
    b = construction_schedule(spec, b, c, rng)
    b = households(spec, b, rng)
    b = material_stock(spec, b, rng)
    return b.drop(columns=["centrality"])


def _points_inside(polys: np.ndarray, rng, *, rounds: int = 8) -> np.ndarray:
    """One random point inside each polygon (rejection in its bounds, else a point on its
    surface)."""
    bounds = shapely.bounds(polys)
    out = shapely.point_on_surface(polys)
    todo = np.arange(len(polys))
    for _ in range(rounds):
        if not todo.size:
            break
        u = rng.uniform(0.05, 0.95, (todo.size, 2))
        bx = bounds[todo]
        pts = shapely.points(bx[:, 0] + u[:, 0] * (bx[:, 2] - bx[:, 0]),
                             bx[:, 1] + u[:, 1] * (bx[:, 3] - bx[:, 1]))
        ok = shapely.contains_properly(polys[todo], pts)
        out[todo[ok]] = pts[ok]
        todo = todo[~ok]
    return out


def _make_pois(spec, taz, buildings, rng) -> gpd.GeoDataFrame:
    func = buildings["function"].to_numpy()
    lam = np.array([POI_MIX[f][0] for f in func])
    lam = lam * np.where(func == "residential", 1 + buildings["floors"].to_numpy() / 20, 1.0)
    counts = rng.poisson(lam)
    bidx = np.repeat(np.arange(len(buildings)), counts)
    types = np.empty(bidx.size, dtype=object)
    for f, (_, mix) in POI_MIX.items():
        m = func[bidx] == f
        w = np.array(list(mix.values()), dtype=float)
        types[m] = rng.choice(list(mix), size=m.sum(), p=w / w.sum())
    # the shops of mixed buildings: each unit is a POI only with probability MIXED_SHOP_LISTED
    units = buildings["shop_units"].to_numpy()
    sidx = np.repeat(np.arange(len(buildings)), units)
    sidx = sidx[rng.uniform(size=sidx.size) < MIXED_SHOP_LISTED]
    w = np.array(list(MIXED_SHOPS.values()), dtype=float)
    stypes = rng.choice(list(MIXED_SHOPS), size=sidx.size, p=w / w.sum()).astype(object)
    bidx = np.concatenate([bidx, sidx])
    types = np.concatenate([types, stypes])
    order = np.argsort(bidx, kind="stable")
    bidx, types = bidx[order], types[order]
    pts = _points_inside(buildings.geometry.values[bidx], rng)
    x, y = shapely.get_x(pts), shapely.get_y(pts)
    bid = buildings["building_id"].to_numpy()[bidx]
    # parks get a few POIs outside any building
    parks = taz[taz["land_use"] == "green"]
    px, py, ptypes = [], [], []
    for g in parks.geometry:
        inner = g.buffer(-10)
        if inner.is_empty:
            continue
        k = rng.poisson(2)
        x0, y0, x1, y1 = inner.bounds
        cand = shapely.points(rng.uniform(x0, x1, 4 * k + 4), rng.uniform(y0, y1, 4 * k + 4))
        cand = cand[shapely.contains(inner, cand)][:k]
        px.extend(shapely.get_x(cand))
        py.extend(shapely.get_y(cand))
        ptypes.extend(["park"] * len(cand))
    x = np.concatenate([x, px])
    y = np.concatenate([y, py])
    types = np.concatenate([types, np.array(ptypes, dtype=object)])
    bid = np.concatenate([bid, np.zeros(len(px), dtype=bid.dtype)])
    return gpd.GeoDataFrame(
        {"poi_id": np.arange(1, x.size + 1, dtype="int32"), "type": types.astype(str),
         "building_id": bid.astype("int32")},
        geometry=shapely.points(x, y), crs=CITY_CRS,
    )


def _make_trees(spec, roads, taz, buildings, rng) -> gpd.GeoDataFrame:
    """Street trees in the verges, park trees in green TAZ, yard trees next to walls."""
    centres, radius, height, setting = [], [], [], []
    # street trees: both verges of every street and arterial (service lanes have none)
    streets = roads[roads["kind"] != "service"]
    for line, width in zip(streets.geometry.values, streets["width"].to_numpy(), strict=True):
        xy = np.asarray(line.coords)
        seg = np.hypot(*np.diff(xy, axis=0).T)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        d = np.arange(rng.uniform(0, 8), s[-1], rng.uniform(*_STREET_TREE_SPACING_M))
        if d.size == 0:
            continue
        # position and direction at each distance along the line (linear between vertices)
        k = np.clip(np.searchsorted(s, d, side="right") - 1, 0, len(seg) - 1)
        tan = (xy[k + 1] - xy[k]) / np.maximum(seg[k], 1e-9)[:, None]
        p = xy[k] + tan * (d - s[k])[:, None]
        normal = np.column_stack([-tan[:, 1], tan[:, 0]])
        for side in (-1.0, 1.0):
            xy_t = p + side * (width / 2 + _STREET_TREE_VERGE_M) * normal
            centres.append(xy_t[rng.uniform(size=len(xy_t)) < _P_STREET_TREE])
            n = len(centres[-1])
            radius.append(rng.uniform(*_STREET_CROWN_M, n))
            height.append(rng.uniform(*_STREET_TREE_HEIGHT_M, n))
            setting.append(np.full(n, "street", dtype=object))
    # park trees
    for g in taz.loc[taz["land_use"] == "green", "geometry"]:
        k = rng.poisson(g.area * _PARK_TREE_DENSITY)
        x0, y0, x1, y1 = g.bounds
        xy = np.column_stack([rng.uniform(x0, x1, k), rng.uniform(y0, y1, k)])
        xy = xy[shapely.contains_xy(g, xy[:, 0], xy[:, 1])] if k else xy
        centres.append(xy)
        radius.append(rng.uniform(*_PARK_CROWN_M, len(xy)))
        height.append(rng.uniform(*_PARK_TREE_HEIGHT_M, len(xy)))
        setting.append(np.full(len(xy), "park", dtype=object))
    # yard trees: a trunk a few metres from a wall, outward from the building's centre
    bsel = buildings[rng.uniform(size=len(buildings)) < _P_YARD_TREE]
    ring = shapely.get_exterior_ring(bsel.geometry.values)
    on_wall = shapely.get_coordinates(
        shapely.line_interpolate_point(ring, rng.uniform(size=len(bsel)), normalized=True))
    ctr = shapely.get_coordinates(shapely.centroid(bsel.geometry.values))
    out = on_wall - ctr
    out /= np.maximum(np.hypot(out[:, 0], out[:, 1]), 1e-9)[:, None]
    xy = on_wall + out * rng.uniform(*_YARD_TREE_WALL_M, len(bsel))[:, None]
    centres.append(xy)
    radius.append(rng.uniform(*_YARD_CROWN_M, len(xy)))
    height.append(rng.uniform(*_YARD_TREE_HEIGHT_M, len(xy)))
    setting.append(np.full(len(xy), "yard", dtype=object))
    xy = np.concatenate(centres)
    r, h, s = np.concatenate(radius), np.concatenate(height), np.concatenate(setting)
    # a trunk stands on open land: in a TAZ (so on no road) that is not water, in no building
    pts = shapely.points(xy)
    land = taz.geometry.values[(taz["land_use"] != "water").to_numpy()]
    ok = np.zeros(len(pts), dtype=bool)
    ok[shapely.STRtree(land).query(pts, predicate="within")[0]] = True
    tree = shapely.STRtree(buildings.geometry.values)
    inside = tree.query(pts, predicate="within")[0]
    ok[inside] = False
    crowns = shapely.buffer(pts[ok], r[ok], quad_segs=4)
    return gpd.GeoDataFrame({"tree_id": np.arange(1, ok.sum() + 1, dtype="int32"),
                             "height": h[ok].astype("float32"), "setting": s[ok].astype(str)},
                            geometry=crowns, crs=CITY_CRS)


def series_dates(spec: CitySpec, *, revisit_days: int, hour: int, minute: int,
                 offset_days: int = 2) -> pd.DatetimeIndex:
    """Acquisition times every ``revisit_days`` from the start, in UTC."""
    first = dt.datetime(spec.start.year, spec.start.month, spec.start.day, hour, minute,
                        tzinfo=dt.UTC) + dt.timedelta(days=offset_days)
    last = dt.datetime(spec.end.year, spec.end.month, spec.end.day, 23, 59, tzinfo=dt.UTC)
    return pd.date_range(first, last, freq=f"{revisit_days}D")
