"""How closely the synthetic world's population, mobile signal and stock follow the estimators'
own formulas (issue #15, point 4).

For each seed of one city spec it prints:

- ``r_occ_ein``: Pearson r, per building, of the true occupants with DEFF's internal capacity
  E_in = C·f·a computed from the *true* function, floors and footprint area (all buildings, and
  only those with E_in > 0);
- ``r_mob_census``: Pearson r, per community, of the summed night mobile signal (weekday and
  weekend; 100 m cells assigned to a community by their centre) with the census ``pop_end``;
- ``stock``: per building, the truth's ``stock_total_t`` against ``bottom_up_stock`` with
  ``DEFAULT_INTENSITY`` on the truth's own heights and structures (Spearman ρ, median
  |log ratio|, total relative error).

Run: ``python benchmarks/world_population_signal.py [--seeds 0 1 2] [--size 6400 --block 300]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _measure(spec, seed: int) -> dict[str, float]:
    from rasterio import features
    from scipy.stats import spearmanr

    from eocube.estimates import bottom_up_stock
    from eocube.estimates.population import building_capacity
    from eocube.synth import make_world
    from eocube.synth.sensors import Scene

    w = make_world(spec, seed=seed)
    b = w.buildings
    cap = building_capacity(b[["function", "floors", "height", "geometry"]])
    e_in = cap["e_in"].to_numpy()
    occ = b["occupants"].to_numpy(np.float64)
    pos = e_in > 0
    out = {"seed": seed, "n_buildings": len(b),
           "r_occ_ein_all": float(np.corrcoef(occ, e_in)[0, 1]),
           "r_occ_ein_res": float(np.corrcoef(occ[pos], e_in[pos])[0, 1])}

    scene = Scene(w)
    gb = scene.geobox_100m
    cid = features.rasterize(zip(w.communities.geometry.values,
                                 w.communities["community_id"].to_numpy(), strict=True),
                             out_shape=gb.shape.yx, transform=gb.transform, fill=0,
                             dtype="int32").ravel()
    census = w.census.set_index("community_id")["pop_end"]
    ids = census.index.to_numpy()
    for kind in ("weekday", "weekend"):
        m = np.nan_to_num(scene.mobile_signal(kind).astype(np.float64)).ravel()
        per = np.bincount(cid, weights=m, minlength=ids.max() + 1)[ids]
        out[f"r_mob_census_{kind}"] = float(np.corrcoef(per, census.to_numpy())[0, 1])

    est = bottom_up_stock(b.drop(columns=[c for c in b.columns if c.startswith("stock_")]))
    t, p = b["stock_total_t"].to_numpy(), est["stock_total_t"].to_numpy()
    out["stock_spearman"] = float(spearmanr(t, p).statistic)
    out["stock_med_abs_log_ratio"] = float(np.median(np.abs(np.log(p / t))))
    out["stock_total_rel_error"] = float(p.sum() / t.sum() - 1)
    return out


def main() -> None:
    import pandas as pd

    from eocube.synth import resolve_spec

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=6400)
    ap.add_argument("--block", type=float, default=300.0)
    a = ap.parse_args()
    spec = resolve_spec("tiny", size_m=a.size, block_m=a.block)
    t0 = time.perf_counter()
    rows = pd.DataFrame([_measure(spec, s) for s in a.seeds]).set_index("seed")
    pd.set_option("display.width", 200)
    print(rows.round(3).to_string())
    print("mean:", rows.drop(columns="n_buildings").mean().round(3).to_dict())
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
