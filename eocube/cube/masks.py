"""Masks and spectral indices: Sentinel-2 clouds and shadows from SCL, Sentinel-1 nodata and
border, NDVI, NDBI, NDWI, backscatter in dB. All lazy: they only build on the cube's graph."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from eocube.catalog.profiles import SCL_CLOUD_SHADOW, SENTINEL1_RTC, SENTINEL2_L2A
from eocube.errors import ConfigError

#: SCL classes removed by ``mask_clouds`` by default: no data, saturated, shadow, clouds, cirrus
SCL_INVALID = (0, 1, *SCL_CLOUD_SHADOW)


def _var(cube: xr.Dataset, band: str, profile=SENTINEL2_L2A) -> xr.DataArray:
    """The variable of ``cube`` holding ``band`` under any of its profile names."""
    keys = profile.band(band).keys if profile.has_band(band) else (band,)
    for k in keys:
        for name in cube.data_vars:
            if str(name).lower() == k.lower():
                return cube[name]
    raise ConfigError(f"the cube has no {band!r} band (looked for {list(keys)}); it has "
                      f"{list(cube.data_vars)}; load it with bands=[..., {band!r}]")


def cloud_mask(cube: xr.Dataset, /, *, band: str = "SCL",
               classes: Sequence[int] = SCL_CLOUD_SHADOW) -> xr.DataArray:
    """True where the SCL class is one of ``classes`` (default: cloud shadow 3, medium and
    high probability cloud 8 and 9, thin cirrus 10)."""
    return _var(cube, band).isin(list(classes)).rename("cloud_mask")


def mask_clouds(cube: xr.Dataset, /, *, band: str = "SCL",
                classes: Sequence[int] = SCL_INVALID, keep_band: bool = False) -> xr.Dataset:
    """The cube with every float variable set to NaN where SCL is in ``classes`` (default also
    no data 0 and saturated 1). The SCL band itself is dropped unless ``keep_band``."""
    scl = _var(cube, band)
    bad = scl.isin(list(classes))
    out = {}
    for name, v in cube.data_vars.items():
        if name == scl.name:
            if keep_band:
                out[name] = v
        elif v.dtype.kind == "f" and "time" in v.dims and "y" in v.dims:
            out[name] = v.where(~bad)
        else:
            out[name] = v
    return xr.Dataset(out, coords=cube.coords, attrs=cube.attrs)


def s1_valid(cube: xr.Dataset, /, *, bands: Sequence[str] = ("vv", "vh")) -> xr.DataArray:
    """True where every S1 band has data: finite and positive (the swath border and nodata
    are NaN or 0 in RTC products)."""
    ok = None
    for b in bands:
        v = _var(cube, b, SENTINEL1_RTC)
        good = np.isfinite(v) & (v > 0)
        ok = good if ok is None else ok & good
    assert ok is not None
    return ok.rename("s1_valid")


def mask_s1(cube: xr.Dataset, /, *, bands: Sequence[str] = ("vv", "vh")) -> xr.Dataset:
    """The cube with the S1 bands NaN wherever ``s1_valid`` is False."""
    ok = s1_valid(cube, bands=bands)
    names = {_var(cube, b, SENTINEL1_RTC).name for b in bands}
    return cube.assign({n: cube[n].where(ok) for n in names})


def _nd(a: xr.DataArray, b: xr.DataArray, name: str) -> xr.DataArray:
    out = (a - b) / (a + b)
    return out.where(np.isfinite(out)).astype("float32").rename(name).assign_attrs(units="1")


def ndvi(cube: xr.Dataset, /) -> xr.DataArray:
    """(nir − red) / (nir + red)."""
    return _nd(_var(cube, "nir"), _var(cube, "red"), "ndvi")


def ndbi(cube: xr.Dataset, /) -> xr.DataArray:
    """Normalised difference built-up index: (swir16 − nir) / (swir16 + nir)."""
    return _nd(_var(cube, "swir16"), _var(cube, "nir"), "ndbi")


def ndwi(cube: xr.Dataset, /) -> xr.DataArray:
    """McFeeters' water index: (green − nir) / (green + nir)."""
    return _nd(_var(cube, "green"), _var(cube, "nir"), "ndwi")


def to_db(x: xr.DataArray, /) -> xr.DataArray:
    """Linear power to decibels (10·log10); non-positive values become NaN."""
    return (10 * np.log10(x.where(x > 0))).assign_attrs(units="dB")
