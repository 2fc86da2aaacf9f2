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
- ``sdg``: LCRPGR per community from the derived built-up against the truth's built-up;
- ``timing``: when a change is dated, against the truth's construction dates (completion,
  site clearing, demolition), see ``timing_table``: the yearly time of change
  (``builtup_year``) and, when the run has ``change/ccdc.zarr``, CCDC's first break (to the
  day and to the year) beside a trivial baseline on the same composites: the pixels new
  between the first and last yearly NDBI > 0 map, dated at the last year (yearly rows) or at
  the middle of the run's dates (rows to the day).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from eocube.errors import ConfigError
from eocube.pipeline.runner import StageContext

__all__ = ["TIMING_TOLERANCE_DAYS", "evaluation_stage", "otsu", "timing_inputs", "timing_table"]

#: a date to the day is on time within this many days of the completion: three S2 revisits,
#: so that a finished building hidden by a cloud or two is still dated on time
TIMING_TOLERANCE_DAYS = 30.0


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
    out_m = {y: np.zeros((ny, nx), dtype=bool) for y in idx}
    for half in (fold, ~fold):
        imgs = [comp.isel(time=i)[bands].where(xr.DataArray(~half, dims=("y", "x")))
                for i in idx.values()]
        fit = fit_pixel_logistic(imgs, [truth[y] for y in idx], bands=bands, seed=0)
        for y, i in idx.items():
            p = fit.probability(comp.isel(time=i)[bands])
            out_p[y][half] = p[half]
            out_m[y][half] = (p > fit.threshold)[half]  # the fold's own best-F1 threshold
    name = (f"logistic regression per pixel on {'+'.join(bands)} (2-fold spatial cross-fit, "
            "threshold fitted for F1)")
    return {y: (out_m[y], np.isfinite(p), name) for y, p in out_p.items()}


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
    from eocube.estimates.population import EXTERNAL_FORMS

    for k in seeds:
        held = splits[f"test_s{k}"].to_numpy(bool)
        # DEFF with the other forms of its external term, where the estimates stage has them
        forms = {name: splits[f"population_x{form}_s{k}"].to_numpy(np.float64)
                 for name, form in EXTERNAL_FORMS.items()
                 if f"population_x{form}_s{k}" in splits.columns}
        for name, pred in {"DEFF": splits[f"population_s{k}"].to_numpy(np.float64),
                           **forms, **base}.items():
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


def _days(a: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 as floats, NaN for none: from datetimes (NaT none) or from the
    truth's integer days (negative, its nodata -1, none)."""
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.datetime64):
        return np.where(np.isnat(a), np.nan, a.astype("datetime64[s]").astype("int64") / 86400.0)
    a = a.astype(np.float64)
    return np.where(a >= 0, a, np.nan)


def _year_of(days: np.ndarray) -> np.ndarray:
    """The calendar year of days since 1970-01-01 (floats, NaN stays NaN)."""
    ok = np.isfinite(days)
    d = np.floor(np.where(ok, days, 0.0)).astype("int64").astype("datetime64[D]")
    return np.where(ok, d.astype("datetime64[Y]").astype("int64") + 1970.0, np.nan)


def _share(hit: np.ndarray, where: np.ndarray) -> float:
    n = int(where.sum())
    return float((hit & where).sum() / n) if n else float("nan")


def timing_table(completion: np.ndarray, /, *, construction_start: np.ndarray,
                 demolition: np.ndarray, first_day: float, last_day: float,
                 yearly: Mapping[str, np.ndarray] | None = None,
                 daily: Mapping[str, np.ndarray] | None = None,
                 tolerance_days: float = TIMING_TOLERANCE_DAYS) -> pd.DataFrame:
    """When changes are dated, against the truth's construction dates: one row per method.

    Pure and eager (numpy in, a small table out). Every date is in days since 1970-01-01 as
    the truth rasters store them (``change-date``, ``construction-start-date``,
    ``demolition-date``: a negative value or NaN is none) or as ``datetime64`` (NaT none).

    The pixels scored, the same for every row:

    - *changed*: the truth's completion (``completion``) falls within
      ``[first_day, last_day]``, the run's dates;
    - *stable*: no construction process (site clearing to completion; the completion alone
      where the truth has no start, the rest of the run where it has a start but no
      completion) overlaps the run's dates and no demolition falls within them. A pixel whose
      construction overlaps the run but is completed outside it is neither. The truth rasters
      follow its 50 % rule, so a pixel partly covered by a new roof can count as stable.

    Parameters
    ----------
    completion
        The truth's completion day per pixel (``change-date``).
    construction_start, demolition
        The truth's site-clearing day and demolition day per pixel, shaped as ``completion``.
    first_day, last_day
        The run's first and last day (days since 1970-01-01), inclusive.
    yearly
        Method name → the year each pixel is dated changed (NaN, or a value ≤ 0 such as
        ``builtup_year``'s -1: not dated). A pixel is *on time* when dated in the year of its
        completion, *in process* when dated in a year from its site clearing's to its
        completion's.
    daily
        Method name → the day each pixel is dated changed (days since 1970-01-01 or
        ``datetime64``; NaN / NaT: not dated). *On time*: within ``tolerance_days`` of the
        completion; *in process*: from the site clearing less ``tolerance_days`` to the
        completion plus ``tolerance_days``.
    tolerance_days
        How far from the truth a date to the day may fall (default three S2 revisits).

    Returns
    -------
    pandas.DataFrame
        One row per method (``yearly`` then ``daily``): ``method``, ``dated_to`` (``"year"``
        or ``"day"``), ``tolerance_days`` (0 for years), ``n_changed``, ``n_stable``, and the
        shares ``on_time``, ``in_process`` and ``never_dated`` of the changed pixels,
        ``false_on_stable`` (stable pixels dated at all), and ``median_abs_error_days`` (of
        the dated changed pixels against the completion; days only). A share over no pixel is
        NaN.

    Examples
    --------
    Two lots completed in 2020 and 2021 (their sites cleared in 2019 and 2020) and two
    stable pixels; a yearly method dates both lots in 2020 and one stable pixel in 2021:

    >>> import numpy as np
    >>> done = np.array([18300, 18700, -1, -1])  # 2020-02-08, 2021-03-14, never, never
    >>> t = timing_table(done, construction_start=np.array([18200, 18600, -1, -1]),
    ...                  demolition=np.full(4, -1), first_day=18262, last_day=18992,
    ...                  yearly={"a": np.array([2020, 2020, -1, 2021])})
    >>> r = t.iloc[0]
    >>> int(r.n_changed), int(r.n_stable), float(r.on_time), float(r.in_process)
    (2, 2, 0.5, 1.0)
    >>> float(r.never_dated), float(r.false_on_stable)
    (0.0, 0.5)
    """
    done = _days(completion)
    start = _days(construction_start)
    gone = _days(demolition)
    if not done.shape == start.shape == gone.shape:
        raise ValueError(f"the truth rasters differ in shape: completion {done.shape}, "
                         f"construction_start {start.shape}, demolition {gone.shape}; pass "
                         "them on one grid")
    changed = (done >= first_day) & (done <= last_day)
    begun = np.where(np.isfinite(start), start, done)
    # a start with no completion is a construction still going at the end
    ends = np.where(np.isfinite(done), done, np.where(np.isfinite(start), np.inf, np.nan))
    busy = (begun <= last_day) & (ends >= first_day)
    stable = ~changed & ~busy & ~((gone >= first_day) & (gone <= last_day))
    base = {"n_changed": int(changed.sum()), "n_stable": int(stable.sum())}
    rows = []
    for name, year in (yearly or {}).items():
        y = np.asarray(year, dtype=np.float64)
        if y.shape != done.shape:
            raise ValueError(f"yearly[{name!r}] has shape {y.shape}, the truth {done.shape}")
        dated = np.isfinite(y) & (y > 0)
        rows.append({"method": name, "dated_to": "year", "tolerance_days": 0.0, **base,
                     "on_time": _share(dated & (y == _year_of(done)), changed),
                     "in_process": _share(dated & (y >= _year_of(begun)) & (y <= _year_of(done)),
                                          changed),
                     "never_dated": _share(~dated, changed),
                     "false_on_stable": _share(dated, stable),
                     "median_abs_error_days": float("nan")})
    for name, when in (daily or {}).items():
        d = _days(when)
        if d.shape != done.shape:
            raise ValueError(f"daily[{name!r}] has shape {d.shape}, the truth {done.shape}")
        dated = np.isfinite(d)
        err = np.abs(d - done)
        off = err[dated & changed]
        rows.append({"method": name, "dated_to": "day", "tolerance_days": float(tolerance_days),
                     **base,
                     "on_time": _share(dated & (err <= tolerance_days), changed),
                     "in_process": _share(dated & (d >= begun - tolerance_days)
                                          & (d <= done + tolerance_days), changed),
                     "never_dated": _share(~dated, changed),
                     "false_on_stable": _share(dated, stable),
                     "median_abs_error_days": float(np.median(off)) if off.size
                     else float("nan")})
    return pd.DataFrame(rows)


def timing_inputs(ctx: StageContext, archive: Any) -> dict[str, Any] | None:
    """The arguments of ``timing_table`` for a run, on its grid (``None`` when the archive's
    truth has no construction dates): the truth rasters, the run's dates, and the methods.

    The yearly time of change is ``builtup_year`` where it is later than the first year: a
    pixel built-up in the first yearly map carries no date (it may have been built any time
    before), so a yearly method cannot date a change completed in the run's first year.
    CCDC's first break is scored to the day and by its year when the run has
    ``change/ccdc.zarr``. The baseline, on the same composites: the pixels new between the
    first and last yearly NDBI > 0 map, dated at the last year (yearly) or at the middle of
    the run's dates (to the day).
    """
    from eocube.pipeline.stages import open_zarr
    from eocube.synth.truth import read_truth, truth_layers

    cfg = ctx.config
    layers = ("change-date", "construction-start-date", "demolition-date")
    if not set(layers) <= set(truth_layers(archive)):
        return None
    by = open_zarr(ctx, "change", "builtup_change.zarr")["builtup_year"].load()
    done, start, gone = (_on(by, read_truth(archive, n)) for n in layers)
    years = pd.DatetimeIndex(open_zarr(ctx, "inference", "builtup.zarr")["time"].values).year
    first = max(pd.Timestamp(f"{years[0]}-01-01"), pd.Timestamp(cfg.dates.start or "1970-01-01"))
    last = min(pd.Timestamp(f"{years[-1]}-12-31"), pd.Timestamp(cfg.dates.end or "2262-01-01"))
    first_day, last_day = (float((t - pd.Timestamp("1970-01-01")).days) for t in (first, last))
    year = by.to_numpy().astype(np.float64)
    year[year <= years[0]] = np.nan  # never (-1), or built-up from the first map on
    comp = open_zarr(ctx, "cubes", "composites.zarr")[["B08", "B11"]].isel(time=[0, -1]).load()
    ndbi = ((comp["B11"] - comp["B08"]) / (comp["B11"] + comp["B08"])).to_numpy() > 0
    new = _on(by, xr.DataArray(ndbi[-1] & ~ndbi[0], dims=("y", "x"),
                               coords={"y": comp["y"], "x": comp["x"]})) == 1
    yearly = {f"first year mapped built-up ({cfg.models.builtup} ≥ {cfg.change.threshold:g}, "
              "builtup_year)": year}
    daily = {}
    if ctx.has("change", "ccdc.zarr"):
        fb = _days(_on(by, open_zarr(ctx, "change", "ccdc.zarr")["first_break"].load()))
        yearly["CCDC first break, its year"] = _year_of(fb)
        daily["CCDC first break"] = fb
    yearly["baseline: new between the first and last yearly NDBI > 0 map, dated at the last "
           "year"] = np.where(new, float(years[-1]), np.nan)
    daily["baseline: new between the first and last yearly NDBI > 0 map, dated at the middle "
          "of the run"] = np.where(new, (first_day + last_day) / 2, np.nan)
    return {"completion": done, "construction_start": start, "demolition": gone,
            "first_day": first_day, "last_day": last_day, "yearly": yearly, "daily": daily}


def run_timing_table(ctx: StageContext, archive: Any) -> pd.DataFrame:
    """``timing_table`` of the run (see ``timing_inputs``)."""
    args = timing_inputs(ctx, archive)
    if args is None:
        return pd.DataFrame([{"method": "not scored: the archive's truth has no construction "
                              "dates (a city built before world v2: rebuild it with "
                              "eocube.synth.build_city)"}])
    return timing_table(args.pop("completion"), **args)


def evaluation_stage(ctx: StageContext) -> None:
    """Every derived result against ``truth/``, beside its baselines (see the module doc)."""
    from eocube.io import to_geoparquet

    archive = _truth_archive(ctx)
    built, change = builtup_tables(ctx, archive)
    tables = {"builtup": built, "change": change, "population": population_table(ctx, archive),
              "stock": stock_table(ctx, archive), "greening": greening_table(ctx),
              "sdg": sdg_table(ctx, archive), "timing": run_timing_table(ctx, archive)}
    for name, t in tables.items():
        to_geoparquet(t.reset_index(drop=True), ctx.output(f"{name}.parquet",
                                                           title=f"{name} against truth"))
