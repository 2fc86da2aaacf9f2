"""Every shipped model beside trivial baselines on the same inputs, as mean ± sd over spatial
split seeds of the held-out city (and over training seeds where asked), one Markdown table
per task.

    .venv/bin/python benchmarks/models_eval.py [--weights DIR] [--train-seeds 0 1 2]
        [--splits 5] [--seed 1] [--cache runs/model-cities] [--json OUT]

Tasks and baselines (``eocube.models.simple_baselines``, fitted on the training cities'
composites and truth, the cities the models were trained on):

* built-up (the held-out city, and the same city in the arid landscape): every ``urban_*``
  model against a per-pixel logistic regression on the same bands as each model (S2, S1,
  S1 + S2), one VV (dB) threshold and one NDBI threshold, each fitted for the best F1;
* change (first → last year): Siam-Diff DT against post-classification of the logistic maps
  (S1 + S2), of the fusion model's maps and of the VV / NDBI threshold maps;
* building footprints (VHR): the U-Net against a per-pixel logistic regression on RGB;
* stock per 100 m cell: the stock regressors against volume × one mean intensity (fitted on
  the training cities' buildings; fed the truth's volumes, so stronger than the models'
  inputs allow) and the logistic S2 built-up area × one mean stock per built-up m² (the
  models' own input); Spearman on built cells (truth stock > 0) beside all cells.

Split seeds: the held-out city is cut into square blocks (32 px = 320 m for maps, 4 × 4 cells
for stock) and each split seed scores a seeded random half of the blocks, so the spread says
how much a number moves with the part of the city it is measured on. Training seeds: by
default only the shipped weights (one training seed; the output says so); ``--train-seeds``
retrains every model with ``eocube.models.training.train(name, seed=s)`` into a temporary
folder (slow on a CPU) and refits the logistic baselines with the same seed.

Height is measured by ``benchmarks/height.py`` beside mean height per land use.
These are synthetic results: they show what the models learn from the simulator's data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eocube.estimates import metrics as m
from eocube.models import available_weights, forward_arrays, forward_arrays_tiled, load_model
from eocube.models import simple_baselines as sb
from eocube.models.data import (
    HELD_OUT_SEED,
    S1_BANDS,
    TRAIN_SEEDS,
    CityData,
    as_array,
    city_archive,
    city_spec,
    load_city,
)

S2 = ("B02", "B03", "B04", "B08", "B11", "B12")
BAND_SETS = {"S2": S2, "S1": S1_BANDS, "S1+S2": (*S2, *S1_BANDS)}
MAP_BLOCK_PX = 32
CELL_BLOCK = 4
MAP_KEYS = ("f1", "precision", "recall", "iou", "kappa")
STOCK_KEYS = ("spearman_built", "spearman_all", "r2", "wrmse_t", "total_rel_err")


# ---------------------------------------------------------------- splits
def block_masks(shape: tuple[int, int], *, block: int, n_splits: int) -> list[np.ndarray]:
    """``n_splits`` boolean masks of ``shape``, each a seeded random half of the
    ``block`` × ``block`` squares (split seed k → ``default_rng([k, 11])``)."""
    ny, nx = -(-shape[0] // block), -(-shape[1] // block)
    out = []
    for k in range(n_splits):
        rng = np.random.default_rng([k, 11])
        pick = np.zeros(ny * nx, bool)
        pick[rng.choice(ny * nx, size=(ny * nx) // 2, replace=False)] = True
        grid = pick.reshape(ny, nx).repeat(block, 0).repeat(block, 1)
        out.append(grid[: shape[0], : shape[1]])
    return out


# ---------------------------------------------------------------- fitted baselines
def fit_baselines(train: list[CityData], *, seed: int, cache: Path | None) -> dict:
    """Every baseline fitted on the training cities (seed: the logistic pixel draw)."""
    imgs = [c.inputs[y] for c in train for y in c.years]
    labs = [c.builtup[y].to_numpy() for c in train for y in c.years]
    out = {f"logistic {k}": sb.fit_pixel_logistic(imgs, labs, bands=v, seed=seed)
           for k, v in BAND_SETS.items()}
    out["vv"] = sb.fit_threshold_rule(imgs, labs, kind="vv_db")
    out["ndbi"] = sb.fit_threshold_rule(imgs, labs, kind="ndbi")
    out["logistic RGB"] = sb.fit_pixel_logistic(
        [c.vhr.to_dataset("band") for c in train], [c.building.to_numpy() for c in train],
        bands=("red", "green", "blue"), seed=seed)
    # stock: one intensity per m³ (truth buildings) and one stock per built-up m² (the
    # logistic S2 map of the last year, the stock models' optical input)
    vols, stocks, area, cell_stock = [], [], [], []
    for c in train:
        tb = _truth_buildings(c, cache)
        vols.append(tb["volume"].to_numpy())
        stocks.append(tb["stock_total_t"].to_numpy())
        built = out["logistic S2"].predict(c.inputs[c.years[-1]])
        area.append(built.sum() * 100.0)
        cell_stock.append(float(c.cells["stock_t"].sum()))
    out["intensity_t_m3"] = sb.fit_stock_intensity(np.concatenate(vols), np.concatenate(stocks))
    out["stock_t_per_built_m2"] = float(np.sum(cell_stock) / max(np.sum(area), 1.0))
    return out


def _truth_buildings(city: CityData, cache: Path | None):
    from eocube.synth import read_truth

    if cache is None:
        raise SystemExit("the stock baselines read the truth buildings of the cached city "
                         "archives; pass --cache DIR")
    tb = read_truth(city_archive(city.seed, spec=city.spec or city_spec(), cache_dir=cache),
                    "buildings")
    if "volume" not in tb:
        tb["volume"] = tb.geometry.area * tb["height"].astype(float)
    return tb


def _cell_sum(city: CityData, tb, values: np.ndarray) -> np.ndarray:
    """Per 100 m cell of ``city.cells``: the sum of ``values`` over buildings by centroid."""
    import shapely

    gb = city.cells.odc.geobox
    cen = shapely.centroid(np.asarray(tb.geometry.values, dtype=object))
    col, row = ~gb.transform * (shapely.get_x(cen), shapely.get_y(cen))
    col, row = np.floor(col).astype(int), np.floor(row).astype(int)
    ok = (col >= 0) & (col < gb.shape.x) & (row >= 0) & (row < gb.shape.y)
    return np.bincount(row[ok] * gb.shape.x + col[ok], weights=np.asarray(values)[ok],
                       minlength=gb.shape.x * gb.shape.y).reshape(gb.shape.yx)


# ---------------------------------------------------------------- scoring
def _maps_scores(truth: np.ndarray, pred: np.ndarray, masks: list[np.ndarray]) -> list[dict]:
    """Map metrics per split; ``truth``/``pred`` are (..., y, x), the masks (y, x)."""
    out = []
    for mk in masks:
        keep = np.broadcast_to(mk, truth.shape)
        r = m.map_metrics(truth[keep].astype("uint8"), pred[keep].astype("uint8"))
        out.append({k: float(r[k]) for k in MAP_KEYS})
    return out


def _stock_scores(truth: np.ndarray, pred: np.ndarray, masks: list[np.ndarray]) -> list[dict]:
    out = []
    for mk in masks:
        t, p = truth[mk], pred[mk]
        b = t > 0
        out.append({"spearman_built": float(m.spearman(t[b], p[b])),
                    "spearman_all": float(m.spearman(t, p)), "r2": float(m.r2(t, p)),
                    "wrmse_t": float(m.weighted_rmse(t, p, sample_weight=t)),
                    "total_rel_err": float(m.total_relative_error(t, p))})
    return out


def _weights(d: Path | None, name: str) -> str | Path:
    return d / f"{name}.safetensors" if d else name


def evaluate_one(weights: Path | None, names: list[str], base: dict, held: dict[str, CityData],
                 *, cache: Path | None, n_splits: int, device: str, amp: bool
                 ) -> dict[str, dict[str, list[dict]]]:
    """Scores per task → method → list over split seeds, for one training seed."""
    res: dict[str, dict[str, list[dict]]] = {}

    def add(task: str, method: str, scores: list[dict]) -> None:
        res.setdefault(task, {})[method] = scores

    city = held["temperate"]
    masks = block_masks(city.builtup[city.years[0]].shape, block=MAP_BLOCK_PX,
                        n_splits=n_splits)
    model_maps: dict[str, dict[int, np.ndarray]] = {}
    for land, c in held.items():
        task = f"built-up [{land}]"
        truth = np.stack([c.builtup[y].to_numpy() for y in c.years])
        for name in [n for n in names if n.startswith("urban_")]:
            model = load_model(_weights(weights, name), device=device)
            maps = {y: forward_arrays({i.name: as_array(c.inputs[y], i.bands)
                                       for i in model.spec.inputs}, model, device=device,
                                      amp=amp)["out"] > 0.5 for y in c.years}
            bands = sorted({b for i in model.spec.inputs for b in i.bands})
            add(task, f"{name} ({'+'.join(_band_set(bands))})",
                _maps_scores(truth, np.stack([maps[y] for y in c.years]), masks))
            if land == "temperate":
                model_maps[name] = maps
        base_maps = {}
        for k in BAND_SETS:
            lg = base[f"logistic {k}"]
            base_maps[f"logistic {k}"] = {y: lg.predict(c.inputs[y]) for y in c.years}
        for k in ("vv", "ndbi"):
            base_maps[base[k].label] = {y: base[k].apply(c.inputs[y]) for y in c.years}
        for label, mp in base_maps.items():
            add(task, f"baseline: {label}" + (" (per pixel)" if "logistic" in label else
                                              " (fitted)"),
                _maps_scores(truth, np.stack([mp[y] for y in c.years]), masks))
        if land == "temperate":
            keep_base = base_maps

    # change, first → last year, on the temperate city
    y0, y1 = city.years[0], city.years[-1]
    b0, b1 = city.builtup[y0].to_numpy(), city.builtup[y1].to_numpy()
    change = sb.post_classification(b0, b1)
    if "change_siamdiff" in names:
        model = load_model(_weights(weights, "change_siamdiff"), device=device)
        bands = model.spec.inputs[0].bands
        out = forward_arrays({"t1": as_array(city.inputs[y0], bands),
                              "t2": as_array(city.inputs[y1], bands)}, model, device=device,
                             amp=amp)
        add("change", "change_siamdiff (Siam-Diff DT, S1+S2)",
            _maps_scores(change, out["out"] > 0.5, masks))
    for label, mp in keep_base.items():
        add("change", f"baseline: post-classification of {label}",
            _maps_scores(change, sb.post_classification(mp[y0], mp[y1]), masks))
    if "urban_fusion" in model_maps:
        mp = model_maps["urban_fusion"]
        add("change", "post-classification of the urban_fusion maps",
            _maps_scores(change, sb.post_classification(mp[y0], mp[y1]), masks))

    # building footprints from VHR
    bmask = city.building.to_numpy()
    vmasks = block_masks(bmask.shape, block=MAP_BLOCK_PX * 10, n_splits=n_splits)
    if "buildings_vhr" in names:
        model = load_model(_weights(weights, "buildings_vhr"), device=device)
        out = forward_arrays_tiled({"vhr": city.vhr.to_numpy()}, model, tile=400, overlap=32,
                                   device=device, amp=amp)
        add("buildings (VHR)", "buildings_vhr (U-Net, RGB)",
            _maps_scores(bmask, out["out"] > 0.5, vmasks))
    lg = base["logistic RGB"]
    add("buildings (VHR)", "baseline: logistic RGB (per pixel)",
        _maps_scores(bmask, lg.predict(city.vhr.to_dataset("band")), vmasks))

    # stock per 100 m cell
    from eocube.models.training import stock_samples

    opt, ntl, stock = stock_samples(city)
    shape = city.cells["stock_t"].shape
    smasks = [mk.ravel() for mk in block_masks(shape, block=CELL_BLOCK, n_splits=n_splits)]
    for name in [n for n in names if n.startswith("stock_")]:
        model = load_model(_weights(weights, name), device=device)
        ins = {"optical": opt, "ntl": ntl}
        pred = forward_arrays({i.name: ins[i.name] for i in model.spec.inputs}, model,
                              device=device, amp=amp)["out"]
        add("stock", f"{name} ({'+'.join(i.name for i in model.spec.inputs)})",
            _stock_scores(stock, np.asarray(pred, dtype=np.float64).ravel(), smasks))
    tb = _truth_buildings(city, cache)
    vol = _cell_sum(city, tb, tb["volume"].to_numpy()).ravel()
    add("stock", "baseline: volume × mean intensity (truth volumes)",
        _stock_scores(stock, sb.volume_stock(vol, intensity_t_per_m3=base["intensity_t_m3"]),
                      smasks))
    built = base["logistic S2"].predict(city.inputs[y1])
    area = _block_sum(built.astype(np.float64) * 100.0, shape)
    add("stock", "baseline: logistic S2 built-up area × mean stock per m² (optical input)",
        _stock_scores(stock, (area * base["stock_t_per_built_m2"]).ravel(), smasks))
    return res


def _band_set(bands: list[str]) -> list[str]:
    have = set(bands)
    return [k for k in ("S1", "S2") if have & set(BAND_SETS[k])]


def _block_sum(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Sum a 10 m map into the ``shape`` grid of 100 m cells (padded at the far edges)."""
    f = 10
    pad = np.zeros((shape[0] * f, shape[1] * f))
    h, w = min(a.shape[0], pad.shape[0]), min(a.shape[1], pad.shape[1])
    pad[:h, :w] = a[:h, :w]
    return pad.reshape(shape[0], f, shape[1], f).sum(axis=(1, 3))


# ---------------------------------------------------------------- tables
def summarise(runs: list[dict]) -> dict[str, dict[str, dict[str, tuple[float, float, int]]]]:
    """task → method → metric → (mean, sd, n) over every (training seed, split seed)."""
    out: dict = {}
    for r in runs:
        for task, methods in r.items():
            for method, scores in methods.items():
                for s in scores:
                    for k, v in s.items():
                        out.setdefault(task, {}).setdefault(method, {}).setdefault(
                            k, []).append(v)
    return {t: {mm: {k: (float(np.nanmean(v)), float(np.nanstd(v, ddof=1)) if len(v) > 1
                         else float("nan"), len(v)) for k, v in d.items()}
                for mm, d in ms.items()} for t, ms in out.items()}


def markdown(summary: dict, *, note: str) -> str:
    lines = []
    for task, methods in summary.items():
        keys = STOCK_KEYS if task == "stock" else MAP_KEYS
        names = {"spearman_built": "ρ built cells", "spearman_all": "ρ all cells",
                 "r2": "R²", "wrmse_t": "wRMSE t", "total_rel_err": "total rel. err",
                 "f1": "F1", "precision": "precision", "recall": "recall", "iou": "IoU",
                 "kappa": "kappa"}
        lines += [f"### {task}", "", f"_{note}_", "",
                  "| method | " + " | ".join(names[k] for k in keys) + " |",
                  "|---|" + "---:|" * len(keys)]
        for method, d in methods.items():
            cells = []
            for k in keys:
                mu, sd, _ = d[k]
                fmt = ".0f" if k == "wrmse_t" else ".3f"
                cells.append(f"{mu:{fmt}} ± {sd:{fmt}}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def targets(summary: dict) -> list[tuple[str, bool]]:
    """Issue #15's targets on the means: fusion F1 ≥ best single modality + 0.02 and ≥ the
    S1+S2 logistic baseline + 0.05 (each landscape); Siam-Diff DT F1 ≥ post-classification of
    the logistic maps + 0.05."""
    def f1(task: str, prefix: str) -> float | None:
        for k, d in summary.get(task, {}).items():
            if k.startswith(prefix):
                return d["f1"][0]
        return None

    out = []
    for land in ("temperate", "arid"):
        task = f"built-up [{land}]"
        fu, s1, s2 = (f1(task, n + " (") for n in ("urban_fusion", "urban_s1", "urban_s2"))
        lg = f1(task, "baseline: logistic S1+S2")
        if fu is not None and s1 is not None and s2 is not None:
            out.append((f"{land}: urban_fusion F1 {fu:.3f} ≥ best single {max(s1, s2):.3f} "
                        "+ 0.02", fu >= max(s1, s2) + 0.02))
        if fu is not None and lg is not None:
            out.append((f"{land}: urban_fusion F1 {fu:.3f} ≥ logistic S1+S2 {lg:.3f} + 0.05",
                        fu >= lg + 0.05))
    sd, pc = f1("change", "change_siamdiff"), f1("change", "baseline: post-classification "
                                                           "of logistic S1+S2")
    if sd is not None and pc is not None:
        out.append((f"change_siamdiff F1 {sd:.3f} ≥ post-classification of the logistic maps "
                    f"{pc:.3f} + 0.05", sd >= pc + 0.05))
    return out


def _retrain(names: list[str], seeds: list[int], root: Path, cache: Path | None,
             device: str) -> dict[int, Path]:
    from eocube.models.training import train

    out = {}
    for s in seeds:
        d = root / f"seed{s}"
        d.mkdir(parents=True, exist_ok=True)
        for name in names:
            if not (d / f"{name}.safetensors").exists():
                train(name, out=d, seed=s, cache_dir=cache, device=device, progress=False)
        out[s] = d
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None,
                    help="folder of .safetensors (default: the shipped weights)")
    ap.add_argument("--train-seeds", type=int, nargs="*", default=None,
                    help="retrain every model with these seeds (slow) instead of the shipped "
                         "weights")
    ap.add_argument("--train-dir", type=Path, default=None,
                    help="where --train-seeds writes (default: a temporary folder)")
    ap.add_argument("--models", nargs="*", default=None, help="only these models")
    ap.add_argument("--splits", type=int, default=5, help="spatial split seeds")
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="held-out city seed")
    ap.add_argument("--cache", type=Path, default=Path("runs/model-cities"))
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    names = a.models or (available_weights() if a.weights is None else sorted(
        p.stem for p in a.weights.glob("*.safetensors")))
    names = [n for n in names if not n.startswith("height")]
    train = [load_city(s, cache_dir=a.cache) for s in TRAIN_SEEDS]
    held = {"temperate": load_city(a.seed, cache_dir=a.cache),
            "arid": load_city(a.seed, spec=city_spec("arid"), cache_dir=a.cache)}
    kw: dict = {"cache": a.cache, "n_splits": a.splits, "device": a.device, "amp": a.amp}
    runs: list[dict] = []
    if a.train_seeds:
        tmp = None if a.train_dir else tempfile.TemporaryDirectory(prefix="eocube-seeds-")
        root = a.train_dir or Path(tmp.name)
        dirs = _retrain(names, a.train_seeds, root, a.cache, a.device)
        for s, d in dirs.items():
            base = fit_baselines(train, seed=s, cache=a.cache)
            runs.append(evaluate_one(d, names, base, held, **kw))
        note = (f"mean ± sd over {len(dirs)} training seeds ({', '.join(map(str, dirs))}) × "
                f"{a.splits} spatial split seeds; models retrained by this run")
    else:
        base = fit_baselines(train, seed=0, cache=a.cache)
        runs.append(evaluate_one(a.weights, names, base, held, **kw))
        note = (f"mean ± sd over {a.splits} spatial split seeds of the held-out city; ONE "
                "training seed (the shipped weights, or --weights): no training-seed spread; "
                "pass --train-seeds 0 1 2 for it")
    summary = summarise(runs)
    print(f"held-out synthetic city seed={a.seed} (trained on seeds {list(TRAIN_SEEDS)}); "
          f"device={a.device}, amp={a.amp}, torch {torch.__version__}, {os.cpu_count()} CPUs; "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(markdown(summary, note=note))
    ok = True
    for text, passed in targets(summary):
        ok &= passed
        print(f"[{'pass' if passed else 'MISS'}] {text}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"note": note, "summary": summary, "runs": runs},
                                     indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
