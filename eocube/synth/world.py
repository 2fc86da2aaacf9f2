"""The ground truth of the synthetic city: roads, TAZ, communities, land use, buildings, POIs.

Everything here is vector truth and tables; the sensors that observe it live in
``eocube.synth.sensors``. All randomness comes from one ``numpy.random.Generator`` per layer,
seeded from the city seed, so a seed fixes the city.
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
#: Storey height in metres by building function.
STOREY_HEIGHT = {"residential": 3.0, "mixed": 3.3, "commercial": 4.0, "industrial": 6.0,
                 "public": 4.0}

#: POI type mix (type → weight) and mean POIs per building, by building function.
POI_MIX: dict[str, tuple[float, dict[str, float]]] = {
    "residential": (0.35, {"residential_complex": 6, "convenience_store": 2, "restaurant": 1,
                           "kindergarten": 1}),
    "mixed": (2.0, {"residential_complex": 3, "shop": 3, "restaurant": 3, "bank": 1,
                    "office": 1}),
    "commercial": (3.0, {"office": 4, "shop": 3, "restaurant": 2, "hotel": 1, "bank": 1,
                         "shopping_mall": 1}),
    "industrial": (0.6, {"factory": 5, "warehouse": 3, "logistics": 2}),
    "public": (1.2, {"school": 3, "hospital": 1, "government": 2, "library": 1}),
}

_LOT_M = {"residential": 36.0, "commercial": 48.0, "industrial": 64.0, "public_service": 56.0}
_LOT_FILL = {"residential": 0.8, "commercial": 0.85, "industrial": 0.7, "public_service": 0.6}
_FUNCTION_BY_LAND_USE = {
    "residential": {"residential": 0.84, "mixed": 0.11, "commercial": 0.05},
    "commercial": {"commercial": 0.5, "mixed": 0.35, "residential": 0.15},
    "industrial": {"industrial": 0.88, "commercial": 0.12},
    "public_service": {"public": 0.8, "residential": 0.2},
}
_ROAD_WIDTH = {"arterial": 30.0, "local": 14.0}
_SETBACK_M = 6.0


@dataclasses.dataclass(frozen=True)
class World:
    """The synthetic city's vector truth. All layers are in ``CITY_CRS``.

    Attributes
    ----------
    spec, seed
        What made it.
    roads
        LineStrings with ``road_id``, ``kind`` (arterial/local) and ``width`` (m).
    taz
        Traffic analysis zones: the faces of the road network, ``taz_id``, ``row``, ``col``,
        ``land_use``, ``centrality`` (0 edge … 1 centre), ``occupancy``, ``community_id``.
    communities
        Groups of TAZ with ``community_id``.
    buildings
        Footprints with function, floors, height, structure, roof material, year built,
        built date, capacity terms, occupants and material stock.
    pois
        Points with ``poi_id``, ``type`` and the ``building_id`` they sit in (0 outside).
    """

    spec: CitySpec
    seed: int
    roads: gpd.GeoDataFrame
    taz: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame

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
        ``pop_end`` those standing on the last day; the latter is the census used for DEFF.
        """
        b = self.buildings
        start = pd.Timestamp(self.spec.start)
        standing_at_start = b["built_date"] < start
        pop_end = b.groupby("community_id")["occupants"].sum()
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
    >>> int(w.census["pop_end"].sum()) == int(w.buildings["occupants"].sum())
    True
    """
    spec = resolve_spec(preset)
    ss = np.random.SeedSequence([seed, 0x5EED])
    rng_roads, rng_lu, rng_bld, rng_poi = (np.random.default_rng(s) for s in ss.spawn(4))
    roads, v_lines, h_lines = _make_roads(spec, rng_roads)
    taz = _make_taz(spec, roads, v_lines, h_lines)
    taz = _assign_land_use(spec, taz, rng_lu)
    communities = _make_communities(spec, taz)
    buildings = _make_buildings(spec, taz, rng_bld)
    pois = _make_pois(spec, taz, buildings, rng_poi)
    return World(spec=spec, seed=seed, roads=roads, taz=taz, communities=communities,
                 buildings=buildings, pois=pois)


def _make_roads(spec: CitySpec, rng: np.random.Generator):
    """A perturbed grid: each line is straight but its two ends are jittered independently."""
    x0, y0, x1, y1 = spec.bounds
    n = max(int(round(spec.size_m / spec.block_m)), 2)
    step = spec.size_m / n
    jitter = 0.12 * step
    # each interior line i: offset at the low and high end of the perpendicular axis
    def jittered(origin: float) -> list[tuple[float, float]]:
        return [(origin + i * step + rng.uniform(-jitter, jitter),
                 origin + i * step + rng.uniform(-jitter, jitter)) for i in range(1, n)]

    v = jittered(x0)
    h = jittered(y0)
    rows = []
    for i, (a, b) in enumerate(v, start=1):
        kind = "arterial" if i % 3 == 0 else "local"
        rows.append(("v", i, kind, shapely.LineString([(a, y0), (b, y1)])))
    for i, (a, b) in enumerate(h, start=1):
        kind = "arterial" if i % 3 == 0 else "local"
        rows.append(("h", i, kind, shapely.LineString([(x0, a), (x1, b)])))
    roads = gpd.GeoDataFrame(
        {
            "road_id": np.arange(1, len(rows) + 1, dtype="int32"),
            "direction": [r[0] for r in rows],
            "kind": [r[2] for r in rows],
            "width": [_ROAD_WIDTH[r[2]] for r in rows],
        },
        geometry=[r[3] for r in rows],
        crs=CITY_CRS,
    )
    return roads, v, h


def road_surface(roads: gpd.GeoDataFrame) -> shapely.Geometry:
    """The union of every road buffered by half its width (flat caps, mitred joins)."""
    return shapely.union_all(
        shapely.buffer(roads.geometry.values, roads["width"].to_numpy() / 2.0,
                       cap_style="flat", join_style="mitre")
    )


def _line_pos(lines, t, lo, hi) -> np.ndarray:
    """Position of each line at parameter t along the other axis (lines are straight)."""
    a = np.array([p[0] for p in lines])
    b = np.array([p[1] for p in lines])
    f = (np.asarray(t)[..., None] - lo) / (hi - lo)
    return a + f * (b - a)


def _make_taz(spec, roads, v_lines, h_lines) -> gpd.GeoDataFrame:
    x0, y0, x1, y1 = spec.bounds
    faces = shapely.box(x0, y0, x1, y1).difference(road_surface(roads))
    parts = list(shapely.get_parts(faces))
    pts = shapely.point_on_surface(parts)
    px, py = shapely.get_x(pts), shapely.get_y(pts)
    col = (_line_pos(v_lines, py, y0, y1) < px[:, None]).sum(axis=1)
    row_from_bottom = (_line_pos(h_lines, px, x0, x1) < py[:, None]).sum(axis=1)
    nrows = len(h_lines) + 1
    row = nrows - 1 - row_from_bottom  # row 0 is the northernmost, like raster rows
    ncols = len(v_lines) + 1
    taz = gpd.GeoDataFrame({"row": row.astype("int32"), "col": col.astype("int32")},
                           geometry=parts, crs=CITY_CRS)
    if taz.duplicated(["row", "col"]).any():
        raise AssertionError("road jitter produced a split face; lower the jitter")
    taz["taz_id"] = (1 + taz["row"] * ncols + taz["col"]).astype("int32")
    taz = taz.sort_values("taz_id").reset_index(drop=True)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cen = shapely.centroid(taz.geometry.values)
    d = np.hypot(shapely.get_x(cen) - cx, shapely.get_y(cen) - cy)
    taz["centrality"] = np.clip(1.0 - d / (0.72 * spec.size_m), 0.0, 1.0)
    g = spec.community_taz
    ccols = -(-ncols // g)
    taz["community_id"] = (1 + (taz["row"] // g) * ccols + taz["col"] // g).astype("int32")
    return taz[["taz_id", "row", "col", "community_id", "centrality", "geometry"]]


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


def _make_communities(spec, taz) -> gpd.GeoDataFrame:
    # a community covers its TAZ and the road corridors between them: a mitred closing
    r = max(_ROAD_WIDTH.values())
    geoms, ids = [], []
    for cid, grp in taz.groupby("community_id", sort=True):
        u = shapely.union_all(grp.geometry.values)
        closed = u.buffer(r, join_style="mitre").buffer(-r, join_style="mitre")
        geoms.append(closed)
        ids.append(int(cid))
    return gpd.GeoDataFrame({"community_id": np.asarray(ids, dtype="int32")}, geometry=geoms,
                            crs=CITY_CRS)


def _make_buildings(spec: CitySpec, taz: gpd.GeoDataFrame, rng) -> gpd.GeoDataFrame:
    recs: list[dict] = []
    geoms = []
    for t in taz.itertuples(index=False):
        if t.land_use not in _LOT_M:
            continue
        lot = _LOT_M[t.land_use]
        inner = t.geometry.buffer(-_SETBACK_M, join_style="mitre")
        if inner.is_empty:
            continue
        bx0, by0, bx1, by1 = inner.bounds
        ox, oy = rng.uniform(0, lot, 2)
        xs = np.arange(bx0 - lot + ox, bx1, lot)
        ys = np.arange(by0 - lot + oy, by1, lot)
        gx, gy = np.meshgrid(xs, ys)
        gx, gy = gx.ravel(), gy.ravel()
        k = gx.size
        fx = rng.uniform(0.5, 0.82, k) * lot
        fy = rng.uniform(0.5, 0.82, k) * lot
        cx = gx + lot / 2
        cy = gy + lot / 2
        rects = shapely.box(cx - fx / 2, cy - fy / 2, cx + fx / 2, cy + fy / 2)
        keep = shapely.contains_properly(inner, rects) & (rng.uniform(size=k) < _LOT_FILL[
            t.land_use])
        mix = _FUNCTION_BY_LAND_USE[t.land_use]
        funcs = rng.choice(list(mix), size=k, p=np.array(list(mix.values())))
        for j in np.flatnonzero(keep):
            geoms.append(rects[j])
            recs.append({"taz_id": t.taz_id, "community_id": t.community_id,
                         "function": funcs[j], "centrality": t.centrality,
                         "occupancy": t.occupancy, "land_use": t.land_use})
    b = gpd.GeoDataFrame(pd.DataFrame.from_records(recs), geometry=geoms, crs=CITY_CRS)
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
    b = construction_schedule(spec, b, c, rng)
    b = households(spec, b, rng)
    b = material_stock(spec, b, rng)
    return b.drop(columns=["centrality"])


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
    bounds = shapely.bounds(buildings.geometry.values)[bidx]
    u = rng.uniform(0.1, 0.9, (bidx.size, 2))
    x = bounds[:, 0] + u[:, 0] * (bounds[:, 2] - bounds[:, 0])
    y = bounds[:, 1] + u[:, 1] * (bounds[:, 3] - bounds[:, 1])
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


def series_dates(spec: CitySpec, *, revisit_days: int, hour: int, minute: int,
                 offset_days: int = 2) -> pd.DatetimeIndex:
    """Acquisition times every ``revisit_days`` from the start, in UTC."""
    first = dt.datetime(spec.start.year, spec.start.month, spec.start.day, hour, minute,
                        tzinfo=dt.UTC) + dt.timedelta(days=offset_days)
    last = dt.datetime(spec.end.year, spec.end.month, spec.end.day, 23, 59, tzinfo=dt.UTC)
    return pd.date_range(first, last, freq=f"{revisit_days}D")
