"""The report stage: one self-contained HTML file (figures embedded as PNG data URIs) with the
maps of the run, every metric against truth beside its baselines, and the stage times."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
import pandas as pd

from eocube.pipeline.runner import StageContext

__all__ = ["report_stage"]

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.4em;text-align:center;vertical-align:top}
figure img{width:360px;height:auto;border:1px solid #ddd} figcaption{font-size:.85em}
.note{color:#555;font-size:.9em}
"""


def _figure() -> tuple[Any, Any]:
    """A figure and its axes drawn off-screen (no pyplot: the caller's backend is left as it
    is, so a notebook that ran the pipeline still shows its own plots)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.0))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _raster_figure(a: np.ndarray, title: str, *, cmap: str = "viridis", vmin: float | None = None,
                   vmax: float | None = None, label: str = "") -> str:
    fig, ax = _figure()
    im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    return _png(fig)


def _vector_figure(g: Any, column: str, title: str, *, cmap: str = "viridis",
                   categorical: bool = False) -> str:
    fig, ax = _figure()
    if len(g):
        g.plot(column=column, ax=ax, cmap=cmap, categorical=categorical, legend=True,
               linewidth=0, missing_kwds={"color": "#dddddd"},
               **({} if categorical else {"legend_kwds": {"shrink": 0.7}}))
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return _png(fig)


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="",
                      border=0, escape=True)


def figures(ctx: StageContext) -> list[tuple[str, str]]:
    """(caption, data URI) of the run's maps."""
    from eocube.pipeline.stages import open_zarr, read_table

    out = []
    prob = open_zarr(ctx, "inference", "builtup.zarr")["builtup"]
    for i, t in enumerate(prob["time"].values):
        y = pd.Timestamp(t).year
        out.append((f"built-up probability {y}",
                    _raster_figure(prob.isel(time=i).to_numpy(), f"built-up {y}",
                                   cmap="magma", vmin=0, vmax=1, label="probability")))
    chg = open_zarr(ctx, "change", "builtup_change.zarr")["builtup_year"].to_numpy().astype(float)
    chg[chg < 0] = np.nan
    out.append(("first year mapped built-up (time of change)",
                _raster_figure(chg, "first built-up year", cmap="viridis", label="year")))
    pop = read_table(ctx, "estimates", "population_buildings.parquet")
    out.append(("building population (DEFF)",
                _vector_figure(pop, "population", "population per building", cmap="plasma")))
    stock = read_table(ctx, "estimates", "stock_buildings.parquet")
    out.append(("material stock per building (bottom-up)",
                _vector_figure(stock, "stock_total_t", "stock (t)", cmap="cividis")))
    roofs = read_table(ctx, "estimates", "greening_roofs.parquet")
    roofs = roofs[roofs["suitability"].fillna("") != ""]
    roofs = roofs.assign(suitability=pd.Categorical(  # legend in order, green for high
        roofs["suitability"], categories=["low", "medium", "high"], ordered=True))
    out.append(("roof-greening suitability classes",
                _vector_figure(roofs, "suitability", "greening suitability", cmap="RdYlGn",
                               categorical=True)))
    sdg = read_table(ctx, "estimates", "sdg_11_3_1.parquet")
    comm = read_table(ctx, "zones", "communities.parquet")
    comm = comm.assign(zone=comm["community_id"].astype(str)).merge(sdg, on="zone", how="left")
    out.append(("SDG 11.3.1 LCRPGR per community",
                _vector_figure(comm, "LCRPGR", "LCRPGR per community", cmap="coolwarm")))
    return out


def report_stage(ctx: StageContext) -> None:
    """Write ``report/report.html``: maps, metrics against truth with baselines, stage times."""
    from eocube.pipeline.stages import read_table

    cfg = ctx.config
    man = ctx.folder.manifest()
    figs = figures(ctx)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>eocube run report"
             f"</title><style>{CSS}</style></head><body>",
             "<h1>eocube run report</h1>",
             f"<p class='note'>catalog <b>{html.escape(cfg.catalog)}</b>; city preset "
             f"{html.escape(cfg.city.preset)}, seed {cfg.city.seed}; output "
             f"{html.escape(str(cfg.output))}. Every stage before the evaluation read only the "
             "catalog's imagery and the open-map layers; the evaluation alone read "
             "<code>truth/</code>.</p>", "<h2>Maps</h2>"]
    for cap, uri in figs:
        parts.append(f"<figure><img alt='{html.escape(cap)}' src='{uri}'>"
                     f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    titles = {"builtup": "Built-up maps against truth (per year; baselines on the same "
                         "composites)",
              "change": "New built-up, first to last year",
              "population": "Population: building level against truth (held-out communities) "
                            "and community level against the census",
              "stock": "Material stock per 100 m cell against truth",
              "greening": "Roof-greening classes",
              "sdg": "SDG 11.3.1 against the truth's built-up",
              "timing": "When changes are dated, against the truth's construction dates (on "
                        "time: in the completion year, or within tolerance_days of the "
                        "completion; in process: from site clearing to completion; a yearly "
                        "map cannot date a change of its first year)"}
    if "evaluation" in man["stages"]:
        parts.append("<h2>Metrics against truth, with baselines</h2>")
        for name, title in titles.items():
            if ctx.has("evaluation", f"{name}.parquet"):
                t = read_table(ctx, "evaluation", f"{name}.parquet")
                parts += [f"<h3>{html.escape(title)}</h3>", _table(t)]
    else:
        parts.append("<p class='note'>No evaluation stage in this run (no truth).</p>")
    times = pd.DataFrame([{"stage": s, "seconds": e.get("seconds"), "status": e.get("status")}
                          for s, e in man["stages"].items()])
    parts += ["<h2>Stages</h2>", _table(times), "</body></html>"]
    path = ctx.output("report.html", title="HTML report")
    from eocube.io.paths import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts))
    ctx.properties["eocube:figures"] = len(figs)
