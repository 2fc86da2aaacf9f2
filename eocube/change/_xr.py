"""Shared xarray plumbing for `eocube.change`: cube normalisation and the time-chunk rule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from eocube.errors import ConfigError, GridError


def require_time(obj: xr.DataArray | xr.Dataset, func: str) -> None:
    """Raise unless ``obj`` has a datetime ``time`` dimension held in one dask chunk."""
    if "time" not in obj.dims:
        raise GridError(f"{func} needs a 'time' dimension; got dims {tuple(obj.dims)}")
    if not np.issubdtype(obj["time"].dtype, np.datetime64):
        raise GridError(f"{func} needs datetime64 'time' values; got dtype {obj['time'].dtype}")
    chunks = obj.chunksizes.get("time") if obj.chunks else None
    if chunks is not None and len(chunks) > 1:
        raise GridError(
            f"{func} runs over each pixel's whole time series, but 'time' is split into "
            f"{len(chunks)} chunks {tuple(chunks)}; rechunk first with cube.chunk(time=-1) "
            "(chunk y/x smaller if memory is tight)"
        )


def as_band_array(cube: xr.Dataset | xr.DataArray, bands: Sequence[str] | None,
                  func: str) -> xr.DataArray:
    """The cube as a ("time", ..., "band") DataArray of floats, ``band`` last and in one chunk.

    A Dataset gives one band per variable on ("time", y, x); a DataArray is used as it is
    when it has a ``band`` dimension, else as a single band named after it.
    """
    if isinstance(cube, xr.Dataset):
        names = list(bands) if bands is not None else [
            str(v) for v, da in cube.data_vars.items() if "time" in da.dims]
        missing = [b for b in names if b not in cube.data_vars]
        if missing:
            raise ConfigError(
                f"{func}: bands {missing} are not variables of the cube; it has "
                f"{sorted(map(str, cube.data_vars))}"
            )
        if not names:
            raise ConfigError(f"{func}: the cube has no variable on a 'time' dimension")
        require_time(cube[names], func)
        da = cube[names].to_dataarray("band")
    elif isinstance(cube, xr.DataArray):
        require_time(cube, func)
        if "band" in cube.dims:
            da = cube if bands is None else cube.sel(band=list(bands))
        else:
            if bands is not None:
                raise ConfigError(f"{func}: bands={bands!r} given but the DataArray has no "
                                  "'band' dimension")
            da = cube.expand_dims(band=[cube.name or "value"])
    else:
        raise ConfigError(f"{func} takes an xarray Dataset or DataArray, not {type(cube)}")
    if not np.issubdtype(da.dtype, np.floating):
        raise ConfigError(
            f"{func} needs float bands with NaN for observations that are not clear; got "
            f"dtype {da.dtype}. Mask nodata and convert first (cube.where(mask))"
        )
    other = [d for d in da.dims if d not in ("time", "band")]
    da = da.transpose(*other, "time", "band")
    if da.chunks:
        da = da.chunk({"band": -1})
    return da


def pixel_dims(da: xr.DataArray) -> list[str]:
    """The dims that index pixels: every one but time and band."""
    return [str(d) for d in da.dims if d not in ("time", "band")]


def time_attrs(da: xr.DataArray | xr.Dataset) -> dict[str, str]:
    """The series' time range as attrs, read from the coordinate (never from data)."""
    t = da["time"].values
    if t.size == 0:
        return {}
    return {"time_start": str(np.datetime_as_string(t.min(), unit="D")),
            "time_end": str(np.datetime_as_string(t.max(), unit="D"))}


def days_to_datetime64(days: np.ndarray) -> np.ndarray:
    """Float days since 1970-01-01 to datetime64[ns], NaN to NaT."""
    out = np.full(days.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = np.isfinite(days)
    out[ok] = np.round(days[ok] * 86400e9).astype("int64").astype("datetime64[ns]")
    return out
