"""CCDC over a cube: `ccdc` (the xarray layer) and `ccdc_numpy` (arrays in, arrays out).

`ccdc_numpy` checks its inputs, sends pixels to pyccd's procedures (`_procedures`) and the
rest to a backend: the compiled kernel (`_numba`) or the batched statements (`_core`, on numpy
or torch). Lazy: one ``apply_ufunc(dask="parallelized")`` task per spatial chunk, time in one
chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from eocube.change._backend import get_ops
from eocube.change._core import run_batched
from eocube.change._model import (
    COEF_NAMES,
    STATUS_MEANINGS,
    STATUS_OK,
    TREND_ORIGIN,
    CCDCParams,
    dates_to_days,
    thresholds,
)
from eocube.change._procedures import (
    check_masked,
    empty_result,
    fit_whole_series,
    procedure_mask,
    select_procedures,
)
from eocube.change._xr import as_band_array, days_to_datetime64, pixel_dims, time_attrs
from eocube.cube.qa import QA_CLASS_VAR, QA_CLEAR, QA_WATER
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


def _block(values: np.ndarray, qa: np.ndarray | None = None, *, days: np.ndarray,
           detection_bands: list[int], tmask_bands: list[int], params: CCDCParams,
           backend: str, device: str, band_names: list[str]) -> np.ndarray:
    """One chunk: (..., time, band) values and (..., time) classes in, (..., field) out."""
    lead = values.shape[:-2]
    flat = values.reshape(-1, *values.shape[-2:])
    flat_qa = None if qa is None else qa.reshape(flat.shape[:2])
    res = ccdc_numpy(flat, days, qa=flat_qa, detection_bands=detection_bands,
                     tmask_bands=tmask_bands, params=params, backend=backend, device=device,
                     band_names=band_names)
    layout = _layout(params.max_segments, values.shape[-1])
    packed = np.empty((flat.shape[0], layout["_size"][0]), dtype=np.float64)
    for name, (off, shape) in layout.items():
        if name != "_size":
            size = int(np.prod(shape, dtype=int))
            packed[:, off:off + size] = res[name].reshape(flat.shape[0], size)
    return packed.reshape(*lead, -1)


def ccdc_numpy(
    values: np.ndarray,
    dates: np.ndarray,
    /,
    *,
    qa: np.ndarray | None = None,
    detection_bands: list[int] | None = None,
    tmask_bands: list[int] | None = None,
    params: CCDCParams | None = None,
    backend: str = "numba",
    device: str = "auto",
    band_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """CCDC change detection over a batch of pixel time series (the array core of `ccdc`).

    Parameters
    ----------
    values
        Array of shape (pixel, time, band); NaN in any band marks the observation not clear.
    dates
        The (time,) acquisition dates, strictly increasing: datetime64, or days since
        1970-01-01.
    qa
        Optional (pixel, time) integer QA classes (`eocube.cube.qa`: fill, clear, water,
        snow, cloud). With them, pixels follow pyccd's choice of procedure (see
        `CCDCParams` ``clear_pct``, ``snow_pct``) and the change model uses clear and water
        observations only; without them every observation with finite values is clear.
    detection_bands
        Indices of the bands whose residuals enter the chi-square test; all by default. Every
        band is modelled and reported either way.
    tmask_bands
        Indices of the bands pyccd's Tmask screens initialisation windows with (pyccd: green
        and SWIR1); the detection bands by default.
    params
        Algorithm parameters; `CCDCParams` defaults (pyccd's) when None.
    backend
        ``"numba"`` (the CPU fast path: the same phases compiled per pixel, compiled on first
        use and cached), ``"numpy"`` (the batched reference the others are tested against),
        or ``"torch"`` to run the batched statements with torch (float64) on ``device``. All
        three make the same decisions; coefficients, RMSE and magnitudes differ only by
        rounding. pyccd's snow and insufficient-clear procedures are one numpy
        implementation shared by the three.
    device
        Torch device (``"auto"``: CUDA if available, else CPU); only ``"cpu"``/``"auto"`` for
        numba and numpy.
    band_names
        Names used in error messages (`MaskError`).

    Returns
    -------
    dict of numpy arrays
        Per pixel: ``status`` (int8, see `STATUS_MEANINGS`), ``n_clear`` (int32), ``n_breaks``
        (int32). Per pixel and segment (``max_segments`` slots, empty slots NaN/0):
        ``start_day``, ``end_day``, ``break_day`` (float64 days since 1970-01-01; NaN where
        the segment did not end in a break), ``n_obs`` (int32), ``n_coefs`` (int8),
        ``is_break`` (bool). Per pixel, segment and band: ``magnitude`` (median residual
        over the ``consecutive`` observations that made the break, 0 without a break) and
        ``rmse``; per pixel, segment, band and coefficient: ``coefficients`` (see
        `COEF_NAMES`; trend in years since `TREND_ORIGIN`).

    Raises
    ------
    MaskError
        If ``values`` hold fill or saturation markers (-9999, 16000, 20000, 0 in every
        band …): the series was not masked.
    ConfigError
        For inconsistent shapes, unsorted dates, bad detection bands or backends.
    """
    params = params or CCDCParams()
    values = np.asarray(values)
    if values.ndim != 3:
        raise ConfigError(
            f"values must be (pixel, time, band); got an array of shape {values.shape}"
        )
    days = dates_to_days(dates)
    n_pix, n_time, n_band = values.shape
    if days.shape != (n_time,):
        raise ConfigError(f"dates has shape {days.shape}; values has {n_time} time steps")
    if n_time > 1 and not np.all(np.diff(days) > 0):
        raise ConfigError(
            "dates must be strictly increasing; sort the cube with cube.sortby('time') and "
            "drop duplicate dates first"
        )
    det = list(range(n_band)) if detection_bands is None else [int(b) for b in detection_bands]
    if not det or any(b < 0 or b >= n_band for b in det) or len(set(det)) != len(det):
        raise ConfigError(
            f"detection_bands={detection_bands!r} must be distinct indices below {n_band}"
        )
    tmb = det if tmask_bands is None else [int(b) for b in tmask_bands]
    if not tmb or any(b < 0 or b >= n_band for b in tmb) or len(set(tmb)) != len(tmb):
        raise ConfigError(f"tmask_bands={tmask_bands!r} must be distinct indices below {n_band}")
    if backend not in ("numba", "numpy", "torch"):
        raise ConfigError(f'backend={backend!r} is not one of "numba", "numpy", "torch"')
    if backend != "torch" and device not in ("auto", "cpu"):
        raise ConfigError(
            f'device={device!r} needs backend="torch"; the {backend} backend runs on the CPU'
        )
    check_masked(values, band_names)
    if qa is None:
        return _run_model(values, days, det, tmb, params, backend, device)
    qa = np.asarray(qa)
    if qa.shape != (n_pix, n_time) or not np.issubdtype(qa.dtype, np.integer):
        raise ConfigError(f"qa must be integer classes of shape {(n_pix, n_time)}; got "
                          f"{qa.dtype} {qa.shape}")
    procedure = select_procedures(qa, params)
    standard = procedure == STATUS_OK
    out = empty_result(n_pix, params.max_segments, n_band)
    if standard.any():
        clear = np.isin(qa[standard], (QA_CLEAR, QA_WATER))
        v = np.where(clear[..., None], values[standard], np.nan)
        for k, arr in _run_model(v, days, det, tmb, params, backend, device).items():
            out[k][standard] = arr
    if (~standard).any():
        other = ~standard
        use = procedure_mask(qa[other], values[other], procedure[other])
        for k, arr in fit_whole_series(values[other], days, use, procedure[other],
                                       params).items():
            out[k][other] = arr
    return out


def _run_model(values: np.ndarray, days: np.ndarray, det: list[int], tmb: list[int],
               p: CCDCParams, backend: str, device: str) -> dict[str, np.ndarray]:
    """The change model on every pixel of ``values`` through ``backend``."""
    if backend == "numba":
        from eocube.change._numba import run_numba  # compiles (or loads its cache) on first use

        return run_numba(values, days, det, tmb, p, *thresholds(p, len(det)))
    return run_batched(get_ops(backend, device), values, days, det, tmb, p)


def ccdc(
    cube: xr.Dataset | xr.DataArray,
    /,
    *,
    bands: Sequence[str] | None = None,
    qa: str | xr.DataArray | None = None,
    detection_bands: Sequence[str] | None = None,
    tmask_bands: Sequence[str] | None = None,
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
    window of at least ``min_obs`` observations spanning ``min_days`` (screened by pyccd's
    Tmask: a robust fit on the Tmask bands drops the window's outliers, residual clouds and
    shadows), extended backwards over observations that fit it, then monitored: a break is
    declared when ``consecutive`` observations in a row have squared residuals, scaled by
    max(RMSE, variogram) and summed over the detection bands, above the chi-square quantile
    ``chi2_prob`` (one degree of freedom per detection band); single observations above the
    ``outlier_prob`` quantile are dropped as outliers. After a break a new model is
    initialised; observations left before the first stable window and after the last
    model get pyccd's 4-coefficient start and end fits. With QA classes (``qa``), pixels
    with under ``clear_pct`` clear observations get pyccd's persistent-snow or
    insufficient-clear procedure instead: one 4-coefficient fit, no break. The control flow
    is pyccd's (lcmap-pyccd 2021.7.19; on the real Landsat series of
    ``benchmarks/change.py --real`` both find the same breaks, within one revisit), with
    these documented deviations:

    - ordinary least squares (a 1e-8 ridge for conditioning) instead of Lasso: pyccd's
      ``alpha=1`` is tied to Landsat reflectance scaled by 10 000 and means nothing for dB
      backscatter or radiance, and OLS is a small solve of normal equations kept up to
      date one observation at a time (the Tmask's robust fit also solves normal equations,
      where pyccd calls ``lstsq``);
    - the monitoring RMSE is the model's RMSE, not the RMSE of the 24 residuals nearest in
      day of year;
    - the variogram lag is ``floor(30 / mean revisit) + 1`` instead of the lag whose modal
      date gap exceeds 30 days, and the variogram, like the procedure choice, uses the whole
      series (pyccd: dates before its ``STAT_ORD``, 2018-01-01);
    - ``consecutive`` is fixed; pyccd raises its peek size (and the change threshold with
      it) when the median revisit is under 16 days;
    - a first segment cut short by a change found looking back from the first stable
      window is a break (pyccd fits it and reports no break);
    - looking back, the peek is the ``consecutive`` observations before the window, the
      ones the Tmask dropped earlier included (pyccd's slice takes one fewer and skips
      them): a Tmask that took the first observations after a change for outliers would
      otherwise date the change a revisit late (on the synthetic city, 87 % instead of
      99.8 % of breaks on time);
    - the change magnitude is the signed median residual (observed − predicted) over the
      ``consecutive`` break observations, as in the original CCDC, not pyccd's median of
      absolute residuals;
    - without ``qa``, every observation with finite values is clear and every pixel runs
      the change model: NaN cannot tell fill from cloud, so the share of clear
      observations, and with it pyccd's special procedures, needs the QA classes. pyccd's
      insufficient-clear filter on green (median + 400) is not applied: in pyccd 2021.7 it
      assigns into a copy and has no effect either.

    Parameters
    ----------
    cube
        Dataset with one variable per band on ("time", y, x), or a DataArray on
        ("time", "band", y, x) (or ("time", y, x) for a single band). Any bands work:
        reflectances, indices, backscatter in dB, radiance. NaN marks a non-clear
        observation (an observation is clear only if every band is finite). ``time`` must be
        datetime64, strictly increasing, and in one dask chunk.
    bands
        Bands (variables, or ``band`` labels) to model; all but ``qa`` by default.
    qa
        Integer QA classes on ("time", y, x) (`eocube.cube.qa`: fill, clear, water, snow,
        cloud), or the name of the cube's variable holding them; by default the cube's
        ``qa_class`` variable when it has one (`eocube.cube.qa.mask_landsat` and
        ``mask_s2`` add it). With classes, the change model uses clear and water
        observations and pixels short of clear ones get pyccd's special procedures.
    detection_bands
        Bands entering the chi-square test; all modelled bands by default.
    tmask_bands
        Bands the Tmask screens initialisation windows with; by default green and SWIR1
        (pyccd's choice) when bands of those names are modelled (``green`` / ``B03``,
        ``swir1`` / ``swir16`` / ``B11``), else the detection bands.
    max_segments
        Segment slots per pixel (the ``segment`` dimension); breaks beyond are counted only.
    chi2_prob, outlier_prob, consecutive, min_obs, min_days
        See above; the defaults are CCDC's (0.99, 0.999999, 6, 12, 365).
    backend
        ``"numba"`` (the CPU default: the phases compiled one pixel at a time, about two
        thousand 20-year pixels per second per core with the Tmask, over 1000 times
        lcmap-pyccd, see ``benchmarks/change.py``; compiled on first use, then cached),
        ``"numpy"`` (all pixels of a chunk advanced together as array operations: the
        reference the other backends are tested against), or ``"torch"`` (the numpy
        statements in float64 on ``device``; what GPU workers run). The three make the
        same decisions (breaks, segments, outliers); coefficients, RMSE and magnitudes
        differ by rounding only (numba and numpy solve the same normal equations with the
        same LAPACK routine; the Tmask's 5×5 systems by Cholesky in numba, by LU in numpy).
    device
        For torch: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
    **advanced
        Other `CCDCParams` fields (``obs_per_coef``, ``refit_growth``, ``full_refit_obs``,
        ``variogram_days``, ``tmask_const``, ``clear_pct``, ``snow_pct``, ``ridge``).

    Returns
    -------
    xarray.Dataset
        On the cube's pixel dims: ``status`` (0 ok, 1 insufficient_data: fewer than
        ``min_obs`` clear observations or less than ``min_days`` covered, no model and no
        break; 2 no_stable_model: enough data but no stable start, one closing fit only;
        3 persistent_snow and 4 insufficient_clear: pyccd's special procedures, one
        4-coefficient fit when there are ``min_obs`` observations for it, never a break),
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
    MaskError
        When the data hold fill or saturation values (-9999, 16000, 20000, 65535 …, or 0 in
        every band): the cube was not masked; the message names the band and the helper
        (`eocube.cube.qa.mask_landsat`, ``mask_s2``). Raised when the chunk is computed.

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
    qa_da = _qa_classes(cube, qa)
    if isinstance(cube, xr.Dataset) and bands is None and qa_da is not None:
        bands = [str(v) for v, d in cube.data_vars.items()
                 if "time" in d.dims and str(v) != qa_da.name]
    da = as_band_array(cube, bands, "ccdc")
    band_names = [str(b) for b in da["band"].values]
    if detection_bands is None:
        det = list(range(len(band_names)))
    else:
        unknown = [b for b in detection_bands if b not in band_names]
        if unknown:
            raise ConfigError(f"detection_bands {unknown} are not among the bands {band_names}")
        det = [band_names.index(b) for b in detection_bands]
    tmb = _tmask_bands(band_names, tmask_bands, det)
    days = dates_to_days(da["time"].values)
    if days.size > 1 and not np.all(np.diff(days) > 0):
        raise ConfigError("ccdc needs strictly increasing dates; use cube.sortby('time') and "
                          "drop duplicate dates first")
    if backend not in ("numba", "numpy", "torch"):
        raise ConfigError(f'backend={backend!r} is not one of "numba", "numpy", "torch"')

    args, core = [da], [["time", "band"]]
    if qa_da is not None:
        qa_da = qa_da.transpose(*[d for d in da.dims if d in qa_da.dims])
        if da.chunks:
            qa_da = qa_da.chunk({d: da.chunksizes[d] for d in qa_da.dims})
        args.append(qa_da)
        core.append(["time"])
    layout = _layout(params.max_segments, len(band_names))
    packed = xr.apply_ufunc(
        _block, *args,
        input_core_dims=core,
        output_core_dims=[["field"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"field": layout["_size"][0]}},
        kwargs={"days": days, "detection_bands": det, "tmask_bands": tmb, "params": params,
                "backend": backend, "device": device, "band_names": band_names},
    )
    return _unpack(packed, layout, pixel_dims(da), band_names, params, da)


#: Band names taken for pyccd's Tmask bands (green, SWIR1) when ``tmask_bands`` is not given.
TMASK_GREEN = ("green", "b03")
TMASK_SWIR1 = ("swir1", "swir16", "b11")


def _tmask_bands(band_names: list[str], tmask_bands: Sequence[str] | None,
                 det: list[int]) -> list[int]:
    if tmask_bands is not None:
        unknown = [b for b in tmask_bands if b not in band_names]
        if unknown or not tmask_bands:
            raise ConfigError(f"tmask_bands {list(tmask_bands)} must be among the bands "
                              f"{band_names}")
        return [band_names.index(b) for b in tmask_bands]
    lower = [b.lower() for b in band_names]
    green = [i for i, b in enumerate(lower) if b in TMASK_GREEN]
    swir = [i for i, b in enumerate(lower) if b in TMASK_SWIR1]
    return [green[0], swir[0]] if green and swir else det


def _qa_classes(cube: xr.Dataset | xr.DataArray,
                qa: str | xr.DataArray | None) -> xr.DataArray | None:
    """The QA classes to use: ``qa`` itself, the Dataset variable it names, or the cube's
    ``qa_class`` variable (what `eocube.cube.qa.mask_landsat` / ``mask_s2`` add)."""
    if qa is None:
        if isinstance(cube, xr.Dataset) and QA_CLASS_VAR in cube.data_vars:
            qa = QA_CLASS_VAR
        else:
            return None
    if isinstance(qa, str):
        if not isinstance(cube, xr.Dataset) or qa not in cube.data_vars:
            raise ConfigError(f"ccdc: qa={qa!r} is not a variable of the cube; pass the "
                              "classes as a DataArray or build them with "
                              "eocube.cube.qa.mask_landsat / mask_s2")
        qa = cube[qa]
    if not isinstance(qa, xr.DataArray) or not np.issubdtype(qa.dtype, np.integer):
        raise ConfigError("ccdc: qa must be integer QA classes (eocube.cube.qa: fill, clear, "
                          f"water, snow, cloud); got {getattr(qa, 'dtype', type(qa))}")
    if "time" not in qa.dims:
        raise ConfigError(f"ccdc: qa needs a 'time' dimension; got dims {qa.dims}")
    return qa.rename(qa.name or QA_CLASS_VAR)


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
