"""Benchmark: the shape of the synthetic city (world v2 morphology, issue #15 point 1).

    .venv/bin/python benchmarks/world_morphology.py            # tiny, seeds 0-3
    .venv/bin/python benchmarks/world_morphology.py --demo     # also the demo city, seed 0

Prints per city: how long ``make_world`` takes; arterial and local street sinuosity (length
over end-to-end distance); road kinds; TAZ of the world and of ``zonal.taz_from_roads`` on the
same roads; footprint shapes; trees and those whose crown covers more than 1 m² of roof; the
share of mixed buildings' shop units listed as POIs and the share of mixed buildings with no
shop POI at all.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import shapely

from eocube.synth import make_world
from eocube.zonal import taz_from_roads

SHOPS = ["shop", "restaurant", "convenience_store", "bank"]


def _sinuosity(lines: np.ndarray) -> np.ndarray:
    ends = shapely.distance(shapely.get_point(lines, 0), shapely.get_point(lines, -1))
    return shapely.length(lines) / ends


def report(preset: str, seed: int) -> None:
    t0 = time.perf_counter()
    w = make_world(preset, seed=seed)
    took = time.perf_counter() - t0
    r, b, t = w.roads, w.buildings, w.trees
    art = _sinuosity(r[r["kind"] == "arterial"].geometry.values)
    loc = _sinuosity(r[r["kind"] == "local"].geometry.values)
    ti, bi = shapely.STRtree(b.geometry.values).query(t.geometry.values,
                                                       predicate="intersects")
    a = shapely.area(shapely.intersection(t.geometry.values[ti], b.geometry.values[bi]))
    over = np.unique(ti[a > 1]).size
    mixed = b[b["function"] == "mixed"]
    listed = w.pois[w.pois["type"].isin(SHOPS)].groupby("building_id").size()
    n = mixed["building_id"].map(listed).fillna(0)
    zones = taz_from_roads(r, boundary=w.spec.bounds)
    print(f"{preset} seed {seed}: make_world {took:.2f} s", flush=True)
    print(f"  sinuosity arterial median {np.median(art):.3f} max {art.max():.3f}, "
          f"local median {np.median(loc):.4f}; roads {r['kind'].value_counts().to_dict()}")
    print(f"  TAZ {len(w.taz)} (taz_from_roads {len(zones)}), communities "
          f"{len(w.communities)}; buildings {len(b)} {b['shape'].value_counts().to_dict()}")
    print(f"  trees {len(t)} ({over} over a roof); mixed shop units listed as POIs "
          f"{n.sum() / max(mixed['shop_units'].sum(), 1):.2f}, mixed buildings with no shop "
          f"POI {(n == 0).mean():.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", action="store_true", help="also the demo city (seed 0)")
    args = ap.parse_args()
    for seed in range(4):
        report("tiny", seed)
    if args.demo:
        report("demo", 0)


if __name__ == "__main__":
    main()
