"""Training data from the synthetic city, loaded as inference sees it: the city's STAC archive
(``eocube.synth.build_city``) read through ``eocube.cube`` (``load`` with the catalog's
profiles, the pipeline's masks, ``eocube.cube.composite.yearly_median``), truth rasters from
the archive's ``truth/`` beside them.

Nothing here reads the simulator's internals: a city is its archive, so a change to how the
world is simulated reaches the models through the same files the pipeline reads.

Truth is taken at the temporal middle of each composite window (1 July for a yearly
composite): a median over a year shows the surface as it stood mid-year, so labels at the end
of the year would call buildings finished in the second half "built" where the image shows
none; ``builtup_truth`` derives it from the archive's end-of-year built-up and change dates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox

from eocube.catalog import open_archive
from eocube.synth import CitySpec, build_city, read_truth, resolve_spec

S2_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
S1_BANDS = ("vv", "vh")
VHR_BANDS = ("red", "green", "blue")
#: the cities the shipped weights were trained on, and the held-out one they are measured on
TRAIN_SEEDS = (0, 2)
HELD_OUT_SEED = 1
#: the city (seed, landscape) whose imagery, without labels, MMCR adapts to: another landscape
UNLABELLED_CITY = (4, "arid")
STOCK_CELL_M = 100
#: the archive collections each input comes from
S2_COLLECTION, S1_COLLECTION = "sentinel-2-l2a", "sentinel-1-rtc"
NTL_COLLECTION, VHR_COLLECTION = "viirs-ntl-monthly", "eocube-synth-vhr"
#: bumped when what ``load_city`` derives from an archive changes: the cached arrays are
#: derived again from the cached archive
DERIVED_VERSION = 3


def city_spec(landscape: str = "temperate") -> CitySpec:
    """The city the shipped weights are trained and measured on: the tiny preset's layout,
    3.2 km across (320 × 320 pixels at 10 m), two years, 20 % of buildings new in the series;
    in another ``landscape`` (``"arid"``) for MMCR's unlabelled city and its evaluation."""
    spec = resolve_spec("tiny", name="models", size_m=3200, new_building_share=0.2)
    if landscape != spec.landscape:
        spec = resolve_spec(spec, name=f"models-{landscape}", landscape=landscape)
    return spec


def _items(archive: Path, collection: str) -> list[dict[str, Any]]:
    return list(open_archive(archive).items(collection))


def s2_grid(archive: str | Path, /, *, resolution: float = 10.0) -> GeoBox:
    """The grid composites are made on: the archive's Sentinel-2 items at ``resolution``, as
    the pipeline's cubes stage chooses it."""
    from eocube.cube import load

    items = _items(Path(archive), S2_COLLECTION)
    return load(items, bands=["SCL"], resolution=resolution, chunks={}).odc.geobox


def composite_inputs(archive: str | Path, /, *, geobox: GeoBox | None = None,
                     chunks: dict[str, int] | None = None) -> xr.Dataset:
    """The yearly S2 + S1 composites of a city archive: variables B02 … B12, vv, vh on
    (time, y, x), one step per year, lazy.

    The pipeline's cubes stage made over the whole archive: each year's items loaded with
    ``eocube.cube.load`` (the catalog's profiles scale S2 to reflectance and S1 to linear
    power, nodata NaN, 20 m bands resampled onto ``geobox`` by the profile's method), S2
    masked with ``mask_clouds`` (SCL no data, saturated, shadow, clouds, cirrus), S1 with
    ``mask_s1``, and the year's median taken (``eocube.cube.composite.yearly_median``).
    ``geobox`` defaults to ``s2_grid(archive)``.
    """
    from eocube.cube.composite import yearly_median
    from eocube.cube.masks import mask_clouds, mask_s1

    archive = Path(archive)
    gb = geobox if geobox is not None else s2_grid(archive)
    ch = dict(chunks or {"x": 1024, "y": 1024})
    parts = [yearly_median(_items(archive, S2_COLLECTION), bands=[*S2_BANDS, "SCL"], geobox=gb,
                           chunks=ch, mask=mask_clouds),
             yearly_median(_items(archive, S1_COLLECTION), bands=list(S1_BANDS), geobox=gb,
                           chunks=ch, mask=mask_s1)]
    comp = xr.merge(parts, join="inner", compat="override")
    return comp.astype("float32").assign_attrs(composite="yearly median")


def _year(comp: xr.Dataset, year: int) -> xr.Dataset:
    """One year of ``composite_inputs`` on (y, x), in memory, as the models take it."""
    import warnings

    times = pd.DatetimeIndex(comp["time"].values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        one = comp.isel(time=int(np.flatnonzero(times.year == year)[0]), drop=True).load()
    return one.assign_attrs({"composite": f"median {year}"})


def builtup_truth(archive: str | Path, year: int, /) -> xr.DataArray:
    """Built-up (uint8 0/1, roof fraction ≥ 0.5) on 1 July of ``year``, on the 10 m grid.

    The archive holds built-up at the end of each year and, per pixel, the first day it
    turned built-up (``change-date``) and the first day a demolition left it not built-up
    (``demolition-date``, where the archive has one). Walking back from 31 December: a pixel
    whose first event after 1 July is turning built-up was not built-up on 1 July, one whose
    first event then is a demolition was; the others were as at the year's end. (A pixel with
    a second turn in the same half-year, not in the archive, keeps the end-of-year state.)
    """
    from eocube.synth import truth_layers

    end = read_truth(archive, f"builtup-{year}")
    up = read_truth(archive, "change-date").to_numpy()
    down = (read_truth(archive, "demolition-date").to_numpy()
            if "demolition-date" in truth_layers(archive) else np.full_like(up, -1))
    epoch = pd.Timestamp("1970-01-01")
    july = (pd.Timestamp(f"{year}-07-01") - epoch).days
    dec31 = (pd.Timestamp(f"{year}-12-31") - epoch).days
    up_later = (up > july) & (up <= dec31)
    down_later = (down > july) & (down <= dec31)
    built_then = np.where(up_later & ~(down_later & (down < up)), 0,
                          np.where(down_later, 1, end.to_numpy() == 1))
    return end.copy(data=built_then.astype("uint8")).rename("builtup").assign_attrs({})


def vhr_image(archive: str | Path, /) -> tuple[xr.DataArray, xr.DataArray]:
    """The archive's latest VHR RGB image (band, y, x) and its building mask (uint8 0/1: a
    truth building standing at the image's date)."""
    from eocube.cube import load

    items = _items(Path(archive), VHR_COLLECTION)
    cube = load(items, bands=list(VHR_BANDS), chunks={}).isel(time=-1)
    t = pd.Timestamp(cube["time"].values)
    img = cube.to_dataarray("band").drop_vars("time").rename("vhr")
    img = img.assign_coords(band=list(VHR_BANDS)).load()
    bid = read_truth(archive, "building-id-vhr")
    b = read_truth(archive, "buildings")
    up = b["built_date"].to_numpy() <= np.datetime64(t)
    if "demolished_date" in b:  # world v2: a demolished building no longer stands
        up &= ~(b["demolished_date"].to_numpy() <= np.datetime64(t))
    standing = b["building_id"].to_numpy()[up]
    mask = xr.DataArray(np.isin(bid.to_numpy(), standing).astype("uint8"), dims=bid.dims,
                        coords=bid.coords, name="building")
    return img, mask


def stock_cells(archive: str | Path, /, *, cell_m: int = STOCK_CELL_M,
                geobox: GeoBox | None = None) -> xr.Dataset:
    """Per grid cell: material stock (t, truth buildings by centroid) and the monthly NTL
    series.

    ``stock_t`` is on (y, x) of the ``cell_m`` grid over ``geobox`` (default:
    ``s2_grid(archive)``); ``ntl`` (nW·cm⁻²·sr⁻¹) on (time, y, x), the archive's monthly
    items loaded on their 15″ grid and reprojected bilinearly, as the pipeline's stock stage
    does.
    """
    from odc.geo.xr import xr_reproject

    from eocube.cube import load

    archive = Path(archive)
    gb = (geobox if geobox is not None else s2_grid(archive)).zoom_to(resolution=float(cell_m))
    b = read_truth(archive, "buildings")
    cen = shapely.centroid(b.geometry.values)
    inv = ~gb.transform
    col, row = inv * (shapely.get_x(cen), shapely.get_y(cen))
    col, row = np.floor(col).astype(int), np.floor(row).astype(int)
    ok = (col >= 0) & (col < gb.shape.x) & (row >= 0) & (row < gb.shape.y)
    stock = np.bincount(row[ok] * gb.shape.x + col[ok],
                        weights=b["stock_total_t"].to_numpy()[ok],
                        minlength=gb.shape.x * gb.shape.y).reshape(gb.shape.yx)
    ntl = load(_items(archive, NTL_COLLECTION), bands=["radiance"], chunks={})["radiance"]
    ntl_cells = xr_reproject(ntl.load(), gb, resampling="bilinear").astype("float32")
    out = xr.Dataset({"ntl": ntl_cells.drop_vars("spatial_ref", errors="ignore")},
                     coords=ntl_cells.coords)
    out["stock_t"] = (ntl_cells.odc.spatial_dims, stock.astype("float32"), {"units": "t"})
    return out[["stock_t", "ntl"]]


@dataclasses.dataclass
class CityData:
    """What training and evaluation read from one synthetic city."""

    seed: int
    years: tuple[int, ...]
    inputs: dict[int, xr.Dataset]  # yearly composites
    builtup: dict[int, xr.DataArray]  # truth on 1 July
    vhr: xr.DataArray
    building: xr.DataArray
    cells: xr.Dataset
    spec: CitySpec | None = None  # what it was simulated from (None: made by the caller)


def read_city(archive: str | Path, /, *, seed: int | None = None,
              spec: CitySpec | None = None) -> CityData:
    """Everything the models need from a city archive, in memory: yearly composites
    (``composite_inputs``), built-up on 1 July of each year, the VHR image and its building
    mask, and the stock cells. ``seed`` defaults to the archive manifest's."""
    archive = Path(archive)
    seed = int(open_archive(archive).manifest["seed"]) if seed is None else seed
    gb = s2_grid(archive)
    comp = composite_inputs(archive, geobox=gb)
    years = tuple(int(y) for y in pd.DatetimeIndex(comp["time"].values).year)
    return CityData(seed, years, {y: _year(comp, y) for y in years},
                    {y: builtup_truth(archive, y) for y in years}, *vhr_image(archive),
                    stock_cells(archive, geobox=gb), spec)


def _synth_source_digest() -> str:
    """sha256 of the simulator's source files: a city cached by another version of the world
    is another city."""
    import eocube.synth

    h = hashlib.sha256()
    for f in sorted(Path(eocube.synth.__file__).parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def city_key(seed: int, spec: CitySpec, /) -> str:
    """The cache folder name of a city: preset, size, seed and a digest of the whole spec and
    of the simulator's source."""
    fields = json.dumps({k: str(v) for k, v in dataclasses.asdict(spec).items()},
                        sort_keys=True)
    digest = hashlib.sha256(f"{fields}:{_synth_source_digest()}".encode()).hexdigest()[:10]
    return f"{spec.name}-{spec.size_m}-seed{seed}-{digest}"


def city_archive(seed: int, /, *, spec: CitySpec | None = None,
                 cache_dir: str | Path, workers: int = 1) -> Path:
    """The city's STAC archive under ``cache_dir``, built with ``eocube.synth.build_city`` the
    first time it is asked for (a complete archive found there is reused)."""
    spec = spec or city_spec()
    path = Path(cache_dir) / city_key(seed, spec) / "archive"
    if not (path / "manifest.json").exists():
        build_city(path, preset=spec, seed=seed, workers=workers, overwrite=path.exists())
    return path


def load_city(seed: int, /, *, spec: CitySpec | None = None,
              cache_dir: str | Path | None = None) -> CityData:
    """Build the city's STAC archive (or find it in ``cache_dir``) and load everything the
    models need from it through ``eocube.cube`` (``read_city``).

    With ``cache_dir`` the archive stays there (``<cache_dir>/<city_key>/archive``) and what
    is loaded from it is kept beside it as Zarr (``derived-v<DERIVED_VERSION>/``), so a second
    call reads it back; without it the archive is built in a temporary folder and removed once
    loaded.
    """
    spec = spec or city_spec()
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="eocube-city-") as d:
            return read_city(city_archive(seed, spec=spec, cache_dir=d), seed=seed, spec=spec)
    root = Path(cache_dir) / city_key(seed, spec) / f"derived-v{DERIVED_VERSION}"
    if (root / "done").exists():
        return _read_cached(root, seed, spec)
    city = read_city(city_archive(seed, spec=spec, cache_dir=cache_dir), seed=seed, spec=spec)
    parts = {**{f"inputs-{y}": city.inputs[y] for y in city.years},
             **{f"builtup-{y}": city.builtup[y].to_dataset() for y in city.years},
             "vhr": city.vhr.to_dataset(), "building": city.building.to_dataset(),
             "cells": city.cells}
    for name, ds in parts.items():
        ds.to_zarr(root / f"{name}.zarr", mode="w", consolidated=False)
    (root / "years").write_text(json.dumps(list(city.years)))
    (root / "done").touch()
    return city


def _read_cached(root: Path, seed: int, spec: CitySpec) -> CityData:
    import odc.geo.xr  # noqa: F401 - the .odc accessor on what is read back

    years = tuple(json.loads((root / "years").read_text()))

    def rd(name: str) -> xr.Dataset:
        return xr.open_zarr(root / f"{name}.zarr", consolidated=False).load()

    return CityData(seed, years, {y: rd(f"inputs-{y}") for y in years},
                    {y: rd(f"builtup-{y}")["builtup"] for y in years},
                    rd("vhr")["vhr"], rd("building")["building"], rd("cells"), spec)


def as_array(ds: xr.Dataset, bands: tuple[str, ...] | list[str]) -> np.ndarray:
    """(band, y, x) float32 array of ``bands`` of a Dataset, in that order (the model boundary)."""
    return np.stack([ds[b].to_numpy() for b in bands]).astype("float32")
