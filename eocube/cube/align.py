"""Alignment: several sensors' cubes on one GeoBox and one time axis, as one Dataset.

Each variable is reprojected with the resampling its band needs (nearest for class bands and
for night-light radiance on a finer grid, which keeps radiance × area and so the NTL total;
average when the target is coarser; the profile's method otherwise), and each cube's dates are
matched to the target dates: instantaneous products to the nearest date within a tolerance,
period products (monthly NTL) to the period that contains the date.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from eocube.catalog.profiles import get_profile
from eocube.errors import ConfigError, GridError

#: products whose items cover a period starting at their datetime, and that period's length
PERIOD_PRODUCTS = {"viirs-ntl-monthly": "31D", "vnp46a3": "31D"}
DEFAULT_TOLERANCE = "6D"


def _method(cube: xr.Dataset, name: str, src_res: float, dst_res: float) -> str:
    prof_name = cube.attrs.get("eocube:profile")
    spec = None
    if prof_name:
        prof = get_profile(prof_name)
        if prof.has_band(str(name)):
            spec = prof.band(str(name))
    if cube[name].dtype.kind in "iub" or (spec is not None and spec.is_class):
        return "nearest"
    if dst_res > src_res * 1.01:
        return "average"
    return spec.resampling if spec is not None else "bilinear"


def _res_m(gb: Any) -> float:
    """Pixel size in metres (roughly, for geographic grids) to compare grids."""
    r = abs(float(gb.resolution.x))
    return r * 111_320.0 if gb.crs.geographic else r


def align(cubes: Mapping[str, xr.Dataset], /, *, geobox: Any = None, like: str | None = None,
          time: str | pd.DatetimeIndex | None = None,
          tolerance: Mapping[str, str] | str | None = None,
          resampling: Mapping[str, str] | None = None) -> xr.Dataset:
    """Stack the cubes of several sensors on one GeoBox and one time axis.

    Parameters
    ----------
    cubes
        Cubes by name, e.g. ``{"s2": s2, "s1": s1, "ntl": ntl}`` as made by ``load``.
        Variable names must not repeat across cubes.
    geobox, like
        The target grid: a GeoBox, or the name of the cube whose grid to use (default: the
        first cube's).
    time
        The target dates: a cube name (default: the ``like`` cube) or a DatetimeIndex.
    tolerance
        For instantaneous products, how far the nearest date may be (default 6 days),
        as one value or per cube name; dates with none within it get NaN.
    resampling
        Force the method for some variables, by variable name.

    Returns
    -------
    xarray.Dataset
        All variables on ("time", y, x) of the one GeoBox; lazy when the inputs are.
    """
    if not cubes:
        raise ConfigError("align needs at least one cube")
    names = list(cubes)
    ref = like if like is not None else names[0]
    if ref not in cubes:
        raise ConfigError(f"like={ref!r} is not one of the cubes {names}")
    gb = geobox if geobox is not None else cubes[ref].odc.geobox
    if gb is None:
        raise GridError(f"cube {ref!r} has no GeoBox; pass geobox=")
    if isinstance(time, pd.DatetimeIndex):
        target = time
    else:
        tname = time if time is not None else ref
        if tname not in cubes:
            raise ConfigError(f"time={tname!r} is not one of the cubes {names}")
        target = pd.DatetimeIndex(cubes[tname]["time"].values)
    seen: dict[str, str] = {}
    out: dict[str, xr.DataArray] = {}
    for cname, cube in cubes.items():
        for v in cube.data_vars:
            if "time" not in cube[v].dims or v == "read_failed":
                continue
            if v in seen:
                raise GridError(f"variable {v!r} is in cubes {seen[v]!r} and {cname!r}; rename "
                                "one (cube.rename({...})) before aligning")
            seen[str(v)] = cname
        on_grid = _to_grid(cube, gb, resampling or {})
        on_time = _to_time(on_grid, target, cname, cube.attrs.get("eocube:profile"),
                           tolerance)
        for v in on_time.data_vars:
            if str(v) in seen and seen[str(v)] == cname:
                out[str(v)] = on_time[v]
    from odc.geo.xr import xr_coords

    ref_chunks = cubes[ref].chunksizes
    if ref_chunks and geobox is None:
        want = {d: ref_chunks[d] for d in gb.dimensions if d in ref_chunks}
        out = {k: (v.chunk(want) if v.chunks is not None else v) for k, v in out.items()}
    return xr.Dataset(out, coords={"time": target, **xr_coords(gb)},
                      attrs={"eocube:aligned": ",".join(names)})


def _to_grid(cube: xr.Dataset, gb: Any, forced: Mapping[str, str]) -> xr.Dataset:
    from odc.geo.xr import xr_reproject

    src = cube.odc.geobox
    if src is None:
        raise GridError("a cube to align has no GeoBox (no CRS or spatial coordinates)")
    if src == gb:
        return cube
    out = {}
    for v in cube.data_vars:
        if "time" not in cube[v].dims or v == "read_failed":
            continue
        m = forced.get(str(v)) or _method(cube, v, _res_m(src), _res_m(gb))
        da = cube[v]
        kw: dict[str, Any] = {}
        if da.dtype.kind in "iu":
            kw["dst_nodata"] = da.attrs.get("nodata", 0)
        r = xr_reproject(da, gb, resampling=m, **kw)
        out[v] = r
    return xr.Dataset(out, attrs=cube.attrs)


def _to_time(cube: xr.Dataset, target: pd.DatetimeIndex, cname: str, profile: str | None,
             tolerance: Mapping[str, str] | str | None) -> xr.Dataset:
    times = pd.DatetimeIndex(cube["time"].values)
    if times.equals(target):
        return cube
    if profile in PERIOD_PRODUCTS:
        # the period (month) that contains each target date
        return cube.reindex(time=target, method="ffill",
                            tolerance=pd.Timedelta(PERIOD_PRODUCTS[profile]))
    tol = tolerance.get(cname, DEFAULT_TOLERANCE) if isinstance(tolerance, Mapping) else (
        tolerance or DEFAULT_TOLERANCE)
    if not times.is_monotonic_increasing or times.has_duplicates:
        raise GridError(f"cube {cname!r} has unsorted or repeated dates; load it with "
                        "groupby='solar_day'")
    return cube.reindex(time=target, method="nearest", tolerance=pd.Timedelta(tol))


def total(cube: xr.DataArray, /) -> xr.DataArray:
    """Σ value × pixel area (m²) over y, x — e.g. the NTL total that alignment conserves."""
    gb = cube.odc.geobox
    if gb.crs.geographic:
        area = _geographic_area(gb)
        return (cube * xr.DataArray(area, dims=cube.odc.spatial_dims)).sum(
            cube.odc.spatial_dims)
    return cube.sum(cube.odc.spatial_dims) * abs(gb.resolution.x * gb.resolution.y)


def _geographic_area(gb: Any) -> np.ndarray:
    """Area (m²) of each pixel of a lon/lat grid on the WGS84 ellipsoid's authalic sphere."""
    r = 6_371_007.2
    ys = gb.coords[gb.dimensions[0]].values
    dy = abs(gb.resolution.y)
    dx = np.deg2rad(abs(gb.resolution.x))
    band = r * r * dx * (np.sin(np.deg2rad(ys + dy / 2)) - np.sin(np.deg2rad(ys - dy / 2)))
    return np.repeat(np.abs(band)[:, None], gb.shape.x, axis=1)
