"""Lazy temporal composites per month, quarter or year: median, mean, max, min and the count of
valid observations. One task per period and chunk; periods never mix."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from eocube.errors import ConfigError

Period = Literal["month", "quarter", "year"]
Stat = Literal["median", "mean", "max", "min", "count"]
_FREQ = {"month": "M", "quarter": "Q", "year": "Y"}


def _reduce(v: xr.DataArray, stat: Stat) -> xr.DataArray:
    if stat == "count":
        return np.isfinite(v).sum("time").astype("int16")
    if v.chunks is not None:
        v = v.chunk(time=-1)  # one period: a handful of dates, one chunk along time
    return getattr(v, stat)("time", skipna=True).astype(v.dtype)


def composite(cube: xr.Dataset | xr.DataArray, /, *, period: Period = "month",
              stat: Stat = "median") -> xr.Dataset | xr.DataArray:
    """Composite ``cube`` over calendar periods.

    Parameters
    ----------
    cube
        Float variables on ("time", y, x); integer (class) variables are left out, since a
        median of class codes is no class.
    period
        ``"month"``, ``"quarter"`` or ``"year"``; the result's time is each period's start.
        Periods with no date do not appear.
    stat
        ``"median"``, ``"mean"``, ``"max"``, ``"min"`` (NaN ignored; all-NaN gives NaN) or
        ``"count"`` (number of finite observations, int16).

    Returns
    -------
    Same type as ``cube``, lazy when it is.
    """
    if period not in _FREQ:
        raise ConfigError(f"period={period!r}; use one of {sorted(_FREQ)}")
    if stat not in ("median", "mean", "max", "min", "count"):
        raise ConfigError(f"stat={stat!r}; use median, mean, max, min or count")
    if "time" not in cube.dims:
        raise ConfigError("the cube has no 'time' dimension to composite over")
    times = pd.DatetimeIndex(cube["time"].values)
    labels = times.to_period(_FREQ[period]).start_time
    starts = pd.DatetimeIndex(sorted(set(labels)))
    groups = [np.flatnonzero(labels == s) for s in starts]

    def one(v: xr.DataArray) -> xr.DataArray:
        parts = [_reduce(v.isel(time=idx), stat) for idx in groups]
        out = xr.concat(parts, dim=pd.Index(starts, name="time"))
        return out.transpose("time", *[d for d in v.dims if d != "time"]).assign_attrs(
            v.attrs)

    if isinstance(cube, xr.DataArray):
        return one(cube)
    out = {n: one(v) for n, v in cube.data_vars.items()
           if v.dtype.kind == "f" and "time" in v.dims}
    if not out:
        raise ConfigError(f"the cube has no float (time, ...) variable to composite; it has "
                          f"{ {n: str(v.dtype) for n, v in cube.data_vars.items()} }")
    return xr.Dataset(out, attrs={**cube.attrs, "composite": f"{stat} per {period}"})
