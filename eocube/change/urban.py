"""Urban change from built-up evidence series: time of change, yearly maps, two-date change.

Inputs are per-pixel series of a built-up probability (from the models) or of any score that
rises with built-up, such as the S1 backscatter log-ratio of `backscatter_log_ratio`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from eocube.change._model import dates_to_days
from eocube.change._xr import days_to_datetime64, require_time, time_attrs
from eocube.errors import ConfigError

#: ``state`` codes of `time_of_change` and their meanings.
TOC_STATES = ("not_built", "changed", "built_throughout", "insufficient_data")


def time_of_change_numpy(values: np.ndarray, days: np.ndarray, /, *, threshold: float = 0.5,
                         k: int = 3) -> dict[str, np.ndarray]:
    """Time of change over a batch of series: (pixel, time) in, per-pixel arrays out.

    A pixel turns built-up when ``k`` valid observations in a row are at or above
    ``threshold`` and turns back when ``k`` in a row are below (hysteresis; NaN observations
    are skipped without breaking a run). Its state before the first completed run of either
    kind is that run's. The change date is the first observation of the last run that
    switched it to built-up, kept only if it is still built-up at the end of the series.

    Returns ``change_day`` (float days since 1970-01-01, NaN when no change), ``state``
    (int8, see `TOC_STATES`), ``confidence`` (share of valid observations after the change
    that are built-up times the share before it that are not, in [0, 1]), and ``magnitude``
    (mean after minus mean before).
    """
    if k < 1:
        raise ConfigError(f"k={k} must be at least 1")
    values = np.asarray(values, dtype=np.float64)
    n_pix, n_time = values.shape
    valid = np.isfinite(values)
    built = valid & (values >= threshold)
    run_b = np.zeros(n_pix, np.int64)
    run_n = np.zeros(n_pix, np.int64)
    run_start = np.full(n_pix, np.nan)
    state = np.full(n_pix, -1, np.int8)  # -1 undecided, 0 not built, 1 built
    initial = np.full(n_pix, -1, np.int8)
    onset = np.full(n_pix, np.nan)
    # sequential in time, vectorised over pixels: T steps of (pixel,) operations
    for t in range(n_time):
        v, b = valid[:, t], built[:, t]
        new_run = v & b & (run_b == 0)
        run_start = np.where(new_run, days[t], run_start)
        run_b = np.where(v, np.where(b, run_b + 1, 0), run_b)
        run_n = np.where(v, np.where(b, 0, run_n + 1), run_n)
        to_built = (run_b >= k) & (state != 1)
        to_not = (run_n >= k) & (state != 0)
        switched_on = to_built & (state == 0)
        onset = np.where(switched_on, run_start, onset)
        onset = np.where(to_not, np.nan, onset)
        initial = np.where((initial < 0) & to_built, 1, np.where((initial < 0) & to_not, 0,
                                                                  initial)).astype(np.int8)
        state = np.where(to_built, 1, np.where(to_not, 0, state)).astype(np.int8)
    changed = (state == 1) & np.isfinite(onset)
    change_day = np.where(changed, onset, np.nan)
    out_state = np.where(changed, 1, np.where(state == 1, 2, np.where(state == 0, 0, 3)))
    after = valid & (days[None, :] >= change_day[:, None])
    before = valid & (days[None, :] < change_day[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        frac_after = (built & after).sum(1) / after.sum(1)
        frac_before = (~built & before).sum(1) / before.sum(1)
        mean_after = np.where(after, values, 0).sum(1) / after.sum(1)
        mean_before = np.where(before, values, 0).sum(1) / before.sum(1)
    confidence = np.where(changed, frac_after * frac_before, np.nan)
    magnitude = np.where(changed, mean_after - mean_before, np.nan)
    return {"change_day": change_day, "state": out_state.astype(np.int8),
            "confidence": confidence, "magnitude": magnitude}


def _toc_block(values: np.ndarray, *, days: np.ndarray, threshold: float, k: int) -> np.ndarray:
    lead = values.shape[:-1]
    res = time_of_change_numpy(values.reshape(-1, values.shape[-1]), days,
                               threshold=threshold, k=k)
    out = np.stack([res["change_day"], res["state"].astype(np.float64), res["confidence"],
                    res["magnitude"]], axis=-1)
    return out.reshape(*lead, 4)


def time_of_change(prob: xr.DataArray, /, *, threshold: float = 0.5, k: int = 3) -> xr.Dataset:
    """The first date after which each pixel stays built-up, from a built-up evidence series.

    Parameters
    ----------
    prob
        DataArray on ("time", y, x): a built-up probability, or any score that is high on
        built-up (e.g. `backscatter_log_ratio` in dB). NaN = no observation. ``time`` in one
        dask chunk.
    threshold
        Value at or above which an observation counts as built-up.
    k
        Consecutive valid observations needed to switch state (either way); guards against
        single noisy dates.

    Returns
    -------
    xarray.Dataset
        ``change_date`` (datetime64, NaT without a change), ``state`` (int8: 0 not_built,
        1 changed, 2 built_throughout, 3 insufficient_data), ``confidence`` (0–1: share of
        built-up observations after the date times share of non-built-up before it) and
        ``magnitude`` (mean after minus mean before). Lazy when ``prob`` is.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> t = np.datetime64("2020-01-01") + np.arange(0, 400, 10).astype("timedelta64[D]")
    >>> p = xr.DataArray(np.where(np.arange(t.size) >= 25, 0.9, 0.1)[:, None, None],
    ...                  dims=("time", "y", "x"), coords={"time": t})
    >>> out = time_of_change(p, k=3)
    >>> str(out["change_date"].values[0, 0])[:10], int(out["state"][0, 0])
    ('2020-09-07', 1)
    """
    if not isinstance(prob, xr.DataArray):
        raise ConfigError(f"time_of_change takes a DataArray, not {type(prob).__name__}; pick "
                          "one variable, e.g. ds['built_prob']")
    require_time(prob, "time_of_change")
    if k < 1:
        raise ConfigError(f"k={k} must be at least 1")
    days = dates_to_days(prob["time"].values)
    out = xr.apply_ufunc(
        _toc_block, prob.astype(np.float64),
        input_core_dims=[["time"]], output_core_dims=[["field"]],
        dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"field": 4}},
        kwargs={"days": days, "threshold": float(threshold), "k": int(k)},
    )
    date = xr.apply_ufunc(days_to_datetime64, out.isel(field=0), dask="parallelized",
                          output_dtypes=[np.dtype("datetime64[ns]")])
    ds = xr.Dataset({
        "change_date": date,
        "state": out.isel(field=1).astype(np.int8),
        "confidence": out.isel(field=2),
        "magnitude": out.isel(field=3),
    })
    ds["state"].attrs.update(flag_values=list(range(len(TOC_STATES))),
                             flag_meanings=" ".join(TOC_STATES))
    ds.attrs.update({"threshold": float(threshold), "k": int(k), **time_attrs(prob)})
    return ds


def yearly_change(change: xr.Dataset | xr.DataArray, /, *,
                  years: Sequence[int] | None = None) -> xr.DataArray:
    """Yearly change maps: True where a change (break) falls in the year.

    Parameters
    ----------
    change
        A datetime64 DataArray of change dates (any extra dims, e.g. ``segment``, are
        reduced with "any"), the Dataset of `time_of_change` (``change_date``) or of `ccdc`
        (its ``break`` dates).
    years
        Years to map; by default every year between the ``time_start`` and ``time_end``
        attrs that `ccdc` and `time_of_change` set.

    Returns
    -------
    xarray.DataArray
        Boolean on ("year", pixel dims…); lazy when the input is.
    """
    attrs = dict(change.attrs)
    if isinstance(change, xr.Dataset):
        name = "change_date" if "change_date" in change else "break"
        if name not in change:
            raise ConfigError("yearly_change needs a 'change_date' (time_of_change) or 'break' "
                              f"(ccdc) variable; got {sorted(map(str, change.data_vars))}")
        change = change[name]
    if not np.issubdtype(change.dtype, np.datetime64):
        raise ConfigError(f"yearly_change needs datetime64 dates, got dtype {change.dtype}")
    if years is None:
        if "time_start" not in attrs or "time_end" not in attrs:
            raise ConfigError("yearly_change: pass years=[...]; the input carries no "
                              "time_start/time_end attrs to infer them from")
        years = range(pd.Timestamp(attrs["time_start"]).year,
                      pd.Timestamp(attrs["time_end"]).year + 1)
    years = [int(y) for y in years]
    year_of = change.dt.year  # NaT gives NaN, never equal to a year
    reduce = [d for d in change.dims if d == "segment"]
    maps = []
    for y in years:
        hit = year_of == y
        maps.append(hit.any(reduce) if reduce else hit)
    return xr.concat(maps, dim=pd.Index(years, name="year")).rename("change")


def _composite(data: xr.DataArray | xr.Dataset, date: np.datetime64,
               window: pd.Timedelta) -> xr.DataArray | xr.Dataset:
    sub = data.sel(time=slice(date - window, date + window))
    if sub.sizes["time"] == 0:
        raise ConfigError(f"no observation within {window} of {date}; widen window=")
    if sub.chunks:
        sub = sub.chunk(time=-1)  # a short slice: gathering it is cheap
    return sub.median("time", skipna=True)


def bitemporal_change(data: xr.DataArray | xr.Dataset, /, *, before: str | np.datetime64,
                      after: str | np.datetime64, window: str = "30D",
                      threshold: float | None = None) -> xr.Dataset:
    """Change between any two dates, from median composites within ``window`` of each.

    Parameters
    ----------
    data
        A built-up probability DataArray on ("time", y, x), or a Dataset of bands.
    before, after
        The two dates.
    window
        Half-width of the window of observations composited (median, NaN skipped) around
        each date.
    threshold
        For a DataArray: the built-up threshold, ``change`` = built at ``after`` and not at
        ``before``. For a Dataset: the change-vector magnitude above which ``change`` is
        True. Without it only the magnitudes are returned.

    Returns
    -------
    xarray.Dataset
        DataArray input: ``before``, ``after``, ``difference`` (+ ``change``). Dataset input:
        ``magnitude`` = Euclidean norm of the band differences (change vector analysis)
        (+ ``change``). Lazy when the input is.
    """
    if "time" not in data.dims:
        raise ConfigError(f"bitemporal_change needs a 'time' dimension; got {tuple(data.dims)}")
    w = pd.Timedelta(window)
    t0, t1 = np.datetime64(before, "ns"), np.datetime64(after, "ns")
    if not t0 < t1:
        raise ConfigError(f"before={before!r} must be earlier than after={after!r}")
    c0, c1 = _composite(data, t0, w), _composite(data, t1, w)
    if isinstance(data, xr.DataArray):
        out = xr.Dataset({"before": c0, "after": c1, "difference": c1 - c0})
        if threshold is not None:
            out["change"] = (c1 >= threshold) & (c0 < threshold)
    else:
        diff = c1 - c0
        mag = sum(diff[v] ** 2 for v in diff.data_vars) ** 0.5
        out = xr.Dataset({"magnitude": mag})
        if threshold is not None:
            out["change"] = mag > threshold
    out.attrs.update({"before": str(t0), "after": str(t1), "window": window})
    return out


def backscatter_log_ratio(cube: xr.Dataset, /, *, baseline: tuple[str, str],
                          bands: Sequence[str] = ("vv", "vh")) -> xr.DataArray:
    """S1 built-up evidence: mean over ``bands`` of 10·log10(σ⁰ / baseline median σ⁰), in dB.

    New buildings raise backscatter (double bounce), so the series rises by several dB after
    construction; feed it to `time_of_change` with a dB ``threshold`` (e.g. 3).

    Parameters
    ----------
    cube
        Dataset of S1 backscatter in linear power on ("time", y, x).
    baseline
        (start, end) of the reference period, before the changes of interest.
    bands
        The polarisations averaged.
    """
    missing = [b for b in bands if b not in cube.data_vars]
    if missing:
        raise ConfigError(f"backscatter_log_ratio: bands {missing} not in the cube "
                          f"{sorted(map(str, cube.data_vars))}")
    ref = cube[list(bands)].sel(time=slice(*baseline))
    if ref.sizes["time"] == 0:
        raise ConfigError(f"no observation in the baseline period {baseline}")
    if ref.chunks:
        ref = ref.chunk(time=-1)
    med = ref.median("time", skipna=True)
    ratios = [10 * np.log10(cube[b] / med[b]) for b in bands]
    out = sum(ratios) / len(ratios)
    return out.rename("log_ratio").assign_attrs(units="dB", baseline=list(baseline))
