"""CCDC over a cube: the xarray layer around the batched core in `eocube.change._core`.

Lazy: one ``apply_ufunc(dask="parallelized")`` task per spatial chunk, time in one chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from eocube.change._core import (
    COEF_NAMES,
    STATUS_MEANINGS,
    TREND_ORIGIN,
    CCDCParams,
    ccdc_numpy,
    dates_to_days,
)
from eocube.change._xr import as_band_array, days_to_datetime64, pixel_dims, time_attrs
from eocube.errors import ConfigError

# per-pixel fields, then per-segment, per-(segment, band), per-(segment, band, coef)
_PIXEL = ("status", "n_clear", "n_breaks")
_SEGMENT = ("start_day", "end_day", "break_day", "n_obs", "n_coefs", "is_break")
_SEGMENT_BAND = ("magnitude", "rmse")


def _layout(n_seg: int, n_band: int) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Offset and trailing shape of every result in the packed per-pixel vector."""
    out, off = {}, 0
    for name, shape in ([(n, ()) for n in _PIXEL] + [(n, (n_seg,)) for n in _SEGMENT]
                        + [(n, (n_seg, n_band)) for n in _SEGMENT_BAND]
                        + [("coefficients", (n_seg, n_band, len(COEF_NAMES)))]):
        out[name] = (off, shape)
        off += int(np.prod(shape, dtype=int))
    out["_size"] = (off, ())
    return out


def _block(values: np.ndarray, *, days: np.ndarray, detection_bands: list[int],
           params: CCDCParams, backend: str, device: str) -> np.ndarray:
    """One chunk: (..., time, band) in, (..., field) packed float64 out."""
    lead = values.shape[:-2]
    flat = values.reshape(-1, *values.shape[-2:])
    res = ccdc_numpy(flat, days, detection_bands=detection_bands, params=params,
                     backend=backend, device=device)
    layout = _layout(params.max_segments, values.shape[-1])
    packed = np.empty((flat.shape[0], layout["_size"][0]), dtype=np.float64)
    for name, (off, shape) in layout.items():
        if name != "_size":
            size = int(np.prod(shape, dtype=int))
            packed[:, off:off + size] = res[name].reshape(flat.shape[0], size)
    return packed.reshape(*lead, -1)


def ccdc(
    cube: xr.Dataset | xr.DataArray,
    /,
    *,
    bands: Sequence[str] | None = None,
    detection_bands: Sequence[str] | None = None,
    max_segments: int = 10,
    chi2_prob: float = 0.99,
    consecutive: int = 6,
    min_obs: int = 12,
    min_days: float = 365.0,
    outlier_prob: float = 0.999999,
    backend: Literal["numba", "numpy", "torch"] = "numba",
    device: str = "auto",
    **advanced: Any,
) -> xr.Dataset:
    """Continuous change detection (CCDC, Zhu & Woodcock 2014) on every pixel of a cube.

    Per pixel, a harmonic model (intercept, trend, and 1–3 annual harmonic pairs: 4
    coefficients under 18 clear observations, 6 under 24, else 8) is initialised on a stable
    window of at least ``min_obs`` observations spanning ``min_days``, extended backwards over
    observations that fit it, then monitored: a break is declared when ``consecutive``
    observations in a row have squared residuals, scaled by max(RMSE, variogram) and summed
    over the detection bands, above the chi-square quantile ``chi2_prob`` (one degree of
    freedom per detection band); single observations above the ``outlier_prob`` quantile are
    dropped as outliers. After a break a new model is initialised. The control flow is
    pyccd's (lcmap-pyccd 2021.7), with these documented deviations:

    - ordinary least squares (a 1e-8 ridge for conditioning) instead of Lasso: pyccd's
      ``alpha=1`` is tied to Landsat reflectance scaled by 10 000 and means nothing for dB
      backscatter or radiance, and OLS is a small solve of normal equations kept up to
      date one observation at a time;
    - no Tmask screening in initialisation (the input is already cloud-masked, NaN = not
      clear; residual clouds make a window unstable and it slides on, as in pyccd);
    - the monitoring RMSE is the model's RMSE, not the RMSE of the 24 residuals nearest in
      day of year;
    - the variogram lag is ``floor(30 / mean revisit) + 1`` instead of the lag whose modal
      date gap exceeds 30 days;
    - the change magnitude is the signed median residual (observed − predicted) over the
      ``consecutive`` break observations, as in the original CCDC, not pyccd's median of
      absolute residuals.

    Parameters
    ----------
    cube
        Dataset with one variable per band on ("time", y, x), or a DataArray on
        ("time", "band", y, x) (or ("time", y, x) for a single band). Any bands work:
        reflectances, indices, backscatter in dB, radiance. NaN marks a non-clear
        observation (an observation is clear only if every band is finite). ``time`` must be
        datetime64, strictly increasing, and in one dask chunk.
    bands
        Bands (variables, or ``band`` labels) to model; all by default.
    detection_bands
        Bands entering the chi-square test; all modelled bands by default.
    max_segments
        Segment slots per pixel (the ``segment`` dimension); breaks beyond are counted only.
    chi2_prob, outlier_prob, consecutive, min_obs, min_days
        See above; the defaults are CCDC's (0.99, 0.999999, 6, 12, 365).
    backend
        ``"numba"`` (the CPU default: the phases compiled one pixel at a time, several
        thousand 20-year pixels per second per core, over 1000 times lcmap-pyccd, see
        ``benchmarks/change.py``; compiled on first use, then cached),
        ``"numpy"`` (all pixels of a chunk advanced together as array operations: the
        reference the other backends are tested against), or ``"torch"`` (the numpy
        statements in float64 on ``device``; what GPU workers run). The three make the
        same decisions (breaks, segments, outliers); coefficients, RMSE and magnitudes
        differ by rounding only (numba and numpy solve the same normal equations with the
        same LAPACK routine).
    device
        For torch: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
    **advanced
        Other `CCDCParams` fields (``obs_per_coef``, ``refit_growth``, ``full_refit_obs``,
        ``variogram_days``, ``ridge``).

    Returns
    -------
    xarray.Dataset
        On the cube's pixel dims: ``status`` (0 ok, 1 insufficient_data: fewer than
        ``min_obs`` clear observations or less than ``min_days`` covered, no model and no
        break; 2 no_stable_model: enough data but no stable start, one closing fit only),
        ``n_clear``, ``n_breaks``. On ("segment", …): ``start``, ``end``, ``break``
        (datetime64; NaT where the segment did not end in a break), ``n_obs``, ``n_coefs``,
        ``is_break``. On ("segment", "band", …): ``magnitude`` and ``rmse``; on
        ("segment", "band", "coef", …): ``coefficients`` (trend per year since the
        ``trend_origin`` attr, harmonics of the day since 1970-01-01 over 365.2425 days).
        Lazy when the cube is.

    Raises
    ------
    GridError
        If ``time`` is missing, not datetime64, or split over several dask chunks.
    ConfigError
        For unknown bands, integer bands, unsorted dates or invalid parameters.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from eocube.change import ccdc
    >>> t = np.datetime64("2018-01-01") + np.arange(0, 4 * 365, 8).astype("timedelta64[D]")
    >>> rng = np.random.default_rng(0)
    >>> v = 0.2 + 0.01 * rng.standard_normal((t.size, 2, 2)) + 0.2 * (t >= t[90])[:, None, None]
    >>> out = ccdc(xr.Dataset({"ndbi": (("time", "y", "x"), v)}, coords={"time": t}))
    >>> bool((out["break"].isel(segment=0) == t[90]).all())
    True
    """
    try:
        params = CCDCParams(max_segments=max_segments, chi2_prob=chi2_prob,
                            consecutive=consecutive, min_obs=min_obs, min_days=min_days,
                            outlier_prob=outlier_prob, **advanced)
    except TypeError as err:
        fields = sorted(f.name for f in dataclasses.fields(CCDCParams))
        raise ConfigError(f"unknown ccdc option in {sorted(advanced)}; known: {fields}") from err
    da = as_band_array(cube, bands, "ccdc")
    band_names = [str(b) for b in da["band"].values]
    if detection_bands is None:
        det = list(range(len(band_names)))
    else:
        unknown = [b for b in detection_bands if b not in band_names]
        if unknown:
            raise ConfigError(f"detection_bands {unknown} are not among the bands {band_names}")
        det = [band_names.index(b) for b in detection_bands]
    days = dates_to_days(da["time"].values)
    if days.size > 1 and not np.all(np.diff(days) > 0):
        raise ConfigError("ccdc needs strictly increasing dates; use cube.sortby('time') and "
                          "drop duplicate dates first")
    if backend not in ("numba", "numpy", "torch"):
        raise ConfigError(f'backend={backend!r} is not one of "numba", "numpy", "torch"')

    layout = _layout(params.max_segments, len(band_names))
    packed = xr.apply_ufunc(
        _block, da,
        input_core_dims=[["time", "band"]],
        output_core_dims=[["field"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"field": layout["_size"][0]}},
        kwargs={"days": days, "detection_bands": det, "params": params, "backend": backend,
                "device": device},
    )
    return _unpack(packed, layout, pixel_dims(da), band_names, params, da)


def _unpack(packed: xr.DataArray, layout: dict, pix: list[str], band_names: list[str],
            params: CCDCParams, da: xr.DataArray) -> xr.Dataset:
    n_seg = params.max_segments
    lead_shape = tuple(packed.sizes[d] for d in pix)
    coords = {k: v for k, v in packed.coords.items() if "field" not in v.dims}

    def field(name: str, dtype: Any) -> xr.DataArray:
        off, shape = layout[name]
        size = int(np.prod(shape, dtype=int))
        data = packed.data[..., off:off + size].reshape(*lead_shape, *shape)
        extra = {0: [], 1: ["segment"], 2: ["segment", "band"],
                 3: ["segment", "band", "coef"]}[len(shape)]
        arr = xr.DataArray(data, dims=[*pix, *extra], coords=coords)
        arr = arr.transpose(*extra, *pix)
        if dtype == "datetime64[ns]":
            return xr.apply_ufunc(days_to_datetime64, arr, dask="parallelized",
                                  output_dtypes=[np.dtype("datetime64[ns]")])
        return arr.astype(dtype)

    ds = xr.Dataset({
        "status": field("status", np.int8),
        "n_clear": field("n_clear", np.int32),
        "n_breaks": field("n_breaks", np.int32),
        "start": field("start_day", "datetime64[ns]"),
        "end": field("end_day", "datetime64[ns]"),
        "break": field("break_day", "datetime64[ns]"),
        "n_obs": field("n_obs", np.int32),
        "n_coefs": field("n_coefs", np.int8),
        "is_break": field("is_break", bool),
        "magnitude": field("magnitude", np.float64),
        "rmse": field("rmse", np.float64),
        "coefficients": field("coefficients", np.float64),
    })
    ds = ds.assign_coords(segment=np.arange(n_seg), band=band_names, coef=list(COEF_NAMES))
    ds["status"].attrs.update(flag_values=list(range(len(STATUS_MEANINGS))),
                              flag_meanings=" ".join(STATUS_MEANINGS))
    ds["n_clear"].attrs["long_name"] = "number of clear observations"
    ds["break"].attrs["long_name"] = "date of the first observation of the change"
    ds["magnitude"].attrs["long_name"] = "median residual (observed - predicted) at the break"
    ds["coefficients"].attrs["long_name"] = (
        "harmonic model: intercept + slope * years since trend_origin + "
        "sum_h cos_h cos(h w d) + sin_h sin(h w d), d = days since 1970-01-01, "
        "w = 2 pi / 365.2425")
    p = dataclasses.asdict(params)
    ds.attrs.update({"method": "CCDC (Zhu & Woodcock 2014), eocube batched variant",
                     "trend_origin": str(TREND_ORIGIN),
                     **{f"ccdc_{k}": v for k, v in p.items()}, **time_attrs(da)})
    return ds
