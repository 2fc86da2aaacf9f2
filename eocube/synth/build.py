"""Write a synthetic city as a static STAC archive: COGs, Collections, Items, stac-geoparquet,
vector layers as GeoParquet, and a manifest that marks the archive complete.

Observable and truth are apart: the top-level catalog (what the STAC API serves) holds the
sensors' collections, ``vectors/`` the open-map layers and the census; everything only the
simulator knows goes under ``truth/`` (its own static catalog of truth rasters and the truth
vector tables), read by evaluation code and tests alone. Deleting ``truth/`` leaves a valid,
servable archive.

The archive is built in a hidden sibling folder and moved into place only when the manifest
is written, so a crash never leaves something at ``out`` that looks complete. Asset hrefs are
relative, which keeps two builds of one seed byte-identical wherever they are written;
``eocube.catalog`` turns them into absolute ``file://`` URIs when it serves the archive.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from odc.geo.geobox import GeoBox

from eocube.errors import ArchiveError
from eocube.io import file_sha256, write_cog, write_json
from eocube.io.stac import (
    EXT,
    archive_asset,
    archive_catalog,
    archive_collection,
    archive_item,
    iso,
    raster_band,
)
from eocube.synth.cityspec import CitySpec, resolve_spec
from eocube.synth.osm import OPEN_LAYERS, open_map_layers
from eocube.synth.sensors import (
    S1_INCIDENCE_DEG,
    S1_LOOKS,
    S1_NODATA,
    S2_20M,
    S2_BAND_META,
    S2_BANDS,
    S2_BOA_ADD_OFFSET,
    S2_PROCESSING_BASELINE,
    S2_QUANTIFICATION,
    SCL_CLOUD_AND_SHADOW,
    VHR_LOCAL_SOLAR_HOUR,
    Scene,
    apply_affine,
)
from eocube.synth.world import World, make_world, series_dates

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
#: Folder of everything only the simulator knows; an archive without it stays valid.
TRUTH = "truth"
#: Truth vector tables under ``truth/`` (the ``World``'s layers).
TRUTH_VECTORS = ("buildings", "taz", "communities", "roads", "pois", "trees")

#: The observable collections, served by the STAC API.
COLLECTIONS = {
    "sentinel-2-l2a": "Sentinel-2 Level-2A surface reflectance (synthetic)",
    "sentinel-1-rtc": "Sentinel-1 radiometrically terrain corrected backscatter (synthetic)",
    "viirs-ntl-monthly": "VIIRS monthly night-time lights, 15 arc-second (synthetic)",
    "eocube-synth-vhr": "High-resolution true-colour image for building extraction (synthetic)",
    "eocube-synth-mobile": "Night-time mobile-signal users per 100 m cell, weekday and weekend",
    "blackmarble-vnp46a3": "NASA Black Marble VNP46A3 monthly night lights, HDF5 tiles of "
                           "10 degrees (synthetic)",
}
#: The truth collections, in ``truth/``'s own catalog (never served).
TRUTH_COLLECTIONS = {
    "eocube-synth-truth": "Truth rasters: built-up per year, change date, building id",
}

# module-level state for forked workers: the parent sets it before the pool starts
_STATE: dict[str, Any] = {}


def build_city(out: str | os.PathLike[str], /, *, preset: str | CitySpec = "tiny",
               seed: int = 0, overwrite: bool = False, workers: int = 1,
               **overrides: Any) -> Path:
    """Build a synthetic city and write it as a STAC archive at ``out``.

    Parameters
    ----------
    out
        Folder to create. Its parent is created if needed.
    preset
        ``"tiny"`` (seconds, for tests), ``"demo"`` (10 km × 10 km over three years) or a
        ``CitySpec``.
    seed
        City seed; the same seed and preset give a byte-identical archive.
    overwrite
        Replace an existing archive at ``out`` (only once the new one is complete). Only an
        archive eocube built is replaced, and only while it holds no file eocube did not
        write; anything else at ``out`` is refused, never deleted.
    workers
        Processes used to simulate and write acquisitions (results do not depend on it).
    **overrides
        ``CitySpec`` fields to change, e.g. ``size_m=2560``.

    Returns
    -------
    Path
        ``out``, now holding a complete archive with ``manifest.json``.

    Raises
    ------
    ArchiveError
        If ``out`` exists and ``overwrite`` is false, or if ``out`` is not an archive eocube
        built or holds files eocube did not write.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = build_city(pathlib.Path(tempfile.mkdtemp()) / "city", preset="tiny", years=1)
    >>> (p / "manifest.json").exists()
    True
    """
    spec = resolve_spec(preset, **overrides)
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise ArchiveError(f"{out} already exists; pass overwrite=True (--overwrite) to replace "
                           "it or choose another path")
    if out.exists():
        check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        world = make_world(spec, seed=seed)
        _write_archive(tmp, world, workers=workers)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_replaceable(path: str | os.PathLike[str], /) -> None:
    """Refuse to replace ``path`` unless it is an archive eocube built holding only its files.

    Raises
    ------
    ArchiveError
        If ``path`` has no ``manifest.json`` written by ``eocube.synth``, or holds a file (or
        link) its manifest does not list; the message names them.
    """
    root = Path(path)
    try:
        man = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        man = None
    if not isinstance(man, dict) or man.get("generator") != "eocube.synth":
        raise ArchiveError(
            f"{root} is not an archive eocube built (it has no {MANIFEST} written by "
            "eocube.synth), so eocube will not delete it even with overwrite=True "
            "(--overwrite): move it away or choose another path")
    listed = {*man.get("files", {}), MANIFEST}
    foreign = sorted(rel for p in root.rglob("*") if p.is_file() or p.is_symlink()
                     if (rel := p.relative_to(root).as_posix()) not in listed)
    if foreign:
        shown = ", ".join(repr(f) for f in foreign[:5]) + (" …" if len(foreign) > 5 else "")
        raise ArchiveError(
            f"{root} holds {len(foreign)} file(s) eocube did not write ({shown}), so eocube "
            "will not delete it even with overwrite=True (--overwrite): move them out of the "
            "archive or choose another path")


def _swap_into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _write_archive(root: Path, world: World, *, workers: int) -> None:
    scene = Scene(world)
    _write_layers(root / "vectors", open_map_layers(world))
    _write_layers(root / TRUTH, {n: getattr(world, n) for n in TRUTH_VECTORS})
    months = _ntl_series(scene)
    collections: dict[str, list[dict[str, Any]]] = {
        "sentinel-2-l2a": _sentinel2(root, scene, workers),
        "sentinel-1-rtc": _sentinel1(root, scene, workers),
        "viirs-ntl-monthly": _ntl(root, scene, months),
        "eocube-synth-vhr": _vhr(root, scene),
        "eocube-synth-mobile": _mobile(root, scene),
        "blackmarble-vnp46a3": _blackmarble(root, scene, months),
    }
    truth = {"eocube-synth-truth": _truth(root / TRUTH, scene)}
    for cid, items in collections.items():
        _write_collection(root, world, cid, items, title=COLLECTIONS[cid])
    for cid, items in truth.items():
        _write_collection(root / TRUTH, world, cid, items, title=TRUTH_COLLECTIONS[cid])
    name, seed = world.spec.name, world.seed
    write_json(root / "catalog.json", archive_catalog(
        list(collections), title=f"eocube synthetic city {name!r}",
        description=f"Synthetic city (preset {name}, seed {seed}) observed by simulated "
                    "sensors."))
    write_json(root / TRUTH / "catalog.json", archive_catalog(
        list(truth), title=f"truth of the eocube synthetic city {name!r}",
        description=f"What only the simulator of the synthetic city (preset {name}, seed "
                    f"{seed}) knows; for evaluation and tests, never a pipeline input.",
        id="eocube-synthetic-city-truth"))
    all_items = [_rooted(it) for items in collections.values() for it in items]
    import rustac

    rustac.write_sync(str(root / "items.parquet"), all_items)
    _write_manifest(root, world, {c: len(v) for c, v in collections.items()},
                    truth={c: len(v) for c, v in truth.items()})


def _rooted(item: dict[str, Any]) -> dict[str, Any]:
    """The item with asset hrefs relative to the archive root (for stac-geoparquet)."""
    base = f"{item['collection']}/{item['id']}"
    out = dict(item)
    out["links"] = []
    out["assets"] = {k: {**a, "href": f"{base}/{a['href'][2:]}"} for k, a in item["assets"].items()}
    return out


def _tiles(spec: CitySpec, gb: GeoBox) -> Iterable[tuple[str, int, int, GeoBox]]:
    n = spec.tiles_per_side
    py = gb.shape.y // n
    px = gb.shape.x // n
    for r in range(n):
        for c in range(n):
            yield f"50Q{c:02d}{r:02d}", r, c, gb[r * py:(r + 1) * py, c * px:(c + 1) * px]


def _tile_slice(a: np.ndarray, sub: GeoBox, full: GeoBox) -> np.ndarray:
    col0, row0 = apply_affine(~full.transform, sub.transform.c, sub.transform.f)
    r0, c0 = int(round(row0)), int(round(col0))
    return a[..., r0:r0 + sub.shape.y, c0:c0 + sub.shape.x]


def _map(fn: Callable[[int], list[dict[str, Any]]], n: int, workers: int,
         state: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``fn`` over 0..n-1 (serially or in forked processes), results in index order."""
    _STATE.update(state)
    try:
        if workers <= 1 or n <= 1:
            return [it for i in range(n) for it in fn(i)]
        ctx = mp.get_context("fork")
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            return [it for res in pool.map(fn, range(n)) for it in res]
    finally:
        _STATE.clear()


# ---- Sentinel-2 ---------------------------------------------------------------------------

def s2_dates(spec: CitySpec) -> pd.DatetimeIndex:
    return series_dates(spec, revisit_days=spec.s2_revisit_days, hour=2, minute=55)


def _s2_task(i: int) -> list[dict[str, Any]]:
    root: Path = _STATE["root"]
    scene: Scene = _STATE["scene"]
    t = _STATE["dates"][i]
    bands = scene.s2_scene(i, t)
    gb10, gb20 = scene.geobox, scene.geobox_20m
    platform = "sentinel-2a" if i % 2 == 0 else "sentinel-2b"
    sun = scene.sun_position(t, local_solar_hour=VHR_LOCAL_SOLAR_HOUR)  # 10:30 descending node
    items = []
    for tile, _r, _c, sub10 in _tiles(scene.world.spec, gb10):
        sub20 = sub10.zoom_to(resolution=20)
        iid = (f"S2{platform[-1].upper()}_MSIL2A_{t:%Y%m%dT%H%M%S}_N0510_R{32 + i % 2:03d}"
               f"_T{tile}")
        d = root / "sentinel-2-l2a" / iid
        assets = {}
        for b in (*S2_BANDS, "SCL"):
            at_20m = b in S2_20M or b == "SCL"
            sub, full, res = (sub20, gb20, 20) if at_20m else (sub10, gb10, 10)
            write_cog(d / f"{b}.tif", _tile_slice(bands[b], sub, full), sub, nodata=0,
                      resampling="nearest" if b == "SCL" else "average")
            if b == "SCL":
                assets[b] = archive_asset(f"./{b}.tif", sub, title="Scene classification map",
                                       roles=("data", "classification"), **{
                                           "raster:bands": [raster_band(
                                               "uint8", nodata=0, resolution=res)]})
            else:
                cn, cw, fw, _ = S2_BAND_META[b]
                assets[b] = archive_asset(
                    f"./{b}.tif", sub, title=f"Band {b} ({cn}) - {res}m",
                    roles=("data", "reflectance"), **{
                        "eo:bands": [{"name": b, "common_name": cn, "center_wavelength": cw,
                                      "full_width_half_max": fw}],
                        "raster:bands": [raster_band(
                            "uint16", nodata=0, resolution=res, scale=1 / S2_QUANTIFICATION,
                            offset=S2_BOA_ADD_OFFSET / S2_QUANTIFICATION)]})
        scl = _tile_slice(bands["SCL"], sub20, gb20)
        cloud = float(np.isin(scl, SCL_CLOUD_AND_SHADOW).mean() * 100)
        props = {
            "datetime": iso(t), "platform": platform, "constellation": "sentinel-2",
            "instruments": ["msi"], "eo:cloud_cover": round(cloud, 3),
            "s2:processing_baseline": S2_PROCESSING_BASELINE, "s2:mgrs_tile": tile,
            "s2:boa_add_offset": S2_BOA_ADD_OFFSET, "s2:quantification_value": S2_QUANTIFICATION,
            "view:sun_elevation": round(sun[0], 3), "view:sun_azimuth": round(sun[1], 3),
        }
        it = archive_item(iid, "sentinel-2-l2a", sub10, properties=props, assets=assets,
                       extensions=("proj", "eo", "raster", "view"))
        write_json(d / f"{iid}.json", it)
        items.append(it)
    return items


def _sentinel2(root: Path, scene: Scene, workers: int) -> list[dict[str, Any]]:
    dates = s2_dates(scene.world.spec)
    # warm the shared rasters before forking
    scene.fractions, scene._lot_matrix, scene._texture, scene._roof_spectra  # noqa: B018
    scene._ground_fields, scene._s1_static  # noqa: B018
    return _map(_s2_task, len(dates), workers, {"root": root, "scene": scene, "dates": dates})


# ---- Sentinel-1 ---------------------------------------------------------------------------

def s1_dates(spec: CitySpec) -> pd.DatetimeIndex:
    return series_dates(spec, revisit_days=spec.s1_revisit_days, hour=10, minute=33,
                        offset_days=4)


def s1_orbit(index: int) -> str:
    return "ascending" if index % 2 == 0 else "descending"


def _s1_task(i: int) -> list[dict[str, Any]]:
    root: Path = _STATE["root"]
    scene: Scene = _STATE["scene"]
    t = _STATE["dates"][i]
    orbit = s1_orbit(i)
    pols = scene.s1_scene(i, t, orbit=orbit)
    items = []
    for tile, _r, _c, sub in _tiles(scene.world.spec, scene.geobox):
        iid = f"S1A_IW_GRDH_1SDV_{t:%Y%m%dT%H%M%S}_{tile}_rtc"
        d = root / "sentinel-1-rtc" / iid
        assets = {}
        for pol, arr in pols.items():
            write_cog(d / f"{pol}.tif", _tile_slice(arr, sub, scene.geobox), sub,
                      nodata=S1_NODATA)
            assets[pol] = archive_asset(
                f"./{pol}.tif", sub, title=f"{pol.upper()}: gamma0 terrain-corrected backscatter",
                **{"raster:bands": [raster_band("float32", nodata=S1_NODATA,
                                                     resolution=10, unit="linear power")]})
        props = {
            "datetime": iso(t), "platform": "sentinel-1a", "constellation": "sentinel-1",
            "sar:instrument_mode": "IW", "sar:frequency_band": "C", "sar:center_frequency": 5.405,
            "sar:polarizations": ["VV", "VH"], "sar:product_type": "GRD",
            "sar:observation_direction": "right", "sat:orbit_state": orbit,
            "sat:relative_orbit": 11 if orbit == "ascending" else 142,
            "sar:looks_equivalent_number": S1_LOOKS,
            "view:incidence_angle": S1_INCIDENCE_DEG[orbit],
        }
        it = archive_item(iid, "sentinel-1-rtc", sub, properties=props, assets=assets,
                       extensions=("proj", "raster", "sar", "sat", "view"))
        write_json(d / f"{iid}.json", it)
        items.append(it)
    return items


def _sentinel1(root: Path, scene: Scene, workers: int) -> list[dict[str, Any]]:
    dates = s1_dates(scene.world.spec)
    return _map(_s1_task, len(dates), workers, {"root": root, "scene": scene, "dates": dates})


# ---- night lights, VHR, truth, mobile ------------------------------------------------------

def ntl_months(spec: CitySpec) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(spec.start, tz="UTC"), periods=12 * spec.years,
                         freq="MS")


def _ntl_series(scene: Scene) -> list[tuple[pd.Timestamp, pd.Timestamp, np.ndarray]]:
    """(month start, month end, radiance) of every month, simulated once for both layouts."""
    out = []
    for i, m in enumerate(ntl_months(scene.world.spec)):
        end = m + pd.offsets.MonthEnd(0) + pd.Timedelta(hours=23, minutes=59, seconds=59)
        out.append((m, end, scene.ntl_month(i, end)))
    return out


def _ntl(root: Path, scene: Scene, months: list[tuple[pd.Timestamp, pd.Timestamp, np.ndarray]]
         ) -> list[dict[str, Any]]:
    gb = scene.ntl_geobox
    items = []
    for m, end, rad in months:
        iid = f"VNP46A3_{m:%Y%m}_{scene.world.spec.name}"
        d = root / "viirs-ntl-monthly" / iid
        write_cog(d / "radiance.tif", rad, gb, nodata=float("nan"))
        assets = {"radiance": archive_asset(
            "./radiance.tif", gb, title="Monthly snow-free all-angle radiance",
            **{"raster:bands": [raster_band("float32", nodata=float("nan"),
                                                 resolution=NTL_RES_M, unit="nW cm-2 sr-1")]})}
        props = {"datetime": iso(m), "start_datetime": iso(m),
                 "end_datetime": iso(end), "platform": "suomi-npp", "instruments": ["viirs"]}
        it = archive_item(iid, "viirs-ntl-monthly", gb, properties=props, assets=assets,
                       extensions=("proj", "raster"))
        write_json(d / f"{iid}.json", it)
        items.append(it)
    return items


NTL_RES_M = 463.3  # 15 arc-seconds at the equator, as stated by the VIIRS products


def _blackmarble(root: Path, scene: Scene,
                 months: list[tuple[pd.Timestamp, pd.Timestamp, np.ndarray]]
                 ) -> list[dict[str, Any]]:
    """The same monthly night lights as VNP46A3 HDF5 tiles (see ``synth.vnp46a3``)."""
    from eocube.synth import vnp46a3 as bm

    gb = scene.ntl_geobox
    items = []
    for i, (m, end, rad) in enumerate(months):
        cx, cy = gb.extent.centroid.coords[0]
        h, v = bm.tile_of(cx, cy)
        tile = bm.tile_name(h, v)
        iid = f"VNP46A3.A{m:%Y}{m.dayofyear:03d}.{tile}.001"
        fname = f"{iid}.h5"
        d = root / "blackmarble-vnp46a3" / iid
        bm.write_vnp46a3(d / fname, rad, gb, month=m,
                         rng=np.random.default_rng([scene.world.seed, 7, i]))
        tgb = bm.tile_geobox(h, v)
        asset = archive_asset(f"./{fname}", tgb, title="VNP46A3 monthly HDF-EOS5 tile")
        asset["type"] = "application/x-hdf5"
        props = {"datetime": iso(m), "start_datetime": iso(m),
                 "end_datetime": iso(end), "platform": "suomi-npp",
                 "instruments": ["viirs"], "blackmarble_tile": tile}
        it = archive_item(iid, "blackmarble-vnp46a3", tgb, properties=props,
                       assets={"h5": asset}, extensions=("proj",))
        write_json(d / f"{iid}.json", it)
        items.append(it)
    return items


def _vhr(root: Path, scene: Scene) -> list[dict[str, Any]]:
    spec = scene.world.spec
    t = pd.Timestamp(spec.end, tz="UTC") + pd.Timedelta(hours=3)
    rgb = scene.vhr_rgb(t)
    geo = scene.vhr_geometry(t)
    gbv = scene.geobox_vhr
    items = []
    for tile, _r, _c, sub10 in _tiles(spec, scene.geobox):
        sub = sub10.zoom_to(resolution=spec.vhr_res_m)
        iid = f"vhr_{tile}_{t:%Y%m%d}"
        d = root / "eocube-synth-vhr" / iid
        write_cog(d / "visual.tif", _tile_slice(rgb, sub, gbv), sub, nodata=None)
        assets = {"visual": archive_asset(
            "./visual.tif", sub, title="True colour RGB", roles=("visual", "data"), **{
                "eo:bands": [{"name": n, "common_name": n} for n in ("red", "green", "blue")],
                "raster:bands": [raster_band("uint8", nodata=None,
                                                  resolution=spec.vhr_res_m)] * 3})}
        props = {"datetime": iso(t), "gsd": float(spec.vhr_res_m),
                 "view:off_nadir": round(geo["off_nadir"], 3),
                 "view:azimuth": round(geo["view_azimuth"], 3),
                 "view:sun_elevation": round(geo["sun_elevation"], 3),
                 "view:sun_azimuth": round(geo["sun_azimuth"], 3)}
        it = archive_item(iid, "eocube-synth-vhr", sub, properties=props, assets=assets,
                       extensions=("proj", "eo", "raster", "view"))
        write_json(d / f"{iid}.json", it)
        items.append(it)
    return items


def _truth(root: Path, scene: Scene) -> list[dict[str, Any]]:
    spec = scene.world.spec
    years = range(spec.start.year, spec.end.year + 1)
    layers: dict[str, tuple[np.ndarray, GeoBox, int, str]] = {
        f"builtup-{y}": (scene.builtup(y), scene.geobox, 255, "built-up at the end of the year")
        for y in years
    }
    layers["change-date"] = (scene.change_date, scene.geobox, -1,
                             "day (since 1970-01-01) the pixel first became built-up in the "
                             "series (a building or rebuild completed); -1: never")
    layers["construction-start-date"] = (
        scene.construction_start_date, scene.geobox, -1,
        "day (since 1970-01-01) construction (site clearing) began on the lot that made the "
        "pixel built-up in the series; -1: no change")
    layers["demolition-date"] = (scene.demolition_date, scene.geobox, -1,
                                 "day (since 1970-01-01) a demolition first left the pixel not "
                                 "built-up in the series; -1: never")
    layers["building-id"] = (scene.building_id, scene.geobox, -1, "building id, 0 none")
    layers["building-id-vhr"] = (scene.building_id_vhr, scene.geobox_vhr, -1,
                                 "building id at VHR resolution, 0 none")
    items = []
    for tile, _r, _c, sub10 in _tiles(spec, scene.geobox):
        iid = f"truth_{tile}"
        d = root / "eocube-synth-truth" / iid
        assets = {}
        for key, (arr, full, nodata, title) in layers.items():
            sub = sub10 if full is scene.geobox else sub10.zoom_to(resolution=spec.vhr_res_m)
            write_cog(d / f"{key}.tif", _tile_slice(arr, sub, full), sub, nodata=nodata,
                      resampling="nearest")
            assets[key] = archive_asset(f"./{key}.tif", sub, title=title, roles=("data", "truth"),
                                     **{"raster:bands": [raster_band(
                                         arr.dtype.name, nodata=nodata,
                                         resolution=float(abs(sub.resolution.x)))]})
        props = {"datetime": None, "start_datetime": iso(pd.Timestamp(spec.start)),
                 "end_datetime": iso(pd.Timestamp(spec.end) + pd.Timedelta(hours=23))}
        it = archive_item(iid, "eocube-synth-truth", sub10, properties=props, assets=assets,
                       extensions=("proj", "raster"))
        write_json(d / f"{iid}.json", it)
        items.append(it)
    return items


def _mobile(root: Path, scene: Scene) -> list[dict[str, Any]]:
    spec = scene.world.spec
    gb = scene.geobox_100m
    iid = f"mobile_signal_{spec.end.year}"
    d = root / "eocube-synth-mobile" / iid
    assets = {}
    for kind in ("weekday", "weekend"):
        write_cog(d / f"{kind}-night.tif", scene.mobile_signal(kind), gb, nodata=float("nan"))
        assets[f"{kind}-night"] = archive_asset(
            f"./{kind}-night.tif", gb, title=f"{kind} night mobile-signal users per cell",
            **{"raster:bands": [raster_band("float32", nodata=float("nan"), resolution=100,
                                                 unit="users")]})
    t = pd.Timestamp(spec.end, tz="UTC")
    it = archive_item(iid, "eocube-synth-mobile", gb, properties={"datetime": iso(t)},
                   assets=assets, extensions=("proj", "raster"))
    write_json(d / f"{iid}.json", it)
    return [it]


# ---- vectors, collections, manifest --------------------------------------------------------

def _write_layers(d: Path, layers: dict[str, Any]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, gdf in layers.items():
        gdf.to_parquet(d / f"{name}.parquet", index=False, compression="zstd")


def _write_collection(root: Path, world: World, cid: str, items: list[dict[str, Any]], *,
                      title: str) -> None:
    bb = np.array([it["bbox"] for it in items])
    bbox = [float(bb[:, 0].min()), float(bb[:, 1].min()), float(bb[:, 2].max()),
            float(bb[:, 3].max())]
    times = sorted(
        t for it in items for t in (it["properties"].get("datetime"),
                                    it["properties"].get("start_datetime"),
                                    it["properties"].get("end_datetime")) if t)
    first = items[0]
    item_assets = {k: {kk: vv for kk, vv in a.items()
                       if kk not in ("href", "proj:shape", "proj:transform")}
                   for k, a in first["assets"].items()}
    summaries: dict[str, Any] = {"proj:code": sorted({it["properties"]["proj:code"]
                                                      for it in items})}
    if cid == "sentinel-2-l2a":
        summaries["eo:cloud_cover"] = {
            "minimum": min(it["properties"]["eo:cloud_cover"] for it in items),
            "maximum": max(it["properties"]["eo:cloud_cover"] for it in items)}
        summaries["platform"] = ["sentinel-2a", "sentinel-2b"]
    if cid == "sentinel-1-rtc":
        summaries["sar:polarizations"] = ["VV", "VH"]
        summaries["sat:orbit_state"] = ["ascending", "descending"]
    col = archive_collection(
        cid, title=title, description=f"{title} of the synthetic city "
        f"{world.spec.name!r} (seed {world.seed}).", bbox=bbox, interval=(times[0], times[-1]),
        item_ids=[it["id"] for it in items], summaries=summaries, item_assets=item_assets,
        extensions=tuple(k for k, v in EXT.items() if v in first["stac_extensions"]))
    write_json(root / cid / "collection.json", col)


def _write_manifest(root: Path, world: World, counts: dict[str, int], *,
                    truth: dict[str, int]) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    spec = world.spec
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": "eocube.synth",
        "preset": spec.name,
        "seed": world.seed,
        "spec": {k: (str(v) if not isinstance(v, (int, float, list, tuple)) else v)
                 for k, v in spec.__dict__.items()},
        "crs": world.crs,
        "bounds": list(spec.bounds),
        "collections": counts,
        "vectors": {n: f"vectors/{n}.parquet" for n in OPEN_LAYERS},
        # optional: the archive stays valid and servable without it
        "truth": {"path": f"{TRUTH}/", "collections": truth,
                  "vectors": {n: f"{TRUTH}/{n}.parquet" for n in TRUTH_VECTORS}},
        "files": {p.relative_to(root).as_posix(): {"bytes": p.stat().st_size,
                                                   "sha256": file_sha256(p)} for p in files},
    }
    # written last: its presence is what makes the archive complete
    write_json(root / MANIFEST, manifest)  # atomic: a temporary file moved into place


def acquisition_dates(spec: CitySpec) -> dict[str, pd.DatetimeIndex]:
    """Acquisition times of every time series in a city of ``spec``."""
    return {"sentinel-2-l2a": s2_dates(spec), "sentinel-1-rtc": s1_dates(spec),
            "viirs-ntl-monthly": ntl_months(spec)}
