"""DEFF and its ablations/baselines on the estimate tests' regression city (issue #15.4):
the community-level test-split metrics and the building-level R² against the truth, for one
city seed and split seed. Run: ``python benchmarks/world_population_deff.py [--seed 0]``."""

from __future__ import annotations

import argparse


def main() -> None:
    import numpy as np
    import pandas as pd

    from eocube.estimates.population import compare_population
    from eocube.synth import resolve_spec
    from eocube.testing.estimates import city_inputs
    from eocube.zonal import taz_features

    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=0)
    a = ap.parse_args()
    ci = city_inputs(resolve_spec("tiny", size_m=6400, block_m=300), seed=a.seed)
    feats = taz_features(ci.rasters, ci.world.taz).compute()
    w = ci.world
    cmp = compare_population(ci.buildings, pois=w.pois, taz=w.taz, communities=w.communities,
                             census=w.census, features=feats, builtup=ci.builtup,
                             districts=ci.districts, truth_col="occupants_truth",
                             seed=a.split_seed)
    pd.set_option("display.width", 200)
    print(cmp.table.round(3).to_string())
    b = cmp.deff.buildings
    t = b["occupants_truth"].to_numpy(np.float64)
    p = b["population"].to_numpy(np.float64)
    r2 = 1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    print(f"DEFF building-level R2 (all buildings): {r2:.3f}")
    print(cmp.deff.weights.round(3).to_string())


if __name__ == "__main__":
    main()
