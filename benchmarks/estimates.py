"""Benchmark: the estimates on the synthetic city, in one run.

    .venv/bin/python benchmarks/estimates.py                 # the demo city (169 communities)
    .venv/bin/python benchmarks/estimates.py --quick         # 6.4 km, 121 communities
    .venv/bin/python benchmarks/estimates.py --out results/  # also write the GeoParquet tables

Prints:

1. DEFF population: the full comparison table (DEFF, DEFF1–4, LR(building), LR(TAZ), census
   areal weighting, built-up dasymetric 100 m, 1 km smoothed surface) on the held-out
   communities of a seeded 3:1 split stratified by natural-breaks population class, the DQW
   weights and the fitted coefficients.
2. Building stock: bottom-up from the truth inputs against the truth; the top-down NTL
   log-log regression on held-out 500 m cells (Spearman ρ, weighted RMSE, total error); then
   per 100 m cell of the held-out model city (seed 1) the shipped fused ORS + NTL, ORS-only
   and NTL-only regressors next to the log-log regression fitted on their training cities,
   and Grad-CAM of the optical branch for six cells.
3. Roof greening: AHP weights and CR, candidate roofs, classes, shares per district.
4. SDG 11.3.1: LCR, PGR and LCRPGR of the city and the spread over communities.

Everything is simulated in memory from a seed; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

LABELS = {"stock_fusion": "fused ORS + NTL (CNN)", "stock_optical": "ORS only (CNN)",
          "stock_ntl": "NTL only (CNN)", "ntl_loglog": "NTL log-log regression"}


def _topdown_networks(out: str | None):
    """The shipped stock regressors against the classical regression, per 100 m cell of the
    held-out model city (seed 1); the classical regression is fitted on the networks' training
    cities (seeds 0 and 2), so every row has seen the same data."""
    import torch

    from eocube.estimates.stock import topdown_stock
    from eocube.models.data import HELD_OUT_SEED, TRAIN_SEEDS, load_city

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    # the model cities' archives, read as training reads them (cached as `eocube train` does)
    held = load_city(HELD_OUT_SEED, cache_dir="runs/model-cities")
    cells, optical = held.cells, held.inputs[held.years[-1]]
    fit = [load_city(s, cache_dir="runs/model-cities").cells for s in TRAIN_SEEDS]
    t_in = time.perf_counter() - t0
    truth = cells["stock_t"].to_numpy().reshape(-1)
    # Grad-CAM of the three largest stocks and three cells around the median of the built cells
    order = np.argsort(truth)[::-1]
    built = order[truth[order] > 0]
    mid = len(built) // 2
    cam_ids = [*order[:3].tolist(), *built[mid - 1:mid + 2].tolist()]
    t0 = time.perf_counter()
    td = topdown_stock(cells, optical=optical, ntl_fit=fit, cam_cells=cam_ids)
    t_td = time.perf_counter() - t0
    a, b = td.cells.attrs["ntl_loglog_coef"]
    print(f"\ntop-down per {int(cells.odc.geobox.resolution.x)} m cell on the held-out model "
          f"city (seed {HELD_OUT_SEED}, {len(truth)} cells; networks trained and the regression "
          f"fitted on seeds {list(TRAIN_SEEDS)}: log stock = {a:.3f} + {b:.3f}·log NTL); inputs "
          f"{t_in:.1f} s, models + Grad-CAM {t_td:.1f} s:")
    tab = td.metrics.rename(index=LABELS)
    print(tab.round({"spearman": 4, "wRMSE": 0, "total_rel_error": 4}).to_string())
    f = td.metrics.loc["stock_fusion"]
    for base in ("stock_optical", "stock_ntl"):
        o = td.metrics.loc[base]
        te_f, te_o = abs(f["total_rel_error"]), abs(o["total_rel_error"])
        print(f"fused vs {LABELS[base]}: Spearman {f['spearman']:.3f} vs {o['spearman']:.3f} "
              f"({'beats' if f['spearman'] > o['spearman'] else 'does NOT beat'}); "
              f"|total error| {te_f:.3f} vs {te_o:.3f} "
              f"({'beats' if te_f < te_o else 'does NOT beat'})")
    cam = td.grad_cam
    m = int(cam.attrs["margin_px"])
    inner = cam[:, m:-m, m:-m].mean(("row", "col")).to_numpy()
    ring = (cam.sum(("row", "col")).to_numpy() - cam[:, m:-m, m:-m].sum(("row", "col"))
            .to_numpy()) / (cam.sizes["row"] * cam.sizes["col"] - (cam.sizes["row"] - 2 * m) ** 2)
    print(f"Grad-CAM ({cam.attrs['model']}, optical branch, {cam.sizes['row']} px patches = "
          f"cell + {m} px margin): mean activation in the cell vs in the margin")
    for i, cid in enumerate(cam["cell"].to_numpy()):
        r = td.cells.loc[cid]
        print(f"  cell {cid:5d}: stock {r['stock_t']:9.0f} t, fused {r['pred_stock_fusion']:9.0f}"
              f" t; cell {inner[i]:.3f}, margin {ring[i]:.3f}")
    if out:
        from pathlib import Path

        from eocube.io import to_geoparquet

        to_geoparquet(td.cells, Path(out) / "stock_topdown_cells.parquet")
        cam.to_dataset().to_zarr(Path(out) / "stock_gradcam.zarr", mode="w",
                                 consolidated=False)
    return td


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller city (121 communities)")
    ap.add_argument("--seed", type=int, default=0, help="city seed")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split")
    ap.add_argument("--out", default=None, help="folder for the GeoParquet results")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)

    from odc.geo.xr import wrap_xr

    from eocube.estimates.population import compare_population
    from eocube.io import to_geoparquet
    from eocube.synth import resolve_spec
    from eocube.testing.estimates import city_inputs
    from eocube.zonal import taz_features

    spec = resolve_spec("tiny", size_m=6400, block_m=300) if args.quick else resolve_spec("demo")
    t0 = time.perf_counter()
    ci = city_inputs(spec, seed=args.seed)
    w = ci.world
    feats = taz_features(ci.rasters, w.taz).compute()
    t_in = time.perf_counter() - t0
    print(f"city {spec.name} {spec.size_m / 1000:g} km, seed {args.seed}: {len(w.taz)} TAZ, "
          f"{len(w.communities)} communities, {len(w.buildings)} buildings, {len(w.pois)} POIs; "
          f"inputs + TAZ features {t_in:.1f} s")

    # 1. DEFF ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    cmp = compare_population(ci.buildings, pois=w.pois, taz=w.taz, communities=w.communities,
                             census=w.census, features=feats, builtup=ci.builtup,
                             districts=ci.districts, truth_col="occupants_truth",
                             seed=args.split_seed)
    t_cmp = time.perf_counter() - t0
    d = cmp.deff
    n_test = int((d.communities["split"] == "test").sum())
    print(f"\n== 1. DEFF population ({t_cmp:.1f} s) — held-out communities: {n_test} of "
          f"{len(d.communities)} (MAPE/SMAPE in %, bld_* = building level vs true occupants)")
    print(cmp.table.round({"MAE": 1, "RMSE": 1, "MAPE": 2, "SMAPE": 2, "R2": 3, "bld_MAE": 2,
                           "bld_RMSE": 2, "bld_R2": 3}).to_string())
    best = cmp.table["MAPE"].idxmin()
    beaten = [m for m in cmp.table.index if m != "DEFF"
              and cmp.table.loc[m, "MAPE"] <= cmp.table.loc["DEFF", "MAPE"]]
    print(f"lowest MAPE: {best}; DEFF R² = {cmp.table.loc['DEFF', 'R2']:.3f}; models with MAPE "
          f"≤ DEFF: {beaten or 'none'}")
    print("DQW weights:\n" + d.weights.round(4).to_string(index=False))
    print(f"weights sum {d.weights['w'].sum():.6f}; E_out in [{d.taz['e_out'].min():.3f}, "
          f"{d.taz['e_out'].max():.3f}]; a = {d.coef['a']:.5f}, b = {d.coef['b']:.2f}")
    src = d.buildings["function_source"].value_counts().to_dict()
    acc = float((d.buildings["function"].to_numpy() == w.buildings["function"].to_numpy()).mean())
    print(f"function typing: sources {src}; agreement with the true function {acc:.3f}")

    # 2. stock ------------------------------------------------------------------------------
    from eocube.estimates.stock import (
        bottom_up_stock,
        ntl_stock_regression,
        stock_grid,
        stock_metrics,
    )
    from eocube.zonal import zonal_stats

    print("\n== 2. Building material stock")
    b_in = w.buildings.drop(columns=[c for c in w.buildings if c.startswith("stock_")])
    s = bottom_up_stock(b_in)
    err = np.abs(s["stock_total_t"] - w.buildings["stock_total_t"]) / w.buildings[
        "stock_total_t"]
    print(f"bottom-up from the truth inputs: total {s['stock_total_t'].sum() / 1e6:.3f} Mt vs "
          f"truth {w.buildings['stock_total_t'].sum() / 1e6:.3f} Mt; max relative error per "
          f"building {err.max():.2e}")
    cell = 500.0
    grid = w.geobox(cell)
    g = stock_grid(s, grid)["stock_total_t"]
    ntl_rad = ci.rasters["ntl"]  # last-year mean NTL at 100 m
    import geopandas as gpd
    import shapely

    ny, nx = grid.shape.yx
    aff = grid.affine
    r, c = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    x0, y0 = aff.c + c.ravel() * aff.a, aff.f + r.ravel() * aff.e
    cells = gpd.GeoDataFrame({"cell": np.arange(ny * nx)},
                             geometry=shapely.box(x0, y0 + aff.e, x0 + aff.a, y0), crs=grid.crs)
    ntl_sum = zonal_stats(ntl_rad, cells, stats=["sum"], id_col="cell")["sum"].values
    df = pd.DataFrame({"cell": cells["cell"], "stock_t": np.asarray(g.values).ravel(),
                       "ntl_sum": ntl_sum})
    df = df[df["stock_t"] > 0].reset_index(drop=True)
    rng = np.random.default_rng(args.split_seed)
    test = np.zeros(len(df), bool)
    test[rng.choice(len(df), size=len(df) // 4, replace=False)] = True
    out = ntl_stock_regression(df, train=~test)
    m = stock_metrics(out.loc[test, "stock_t"], out.loc[test, "pred_ntl_loglog"])
    a, bcoef = out.attrs["coef"]
    print(f"top-down, classical, on {int(test.sum())} held-out {cell:g} m cells of {len(df)} "
          f"(log stock = {a:.3f} + {bcoef:.3f}·log NTL):")
    print(pd.DataFrame([{"model": "NTL log-log regression", **m}]).set_index("model")
          .round(4).to_string())
    _topdown_networks(args.out)

    # 3. greening ---------------------------------------------------------------------------
    from eocube.estimates.greening import greening_criteria, greening_suitability
    from eocube.synth.thermal import land_surface_temperature

    t0 = time.perf_counter()
    lst = wrap_xr(land_surface_temperature(ci.scene).astype("float64"), ci.scene.geobox)
    crit = greening_criteria(d.buildings, roads=w.roads, lst=lst, grid=w.geobox(30.0))
    gr = greening_suitability(d.buildings, criteria=crit, districts=ci.districts)
    t_g = time.perf_counter() - t0
    print(f"\n== 3. Roof greening ({t_g:.1f} s)")
    print("AHP weights: " + ", ".join(f"{k} {v:.3f}" for k, v in gr.ahp.weights.items())
          + f"; λ_max {gr.ahp.lambda_max:.4f}, CI {gr.ahp.ci:.4f}, CR {gr.ahp.cr:.4f}")
    reasons = gr.roofs["reason"].replace("", "candidate").value_counts().to_dict()
    print(f"roofs: {reasons}; class breaks {np.round(gr.breaks, 3).tolist()}")
    print("classes: " + str(gr.roofs.loc[gr.roofs["candidate"], "suitability"]
                            .value_counts().to_dict()))
    print("per district:\n" + gr.districts.round(3).to_string(index=False))

    # 4. SDG 11.3.1 --------------------------------------------------------------------------
    import xarray as xr

    from eocube.estimates.sdg import lcrpgr

    y0_, y1_ = w.spec.start.year - 1, w.spec.end.year
    bu = xr.concat([wrap_xr(ci.scene.builtup(y).astype("float32"), ci.scene.geobox)
                    for y in (y0_, y1_)], dim="year").assign_coords(year=[y0_, y1_])
    sdg = lcrpgr(bu, population=w.census, zones=w.communities, on_invalid="nan")
    city = sdg.iloc[0]
    z = sdg.iloc[1:]
    print(f"\n== 4. SDG 11.3.1, end of {y0_} → end of {y1_} ({city['years']:g} years)")
    print(f"city: built-up {city['urb_t1'] / 1e6:.3f} → {city['urb_t2'] / 1e6:.3f} km², "
          f"population {city['pop_t1']:.0f} → {city['pop_t2']:.0f}; LCR {city['LCR']:.4f}/yr, "
          f"PGR {city['PGR']:.4f}/yr, LCRPGR {city['LCRPGR']:.3f}")
    ok = z["LCRPGR"].notna()
    print(f"communities: {int(ok.sum())} with a ratio, {int((~ok).sum())} undefined "
          f"({z.loc[~ok, 'note'].value_counts().to_dict()}); LCRPGR quartiles "
          f"{np.round(z.loc[ok, 'LCRPGR'].quantile([0.25, 0.5, 0.75]).to_numpy(), 3).tolist()}")

    if args.out:
        from pathlib import Path

        o = Path(args.out)
        to_geoparquet(d.buildings, o / "deff_buildings.parquet")
        to_geoparquet(cmp.communities, o / "deff_communities.parquet")
        to_geoparquet(cmp.table.reset_index(), o / "deff_table.parquet")
        to_geoparquet(s, o / "stock_buildings.parquet")
        to_geoparquet(gr.roofs, o / "greening_roofs.parquet")
        to_geoparquet(gr.districts, o / "greening_districts.parquet")
        to_geoparquet(sdg.astype({"zone": str}), o / "sdg_11_3_1.parquet")
        print(f"\nwrote GeoParquet results to {o}/")


if __name__ == "__main__":
    main()
