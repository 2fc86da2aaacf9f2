"""Building height from Sentinel-1 and Sentinel-2: the training data of the height model, the
per-footprint read-out of a height raster, its metrics and the trivial baseline beside it.

The model (a ``UNet`` regressing log-height, recipe ``height_s1s2`` in
:mod:`eocube.models.training`) reads one input of ten bands per pixel: the yearly median
Sentinel-1 VV and VH of each orbit direction apart (``vv_asc``, ``vh_asc``, ``vv_desc``,
``vh_desc``: double bounce, layover and shadow fall on opposite sides of a building in the two
geometries, so the median of both would blur what height leaves in them) and the yearly
Sentinel-2 composite. Its target is the height of the building whose footprint holds the
pixel's centre, on building pixels only: floors are read per footprint, so what the model says
off buildings does not matter. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from eocube.errors import ConfigError
from eocube.synth.sensors import S2_BANDS

if TYPE_CHECKING:
    import geopandas as gpd

    from eocube.models.data import CityData
    from eocube.synth import CitySpec
    from eocube.synth.sensors import Scene

__all__ = ["HEIGHT_BANDS", "HEIGHT_TRANSFORMS", "ORBIT_SUFFIX", "HeightCity", "footprint_median",
           "height_city", "height_metrics", "land_use_mean_height", "s1_orbit_composites",
           "truth_buildings"]

#: the suffix of each orbit direction's S1 bands (``sat:orbit_state`` → band suffix)
ORBIT_SUFFIX = {"ascending": "asc", "descending": "desc"}
#: the height model's bands, in its channel order
HEIGHT_BANDS = (*(f"{p}_{s}" for s in ORBIT_SUFFIX.values() for p in ("vv", "vh")), *S2_BANDS)
#: per-band transforms: S1 in dB, S2 reflectance as it is
HEIGHT_TRANSFORMS = ("db",) * 4 + ("identity",) * len(S2_BANDS)


@dataclasses.dataclass
class HeightCity:
    """One city's height-model inputs and truth (for training and evaluation only).

    ``inputs``: :data:`HEIGHT_BANDS` on (y, x) for ``year``; ``height``: truth height (m) of
    the building whose footprint holds each pixel centre, 0 elsewhere; ``buildings``: the
    truth table of the buildings standing on 1 July of ``year`` (``building_id``,
    ``height``, ``floors``, ``land_use``, geometry).
    """

    seed: int
    year: int
    inputs: xr.Dataset
    height: xr.DataArray
    buildings: gpd.GeoDataFrame


def _median(stack: list[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        return np.nanmedian(np.stack(stack), axis=0).astype("float32")


def s1_orbit_composites(scene: Scene, year: int, /) -> xr.Dataset:
    """The yearly median Sentinel-1 VV and VH (linear power, NaN where no data) of each orbit
    direction apart: ``vv_asc``, ``vh_asc``, ``vv_desc``, ``vh_desc`` on the 10 m grid."""
    from odc.geo.xr import xr_coords

    from eocube.synth.build import s1_dates, s1_orbit
    from eocube.synth.sensors import S1_NODATA

    dates = s1_dates(scene.world.spec)
    stacks: dict[str, list[np.ndarray]] = {b: [] for b in HEIGHT_BANDS[:4]}
    for i in np.flatnonzero(dates.year == year):
        orbit = s1_orbit(int(i))
        sc = scene.s1_scene(int(i), dates[i], orbit=orbit)
        for pol in ("vv", "vh"):
            stacks[f"{pol}_{ORBIT_SUFFIX[orbit]}"].append(
                np.where(sc[pol] == S1_NODATA, np.nan, sc[pol]))
    empty = [b for b, v in stacks.items() if not v]
    if empty:
        raise ConfigError(f"no Sentinel-1 acquisition of {year} for {empty}; the height model "
                          "needs both orbit directions in the year")
    coords = xr_coords(scene.geobox, crs_coord_name="spatial_ref")
    return xr.Dataset({b: (("y", "x"), _median(v), {"units": "linear power"})
                       for b, v in stacks.items()}, coords=coords)


def height_city(city: CityData, /) -> HeightCity:
    """The height-model inputs and truth of a training city, for its last year.

    The S2 bands are the city's own composite; the S1 bands per orbit and the truth heights
    come from simulating the city again from its ``seed`` and ``spec`` (kept in memory for the
    next call).
    """
    if city.spec is None:
        raise ConfigError(f"city seed {city.seed}: the height model needs the city's spec to "
                          "simulate its S1 orbits and truth heights; load it with load_city")
    year = city.years[-1]
    s1, height, table = _simulated(city.seed, city.spec, year)
    s2 = city.inputs[year][list(S2_BANDS)]
    inputs = xr.merge([s1, s2.drop_vars([c for c in s2.coords if c not in s1.coords])],
                      compat="override", join="exact")
    return HeightCity(city.seed, year, inputs[list(HEIGHT_BANDS)], height, table)


@functools.lru_cache(maxsize=6)
def _simulated(seed: int, spec: CitySpec, year: int
               ) -> tuple[xr.Dataset, xr.DataArray, gpd.GeoDataFrame]:
    from odc.geo.xr import xr_coords
    from rasterio import features

    from eocube.synth import make_world
    from eocube.synth.sensors import Scene

    scene = Scene(make_world(spec, seed=seed))
    table = _standing(scene.world.buildings, year)
    gb = scene.geobox
    # the pixel-centre rule of footprint_median, so that the target is what it reads out
    target = features.rasterize(
        zip(table.geometry.values, table["height"].to_numpy(np.float64), strict=True),
        out_shape=gb.shape.yx, transform=gb.transform, fill=0.0, dtype="float32")
    height = xr.DataArray(target, dims=("y", "x"), name="height",
                          coords=xr_coords(scene.geobox, crs_coord_name="spatial_ref"),
                          attrs={"units": "m"})
    return s1_orbit_composites(scene, year), height, table


def _standing(b: gpd.GeoDataFrame, year: int) -> gpd.GeoDataFrame:
    t = np.datetime64(f"{year}-07-01")
    standing = b["built_date"].to_numpy() <= t
    if "demolished_date" in b:  # a demolished building and its rebuild share the footprint
        standing &= ~(b["demolished_date"].to_numpy() <= t)
    cols = ["building_id", "height", "floors", "land_use", "geometry"]
    return b.loc[standing, cols].reset_index(drop=True)


def truth_buildings(seed: int, spec: CitySpec, year: int, /) -> gpd.GeoDataFrame:
    """The truth table of the buildings of city ``seed`` standing on 1 July of ``year``
    (``building_id``, ``height``, ``floors``, ``land_use``, geometry): what the baseline's
    means are taken over. Evaluation only."""
    from eocube.synth import make_world

    return _standing(make_world(spec, seed=seed).buildings, year)


def footprint_median(raster: xr.DataArray, footprints: gpd.GeoDataFrame, /) -> np.ndarray:
    """The median of ``raster`` (y, x; eager) inside each footprint, NaN ignored.

    A pixel belongs to the footprint that holds its centre; a footprint that holds no pixel
    centre (smaller than a pixel, or thin) takes the pixel under its representative point. NaN
    where a footprint has no finite value or lies outside the raster. Footprints are reprojected
    to the raster's CRS.

    Examples
    --------
    >>> import geopandas as gpd, shapely, numpy as np, xarray as xr
    >>> from odc.geo.geobox import GeoBox
    >>> from odc.geo.xr import xr_coords
    >>> gb = GeoBox.from_bbox((0, 0, 40, 40), crs=32650, resolution=10)
    >>> r = xr.DataArray(np.arange(16.0).reshape(4, 4), dims=("y", "x"),
    ...                  coords=xr_coords(gb, crs_coord_name="spatial_ref"))
    >>> fp = gpd.GeoDataFrame(geometry=[shapely.box(0, 20, 20, 40), shapely.box(31, 1, 33, 3)],
    ...                       crs=32650)
    >>> footprint_median(r, fp).tolist()
    [2.5, 15.0]
    """
    import shapely
    from rasterio import features

    gb = raster.odc.geobox
    fp = footprints.to_crs(gb.crs) if footprints.crs != gb.crs else footprints
    geoms = np.asarray(fp.geometry.values, dtype=object)
    values = np.asarray(raster.to_numpy(), dtype=np.float64)
    out = np.full(len(geoms), np.nan)
    if not len(geoms):
        return out
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    ids = features.rasterize(
        ((g, i + 1) for i, g in enumerate(geoms) if ok[i]), out_shape=gb.shape.yx,
        transform=gb.transform, fill=0, dtype="int32") if ok.any() else np.zeros(
        gb.shape.yx, "int32")
    sel = ids > 0
    lab, val = ids[sel] - 1, values[sel]
    fin = np.isfinite(val)
    lab, val = lab[fin], val[fin]
    if lab.size:
        frame = pd.DataFrame({"lab": lab, "val": val})
        med = frame.groupby("lab")["val"].median()
        out[med.index.to_numpy()] = med.to_numpy()
    # footprints that hold no pixel centre: the pixel under a point inside them
    rest = np.flatnonzero(ok & ~np.isin(np.arange(len(geoms)), np.unique(ids[sel]) - 1))
    if rest.size:
        pt = shapely.point_on_surface(geoms[rest])
        inv = ~gb.transform
        col, row = inv * (shapely.get_x(pt), shapely.get_y(pt))
        col, row = np.floor(col).astype(int), np.floor(row).astype(int)
        inside = (col >= 0) & (col < gb.shape.x) & (row >= 0) & (row < gb.shape.y)
        out[rest[inside]] = values[row[inside], col[inside]]
    return out


def land_use_mean_height(buildings: pd.DataFrame, /) -> pd.Series:
    """The baseline's table: mean building height per ``land_use`` of the training buildings,
    with the mean of all of them under ``"*"`` for a land use they lack."""
    means = buildings.groupby("land_use")["height"].mean()
    means.loc["*"] = float(buildings["height"].mean())
    return means


def height_metrics(pred_m: Any, true_m: Any, true_floors: Any, /, *,
                   storey_height_m: float = 3.0) -> dict[str, float]:
    """MAE and RMSE of heights (m), and the share of buildings whose floors
    (``max(1, round(height / storey_height_m))``) are within one of the true floors.

    Examples
    --------
    >>> height_metrics([9.0, 30.0], [10.0, 20.0], [3, 7])
    {'mae_m': 5.5, 'rmse_m': 7.106, 'floors_within_one': 0.5, 'n': 2}
    """
    p = np.asarray(pred_m, dtype=np.float64)
    t = np.asarray(true_m, dtype=np.float64)
    f = np.asarray(true_floors, dtype=np.float64)
    floors = np.maximum(np.round(p / storey_height_m), 1.0)
    err = p - t
    return {"mae_m": round(float(np.mean(np.abs(err))), 3),
            "rmse_m": round(float(np.sqrt(np.mean(err**2))), 3),
            "floors_within_one": round(float(np.mean(np.abs(floors - f) <= 1)), 4),
            "n": int(p.size)}
