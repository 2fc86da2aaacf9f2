"""The evaluation stage: every derived result against the simulator's truth, each beside the
trivial baselines computed on the same inputs. The only stage that reads ``truth/``.

Tables written (``evaluation/*.parquet``), one row per method:

- ``builtup``: per year, the fusion model's map against an NDBI > 0 threshold, an Otsu
  threshold of VV (dB) and a per-pixel logistic regression on the same bands (fitted on this
  city by 2-fold spatial cross-fitting: no training city is at hand here) on the same
  composites (F1, IoU, kappa against the truth at year end);
- ``change``: new built-up between the first and last year: the change model, the
  post-classification of the yearly fusion, logistic and NDBI maps;
- ``population``: building level (R², MAE on the held-out communities, mean ± sd over the
  split seeds) for DEFF against capacity-proportional and footprint-area (areal) allocation,
  both of the community census and of the coarse 1.2 km census the gridded baselines use;
  community level (MAPE, R²) from DEFF's own comparison (ablations, LR baselines, census
  areal weighting, dasymetric) plus the coarse-census capacity-proportional and areal
  allocations summed to communities, on the same splits;
- ``stock``: per 100 m cell, Spearman ρ on built cells and on all cells, total error: the
  bottom-up estimate from derived buildings against volume × mean intensity, and the same
  bottom-up method fed the truth's heights and structures (the ceiling of the inputs);
- ``greening``: class counts from derived inputs and from the truth's buildings and occupants;
- ``sdg``: LCRPGR per community from the derived built-up against the truth's built-up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from eocube.errors import ConfigError
from eocube.pipeline.runner import StageContext

__all__ = ["evaluation_stage", "otsu"]


def otsu(values: np.ndarray, /, *, bins: int = 256) -> float:
    """Otsu's threshold of the finite ``values`` (the split maximising between-class variance).

    Examples
    --------
    >>> import numpy as np
    >>> v = np.r_[np.full(50, 1.0), np.full(50, 5.0)]
    >>> 1.0 <= otsu(v) < 5.0
    True
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    hist, edges = np.histogram(v, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _map_row(name: str, truth: np.ndarray, pred: np.ndarray, valid: np.ndarray,
             **extra: Any) -> dict[str, Any]:
    from eocube.estimates.metrics import map_metrics

    m = map_metrics(truth.astype("uint8"), pred.astype("uint8"), mask=valid)
    return {"method": name, **extra, **{k: float(v) for k, v in m.items()}}


def _truth_archive(ctx: StageContext) -> Any:
    from eocube.catalog import open_archive

    cfg = ctx.config
    if cfg.catalog != "synthetic":
        raise ConfigError("stages: 'evaluation' needs the synthetic city's truth; drop it from "
                          "stages for catalog " + repr(cfg.catalog))
    return open_archive(cfg.archive_path())


def _on(grid_like: xr.DataArray, a: xr.DataArray) -> np.ndarray:
    """``a`` (a truth raster on the city grid) cut to the grid of ``grid_like``."""
    return a.reindex(y=grid_like["y"], x=grid_like["x"], method="nearest", tolerance=1e-3
                     ).to_numpy()


def builtup_tables(ctx: StageContext, archive: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    from eocube.cube.masks import to_db
    from eocube.pipeline.stages import open_zarr
    from eocube.synth.truth import read_truth, truth_layers

    thr = ctx.config.change.threshold
    have = set(truth_layers(archive))
    prob = open_zarr(ctx, "inference", "builtup.zarr")["builtup"].load()
    comp = open_zarr(ctx, "cubes", "composites.zarr").load()
    years = pd.DatetimeIndex(prob["time"].values).year
    rows, maps = [], {}
    for i, y in enumerate(years):
        if f"builtup-{y}" not in have:  # a year the truth does not cover
            continue
        truth = _on(prob.isel(time=i), read_truth(archive, f"builtup-{y}"))
        c = comp.isel(time=i)
        nir, swir = c["B08"].to_numpy(), c["B11"].to_numpy()
        ndbi = (swir - nir) / (swir + nir)
        vv = to_db(c["vv"]).to_numpy() if "vv" in c else None
        p = prob.isel(time=i).to_numpy()
        valid = np.isfinite(p) & np.isfinite(ndbi)
        maps[y] = {"truth": truth > 0, "fusion": p >= thr, "ndbi": ndbi > 0}
        rows.append(_map_row(f"{ctx.config.models.builtup} (fusion U-Net)", truth > 0, p >= thr,
                             valid, year=int(y)))
        rows.append(_map_row("NDBI > 0", truth > 0, ndbi > 0, valid, year=int(y)))
        if vv is not None:
            t_vv = otsu(vv[valid])
            maps[y]["vv"] = vv > t_vv
            rows.append(_map_row(f"VV > {t_vv:.1f} dB (Otsu)", truth > 0, vv > t_vv,
                                 valid & np.isfinite(vv), year=int(y)))
    logistic = _logistic_crossfit(comp, {y: maps[y]["truth"] for y in maps})
    for y, (mp, valid, name) in logistic.items():
        maps[y]["logistic"] = mp
        rows.append(_map_row(name, maps[y]["truth"], mp, valid, year=int(y)))
    if not logistic and maps:
        rows.append({"method": "logistic regression per pixel: not run (needs scikit-learn, "
                     "pip install scikit-learn)", "year": int(max(maps))})
    built = pd.DataFrame(rows)
    change_rows = []
    if len(maps) >= 2:
        y0, y1 = min(maps), max(maps)
        t_new = maps[y1]["truth"] & ~maps[y0]["truth"]
        valid = np.ones_like(t_new, dtype=bool)
        if ctx.has("inference", "change.zarr"):
            chg = open_zarr(ctx, "inference", "change.zarr")["new_builtup"].to_numpy()
            change_rows.append(_map_row(f"{ctx.config.models.change} (Siam-Diff DT)", t_new,
                                        chg >= thr, np.isfinite(chg), years=f"{y0}-{y1}"))
        for key, name in (("fusion", "post-classification of the fusion maps"),
                          ("logistic", "post-classification of the logistic maps (cross-fit)"),
                          ("ndbi", "post-classification of NDBI > 0")):
            if key in maps[y0] and key in maps[y1]:
                change_rows.append(_map_row(name, t_new, maps[y1][key] & ~maps[y0][key],
                                            valid, years=f"{y0}-{y1}"))
    return built, pd.DataFrame(change_rows)


def _logistic_crossfit(comp: xr.Dataset, truth: dict[int, np.ndarray], *, block: int = 32
                       ) -> dict[int, tuple[np.ndarray, np.ndarray, str]]:
    """Per year: a per-pixel logistic regression on the composites' S2 and S1 bands (the
    fusion model's inputs), fitted on this city's truth by 2-fold spatial cross-fitting
    (``block`` px squares in a checkerboard: each half is predicted by the fit on the other).

    The pipeline has no training cities at hand, so the baseline is fitted in-domain on the
    evaluated city itself: a stronger baseline than one fitted on other cities (the shipped
    models never saw this city). ``{}`` without scikit-learn.
    """
    import importlib.util

    if importlib.util.find_spec("sklearn") is None or not truth:
        return {}
    from eocube.models.simple_baselines import fit_pixel_logistic

    bands = [b for b in ("B02", "B03", "B04", "B08", "B11", "B12", "vv", "vh") if b in comp]
    years = pd.DatetimeIndex(comp["time"].values).year
    idx = {int(y): i for i, y in enumerate(years) if int(y) in truth}
    ny, nx = comp.sizes["y"], comp.sizes["x"]
    iy, ix = np.meshgrid(np.arange(ny) // block, np.arange(nx) // block, indexing="ij")
    fold = (iy + ix) % 2 == 0
    out_p = {y: np.full((ny, nx), np.nan) for y in idx}
    for half in (fold, ~fold):
        imgs = [comp.isel(time=i)[bands].where(xr.DataArray(~half, dims=("y", "x")))
                for i in idx.values()]
        fit = fit_pixel_logistic(imgs, [truth[y] for y in idx], bands=bands, seed=0)
        for y, i in idx.items():
            p = fit.probability(comp.isel(time=i)[bands])
            out_p[y][half] = p[half]
    name = f"logistic regression per pixel on {'+'.join(bands)} (2-fold spatial cross-fit)"
    return {y: (p >= 0.5, np.isfinite(p), name) for y, p in out_p.items()}


def population_table(ctx: StageContext, archive: Any) -> pd.DataFrame:
    """Building-level population against the truth, DEFF beside two allocation baselines."""
    from eocube.estimates.metrics import mae, r2
    from eocube.pipeline.stages import read_table
    from eocube.synth.truth import read_truth
    from eocube.zonal import assign_zones

    pop = read_table(ctx, "estimates", "population_buildings.parquet")
    census = read_table(ctx, "zones", "census.parquet").set_index("community_id")["pop_end"]
    tb = read_truth(archive, "buildings").to_crs(pop.crs)
    # each true building's occupants go to the derived footprint it overlaps most
    tb = assign_zones(tb[["occupants", "geometry"]], pop[["building_id", "geometry"]],
                      id_col="building_id")
    per = tb.groupby("building_id")["occupants"].sum()
    truth = per.reindex(pop["building_id"]).fillna(0.0).to_numpy()
    missed = float(tb.loc[tb["building_id"].isna(), "occupants"].sum() / tb["occupants"].sum())

    def allocate(weight: np.ndarray) -> np.ndarray:
        w = pd.Series(weight, index=pop.index)
        tot = w.groupby(pop["community_id"]).transform("sum").replace(0, np.nan)
        return (w / tot * pop["community_id"].map(census)).fillna(0.0).to_numpy()

    # the coarse census the gridded baselines start from (1.2 km districts, as the estimates
    # stage makes it): allocations that, like DEFF, never see a held-out community's total
    from eocube.estimates import coarse_districts

    comm = read_table(ctx, "zones", "communities.parquet")
    census_t = read_table(ctx, "zones", "census.parquet")
    districts = coarse_districts(comm[["community_id", "geometry"]].merge(
        census_t[["community_id", "pop_end"]], on="community_id"), cell_m=1200.0)
    c2d = {c: d for d, ids in zip(districts["district_id"], districts["community_ids"],
                                  strict=True) for c in ids}
    dist_b = pop["community_id"].map(c2d)
    dpop = districts.set_index("district_id")["pop"]

    def allocate_coarse(weight: np.ndarray) -> np.ndarray:
        w = pd.Series(weight, index=pop.index)
        tot = w.groupby(dist_b).transform("sum").replace(0, np.nan)
        return (w / tot * dist_b.map(dpop)).fillna(0.0).to_numpy()

    area = pop.geometry.area.to_numpy()
    capacity = area * pop["floors"].to_numpy(np.float64)
    coarse = {
        "capacity-proportional allocation of the coarse census (1.2 km districts × "
        "footprint·floors share)": allocate_coarse(capacity),
        "areal weighting of the coarse census (1.2 km districts × footprint-area share)":
            allocate_coarse(area),
    }
    base = {
        # these two see the held-out communities' census totals, which DEFF does not
        "capacity-proportional (census × footprint·floors share)": allocate(capacity),
        "footprint-area allocation (census × footprint share)": allocate(area),
        **coarse,
    }
    # building level, on each split's held-out communities: mean ± sd over the split seeds
    splits = read_table(ctx, "estimates", "population_splits_buildings.parquet")
    seeds = sorted(int(c.removeprefix("population_s")) for c in splits.columns
                   if c.startswith("population_s"))
    scores: dict[str, list[tuple[float, float]]] = {}
    for k in seeds:
        held = splits[f"test_s{k}"].to_numpy(bool)
        for name, pred in {"DEFF": splits[f"population_s{k}"].to_numpy(np.float64),
                           **base}.items():
            scores.setdefault(name, []).append((float(r2(truth[held], pred[held])),
                                                float(mae(truth[held], pred[held]))))
    rows = []
    for name, sc in scores.items():
        a = np.asarray(sc)
        rows.append({"method": name, "level": "building (held-out communities)",
                     "splits": len(sc), "R2": a[:, 0].mean(), "R2_sd": a[:, 0].std(ddof=1)
                     if len(sc) > 1 else np.nan, "MAE": a[:, 1].mean(),
                     "MAE_sd": a[:, 1].std(ddof=1) if len(sc) > 1 else np.nan,
                     "population_not_in_any_footprint": missed})
    per = read_table(ctx, "estimates", "population_splits.parquet")
    agg = per.groupby("model", sort=False).agg(
        splits=("split_seed", "nunique"), MAPE=("MAPE", "mean"), MAPE_sd=("MAPE", "std"),
        R2=("R2", "mean"), R2_sd=("R2", "std"), MAE=("MAE", "mean"), MAE_sd=("MAE", "std"))
    for name, r in agg.iterrows():
        rows.append({"method": str(name), "level": "community (held-out, census)",
                     **{k: float(v) for k, v in r.items()}})
    # the coarse-census allocations summed to communities, on each split's held-out ones
    # (the communities of the held-out buildings)
    from eocube.estimates.metrics import regression_report

    cid = pop["community_id"].to_numpy()
    for name, pred in coarse.items():
        per_comm = pd.Series(pred).groupby(cid).sum()
        sc = []
        for k in seeds:
            held_c = np.unique(cid[splits[f"test_s{k}"].to_numpy(bool)])
            sc.append(regression_report(census.reindex(held_c).to_numpy(np.float64),
                                        per_comm.reindex(held_c).to_numpy(np.float64)))
        a = pd.DataFrame(sc)
        rows.append({"method": name, "level": "community (held-out, census)",
                     "splits": len(sc), "MAPE": a["MAPE"].mean(), "MAPE_sd": a["MAPE"].std(),
                     "R2": a["R2"].mean(), "R2_sd": a["R2"].std(), "MAE": a["MAE"].mean(),
                     "MAE_sd": a["MAE"].std()})
    return pd.DataFrame(rows)


def stock_table(ctx: StageContext, archive: Any) -> pd.DataFrame:
    """Stock per 100 m cell against the truth's, with baselines."""
    from eocube.estimates import bottom_up_stock, stock_grid
    from eocube.estimates.stock import DEFAULT_INTENSITY, stock_metrics
    from eocube.pipeline.stages import grid_of, read_table
    from eocube.synth.truth import read_truth

    gb = grid_of(ctx).zoom_to(resolution=100.0)
    est = read_table(ctx, "estimates", "stock_buildings.parquet")
    tb = read_truth(archive, "buildings").to_crs(est.crs)
    tb = tb[tb["built_date"] <= pd.Timestamp(ctx.config.dates.end or "2100-01-01")] \
        if "built_date" in tb else tb
    truth = stock_grid(tb, gb)["stock_total_t"].to_numpy().ravel()
    # volume × one mean intensity: the structure ignored
    mean_t = float(DEFAULT_INTENSITY.sum(axis=1).mean()) / 1000.0
    vol = est.geometry.area.to_numpy() * est["height"].to_numpy(np.float64)
    base = est.assign(stock_total_t=vol * mean_t)
    ceiling = bottom_up_stock(tb.drop(columns=[c for c in tb.columns if c.startswith("stock_")]),
                              function_col="function")
    preds = {"bottom-up from derived buildings (estimated floors, structure)": est,
             "volume × mean intensity (derived footprints and heights)": base,
             "bottom-up from the truth's heights and structures (input ceiling)": ceiling}
    built = truth > 0
    rows = []
    if ctx.has("estimates", "stock_topdown_cells.parquet"):
        td = read_table(ctx, "estimates", "stock_topdown_cells.parquet")
        for col in [c for c in td.columns if str(c).startswith("pred_")]:
            p = td.sort_values("cell")[col].to_numpy(np.float64)
            if p.shape == truth.shape:
                preds_td = stock_metrics(truth, p)
                rows.append({"method": f"top-down {col.removeprefix('pred_')} (shipped CNN)",
                             "spearman_built_cells": stock_metrics(truth[built], p[built])[
                                 "spearman"],
                             "spearman_all_cells": preds_td["spearman"],
                             "total_rel_error": preds_td["total_rel_error"],
                             "wRMSE": preds_td["wRMSE"], "cells_built": int(built.sum())})
    for name, tab in preds.items():
        p = stock_grid(tab, gb)["stock_total_t"].to_numpy().ravel()
        m_all = stock_metrics(truth, p)
        m_built = stock_metrics(truth[built], p[built])
        rows.append({"method": name, "spearman_built_cells": m_built["spearman"],
                     "spearman_all_cells": m_all["spearman"],
                     "total_rel_error": m_all["total_rel_error"], "wRMSE": m_all["wRMSE"],
                     "cells_built": int(built.sum())})
    return pd.DataFrame(rows)


def greening_table(ctx: StageContext) -> pd.DataFrame:
    from eocube.pipeline.stages import read_table

    roofs = read_table(ctx, "estimates", "greening_roofs.parquet")
    counts = roofs["suitability"].replace("", np.nan).dropna().value_counts()
    return pd.DataFrame({"method": "AHP overlay from derived inputs",
                         **{f"n_{k}": int(counts.get(k, 0)) for k in ("high", "medium", "low")},
                         "candidates": int((roofs["suitability"].fillna("") != "").sum())},
                        index=[0])


def sdg_table(ctx: StageContext, archive: Any) -> pd.DataFrame:
    from eocube.estimates import lcrpgr
    from eocube.estimates.metrics import mae, spearman
    from eocube.pipeline.stages import open_zarr, read_table
    from eocube.synth.truth import read_truth

    derived = read_table(ctx, "estimates", "sdg_11_3_1.parquet").set_index("zone")
    prob = open_zarr(ctx, "inference", "builtup.zarr")["builtup"]
    years = pd.DatetimeIndex(prob["time"].values).year
    tru = [xr.DataArray(_on(prob.isel(time=0), read_truth(archive, f"builtup-{y}")) > 0,
                        dims=("y", "x")) for y in (years[0], years[-1])]
    two = xr.concat(tru, dim="time").astype("float32").assign_coords(
        time=prob["time"].values[[0, -1]], y=prob["y"], x=prob["x"])
    two = two.assign_coords(spatial_ref=prob["spatial_ref"]) if "spatial_ref" in prob.coords \
        else two
    comm = read_table(ctx, "zones", "communities.parquet")
    census = read_table(ctx, "zones", "census.parquet")
    t = lcrpgr(two, population=census, zones=comm, id_col="community_id", on_invalid="nan")
    t["zone"] = t["zone"].astype(str)
    t = t.set_index("zone")
    zones = [z for z in t.index if z != "city"]
    d, tt = derived.loc[zones, "LCRPGR"].to_numpy(float), t.loc[zones, "LCRPGR"].to_numpy(float)
    ok = np.isfinite(d) & np.isfinite(tt)
    return pd.DataFrame([{
        "method": "LCRPGR from the derived built-up",
        "city_derived": float(derived.loc["city", "LCRPGR"]),
        "city_truth": float(t.loc["city", "LCRPGR"]),
        "communities": int(ok.sum()),
        "MAE_per_community": float(mae(tt[ok], d[ok])),
        "spearman_per_community": float(spearman(tt[ok], d[ok])),
        "LCR_city_derived": float(derived.loc["city", "LCR"]),
        "LCR_city_truth": float(t.loc["city", "LCR"]),
    }])


def evaluation_stage(ctx: StageContext) -> None:
    """Every derived result against ``truth/``, beside its baselines (see the module doc)."""
    from eocube.io import to_geoparquet

    archive = _truth_archive(ctx)
    built, change = builtup_tables(ctx, archive)
    tables = {"builtup": built, "change": change, "population": population_table(ctx, archive),
              "stock": stock_table(ctx, archive), "greening": greening_table(ctx),
              "sdg": sdg_table(ctx, archive)}
    for name, t in tables.items():
        to_geoparquet(t.reset_index(drop=True), ctx.output(f"{name}.parquet",
                                                           title=f"{name} against truth"))
