"""Building height on a held-out synthetic city: the height model (median of its per-pixel
height inside each footprint) against the mean height per land use of the training cities.

    .venv/bin/python benchmarks/height.py [--weights FILE ...] [--seed 1] [--cache DIR]
                                          [--storey 3.0] [--json OUT]

Buildings: those standing on 1 July of the last year (the middle of the composite window),
truth footprints, truth height and floors. Floors from a height: ``max(1, round(h / storey))``
with the pipeline's default storey height (3 m). Several ``--weights`` files (one per training
seed, ``eocube train height_s1s2 --seed k --out DIR_k``) give the model's mean ± sd. The
baseline reads the truth land use of each building (generous to it). These are synthetic
results: they show what the simulator's S1/S2 carry about height, not real-world accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from eocube.infer import predict
from eocube.models.data import HELD_OUT_SEED, TRAIN_SEEDS, city_spec, load_city
from eocube.models.height import (
    footprint_median,
    height_city,
    height_metrics,
    land_use_mean_height,
    truth_buildings,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", nargs="*", default=["height_s1s2"],
                    help="shipped name or .safetensors files (one per training seed)")
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="held-out city seed")
    ap.add_argument("--train-seeds", type=int, nargs="*", default=list(TRAIN_SEEDS),
                    help="cities the baseline's means come from")
    ap.add_argument("--cache", type=Path, default=Path("runs/model-cities"))
    ap.add_argument("--storey", type=float, default=3.0, help="storey height (m)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    spec = city_spec()
    city = height_city(load_city(a.seed, spec=spec, cache_dir=a.cache))
    b = city.buildings
    truth = (b["height"].to_numpy(), b["floors"].to_numpy())
    rows: dict[str, dict[str, float]] = {}
    runs = []
    for w in a.weights:
        ref = Path(w) if str(w).endswith(".safetensors") else w
        h = predict(city.inputs, ref, device="cpu").compute()
        runs.append(height_metrics(footprint_median(h, b), *truth, storey_height_m=a.storey))
    for k, r in enumerate(runs):  # named by the file's folder too: seeds share a stem
        w = Path(str(a.weights[k]))
        label = f"{w.parent.name}/{w.stem}" if w.suffix == ".safetensors" else w.stem
        rows[f"height_s1s2 [{label}]"] = r
    if len(runs) > 1:
        rows["height_s1s2 mean"] = {m: float(np.mean([r[m] for r in runs])) for m in runs[0]}
        rows["height_s1s2 sd"] = {m: float(np.std([r[m] for r in runs], ddof=1))
                                  for m in runs[0]}
    train = [truth_buildings(s, spec, city.year) for s in a.train_seeds]
    import pandas as pd

    means = land_use_mean_height(pd.concat(train, ignore_index=True))
    base = b["land_use"].map(means).fillna(means["*"]).to_numpy()
    rows["baseline: mean height per land use"] = height_metrics(base, *truth,
                                                                storey_height_m=a.storey)
    rows["baseline: mean height of the city"] = height_metrics(
        np.full(len(b), means["*"]), *truth, storey_height_m=a.storey)
    print(f"held-out city seed {a.seed} ({spec.name}, {spec.size_m} m), {len(b)} buildings, "
          f"year {city.year}; {time.perf_counter() - t0:.0f} s")
    print(f"{'':44s} {'MAE m':>8s} {'RMSE m':>8s} {'floors±1':>9s}")
    for name, r in rows.items():
        print(f"{name:44s} {r['mae_m']:8.2f} {r['rmse_m']:8.2f} {r['floors_within_one']:9.3f}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
