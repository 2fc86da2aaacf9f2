"""The first main job: build (or reuse) a synthetic city, serve it as a STAC API, search it with
eocube.catalog.search, load lazy cubes with eocube.cube (odc-stac engine) on a Dask cluster,
and write quick-looks and a summary. Later issues grow it into the full pipeline; its stages
stay pure so they plug in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from eocube.catalog import LocalStacApi, open_archive
from eocube.catalog.vectors import open_layer
from eocube.errors import ArchiveError, EmptySearchError
from eocube.synth import build_city, resolve_spec


def _archive_for(out: Path, preset: str, seed: int, workers: int, log, *,
                 overwrite: bool = False) -> Path:
    """Reuse a complete archive of the same preset and seed; build one where there is none.

    Anything else at ``out/archive`` is refused unless ``overwrite``, and even then
    ``build_city`` replaces only an archive eocube built that holds no file of the user's.
    """
    path = out / "archive"
    if path.exists():
        try:
            man: dict[str, Any] | None = open_archive(path).manifest
        except ArchiveError:
            man = None
        if man and man.get("preset") == preset and man.get("seed") == seed:
            log(f"reusing the complete archive at {path}")
            return path
        if not overwrite:
            held = (f"the archive of preset {man.get('preset')!r} seed {man.get('seed')}"
                    if man else "something that is not a complete eocube archive")
            raise ArchiveError(
                f"{path} holds {held}, not the {preset!r} city of seed {seed}; eocube run "
                "does not replace it: pass overwrite=True (`eocube run --overwrite`) to "
                "rebuild it, or choose another --out")
        log(f"replacing the archive at {path} (overwrite)")
    t = time.perf_counter()
    build_city(path, preset=preset, seed=seed, overwrite=overwrite, workers=workers)
    log(f"built the {preset!r} city in {time.perf_counter() - t:.1f} s at {path}")
    return path


def _png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path)


def _stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo), 0, 1) * 255).astype("uint8")


def run_demo(out: str | Path = "runs/demo", /, *, preset: str = "demo", seed: int = 0,
             workers: int = 2, verbose: bool = True, overwrite: bool = False
             ) -> dict[str, Any]:
    """Run the main job on the embedded synthetic city and return its summary.

    Writes ``out/archive`` (the city; reused when complete), ``out/quicklook_s2.png``,
    ``out/quicklook_s1.png``, ``out/quicklook_ntl.png`` and ``out/summary.json``.

    Raises
    ------
    ArchiveError
        If ``out/archive`` holds anything but a complete archive of ``preset`` and ``seed``
        and ``overwrite`` is false; with ``overwrite``, if it is not an archive eocube built
        or holds files eocube did not write (nothing is deleted).
    """
    from distributed import Client, LocalCluster

    from eocube.catalog.search import search
    from eocube.cube import load
    from eocube.cube.masks import mask_clouds, to_db
    from eocube.cube.masks import ndvi as ndvi_of

    def log(msg: str) -> None:
        if verbose:
            print(f"[eocube] {msg}", flush=True)

    spec = resolve_spec(preset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    archive = _archive_for(out, preset, seed, workers, log, overwrite=overwrite)
    summary: dict[str, Any] = {"preset": preset, "seed": seed, "archive": str(archive)}
    year = spec.end.year
    with LocalStacApi(archive) as api, LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            dashboard_address=None) as cluster, Client(cluster) as client:
        log(f"STAC API at {api.url}; Dask cluster with {workers} workers")
        bbox = list(open_archive(archive).collection("sentinel-2-l2a")["extent"]["spatial"]
                    ["bbox"][0])
        found: dict[str, list] = {}
        queries = {
            "sentinel-2-l2a": {"datetime": f"{year}-06-01/{year}-09-30",
                               # sent to the server, or applied locally where it lacks
                               # the Query/Filter extensions (rustac's memory backend)
                               "filters": {"eo:cloud_cover": ("<", 30)}},
            "sentinel-1-rtc": {"datetime": f"{year}-06-01/{year}-09-30"},
            "viirs-ntl-monthly": {"datetime": f"{year}-01-01/{year}-12-31"},
        }
        for cid, q in queries.items():
            try:
                items = search(api, collections=[cid], bbox=bbox, **q)
            except EmptySearchError as e:
                raise EmptySearchError(f"search of {cid!r} for {q} found no item at "
                                       f"{api.url}") from e
            found[cid] = list(items)
            log(f"search {cid}: {len(items)} items")
        summary["items"] = {k: len(v) for k, v in found.items()}
        s2 = load(found["sentinel-2-l2a"], bands=["B02", "B03", "B04", "B08", "SCL"],
                  chunks={"x": 512, "y": 512}, resolution=10)
        gb = s2.odc.geobox
        s1 = load(found["sentinel-1-rtc"], bands=["vv", "vh"], like=s2,
                  chunks={"x": 512, "y": 512})
        ntl = load(found["viirs-ntl-monthly"], bands=["radiance"], chunks={})
        summary["cube"] = {
            "crs": str(gb.crs.epsg and f"EPSG:{gb.crs.epsg}"), "shape": list(gb.shape.yx),
            "transform": list(gb.transform)[:6], "s2_times": int(s2.sizes["time"]),
            "s1_times": int(s1.sizes["time"]), "ntl_times": int(ntl.sizes["time"]),
            "s2_graph_tasks": len(s2.__dask_graph__()),
        }
        # SCL no data, saturated, shadow, clouds and cirrus become NaN; SCL itself is dropped
        refl = mask_clouds(s2)
        comp = refl.median("time")
        ndvi = ndvi_of(comp)
        vv_db = to_db(s1.vv.where(s1.vv > 0).median("time"))
        ntl_mean = ntl.radiance.mean("time")
        comp, ndvi, vv_db, ntl_mean = client.compute([comp, ndvi, vv_db, ntl_mean], sync=True)
    rgb = np.stack([_stretch(comp[b].values, 0.0, 0.3) for b in ("B04", "B03", "B02")], -1)
    _png(out / "quicklook_s2.png", rgb)
    _png(out / "quicklook_s1.png", _stretch(vv_db.values, -25, 0))
    _png(out / "quicklook_ntl.png", _stretch(ntl_mean.values, 0, float(
        np.nanpercentile(ntl_mean.values, 99))))
    # what the city publishes (open-map layers, census), never its truth
    census = open_layer(archive, "census")
    buildings = open_layer(archive, "buildings", columns=["osm_id"])
    summary["city"] = {
        "size_km": spec.size_m / 1000, "mapped_buildings": len(buildings),
        "population_end": int(census["pop_end"].sum()),
        "communities": len(census),
    }
    summary["stats"] = {
        "median_ndvi": float(np.nanmedian(ndvi.values)),
        "clear_fraction_s2_composite": float(np.isfinite(comp.B04.values).mean()),
        "median_vv_db": float(np.nanmedian(vv_db.values)),
        "ntl_mean_radiance": float(np.nanmean(ntl_mean.values)),
    }
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"wrote {out / 'summary.json'} and quick-looks in {summary['seconds']} s")
    return summary
