"""The synthetic city's night-time mobile signal, as one operator publishes it.

People present at night — residents at home, second-home owners on weekends, dormitories,
hotel guests, night-shift workers, hospital patients, late visitors of shops and bars, people on
the roads — carry 0, 1 or 2 devices (in proportions that vary by district); those on the
operator's network (a market share that varies across the city, plus inbound roamers among
foreign tourists) are counted per serving tower (Voronoi cells of a jittered tower grid) with
the tower's own noise, suppressed below ``SUPPRESS_BELOW`` like the operators' products, and
spread evenly over the tower's 100 m cells. It is a sensor of where people are at night, not a
copy of the census. The parameters were set from reasoning about such products before any
estimator was measured on them (issue #15).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import shapely
from odc.geo.geobox import GeoBox
from scipy.spatial import cKDTree

from eocube.synth.world import World

__all__ = ["KINDS", "SUPPRESS_BELOW", "night_mobile_signal", "tower_cells"]

KINDS = ("weekday", "weekend")
#: Towers: a grid of one per 3 × 3 cells of 100 m (an urban site spacing of ~300 m), each
#: jittered by up to one cell.
TOWER_SPACING_CELLS = 3.0
TOWER_JITTER_CELLS = 1.0
#: The operator's market share: 0.40 ± 0.15 as a smooth field (~600 m correlation), read at
#: each tower (one of three operators, strong in some districts and weak in others).
MARKET_SHARE = {"mean": 0.40, "amplitude": 0.15, "smooth_cells": 6.0}
#: Devices per person, by district: shares with none (children, some elderly) uniform in
#: [5 %, 20 %], with two (work phones, tablets with SIMs) in [10 %, 30 %], the rest one.
PHONES = {"none_low": 0.05, "none_high": 0.20, "two_low": 0.10, "two_high": 0.30}
#: Who is present at night, by ``kind``: residents at home (some travel or work nights); the
#: occupants of second homes at weekends (2.5 persons in 40 % of them); night-shift workers per
#: m² of industrial floor; patients and staff per m² of hospitals; hotel guests (35 m² of gross
#: floor per room, 1.6 guests per room, the room occupancy by kind, 30 % foreign); late visitors
#: per m² of commercial and mixed floor; people on the roads per 100 m of a 30 m wide road.
PRESENT = {
    "weekday": {"residents": 0.93, "second_home": 0.0, "shift_m2": 1 / 250, "hospital_m2": 1 / 60,
                "hotel_occupancy": 0.60, "visitor_m2": 1 / 800, "road_100m": 1.5},
    "weekend": {"residents": 0.85, "second_home": 0.4 * 2.5, "shift_m2": 1 / 500,
                "hospital_m2": 1 / 60, "hotel_occupancy": 0.80, "visitor_m2": 1 / 300,
                "road_100m": 2.5},
}
HOTEL = {"m2_per_room": 35.0, "guests_per_room": 1.6, "foreign": 0.30}
#: Share of inbound roamers (foreign devices) that roam on this operator.
ROAMING_SHARE = 0.5
#: Multiplicative noise per tower and night (handovers to neighbouring towers, load, outages).
TOWER_NOISE_SIGMA = 0.20
#: Towers counting fewer devices than this are published as 0 (k-anonymity of the product).
SUPPRESS_BELOW = 20

_MOBILE_CODE = 5  # the stream of the mobile sensor in the city's seed sequence


def _rng(world: World, index: int) -> np.random.Generator:
    return np.random.default_rng([world.seed, _MOBILE_CODE, index])


def _cell_index(geobox: GeoBox, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Flat index of the ``geobox`` cell of each point (-1 outside)."""
    inv = ~geobox.transform
    col = np.floor(inv.a * x + inv.b * y + inv.c).astype(int)
    row = np.floor(inv.d * x + inv.e * y + inv.f).astype(int)
    ny, nx = geobox.shape.yx
    ok = (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
    return np.where(ok, row * nx + col, -1)


def tower_cells(world: World, geobox: GeoBox, /) -> tuple[np.ndarray, np.ndarray]:
    """Serving tower of each cell of ``geobox`` (flat, row-major) and the operator's market
    share at each tower."""
    rng = _rng(world, 100)
    ny, nx = geobox.shape.yx
    step = TOWER_SPACING_CELLS
    ty, tx = np.meshgrid(np.arange(step / 2, ny, step), np.arange(step / 2, nx, step),
                         indexing="ij")
    ty = ty.ravel() + rng.uniform(-TOWER_JITTER_CELLS, TOWER_JITTER_CELLS, ty.size)
    tx = tx.ravel() + rng.uniform(-TOWER_JITTER_CELLS, TOWER_JITTER_CELLS, tx.size)
    cy, cx = np.mgrid[0:ny, 0:nx] + 0.5
    _, tower = cKDTree(np.c_[ty, tx]).query(np.c_[cy.ravel(), cx.ravel()])
    field = ndi.gaussian_filter(rng.normal(size=(ny, nx)), sigma=MARKET_SHARE["smooth_cells"],
                                mode="reflect")
    field = field / max(float(np.abs(field).max()), 1e-9)
    ri = np.clip(ty.astype(int), 0, ny - 1)
    ci = np.clip(tx.astype(int), 0, nx - 1)
    share = MARKET_SHARE["mean"] + MARKET_SHARE["amplitude"] * field[ri, ci]
    return tower, share


def _present(world: World, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per building: domestic persons present at night, foreign persons, and the building's
    community (for the devices per person)."""
    p = PRESENT[kind]
    b = world.buildings
    func = b["function"].to_numpy()
    floor_m2 = b["floors"].to_numpy() * b["area"].to_numpy()
    pois = world.pois
    hotel_ids = set(pois.loc[pois["type"] == "hotel", "building_id"].to_numpy().tolist())
    hospital_ids = set(pois.loc[pois["type"] == "hospital", "building_id"].to_numpy().tolist())
    bid = b["building_id"].to_numpy()
    hotel = np.isin(bid, list(hotel_ids))
    hospital = np.isin(bid, list(hospital_ids))
    people = (p["residents"] * b["occupants"].to_numpy()
              + p["second_home"] * b["second_homes"].to_numpy()
              + np.where(func == "industrial", p["shift_m2"] * floor_m2, 0.0)
              + np.where(hospital, p["hospital_m2"] * floor_m2, 0.0)
              + np.where(np.isin(func, ["commercial", "mixed"]), p["visitor_m2"] * floor_m2,
                         0.0))
    guests = np.where(hotel, floor_m2 / HOTEL["m2_per_room"] * HOTEL["guests_per_room"]
                      * p["hotel_occupancy"], 0.0)
    domestic = people + (1 - HOTEL["foreign"]) * guests
    foreign = HOTEL["foreign"] * guests
    return domestic, foreign, b["community_id"].to_numpy()


def _road_people(world: World, geobox: GeoBox, per_100m: float) -> np.ndarray:
    """People on the roads per cell: points every 10 m along each road, weighted by width."""
    roads = world.roads
    lines = roads.geometry.values
    lengths = shapely.length(lines)
    counts = np.maximum(np.ceil(lengths / 10.0).astype(int), 1)
    idx = np.repeat(np.arange(len(lines)), counts)
    frac = (np.concatenate([np.arange(c) for c in counts]) + 0.5) / counts[idx]
    pts = shapely.line_interpolate_point(lines[idx], frac, normalized=True)
    w = (lengths[idx] / counts[idx]) / 100.0 * per_100m * (roads["width"].to_numpy()[idx] / 30.0)
    cell = _cell_index(geobox, shapely.get_x(pts), shapely.get_y(pts))
    ok = cell >= 0
    return np.bincount(cell[ok], weights=w[ok], minlength=geobox.shape.y * geobox.shape.x)


def night_mobile_signal(world: World, geobox: GeoBox, kind: str, /) -> np.ndarray:
    """Night-time mobile-signal devices per cell of ``geobox`` (float32, ``(y, x)``) for
    ``kind`` ``"weekday"`` or ``"weekend"``.

    Counted per serving tower, 0 on every cell of a tower that counted fewer than
    ``SUPPRESS_BELOW`` devices, else the tower's count spread evenly over its cells.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {KINDS}")
    tower, share = tower_cells(world, geobox)
    n_towers = share.size
    ny, nx = geobox.shape.yx
    rng_d = _rng(world, 101)
    comm = np.unique(world.buildings["community_id"].to_numpy())
    none = rng_d.uniform(PHONES["none_low"], PHONES["none_high"], comm.size)
    two = rng_d.uniform(PHONES["two_low"], PHONES["two_high"], comm.size)
    devices_per_person = dict(zip(comm.tolist(), (1.0 - none + two).tolist(), strict=True))

    domestic, foreign, cid = _present(world, kind)
    dpp = np.array([devices_per_person[c] for c in cid.tolist()])
    cen = shapely.centroid(world.buildings.geometry.values)
    cell = _cell_index(geobox, shapely.get_x(cen), shapely.get_y(cen))
    ok = cell >= 0
    t = tower[cell[ok]]
    own = np.bincount(t, weights=(domestic * dpp)[ok], minlength=n_towers) * share
    road = _road_people(world, geobox, PRESENT[kind]["road_100m"])
    own += np.bincount(tower, weights=road, minlength=n_towers) * share
    roam = np.bincount(t, weights=foreign[ok], minlength=n_towers) * ROAMING_SHARE

    rng = _rng(world, KINDS.index(kind))
    noise = rng.lognormal(-TOWER_NOISE_SIGMA ** 2 / 2, TOWER_NOISE_SIGMA, n_towers)
    counted = rng.poisson((own + roam) * noise).astype(np.float64)
    counted[counted < SUPPRESS_BELOW] = 0.0
    cells = np.bincount(tower, minlength=n_towers)
    return (counted[tower] / np.maximum(cells[tower], 1)).reshape(ny, nx).astype("float32")
