"""Training data from the synthetic city, shaped as cubes are: xarray Datasets with one variable
per band on the city's GeoBox, and truth rasters beside them.

Everything comes from ``eocube.synth.sensors.Scene`` in memory. ``composite_inputs`` is the one
function to swap for loading the same composites from a STAC archive with ``eocube.cube``.

Truth is taken at the temporal middle of each composite window (1 July for a yearly
composite): a median over a year shows the surface as it stood mid-year, so labels at the end
of the year would call buildings finished in the second half "built" where the image shows
none.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from eocube.synth import CitySpec, make_world, resolve_spec
from eocube.synth.build import ntl_months, s1_dates, s1_orbit, s2_dates
from eocube.synth.sensors import (
    S1_NODATA,
    S2_BANDS,
    S2_BOA_ADD_OFFSET,
    S2_QUANTIFICATION,
    SCL_CLOUD_AND_SHADOW,
    SCL_NO_DATA,
    Scene,
    apply_affine,
)

S1_BANDS = ("vv", "vh")
VHR_BANDS = ("red", "green", "blue")
#: the cities the shipped weights were trained on, and the held-out one they are measured on
TRAIN_SEEDS = (0, 2)
HELD_OUT_SEED = 1
#: the city (seed, landscape) whose imagery, without labels, MMCR adapts to: another landscape
UNLABELLED_CITY = (4, "arid")
STOCK_CELL_M = 100


def city_spec(landscape: str = "temperate") -> CitySpec:
    """The city the shipped weights are trained and measured on: the tiny preset's layout,
    3.2 km across (320 × 320 pixels at 10 m), two years, 20 % of buildings new in the series;
    in another ``landscape`` (``"arid"``) for MMCR's unlabelled city and its evaluation."""
    spec = resolve_spec("tiny", name="models", size_m=3200, new_building_share=0.2)
    if landscape != spec.landscape:
        spec = resolve_spec(spec, name=f"models-{landscape}", landscape=landscape)
    return spec


def _coords(gb: GeoBox) -> dict[str, xr.DataArray]:
    return xr_coords(gb, crs_coord_name="spatial_ref")


def _year_window(dates: pd.DatetimeIndex, year: int) -> np.ndarray:
    return np.flatnonzero(dates.year == year)


def s2_composite(scene: Scene, year: int) -> xr.Dataset:
    """Median of the cloud-free Sentinel-2 reflectances of ``year`` per band, at 10 m.

    Cloud, cloud shadow and cirrus (SCL 3, 8, 9, 10) and no-data are masked
    (:func:`eocube.cube.mask_clouds`) and the year's median taken
    (:func:`eocube.cube.composite`), as on a loaded cube; 20 m bands are repeated onto the
    10 m grid (nearest), as the cube loader does.
    """
    from eocube.cube.masks import mask_clouds

    dates = s2_dates(scene.world.spec)
    window = _year_window(dates, year)
    stacks: dict[str, list[np.ndarray]] = {b: [] for b in (*S2_BANDS, "SCL")}
    for i in window:
        sc = scene.s2_scene(int(i), dates[i])
        scl10 = _to_10m(sc["SCL"])
        stacks["SCL"].append(scl10)
        for b in S2_BANDS:
            dn = sc[b] if sc[b].shape == scl10.shape else _to_10m(sc[b])
            stacks[b].append((dn.astype("float32") + S2_BOA_ADD_OFFSET) / S2_QUANTIFICATION)
    gb = scene.geobox
    series = xr.Dataset(
        {b: (("time", "y", "x"), np.stack(v), {"units": "1"} if b != "SCL" else {})
         for b, v in stacks.items()},
        coords={**_coords(gb), "time": dates[window].tz_localize(None)})
    masked = mask_clouds(series, classes=(SCL_NO_DATA, *SCL_CLOUD_AND_SHADOW))
    return _year_median(masked, year)


def s1_composite(scene: Scene, year: int) -> xr.Dataset:
    """Median Sentinel-1 backscatter (VV, VH; linear power, NaN where no data) of ``year``
    (:func:`eocube.cube.composite`)."""
    spec = scene.world.spec
    dates = s1_dates(spec)
    window = _year_window(dates, year)
    stacks: dict[str, list[np.ndarray]] = {b: [] for b in S1_BANDS}
    for i in window:
        sc = scene.s1_scene(int(i), dates[i], orbit=s1_orbit(int(i)))
        for b in S1_BANDS:
            stacks[b].append(np.where(sc[b] == S1_NODATA, np.nan, sc[b]))  # nodata: NaN at load
    series = xr.Dataset(
        {b: (("time", "y", "x"), np.stack(v), {"units": "linear power"})
         for b, v in stacks.items()},
        coords={**_coords(scene.geobox), "time": dates[window].tz_localize(None)})
    return _year_median(series, year)


def _to_10m(a: np.ndarray) -> np.ndarray:
    """A 20 m band on the 10 m grid: each pixel repeated 2 × 2 (nearest)."""
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)


def _year_median(series: xr.Dataset, year: int) -> xr.Dataset:
    """The per-pixel median of a year's (time, y, x) float series, NaN ignored, on (y, x)."""
    import warnings

    from eocube.cube.composite import composite

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        med = composite(series, period="year", stat="median").isel(time=0, drop=True)
    return xr.Dataset({b: v.astype("float32") for b, v in med.data_vars.items()},
                      coords=med.coords, attrs={"composite": f"median {year}"})


def composite_inputs(scene: Scene, year: int) -> xr.Dataset:
    """The yearly S2 + S1 composite of the city: variables B02 … B12, vv, vh on (y, x).

    This is the seam to ``eocube.cube``: replace it with loading the archive's S2 and S1
    collections, masking with SCL, taking the yearly median and aligning S1 on the S2 grid.
    """
    return xr.merge([s2_composite(scene, year), s1_composite(scene, year)], compat="override",
                    join="exact")


def builtup_truth(scene: Scene, year: int) -> xr.DataArray:
    """Built-up (uint8 0/1, roof fraction ≥ 0.5) on 1 July of ``year``, on the 10 m grid."""
    t = pd.Timestamp(f"{year}-07-01")
    a = (scene.builtup_fraction(t) >= 0.5).astype("uint8")
    return xr.DataArray(a, dims=("y", "x"), coords=_coords(scene.geobox), name="builtup")


def vhr_image(scene: Scene) -> tuple[xr.DataArray, xr.DataArray]:
    """The VHR RGB image at the end of the series and its building mask (uint8 0/1)."""
    spec = scene.world.spec
    t = pd.Timestamp(spec.end, tz="UTC") + pd.Timedelta(hours=3)
    rgb = scene.vhr_rgb(t)
    b = scene.world.buildings
    standing = b["building_id"].to_numpy()[
        b["built_date"].to_numpy() <= np.datetime64(t.tz_localize(None))]
    mask = np.isin(scene.building_id_vhr, standing).astype("uint8")
    c = _coords(scene.geobox_vhr)
    img = xr.DataArray(rgb, dims=("band", "y", "x"), coords={**c, "band": list(VHR_BANDS)},
                       name="vhr")
    return img, xr.DataArray(mask, dims=("y", "x"), coords=c, name="building")


def stock_cells(scene: Scene, *, cell_m: int = STOCK_CELL_M) -> xr.Dataset:
    """Per grid cell: material stock (t, buildings by centroid) and the monthly NTL series.

    ``stock_t`` is on (y, x) of the ``cell_m`` grid; ``ntl`` (nW·cm⁻²·sr⁻¹) on
    (time, y, x), reprojected bilinearly from the 15″ grid.
    """
    from odc.geo.xr import xr_reproject

    w = scene.world
    gb = w.geobox(float(cell_m))
    b = w.buildings
    cen = shapely.centroid(b.geometry.values)
    col, row = apply_affine(~gb.transform, shapely.get_x(cen), shapely.get_y(cen))
    col, row = np.floor(col).astype(int), np.floor(row).astype(int)
    ok = (col >= 0) & (col < gb.shape.x) & (row >= 0) & (row < gb.shape.y)
    stock = np.bincount(row[ok] * gb.shape.x + col[ok],
                        weights=b["stock_total_t"].to_numpy()[ok],
                        minlength=gb.shape.x * gb.shape.y).reshape(gb.shape.yx)
    months = ntl_months(w.spec)
    layers = []
    for i, m in enumerate(months):
        end = m + pd.offsets.MonthEnd(0) + pd.Timedelta(hours=23, minutes=59, seconds=59)
        layers.append(scene.ntl_month(i, end))
    ng = scene.ntl_geobox
    ntl = xr.DataArray(np.stack(layers), dims=("time", *ng.dimensions),
                       coords={**_coords(ng), "time": months.tz_localize(None)})
    ntl_cells = xr_reproject(ntl, gb, resampling="bilinear")
    return xr.Dataset({"stock_t": (("y", "x"), stock.astype("float32"), {"units": "t"}),
                       "ntl": ntl_cells.astype("float32")}, coords=_coords(gb))


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


def load_city(seed: int, /, *, spec: CitySpec | None = None,
              cache_dir: str | Path | None = None) -> CityData:
    """Simulate (or read from ``cache_dir``) everything the models need from one city."""
    spec = spec or city_spec()
    years = tuple(range(spec.start.year, spec.end.year + 1))
    root = Path(cache_dir) / f"{spec.name}-{spec.size_m}-seed{seed}" if cache_dir else None
    if root is not None and (root / "done").exists():
        def rd(name: str) -> xr.Dataset:
            return xr.open_zarr(root / f"{name}.zarr", consolidated=False).load()
        return CityData(seed, years, {y: rd(f"inputs-{y}") for y in years},
                        {y: rd(f"builtup-{y}")["builtup"] for y in years},
                        rd("vhr")["vhr"], rd("building")["building"], rd("cells"), spec)
    scene = Scene(make_world(spec, seed=seed))
    city = CityData(seed, years, {y: composite_inputs(scene, y) for y in years},
                    {y: builtup_truth(scene, y) for y in years}, *vhr_image(scene),
                    stock_cells(scene), spec)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        parts = {**{f"inputs-{y}": city.inputs[y] for y in years},
                 **{f"builtup-{y}": city.builtup[y].to_dataset() for y in years},
                 "vhr": city.vhr.to_dataset(), "building": city.building.to_dataset(),
                 "cells": city.cells}
        for name, ds in parts.items():
            ds.to_zarr(root / f"{name}.zarr", mode="w", consolidated=False)
        (root / "done").touch()
    return city


def as_array(ds: xr.Dataset, bands: tuple[str, ...] | list[str]) -> np.ndarray:
    """(band, y, x) float32 array of ``bands`` of a Dataset, in that order (the model boundary)."""
    return np.stack([ds[b].to_numpy() for b in bands]).astype("float32")
