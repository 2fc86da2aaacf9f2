"""The stages of the flow, one function per arrow of DESIGN.md's data flow.

Each stage reads what the stages before it committed to the run folder, calls the library's
pure functions (``eocube.cube``, ``eocube.infer``, ``eocube.change``, ``eocube.zonal``,
``eocube.estimates``) and writes its outputs through ``eocube.io``. No stage before
``evaluation`` reads the simulator's truth: they see the catalog's imagery and the open-map
layers, as they would for a real city.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from eocube.errors import ConfigError
from eocube.pipeline.config import RunConfig
from eocube.pipeline.runner import StageContext, StageFailed

__all__ = ["buildings_stage", "change_stage", "cubes_stage", "estimates_stage",
           "features_stage", "inference_stage", "search_stage", "zones_stage"]

S2_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
S1_BANDS = ("vv", "vh")
#: the sensors' profiles and the bands each stage loads
SENSORS = {"s2": ("s2", (*S2_BANDS, "SCL")), "s1": ("s1", S1_BANDS),
           "ntl": ("ntl", ("radiance",)), "mobile": ("mobile", None),
           "vhr": ("vhr", ("red", "green", "blue"))}


# ---- search -------------------------------------------------------------------------------

def search_stage(ctx: StageContext) -> None:
    """Search the catalog for each sensor over the AOI and dates; save the item collections."""
    from eocube.catalog.search import search
    from eocube.io import write_json
    from eocube.pipeline.sources import catalog_session

    cfg = ctx.config
    with catalog_session(cfg) as (catalog, bbox, (start, end)):
        counts = {}
        for sensor in cfg.sensors:
            profile, _ = SENSORS[sensor]
            filters = {"eo:cloud_cover": ("<", cfg.cloud_cover)} if sensor == "s2" else None
            items = search(catalog, profile=profile, bbox=bbox, datetime=f"{start}/{end}",
                           filters=filters)
            fc = items.to_dict(transform_hrefs=False)
            for f in fc["features"]:  # links point into this session's API: not the data
                f["links"] = []
            write_json(ctx.output(f"{sensor}.json", title=f"{sensor} items"), fc)
            counts[sensor] = len(fc["features"])
            ctx.log.info("search %s: %d items", sensor, counts[sensor])
    ctx.properties.update({"eocube:items": counts, "eocube:bbox": list(bbox),
                           "eocube:datetime": f"{start}/{end}"})


def read_items(ctx: StageContext, sensor: str) -> list[dict[str, Any]]:
    """The items the search stage found for ``sensor`` (as dicts)."""
    return json.loads(ctx.input("search", f"{sensor}.json").read_text())["features"]


# ---- cubes --------------------------------------------------------------------------------

def stage_tiles(ctx: StageContext, geobox: Any, /) -> list[Any]:
    """The tiles the raster stages work in: the run's grid split on the planner's tile grid
    (:func:`eocube.pipeline.aoi.grid_tiles`, ``tiling.tile_px``) when it is larger than one
    tile; an empty list (the grid in one piece) otherwise."""
    from eocube.pipeline.aoi import TileGrid, grid_tiles

    px = ctx.config.tiling.tile_px
    if px is None:
        return []
    tiles = grid_tiles(geobox, grid=TileGrid(tile_px=px, resolution=abs(geobox.resolution.x)))
    if len(tiles) < 2:
        return []
    ctx.properties["eocube:tiles"] = [
        {"id": t.id, "rows": [t.rows.start, t.rows.stop], "cols": [t.cols.start, t.cols.stop],
         "bbox": [float(v) for v in t.geobox.extent.boundingbox]} for t in tiles]
    ctx.properties["eocube:tile_px"] = px
    return tiles


def mosaic(ctx: StageContext, tiles: list[Any], name: str, /, *, geobox: Any,
           chunks: dict[str, int]) -> Any:
    """Merge the tiles' outputs ``name`` into one Zarr store ``name`` of the stage on the run's
    ``geobox`` (its own coordinates), chunked as the untiled output is, written anew.

    The values are the tiles' values, moved not recomputed: a per-pixel stage's mosaic equals
    its untiled output bit for bit."""
    from odc.geo.xr import xr_coords

    parts = {t.id: xr.open_zarr(ctx.folder.root / ctx.name / "tiles" / t.id / name,
                                consolidated=True, decode_coords="all") for t in tiles}
    first = parts[tiles[0].id]
    for tid, part in parts.items():
        if "time" in part.dims and not np.array_equal(part["time"].values,
                                                       first["time"].values):
            raise StageFailed(f"stage {ctx.name!r}: tile {tid} of {name} has other time steps "
                              f"than tile {tiles[0].id}; the tiles cannot be merged")
    rows = []
    for r in sorted({t.rows.start for t in tiles}):
        row = sorted((t for t in tiles if t.rows.start == r), key=lambda t: t.cols.start)
        rows.append(xr.concat([parts[t.id] for t in row], dim="x", coords="minimal",
                              compat="override", join="override"))
    ds = xr.concat(rows, dim="y", coords="minimal", compat="override", join="override")
    ds = ds.assign_coords(xr_coords(geobox))  # the run grid's coordinates, bit for bit
    ds.attrs = {k: v for k, v in ds.attrs.items() if not str(k).startswith("eocube_")}
    return write_zarr(ctx, ds.chunk({d: c for d, c in chunks.items() if d in ds.dims}), name,
                      mode="w")


def items_over(items: list[dict[str, Any]], geobox: Any, /) -> list[dict[str, Any]]:
    """The items whose footprint meets ``geobox`` (a tile): the others hold no pixel of it,
    and leaving them out of its load leaves its values as they are (a median ignores the
    empty layers) while sparing their reads. Should that leave a year without an item, the
    tile keeps every item, so each tile has the same yearly steps as the whole grid."""
    import shapely
    from odc.geo.geom import Geometry

    def year(it: dict[str, Any]) -> int:  # as the composites group them (by solar day)
        t = pd.Timestamp(it["properties"].get("datetime")
                         or it["properties"].get("start_datetime"))
        lon = (it["bbox"][0] + it["bbox"][2]) / 2 if it.get("bbox") else 0.0
        return (t + pd.Timedelta(hours=lon / 15.0)).year

    area = geobox.extent.to_crs("EPSG:4326").geom
    keep = [it for it in items if it.get("geometry") is None
            or shapely.intersects(Geometry(it["geometry"], "EPSG:4326").geom, area)]
    return keep if {year(it) for it in keep} == {year(it) for it in items} else items


def composites(ctx: StageContext, s2_items: list[dict[str, Any]], gb: Any,
               ch: dict[str, int], /) -> tuple[xr.Dataset, list[xr.Dataset]]:
    """The yearly S2 (and S1) composites on the GeoBox ``gb`` (the run's grid or a tile of
    it), lazily, and the loaded cubes whose read failures are recorded once it is written."""
    from eocube.cube.composite import yearly_median
    from eocube.cube.masks import mask_clouds, mask_s1

    cfg = ctx.config
    loaded: list[xr.Dataset] = []  # read failures leave pixels out and are recorded
    # ... at once in a journal of this attempt (of this tile), so that a resumed write, which
    # skips the chunks committed before a kill, still records the failures of their reads
    journal = read_journal(ctx)
    parts = [yearly_median(s2_items, bands=list(SENSORS["s2"][1]), geobox=gb, chunks=ch,
                           mask=mask_clouds, loaded=loaded, failure_journal=journal)]
    if "s1" in cfg.sensors:
        parts.append(yearly_median(items_over(read_items(ctx, "s1"), gb),
                                   bands=list(S1_BANDS), geobox=gb, chunks=ch,
                                   mask=mask_s1, loaded=loaded, failure_journal=journal))
    comp = xr.merge(parts, join="inner", compat="override").astype("float32")
    comp.attrs = {"composite": "yearly median", "sensors": ",".join(
        s for s in ("s2", "s1") if s in cfg.sensors)}
    return comp, loaded


#: the folder, in a stage's folder or a tile's, where the reads journal their failures
READ_JOURNAL = "read_failures"


def read_journal(ctx: StageContext) -> Path:
    """The read-failure journal of the stage's current attempt (of the tile being processed,
    if any): kept when the attempt resumes an unfinished one, emptied when it starts over (a
    fresh attempt reads everything again and records what fails again)."""
    d = ctx.dir if ctx.tile is None else ctx.dir / "tiles" / ctx.tile
    path = d / READ_JOURNAL
    fresh = ctx.tile_fresh if ctx.tile is not None else not ctx.resume
    if fresh and path.is_dir():
        for f in path.glob("*.jsonl"):  # only the journal files the reads write
            f.unlink()
    return path  # made by the first failure journalled


def record_read_failures(ctx: StageContext, loaded: list[xr.Dataset], /) -> None:
    """Record the read failures of cubes whose results were written (in the run folder at
    once, see :meth:`StageContext.record_failure`)."""
    from eocube.cube import read_failures

    for cube in loaded:
        for f in read_failures(cube, compute=False):
            ctx.record_failure({**f, "kind": "read", "time": f["time"].isoformat()})
            ctx.log.warning("read failure (%s): item %s asset %s at %s", f["class"],
                            f["item"], f["asset"], f["href"])


def cubes_stage(ctx: StageContext) -> None:
    """Yearly composites on one GeoBox: S2 (cloud-masked median) and S1 (median) at the
    configured resolution; NTL yearly and monthly on its own grid; mobile signal; VHR.

    A grid larger than one tile (``tiling``) is composited tile by tile, each tile committed
    before the next, then merged into ``composites.zarr``."""
    from eocube.cube import load

    cfg = ctx.config
    ch = {"x": cfg.chunk, "y": cfg.chunk}
    if "s2" not in cfg.sensors:
        raise ConfigError("sensors: the cubes stage needs 's2' (it defines the grid)")
    s2_items = read_items(ctx, "s2")
    gb = load(s2_items, bands=["SCL"], resolution=cfg.resolution, chunks=ch).odc.geobox
    tiles = stage_tiles(ctx, gb)
    if tiles:
        by_id = {t.id: t for t in tiles}

        def work(tid: str) -> None:
            gt = by_id[tid].geobox
            comp, loaded = composites(ctx, items_over(s2_items, gt), gt, ch)
            write_zarr(ctx, comp.chunk({"time": 1}), "composites.zarr", tile=tid)
            record_read_failures(ctx, loaded)

        ctx.each_tile(by_id, work)
        report = mosaic(ctx, tiles, "composites.zarr", geobox=gb, chunks={"time": 1, **ch})
    else:
        comp, loaded = composites(ctx, s2_items, gb, ch)
        report = write_zarr(ctx, comp.chunk({"time": 1}), "composites.zarr")
        record_read_failures(ctx, loaded)
    ctx.properties["eocube:composite_chunks"] = report.chunks_total
    if "ntl" in cfg.sensors:
        ntl = load(read_items(ctx, "ntl"), bands=["radiance"], chunks={})
        write_zarr(ctx, ntl[["radiance"]].astype("float32").chunk({"time": -1}), "ntl_monthly.zarr")
    if "mobile" in cfg.sensors:  # counts per cell: kept on their own grid, never resampled
        mob = load(read_items(ctx, "mobile"), chunks={})
        write_zarr(ctx, mob.astype("float32").chunk({"time": -1}), "mobile.zarr")
    if "vhr" in cfg.sensors:
        items = read_items(ctx, "vhr")
        if items:
            write_zarr(ctx, vhr_image(ctx, items), "vhr.zarr")


#: the largest VHR chunk side, in VHR pixels
VHR_MAX_CHUNK = 2048


def vhr_chunk(cfg: RunConfig, vhr_resolution: float, /) -> int:
    """The VHR image's chunk side in its own pixels: the ground the run's ``chunk`` covers at
    the run's resolution, capped at ``VHR_MAX_CHUNK``, so that the building model's tasks
    follow the configured chunk and not the area (a fixed 2048 px held a whole 2.6 km image
    of 2 m pixels in one task: benchmarks/scaling.py, 64 px chunks)."""
    return max(1, min(VHR_MAX_CHUNK, round(cfg.chunk * cfg.resolution / vhr_resolution)))


def vhr_image(ctx: StageContext, items: list[dict[str, Any]], /) -> xr.Dataset:
    """The latest VHR image of ``items``, lazily, as float32, in chunks of
    :func:`vhr_chunk` pixels."""
    from eocube.cube import load

    bands = list(SENSORS["vhr"][1])
    vhr = load(items, bands=bands, chunks={"x": VHR_MAX_CHUNK, "y": VHR_MAX_CHUNK})
    side = vhr_chunk(ctx.config, abs(float(vhr.odc.geobox.resolution.x)))
    if side < VHR_MAX_CHUNK:  # planning a load is metadata only: plan it again
        vhr = load(items, bands=bands, chunks={"x": side, "y": side})
    return vhr.isel(time=-1).astype("float32")


def write_zarr(ctx: StageContext, data: xr.Dataset | xr.DataArray, name: str, /, *,
               tile: str | None = None, mode: Literal["resume", "w"] | None = None) -> Any:
    """Write a stage output to Zarr, chunk by chunk and resumable, reporting progress. A chunk
    that fails (even one that kills every worker it is given) is recorded in the run's
    failures (and its ``failures.jsonl`` at once) and left unwritten; the stage ends
    ``incomplete``, the run ``completed_with_errors``, and the next run retries the chunk.

    The store resumes when the stage continues an unfinished attempt of the same hash
    (``ctx.resume``), and is written anew otherwise. With ``tile``, the output is that
    tile's (``<stage>/tiles/<tile>/<name>``), written anew unless the tile resumes an
    incomplete attempt. ``mode`` overrides either choice."""
    from eocube.io import to_zarr

    path = ctx.output(name) if tile is None else ctx.tile_output(tile, name)
    if mode is None:
        fresh = ctx.tile_fresh if tile is not None else not ctx.resume
        mode = "w" if fresh else "resume"
    rel = f"{ctx.name}/{name}" if tile is None else f"{ctx.name}/tiles/{tile}/{name}"
    report = to_zarr(data, path, mode=mode, stac=False, progress=ctx.progress,
                     on_error="record")
    for f in report.chunks_failed:
        ctx.record_failure({"kind": "chunk", "output": rel, **f})
        ctx.log.warning("chunk %s of %s/%s failed: %s", f["chunk"], rel, f["variable"],
                        f["error"])
    return report


def open_zarr(ctx: StageContext, stage: str, name: str) -> xr.Dataset:
    """A committed Zarr output of an earlier stage, lazily, with its GeoBox (``.odc``)."""
    import odc.geo.xr  # noqa: F401 - registers the .odc accessor
    return xr.open_zarr(ctx.input(stage, name), consolidated=True, decode_coords="all")


# ---- inference ----------------------------------------------------------------------------

#: torch intra-op threads of every inference task (see ``inference_stage``)
INFERENCE_THREADS = 1


def inference_stage(ctx: StageContext) -> None:
    """Built-up probability per year (the fusion model), new built-up between the first and
    last year (the change model), building probability on the VHR image where one exists.

    On a tiled grid (``tiling``) each tile is predicted from the composites around it (a halo
    of ``inference.halo`` pixels, the model's context at the tile's edges), cropped to the
    tile and committed, then the tiles are merged; the result equals the untiled one within
    the tiled-inference tolerance (``tests/pipeline/test_tiles.py`` measures it)."""
    from eocube.infer import predict, predict_change
    cfg = ctx.config
    m, inf = cfg.models, cfg.inference
    # one intra-op thread per forward: Dask runs chunks in parallel, and a fixed count gives
    # the same bits on the threaded scheduler and on any cluster's workers
    kw = {"tile": inf.tile, "overlap": inf.overlap, "blend": inf.blend, "device": inf.device,
          "threads": INFERENCE_THREADS}
    comp = open_zarr(ctx, "cubes", "composites.zarr")
    gb = comp.odc.geobox
    tiles = stage_tiles(ctx, gb)
    two = comp.sizes["time"] >= 2
    if tiles:
        by_id = {t.id: t for t in tiles}

        def work(tid: str) -> None:
            t = by_id[tid]
            ys, xs = t.halo(gb.shape.yx, inf.halo)
            sub = comp.isel(y=ys, x=xs)
            crop = {"y": slice(t.rows.start - ys.start, t.rows.stop - ys.start),
                    "x": slice(t.cols.start - xs.start, t.cols.stop - xs.start)}
            p = predict({"s1": sub, "s2": sub}, m.builtup, **kw).isel(crop)
            write_zarr(ctx, p.rename("builtup").chunk({"time": 1}), "builtup.zarr", tile=tid)
            if two:
                c = predict_change(sub.isel(time=[0]), sub.isel(time=[-1]), m.change,
                                   **kw).isel(crop)
                write_zarr(ctx, c.rename("new_builtup"), "change.zarr", tile=tid)

        ctx.each_tile(by_id, work)
        ch = {"time": 1, "y": cfg.chunk, "x": cfg.chunk}
        rep = mosaic(ctx, tiles, "builtup.zarr", geobox=gb, chunks=ch)
        prob = xr.open_zarr(ctx.dir / "builtup.zarr")["builtup"]
        if two:
            mosaic(ctx, tiles, "change.zarr", geobox=gb, chunks=ch)
            chg = xr.open_zarr(ctx.dir / "change.zarr")["new_builtup"]
    else:
        prob = predict({"s1": comp, "s2": comp}, m.builtup, **kw)
        rep = write_zarr(ctx, prob.rename("builtup").chunk({"time": 1}), "builtup.zarr")
        if two:
            chg = predict_change(comp.isel(time=[0]), comp.isel(time=[-1]), m.change, **kw)
            write_zarr(ctx, chg.rename("new_builtup"), "change.zarr")
    ctx.properties["eocube:builtup_chunks"] = rep.chunks_total
    ctx.properties["eocube:weights_sha256"] = {m.builtup: prob.attrs.get("weights_sha256")}
    if two:
        ctx.properties["eocube:weights_sha256"][m.change] = chg.attrs.get("weights_sha256")
    if m.buildings and "vhr" in cfg.sensors:
        if not ctx.has("cubes", "vhr.zarr"):
            ctx.log.info("inference: no VHR image, building footprints from open maps only")
            return
        pb = predict(open_zarr(ctx, "cubes", "vhr.zarr"), m.buildings, **kw)
        write_zarr(ctx, pb.rename("building"), "buildings_vhr.zarr")
        ctx.properties["eocube:weights_sha256"][m.buildings] = pb.attrs.get("weights_sha256")


# ---- change -------------------------------------------------------------------------------

def builtup_change(prob: xr.DataArray, /, *, threshold: float) -> xr.Dataset:
    """Per pixel, from yearly built-up probabilities: the first year mapped built-up
    (``builtup_year``, -1 never) and new built-up between the first and last year."""
    built = prob >= threshold
    years = pd.DatetimeIndex(prob["time"].values).year
    year_of = xr.DataArray(np.asarray(years, dtype="int16"), dims="time")
    year = year_of.where(built).min("time").fillna(-1).astype("int16")
    new = (built.isel(time=-1) & ~built.isel(time=0)).astype("uint8")
    out = xr.Dataset({"builtup_year": year, "new_builtup": new})
    out["builtup_year"].attrs = {"nodata": -1, "long_name": "first year mapped built-up"}
    return out


#: the largest CCDC chunk side: a chunk holds every pixel's whole S2 series, all bands, at once
CCDC_MAX_CHUNK = 256


def ccdc_chunk(cfg: RunConfig) -> int:
    """The spatial chunk side of the CCDC stage: the run's ``chunk``, capped at
    ``CCDC_MAX_CHUNK``, so that a worker's memory follows the configured chunk and not the
    area (a fixed 256 made the 64 px chunks of a larger area 16 times larger)."""
    return min(cfg.chunk, CCDC_MAX_CHUNK)


def ccdc_breaks(ctx: StageContext, geobox: Any | None = None, /) -> xr.Dataset:
    """CCDC over the masked S2 series (on ``geobox``, a tile of the run's grid, or the whole
    grid at the configured resolution): the number of breaks and the first break."""
    from eocube.change import ccdc
    from eocube.cube import load
    from eocube.cube.qa import mask_s2

    cfg = ctx.config
    where = {"geobox": geobox} if geobox is not None else {"resolution": cfg.resolution}
    side = ccdc_chunk(cfg)
    s2 = load(read_items(ctx, "s2"), bands=list(SENSORS["s2"][1]),
              chunks={"x": side, "y": side, "time": -1}, **where)
    refl = mask_s2(s2)  # its qa_class lets ccdc run pyccd's snow / insufficient-clear rules
    seg = ccdc(refl, bands=["B03", "B04", "B08", "B11"])
    first_break = seg["break"].isel(segment=0)
    return xr.Dataset({"n_breaks": seg["n_breaks"].astype("int16"),
                       "first_break": first_break})


def change_stage(ctx: StageContext) -> None:
    """Year of first built-up from the yearly built-up maps; CCDC breaks over the S2 series.

    Both are per pixel: on a tiled grid (``tiling``) each tile is computed and committed
    alone, and the merged outputs equal the untiled ones bit for bit."""
    cfg = ctx.config
    prob = open_zarr(ctx, "inference", "builtup.zarr")["builtup"]
    gb = prob.odc.geobox
    sp = {d: cfg.chunk for d in ("y", "x")}
    tiles = stage_tiles(ctx, gb)
    if tiles:
        by_id = {t.id: t for t in tiles}

        def work(tid: str) -> None:
            t = by_id[tid]
            out = builtup_change(prob.isel(y=t.rows, x=t.cols), threshold=cfg.change.threshold)
            write_zarr(ctx, out.chunk(sp), "builtup_change.zarr", tile=tid)
            if cfg.change.ccdc:
                write_zarr(ctx, ccdc_breaks(ctx, t.geobox), "ccdc.zarr", tile=tid)

        ctx.each_tile(by_id, work)
        mosaic(ctx, tiles, "builtup_change.zarr", geobox=gb, chunks=sp)
        if cfg.change.ccdc:
            side = ccdc_chunk(cfg)
            mosaic(ctx, tiles, "ccdc.zarr", geobox=gb, chunks={"y": side, "x": side})
        return
    out = builtup_change(prob, threshold=cfg.change.threshold)
    write_zarr(ctx, out.chunk(sp), "builtup_change.zarr")
    if cfg.change.ccdc:
        write_zarr(ctx, ccdc_breaks(ctx), "ccdc.zarr")


def grid_of(ctx: StageContext) -> Any:
    """The GeoBox of the composites (the run's 10 m grid)."""
    return open_zarr(ctx, "cubes", "composites.zarr").odc.geobox


def read_table(ctx: StageContext, stage: str, name: str) -> Any:
    import geopandas as gpd

    path = ctx.input(stage, name)
    try:
        return gpd.read_parquet(path)
    except ValueError:  # a plain table
        return pd.read_parquet(path)


# ---- buildings ----------------------------------------------------------------------------

def buildings_stage(ctx: StageContext) -> None:
    """Open-map footprints + VHR-derived footprints; floors, height and structure estimated."""
    from eocube.io import to_geoparquet
    from eocube.pipeline.buildings import floors_from_height, infer_structure, merge_footprints
    from eocube.pipeline.openmap import building_hints, config_layer

    cfg = ctx.config
    crs = grid_of(ctx).crs
    osm = config_layer(cfg, "buildings", crs=crs)
    hints = building_hints(osm)
    osm = osm.assign(levels=hints["levels"], function_hint=hints["function_hint"])
    derived = None
    if ctx.has("inference", "buildings_vhr.zarr"):  # else open-map footprints only
        from eocube.zonal import vectorize_mask

        prob = open_zarr(ctx, "inference", "buildings_vhr.zarr")["building"]
        derived = vectorize_mask(prob.load(), threshold=0.5, min_area=cfg.buildings.min_area_m2,
                                 simplify=1.0)
    b = merge_footprints(osm[["osm_id", "levels", "function_hint", "geometry"]], derived,
                         min_area=cfg.buildings.min_area_m2)
    height = None
    if cfg.buildings.height_model and "s1" in cfg.sensors:  # else floors from the neighbours
        from eocube.pipeline.buildings import predict_height

        inf = cfg.inference
        comp = open_zarr(ctx, "cubes", "composites.zarr").isel(time=[-1])
        height = predict_height(read_items(ctx, "s1"), comp, cfg.buildings.height_model,
                                tile=inf.tile, overlap=inf.overlap, blend=inf.blend,
                                device=inf.device, threads=1).load()
        write_zarr(ctx, height.rename("height").chunk({"x": cfg.chunk, "y": cfg.chunk}),
                   "height.zarr")
        ctx.properties["eocube:weights_sha256"] = {
            cfg.buildings.height_model: height.attrs.get("weights_sha256")}
    fl = floors_from_height(b, b["levels"], height,
                            storey_height_m=cfg.buildings.storey_height_m)
    b["floors"] = fl["floors"]
    b["floors_source"] = fl["floors_source"]
    b["height_model_m"] = fl["height_model_m"]
    b["height"] = np.where(b["floors_source"] == "height_model", b["height_model_m"],
                           b["floors"] * cfg.buildings.storey_height_m)
    b["structure"] = infer_structure(b["floors"], b["function_hint"])
    to_geoparquet(b, ctx.output("buildings.parquet", title="building footprints"))
    ctx.properties["eocube:buildings"] = {
        "total": len(b), "from_open_map": int((b["source"] == "osm").sum()),
        "from_vhr": int((b["source"] == "vhr").sum()),
        "floors_source": b["floors_source"].value_counts().to_dict()}


# ---- zones --------------------------------------------------------------------------------

def zones_stage(ctx: StageContext) -> None:
    """TAZ from the open-map roads, joined to the census communities; land use per TAZ from the
    mapped land-use polygons; POIs typed from their OSM tags."""
    import shapely

    from eocube.io import to_geoparquet
    from eocube.pipeline.openmap import config_layer, osm_landuse, osm_poi_types
    from eocube.zonal import assign_zones, taz_from_roads

    cfg = ctx.config
    gb = grid_of(ctx)
    crs = gb.crs
    roads = config_layer(cfg, "roads", crs=crs)
    boundary = shapely.box(*gb.extent.boundingbox)
    taz = taz_from_roads(roads, boundary=boundary)
    census = config_layer(cfg, "census", crs=crs)
    if "community_id" not in census.columns:
        raise ConfigError("vectors.census: the census layer needs a 'community_id' column")
    communities = census[["community_id", "geometry"]]
    taz = assign_zones(taz, communities, id_col="community_id")
    taz = taz[taz["community_id"].notna()].copy()
    taz["community_id"] = taz["community_id"].astype("int64")
    lu = osm_landuse(taz, config_layer(cfg, "land_use", crs=crs))
    mapped = lu.notna()
    # a TAZ with no mapped land use takes the city's most common mapped class (documented)
    fill = lu[mapped].mode().iloc[0] if mapped.any() else "residential"
    taz["land_use"] = lu.fillna(fill).to_numpy()
    taz["land_use_source"] = np.where(mapped.to_numpy(), "osm", "city_mode")
    pois = osm_poi_types(config_layer(cfg, "pois", crs=crs))
    to_geoparquet(taz.reset_index(drop=True), ctx.output("taz.parquet", title="TAZ"))
    to_geoparquet(communities.reset_index(drop=True),
                  ctx.output("communities.parquet", title="communities"))
    to_geoparquet(census.drop(columns="geometry").reset_index(drop=True),
                  ctx.output("census.parquet", title="census"))
    to_geoparquet(pois, ctx.output("pois.parquet", title="typed POIs"))
    ctx.properties["eocube:zones"] = {"taz": len(taz), "communities": len(communities),
                                      "pois": len(pois),
                                      "taz_land_use_mapped": int(mapped.sum())}


# ---- zonal features -----------------------------------------------------------------------

def feature_rasters(ctx: StageContext) -> dict[str, xr.DataArray]:
    """The TAZ feature rasters on the 100 m grid: mean NTL of the last year (bilinear from
    15″), POI kernel density, weekday and weekend night mobile signal."""
    from odc.geo.xr import xr_reproject

    from eocube.zonal import kernel_density

    cfg = ctx.config
    gb = grid_of(ctx)
    g100 = gb.zoom_to(resolution=100.0) if hasattr(gb, "zoom_to") else gb
    out: dict[str, xr.DataArray] = {}
    if "mobile" in cfg.sensors:
        mob = open_zarr(ctx, "cubes", "mobile.zarr").isel(time=-1)
        g100 = mob.odc.geobox
        for v in mob.data_vars:
            name = "mobile_" + str(v).replace("-night", "").replace("-", "_")
            out[name] = mob[v].astype("float64").load()
    if "ntl" in cfg.sensors:
        ntl = open_zarr(ctx, "cubes", "ntl_monthly.zarr")["radiance"]
        last = ntl.isel(time=slice(-12, None)).mean("time").astype("float64").load()
        out["ntl"] = xr_reproject(last, g100, resampling="bilinear")
    pois = read_table(ctx, "zones", "pois.parquet")
    out["poi_kde"] = kernel_density(pois, g100, bandwidth=300.0) * 1e4
    return out


def features_stage(ctx: StageContext) -> None:
    """Per TAZ: NTL, POI density and mobile-signal sums and variances; per community and year:
    the area mapped built-up."""
    from eocube.io import to_geoparquet
    from eocube.zonal import zonal_stats
    from eocube.zonal.features import taz_features

    taz = read_table(ctx, "zones", "taz.parquet")
    feats = taz_features(feature_rasters(ctx), taz).compute()
    df = feats.to_dataframe()[[str(v) for v in feats.data_vars]]
    df.index.name = "taz_id"
    to_geoparquet(df, ctx.output("taz_features.parquet", title="TAZ features"))
    prob = open_zarr(ctx, "inference", "builtup.zarr")["builtup"]
    built = (prob >= ctx.config.change.threshold).astype("float32")
    comm = read_table(ctx, "zones", "communities.parquet")
    res = prob.odc.geobox.resolution
    st = zonal_stats(built, comm, stats=["sum"], id_col="community_id")["sum"].compute()
    area = (st * abs(res.x * res.y)).transpose("zone", "time").to_pandas()  # zone × time
    tab = pd.DataFrame(area.to_numpy(), index=pd.Index(st["zone"].to_numpy(),
                                                       name="community_id"),
                       columns=[f"builtup_m2_{pd.Timestamp(t).year}" for t in st["time"].values])
    to_geoparquet(tab, ctx.output("community_builtup.parquet", title="built-up per community"))


# ---- estimates ----------------------------------------------------------------------------

def estimates_stage(ctx: StageContext) -> None:
    """DEFF building population (with its ablations and baselines on held-out communities),
    bottom-up and top-down stock, roof greening and SDG 11.3.1 — from derived layers only."""
    from eocube.estimates import bottom_up_stock, coarse_districts, compare_population, lcrpgr
    from eocube.estimates.population import EXTERNAL_FORMS
    from eocube.io import to_geoparquet

    cfg = ctx.config
    est = cfg.estimates
    buildings = read_table(ctx, "buildings", "buildings.parquet")
    taz = read_table(ctx, "zones", "taz.parquet")
    comm = read_table(ctx, "zones", "communities.parquet")
    census = read_table(ctx, "zones", "census.parquet")
    pois = read_table(ctx, "zones", "pois.parquet")
    feats = read_table(ctx, "features", "taz_features.parquet").reset_index()
    b_in = buildings.drop(columns=["function_hint", "levels"], errors="ignore")
    prob = open_zarr(ctx, "inference", "builtup.zarr")["builtup"]
    built_last = (prob.isel(time=-1) >= cfg.change.threshold).astype("float32").load()
    # the gridded baselines start from a coarse census: communities dissolved on 1.2 km cells
    districts = coarse_districts(comm.merge(census, on="community_id"), cell_m=1200.0)
    # DEFF, its ablations and baselines on several seeded 3:1 splits (a spread, not one split)
    tables, per_seed = [], {}
    for seed in [est.seed, *[s for s in range(est.splits) if s != est.seed]][: est.splits]:
        c = compare_population(b_in, pois=pois, taz=taz, communities=comm, census=census,
                               features=feats, builtup=built_last, districts=districts,
                               seed=seed, test_size=est.test_size)
        tables.append(c.table.reset_index().assign(split_seed=seed))
        d = c.deff
        test_ids = d.communities.loc[d.communities["split"] == "test", "community_id"]
        per_seed[seed] = (d.buildings["population"].to_numpy(),
                          d.buildings["community_id"].isin(set(test_ids)).to_numpy(),
                          # DEFF with the other forms of its external term, for the evaluation
                          {f"population_x{form}_s{seed}": c.buildings[name].to_numpy()
                           for name, form in EXTERNAL_FORMS.items() if name in c.buildings})
        if seed == est.seed:
            cmp = c
    splits = pd.DataFrame({"building_id": cmp.deff.buildings["building_id"].to_numpy(),
                           **{f"population_s{k}": v[0] for k, v in per_seed.items()},
                           **{f"test_s{k}": v[1] for k, v in per_seed.items()},
                           **{c: a for v in per_seed.values() for c, a in v[2].items()}})
    to_geoparquet(pd.concat(tables, ignore_index=True),
                  ctx.output("population_splits.parquet",
                             title="DEFF and baselines per split seed"))
    to_geoparquet(splits, ctx.output("population_splits_buildings.parquet",
                                     title="building population per split seed"))
    res = cmp.deff
    pop = res.buildings
    to_geoparquet(pop, ctx.output("population_buildings.parquet", title="building population"))
    to_geoparquet(res.communities, ctx.output("population_communities.parquet",
                                              title="community population"))
    to_geoparquet(cmp.table, ctx.output("population_comparison.parquet",
                                        title="DEFF against its ablations and baselines"))
    ctx.properties["eocube:deff"] = {"coef": {k: float(v) for k, v in res.coef.items()}}
    # stock, bottom-up from the estimated height and structure
    stock = bottom_up_stock(pop, function_col="function")
    to_geoparquet(stock, ctx.output("stock_buildings.parquet", title="bottom-up stock"))
    topdown_estimate(ctx)
    # SDG 11.3.1 from the derived built-up of the first and last year and the census
    two = xr.concat([(prob.isel(time=0) >= cfg.change.threshold),
                     (prob.isel(time=-1) >= cfg.change.threshold)], dim="time"
                    ).astype("float32")
    two = two.assign_coords(time=prob["time"].values[[0, -1]])
    sdg = lcrpgr(two, population=census, zones=comm, id_col="community_id",
                 on_invalid="nan")
    sdg["zone"] = sdg["zone"].astype(str)  # "city" and the community ids
    to_geoparquet(sdg, ctx.output("sdg_11_3_1.parquet", title="LCR, PGR, LCRPGR"))
    greening_estimate(ctx, pop)


def stock_cells(ctx: StageContext, months: int) -> xr.Dataset:
    """The 100 m stock cells of the run's grid with the last ``months`` monthly NTL radiances
    (bilinear from 15″), as the top-down regressors take them."""
    from odc.geo.xr import xr_reproject

    g100 = grid_of(ctx).zoom_to(resolution=100.0)
    ntl = open_zarr(ctx, "cubes", "ntl_monthly.zarr")["radiance"].isel(
        time=slice(-months, None)).load()
    return xr.Dataset({"ntl": xr_reproject(ntl, g100, resampling="bilinear").astype("float32")})


def topdown_estimate(ctx: StageContext) -> None:
    """Top-down stock per 100 m cell from the shipped regressors (the model named in
    ``models.stock`` and the single-source ones beside it): optical patches of the last yearly
    composite and the last months of NTL."""
    from eocube.estimates import topdown_stock
    from eocube.estimates.stock import STOCK_MODELS
    from eocube.io import to_geoparquet
    from eocube.models import read_spec

    cfg = ctx.config
    if "ntl" not in cfg.sensors:
        ctx.log.info("estimates: no NTL sensor, top-down stock skipped")
        return
    models = list(dict.fromkeys([cfg.models.stock, *STOCK_MODELS]))
    months = max(int(read_spec(m).kwargs.get("ntl_length", 0)) for m in models)
    ntl_steps = open_zarr(ctx, "cubes", "ntl_monthly.zarr").sizes["time"]
    if ntl_steps < months:
        ctx.log.info("estimates: %d months of NTL, the stock models need %d; top-down skipped",
                     ntl_steps, months)
        return
    optical = open_zarr(ctx, "cubes", "composites.zarr").isel(time=-1)[list(S2_BANDS)].load()
    td = topdown_stock(stock_cells(ctx, months), optical=optical, models=models,
                       device=cfg.inference.device if cfg.inference.device != "auto" else "cpu")
    to_geoparquet(td.cells, ctx.output("stock_topdown_cells.parquet",
                                       title="top-down stock per 100 m cell"))


def greening_estimate(ctx: StageContext, pop: Any) -> None:
    """Roof greening: AHP overlay of a heat proxy, population, building and road density."""
    from eocube.estimates import greening_criteria, greening_suitability
    from eocube.io import to_geoparquet
    from eocube.pipeline.openmap import config_layer

    comp = open_zarr(ctx, "cubes", "composites.zarr").isel(time=-1)
    # no thermal band in the catalog: a surface-heat proxy from the last composite, NDBI − NDVI
    # (impervious and bare surfaces heat up, vegetation cools); only its ranking matters, as
    # greening reclassifies every criterion into quantile classes
    nir, red, swir = comp["B08"], comp["B04"], comp["B11"]
    heat = ((swir - nir) / (swir + nir) - (nir - red) / (nir + red)).rename("lst")
    gb = comp.odc.geobox
    grid = gb.zoom_to(resolution=30.0)
    roads = config_layer(ctx.config, "roads", crs=gb.crs)
    crit = greening_criteria(pop.assign(population=pop["population"]), roads=roads,
                             lst=heat.load(), grid=grid)
    districts = read_table(ctx, "zones", "communities.parquet").rename(
        columns={"community_id": "district_id"})
    g = greening_suitability(pop, criteria=crit, districts=districts)
    to_geoparquet(g.roofs, ctx.output("greening_roofs.parquet", title="roof suitability"))
    to_geoparquet(g.districts, ctx.output("greening_districts.parquet",
                                          title="suitability per community"))
    ctx.properties["eocube:ahp"] = {"weights": {str(k): float(v) for k, v in
                                                g.ahp.weights.items()}, "cr": float(g.ahp.cr)}
