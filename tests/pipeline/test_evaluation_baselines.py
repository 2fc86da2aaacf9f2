"""The evaluation's baselines (issue #15, point 6): the per-pixel logistic regression fitted by
spatial cross-fitting, and every table listing its baselines on the same inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from eocube.pipeline.evaluation import _logistic_crossfit


def _composites(seed: int = 0, n: int = 96) -> tuple[xr.Dataset, dict[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    truth, data = {}, {"B08": [], "B11": [], "vv": []}
    for _ in (2020, 2021):
        built = rng.random((n, n)) < 0.3
        data["B08"].append(np.where(built, 0.18, 0.30) + rng.normal(0, 0.03, (n, n)))
        data["B11"].append(np.where(built, 0.25, 0.18) + rng.normal(0, 0.03, (n, n)))
        data["vv"].append(10 ** (np.where(built, -3.0, -12.0) / 10 + rng.normal(0, 0.3, (n, n))))
        truth[len(truth) + 2020] = built
    t = pd.to_datetime(["2020-12-31", "2021-12-31"])
    ds = xr.Dataset({k: (("time", "y", "x"), np.stack(v)) for k, v in data.items()},
                    coords={"time": t, "y": np.arange(n) * -10.0, "x": np.arange(n) * 10.0})
    ds["B08"][0, :5, :5] = np.nan  # a gap stays a gap
    return ds, truth


def test_logistic_crossfit_predicts_each_half_from_the_other():
    comp, truth = _composites()
    out = _logistic_crossfit(comp, truth)
    assert sorted(out) == [2020, 2021]
    for y, (mp, valid, name) in out.items():
        assert name.startswith("logistic regression per pixel on B08+B11+vv")
        t = truth[y]
        f1 = 2 * (t & mp & valid).sum() / ((t & valid).sum() + (mp & valid).sum())
        assert f1 > 0.95, (y, f1)
    assert not out[2020][1][:5, :5].any() and out[2021][1].all()


def test_logistic_crossfit_never_sees_the_pixels_it_predicts():
    # labels inverted on one half of the checkerboard: that half is predicted by the fit on
    # the other half's true labels, so its map follows the true surface; a fit that pooled
    # both halves would see contradictory labels and agree with the truth about half the time
    comp, truth = _composites(seed=1)
    n = comp.sizes["y"]
    iy, ix = np.meshgrid(np.arange(n) // 32, np.arange(n) // 32, indexing="ij")
    half = (iy + ix) % 2 == 0
    flipped = {y: np.where(half, ~t, t) for y, t in truth.items()}
    out = _logistic_crossfit(comp, flipped)
    for y, (mp, _, _) in out.items():
        # on `half` the map follows the true surface (fitted on the other half's true labels)
        agree = (mp[half] == truth[y][half]).mean()
        assert agree > 0.9, agree


def test_the_evaluation_sets_each_model_beside_the_baselines_of_issue_15(tiny_run):
    ev = tiny_run / "evaluation"
    built = pd.read_parquet(ev / "builtup.parquet")
    assert built["method"].str.startswith("logistic regression per pixel").any()
    change = pd.read_parquet(ev / "change.parquet")
    assert "post-classification of the logistic maps (cross-fit)" in set(change["method"])
    pop = pd.read_parquet(ev / "population.parquet")
    for level in ("building (held-out communities)", "community (held-out, census)"):
        names = set(pop.loc[pop["level"] == level, "method"])
        assert any(n.startswith("capacity-proportional allocation of the coarse census")
                   for n in names), level
        assert any(n.startswith("areal weighting of the coarse census") for n in names), level
    assert "census areal weighting" in set(pop["method"])
    # DEFF's other external forms at both levels, from the same splits as DEFF
    for name in ("DEFF, x_out ∝ capacity", "DEFF, x_out per building"):
        rows = pop[pop["method"] == name]
        assert set(rows["level"]) == {"building (held-out communities)",
                                      "community (held-out, census)"}, name
        assert (rows["splits"] == 5).all() and rows["R2"].notna().all(), name
    stock = pd.read_parquet(ev / "stock.parquet")
    assert {"spearman_built_cells", "spearman_all_cells"} <= set(stock.columns)
