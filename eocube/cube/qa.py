"""Quality classes from the QA bands real products ship: Landsat Collection 2 QA_PIXEL and
QA_RADSAT, Sentinel-2 SCL. They turn a loaded cube into what change detection needs: values
NaN where nothing usable was seen, and one class per observation (fill, clear, water, snow,
cloud) for pyccd's choice of procedure. All lazy: they only build on the cube's graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from eocube.catalog.profiles import SCL_CLOUD_SHADOW
from eocube.errors import ConfigError

#: Observation classes (the ``qa_class`` variable), pyccd's hierarchy
#: fill > cloud > shadow > snow > water > clear, with cloud and shadow merged.
QA_FILL, QA_CLEAR, QA_WATER, QA_SNOW, QA_CLOUD = 0, 1, 2, 3, 4
QA_CLASS_NAMES = ("fill", "clear", "water", "snow", "cloud")
#: Name of the class variable the mask helpers add and `eocube.change.ccdc` looks for.
QA_CLASS_VAR = "qa_class"

#: Landsat Collection 2 QA_PIXEL bits (Landsat 4-9, Level-1 and Level-2).
L2_FILL, L2_DILATED_CLOUD, L2_CIRRUS, L2_CLOUD, L2_SHADOW, L2_SNOW, L2_CLEAR, L2_WATER = range(8)
#: QA_RADSAT: bits 0-6 and 8 flag a saturated band (1-7, 9), bit 9 a dropped pixel.
RADSAT_MASK = 0b11_0111_1111

#: Sentinel-2 SCL classes by meaning (0 no data, 6 water, 11 snow; the rest as in
#: `eocube.cube.masks`: 1 saturated/defective and the cloud and shadow classes are cloud).
SCL_NO_DATA, SCL_SATURATED, SCL_WATER, SCL_SNOW = 0, 1, 6, 11


def _bit(qa: xr.DataArray, bit: int) -> xr.DataArray:
    return (qa.astype(np.int64) // (1 << bit)) % 2 == 1


def _find(cube: xr.Dataset, names: Sequence[str], what: str, helper: str) -> str:
    for name in cube.data_vars:
        if str(name).lower() in {n.lower() for n in names}:
            return str(name)
    raise ConfigError(f"{helper}: the cube has no {what} band (looked for {list(names)}); it has "
                      f"{sorted(map(str, cube.data_vars))}; load it with the other bands or "
                      f"pass its name")


def landsat_qa_classes(qa_pixel: xr.DataArray, /) -> xr.DataArray:
    """One class per observation from a Landsat Collection 2 QA_PIXEL band.

    Fill (bit 0) wins, then cloud (dilated cloud, cirrus or cloud: bits 1-3), then cloud
    shadow (bit 4, also `QA_CLOUD`), snow (bit 5), water (bit 7), clear (bit 6); a value with
    none of these bits is not clear and counts as cloud.

    Examples
    --------
    >>> import xarray as xr
    >>> from eocube.cube.qa import landsat_qa_classes
    >>> landsat_qa_classes(xr.DataArray([1, 21824, 21952, 22280, 23888, 30048])).values.tolist()
    [0, 1, 2, 4, 4, 3]
    """
    if not np.issubdtype(qa_pixel.dtype, np.integer):
        raise ConfigError(f"QA_PIXEL must be an integer band (bit flags); got dtype "
                          f"{qa_pixel.dtype}. Load it without scaling or NaN fill")
    out = xr.full_like(qa_pixel, QA_CLOUD, dtype=np.int8)
    out = out.where(~_bit(qa_pixel, L2_CLEAR), QA_CLEAR)
    out = out.where(~_bit(qa_pixel, L2_WATER), QA_WATER)
    out = out.where(~_bit(qa_pixel, L2_SNOW), QA_SNOW)
    cloudy = (_bit(qa_pixel, L2_DILATED_CLOUD) | _bit(qa_pixel, L2_CIRRUS)
              | _bit(qa_pixel, L2_CLOUD) | _bit(qa_pixel, L2_SHADOW))
    out = out.where(~cloudy, QA_CLOUD)
    out = out.where(~_bit(qa_pixel, L2_FILL), QA_FILL)
    return out.astype(np.int8).rename(QA_CLASS_VAR).assign_attrs(
        flag_values=list(range(len(QA_CLASS_NAMES))), flag_meanings=" ".join(QA_CLASS_NAMES))


def landsat_saturated(qa_radsat: xr.DataArray, /) -> xr.DataArray:
    """True where Landsat Collection 2 QA_RADSAT flags a saturated band or a dropped pixel."""
    if not np.issubdtype(qa_radsat.dtype, np.integer):
        raise ConfigError(f"QA_RADSAT must be an integer band (bit flags); got dtype "
                          f"{qa_radsat.dtype}")
    return ((qa_radsat.astype(np.int64) & RADSAT_MASK) != 0).rename("saturated")


def scl_qa_classes(scl: xr.DataArray, /) -> xr.DataArray:
    """One class per observation from a Sentinel-2 SCL band: no data is fill, water water,
    snow snow, saturated/defective and `SCL_CLOUD_SHADOW` cloud, every other class clear."""
    out = xr.full_like(scl, QA_CLEAR, dtype=np.int8)
    out = out.where(scl != SCL_WATER, QA_WATER)
    out = out.where(scl != SCL_SNOW, QA_SNOW)
    out = out.where(~scl.isin([SCL_SATURATED, *SCL_CLOUD_SHADOW]), QA_CLOUD)
    out = out.where(scl != SCL_NO_DATA, QA_FILL)
    return out.astype(np.int8).rename(QA_CLASS_VAR).assign_attrs(
        flag_values=list(range(len(QA_CLASS_NAMES))), flag_meanings=" ".join(QA_CLASS_NAMES))


def _apply(cube: xr.Dataset, classes: xr.DataArray, bad: xr.DataArray | None,
           drop: list[str]) -> xr.Dataset:
    """Bands NaN unless the class is clear, water or snow (and not ``bad``), plus the class."""
    usable = classes.isin([QA_CLEAR, QA_WATER, QA_SNOW])
    if bad is not None:
        usable = usable & ~bad
    out = {}
    for name, v in cube.data_vars.items():
        if str(name) in drop:
            continue
        out[name] = v.where(usable) if "time" in v.dims else v
    out[QA_CLASS_VAR] = classes
    return xr.Dataset(out, coords=cube.coords, attrs=cube.attrs)


def mask_landsat(cube: xr.Dataset, /, *, qa_band: str = "qa_pixel",
                 radsat_band: str | None = "qa_radsat") -> xr.Dataset:
    """A Landsat Collection 2 cube ready for `eocube.change.ccdc`.

    Every band NaN where QA_PIXEL says fill, cloud, cirrus, dilated cloud or shadow, or where
    QA_RADSAT flags saturation (when the cube has that band; ``radsat_band=None`` skips it);
    snow and water observations keep their values, and a ``qa_class`` variable
    (`landsat_qa_classes`) says which is which. The QA bands are dropped.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from eocube.cube.qa import mask_landsat
    >>> cube = xr.Dataset({"red": ("time", [0.1, 0.5, 0.1]),
    ...                    "qa_pixel": ("time", np.array([21824, 22280, 21824], "uint16")),
    ...                    "qa_radsat": ("time", np.array([0, 0, 4], "uint16"))})
    >>> mask_landsat(cube)["red"].values.tolist()
    [0.1, nan, nan]
    """
    qa_name = _find(cube, [qa_band], "QA_PIXEL", "mask_landsat")
    drop = [qa_name]
    bad = None
    if radsat_band is not None:
        names = {str(n).lower() for n in cube.data_vars}
        if radsat_band.lower() in names:
            rad_name = _find(cube, [radsat_band], "QA_RADSAT", "mask_landsat")
            bad = landsat_saturated(cube[rad_name])
            drop.append(rad_name)
    return _apply(cube, landsat_qa_classes(cube[qa_name]), bad, drop)


def mask_s2(cube: xr.Dataset, /, *, band: str = "SCL") -> xr.Dataset:
    """A Sentinel-2 L2A cube ready for `eocube.change.ccdc`: bands NaN where SCL says no data,
    saturated, cloud, cirrus or shadow (the classes `eocube.cube.masks.mask_clouds` removes),
    snow and water kept, a ``qa_class`` variable (`scl_qa_classes`) added, SCL dropped."""
    name = _find(cube, [band], "SCL", "mask_s2")
    return _apply(cube, scl_qa_classes(cube[name]), None, [name])
