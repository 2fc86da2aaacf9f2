"""Half the labels: MMCR against supervised training on the same half, over several seeds,
measured on a held-out city like the training cities and on one in another landscape.

    .venv/bin/python benchmarks/mmcr_half.py [--seeds 0 1 2] [--city 1] [--out runs/mmcr-half]
                                             [--landscapes temperate arid] [--threads 1]
                                             [--json OUT]
    .venv/bin/python benchmarks/mmcr_half.py --city 3 --weight 0.3 --out runs/mmcr-half-l0.3

Trains ``urban_fusion_half`` (supervised on the western, labelled half of each training city)
and ``urban_mmcr_half`` (the same labelled chips, step for step, plus as many unlabelled
chips, seen only through the SAR–optical consistency loss: half from the eastern halves, half
from a city of the arid landscape, seed 4) once per training seed, and measures built-up F1 of
the fusion, SAR and optical heads on one synthetic city seed (default: the held-out one;
``--city 3`` is the validation city, the only one to choose hyper-parameters on) in each of
``--landscapes``: ``temperate``, as the training cities, and ``arid``, where bare soil looks
like roofs to Sentinel-2 but not to Sentinel-1. No label comes from an arid city: adapting to a
region from its imagery alone is what MMCR is for (Hafner et al. 2022).
Both recipes share a seed's initial weights and labelled chips, so the per-seed difference
MMCR − supervised is paired; its mean and standard error say whether a gap is larger than the
seed-to-seed spread. MMCR *matches* where its mean is not below the supervised one by more than
two standard errors, and *beats* it where it is above by more than two.

Weights land in ``OUT/seed<S>/``; a file already there whose stored training settings match
the recipe and seed is evaluated without retraining (delete the folder to start over). One
thread, CPU: about 2 min (supervised) + 4.5 min (MMCR) per seed on the shared 2-core machine.

``--weight`` / ``--rampup`` train MMCR with another consistency weight λ / ramp-up than the
recipe's: for choosing them on the validation city (``--city 3``), never on the held-out one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from eocube.infer.predict import HEADS as DUAL_HEADS
from eocube.models.data import (
    HELD_OUT_SEED,
    TRAIN_SEEDS,
    CityData,
    city_spec,
    load_city,
)
from eocube.synth.cityspec import LANDSCAPE_NAMES

RECIPES = ("urban_fusion_half", "urban_mmcr_half")
HEADS = DUAL_HEADS["dual_stream_unet"]
#: training settings that must match for a stored weights file to be reused
_SAME = ("seed", "steps", "batch", "lr", "labels", "consistency_weight",
         "consistency_rampup_steps", "city_seeds", "unlabelled_cities")


def _expected(name: str, seed: int, cities: list[CityData], cache: Path) -> dict[str, object]:
    from eocube.models.training import RECIPES as ALL
    from eocube.models.training import unlabelled_cities

    r = ALL[name]
    extra = {"unlabelled": unlabelled_cities(r, cache_dir=cache)} if r.unlabelled else {}
    job = r.make(cities, width=r.width, depth=r.depth, **extra)
    return {**dict(job.spec.training), "seed": seed, "steps": r.steps, "batch": r.batch,
            "lr": r.lr, "city_seeds": [c.seed for c in cities]}


def _reusable(path: Path, expected: dict[str, object]) -> bool:
    from eocube.models import read_spec

    if not path.exists():
        return False
    t = dict(read_spec(path).training)
    return all(t.get(k) == expected.get(k) for k in _SAME if k in expected)


def override_mmcr(*, weight: float | None, rampup: int | None) -> None:
    """Change the ``urban_mmcr_half`` recipe's λ and/or ramp-up (for validation sweeps): the
    recipe reads both constants when it builds its job."""
    from eocube.models import training as T

    if weight is not None:
        T.MMCR_WEIGHT = weight
    if rampup is not None:
        T.MMCR_RAMPUP_STEPS = rampup


def train_seed(name: str, seed: int, *, out: Path, cities: list[CityData], threads: int,
               device: str, cache: Path, extra: str = "") -> tuple[Path, bool]:
    """Weights of recipe ``name`` trained with ``seed`` in ``out``; True when trained now."""
    from eocube.models import train

    path = out / f"{name}.safetensors"
    if _reusable(path, _expected(name, seed, cities, cache)):
        return path, False
    cmd = f"eocube train {name} --out {out} --seed {seed} --threads {threads}{extra}"
    train(name, out=out, seed=seed, cities=cities, threads=threads, device=device,
          cache_dir=cache, progress=False, command=cmd)
    return path, True


def head_f1(path: Path, city: CityData, *, device: str) -> dict[str, float]:
    """Built-up F1 of each head on every yearly composite of ``city`` (pooled)."""
    from eocube.models import load_model
    from eocube.testing.builtup import builtup_metrics

    model = load_model(path, device=device)
    return {k: float(v["f1"]) for k, v in builtup_metrics(city, model, device=device).items()
            if k in HEADS}


def eval_city(seed: int, landscape: str, *, cache_dir: Path) -> CityData:
    """Synthetic city ``seed`` of the shipped models' spec, in ``landscape``."""
    return load_city(seed, spec=city_spec(landscape), cache_dir=cache_dir)


def verdict(d: dict[str, float]) -> str:
    """``beats`` / ``matches`` / ``MISS`` from the paired difference's mean and standard error
    (two standard errors either way; a single seed compares the means)."""
    se = d["se"] if d["se"] == d["se"] else 0.0  # NaN with one seed
    if d["mean"] > 2 * se:
        return "beats"
    return "matches" if d["mean"] >= -2 * se else "MISS"


def _msd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def summary(rows: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean and sd over seeds of each recipe's head F1, and of the paired MMCR − supervised."""
    out: dict[str, dict[str, float]] = {}
    for name in RECIPES:
        for h in HEADS:
            mean, sd = _msd([r[name][h] for r in rows.values()])
            out[f"{name}/{h}"] = {"mean": mean, "sd": sd}
    for h in HEADS:
        d = [r["urban_mmcr_half"][h] - r["urban_fusion_half"][h] for r in rows.values()]
        mean, sd = _msd(d)
        out[f"diff/{h}"] = {"mean": mean, "sd": sd, "se": sd / len(d) ** 0.5,
                            "n_mmcr_ge": sum(x >= 0 for x in d), "n": len(d)}
    return out


def table(rows: dict[int, dict[str, dict[str, float]]], s: dict[str, dict[str, float]]) -> str:
    cols = [(n, h) for n in RECIPES for h in HEADS]
    short = {"urban_fusion_half": "sup", "urban_mmcr_half": "mmcr"}
    head = f"{'seed':>6s} " + " ".join(f"{short[n] + '/' + h:>12s}" for n, h in cols)
    head += " " + " ".join(f"{'Δ/' + h:>10s}" for h in HEADS)
    lines = [head]
    for seed, r in rows.items():
        vals = " ".join(f"{r[n][h]:12.4f}" for n, h in cols)
        d = " ".join(f"{r['urban_mmcr_half'][h] - r['urban_fusion_half'][h]:+10.4f}"
                     for h in HEADS)
        lines.append(f"{seed:>6d} {vals} {d}")
    lines.append(f"{'mean':>6s} " + " ".join(f"{s[f'{n}/{h}']['mean']:12.4f}" for n, h in cols)
                 + " " + " ".join(f"{s[f'diff/{h}']['mean']:+10.4f}" for h in HEADS))
    lines.append(f"{'sd':>6s} " + " ".join(f"{s[f'{n}/{h}']['sd']:12.4f}" for n, h in cols)
                 + " " + " ".join(f"{s[f'diff/{h}']['sd']:10.4f}" for h in HEADS))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="training seeds (initial weights and chip sampling)")
    ap.add_argument("--city", type=int, default=HELD_OUT_SEED,
                    help="city measured on: the held-out seed (default) or 3 for validation")
    ap.add_argument("--out", type=Path, default=Path("runs/mmcr-half"))
    ap.add_argument("--cache", type=Path, default=Path("runs/model-cities"))
    ap.add_argument("--landscapes", nargs="+", default=list(LANDSCAPE_NAMES),
                    choices=LANDSCAPE_NAMES, help="landscapes of the city measured on")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    ap.add_argument("--weight", type=float, default=None,
                    help="MMCR consistency weight λ (default: the recipe's)")
    ap.add_argument("--rampup", type=int, default=None,
                    help="MMCR ramp-up steps (default: the recipe's)")
    a = ap.parse_args()
    if a.city in TRAIN_SEEDS:
        ap.error(f"--city {a.city} is a training city {TRAIN_SEEDS}; use {HELD_OUT_SEED} or 3")
    import torch

    torch.set_num_threads(a.threads)
    extra = ""
    if a.weight is not None or a.rampup is not None:
        override_mmcr(weight=a.weight, rampup=a.rampup)
        extra = f" (benchmarks/mmcr_half.py --weight {a.weight} --rampup {a.rampup})"
    cities = [load_city(s, cache_dir=a.cache) for s in TRAIN_SEEDS]
    tests = {land: eval_city(a.city, land, cache_dir=a.cache) for land in a.landscapes}
    rows: dict[str, dict[int, dict[str, dict[str, float]]]] = {land: {} for land in tests}
    for seed in a.seeds:
        for name in RECIPES:
            t0 = time.perf_counter()
            path, fresh = train_seed(name, seed, out=a.out / f"seed{seed}", cities=cities,
                                     threads=a.threads, device=a.device, cache=a.cache,
                                     extra=extra if name == "urban_mmcr_half" else "")
            for land, test in tests.items():
                rows[land].setdefault(seed, {})[name] = head_f1(path, test, device=a.device)
            print(f"seed {seed} {name}: fusion F1 " + ", ".join(
                f"{land} {rows[land][seed][name]['out']:.4f}" for land in tests)
                + f" ({'trained' if fresh else 'reused'}, {time.perf_counter() - t0:.0f} s)",
                flush=True)
    ok = True
    out: dict[str, object] = {"city": a.city}
    for land in tests:
        s = summary(rows[land])
        print(f"\nbuilt-up F1 on synthetic city seed={a.city}, {land} landscape (trained on "
              f"{TRAIN_SEEDS}, temperate); torch {torch.__version__}, {a.threads} thread(s), "
              f"{os.cpu_count()} CPUs")
        print(table(rows[land], s))
        d = s["diff/out"]
        v = verdict(d)
        ok &= v != "MISS"
        print(f"fusion head, MMCR − supervised: {d['mean']:+.4f} ± {d['sd']:.4f} (sd), "
              f"se {d['se']:.4f}; MMCR ≥ supervised in {d['n_mmcr_ge']} of {d['n']} seeds")
        print(f"[{'pass' if v != 'MISS' else 'MISS'}] {land}: MMCR {v} supervised "
              f"(fusion F1 {s['urban_mmcr_half/out']['mean']:.4f} against "
              f"{s['urban_fusion_half/out']['mean']:.4f})")
        out[land] = {"per_seed": rows[land], "summary": s, "verdict": v}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2))
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
