"""Interop with lcmap-pyccd: its per-pixel inputs as `ccdc_numpy` inputs.

pyccd's ``ccd.detect`` takes ordinal dates, six reflectance bands scaled by 10 000, brightness
temperature in Kelvin × 10 and a QA band (CFMask values, or the bit-packed Landsat ARD QA).
`from_pyccd` turns one such series into what `eocube.change.ccdc_numpy` takes, applying the
masks pyccd applies before its procedures (unsaturated reflectance in (0, 10 000), thermal
within -93.2..70.7 °C, one observation per date), so both run on the same observations.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from eocube.cube.qa import QA_CLEAR, QA_CLOUD, QA_FILL, QA_SNOW, QA_WATER
from eocube.errors import ConfigError

#: pyccd's band order (``ccd.detect`` arguments), detection bands (green … swir2) and Tmask
#: bands (green, swir1).
PYCCD_BANDS = ("blue", "green", "red", "nir", "swir1", "swir2", "thermal")
PYCCD_DETECTION = (1, 2, 3, 4, 5)
PYCCD_TMASK = (1, 4)
#: CFMask values (pyccd's ``QA_BITPACKED=False`` inputs) to `eocube.cube.qa` classes.
CFMASK_CLASSES = {0: QA_CLEAR, 1: QA_WATER, 2: QA_CLOUD, 3: QA_SNOW, 4: QA_CLOUD, 255: QA_FILL}
#: The ordinal of 1970-01-01 (``datetime.date.toordinal``).
EPOCH_ORDINAL = 719163


class PyccdSeries(NamedTuple):
    """One pixel's series as `ccdc_numpy` takes it."""

    values: np.ndarray  # (1, time, 7): reflectance 0-1, thermal in °C; NaN where not usable
    dates: np.ndarray  # (time,) datetime64[D], strictly increasing
    qa: np.ndarray  # (1, time) int8 classes of eocube.cube.qa


def ard_qa_classes(qa: np.ndarray) -> np.ndarray:
    """Classes from the bit-packed Landsat ARD QA pyccd reads by default (its ``qabitval``:
    fill bit 0 > cloud 5 > shadow 3 > snow 4 > water 2 > clear 1; cirrus or terrain
    occlusion alone count as clear)."""
    qa = np.asarray(qa).astype(np.int64)
    bit = lambda b: (qa >> b) & 1 == 1  # noqa: E731
    out = np.full(qa.shape, QA_CLEAR, np.int8)
    out[bit(2)] = QA_WATER
    out[bit(4)] = QA_SNOW
    out[bit(3) | bit(5)] = QA_CLOUD
    out[bit(0)] = QA_FILL
    return out


def from_pyccd(dates: np.ndarray, spectra: np.ndarray, qa: np.ndarray, /, *,
               bitpacked: bool = False) -> PyccdSeries:
    """pyccd's inputs for one pixel as `ccdc_numpy` inputs.

    Parameters
    ----------
    dates
        (time,) ordinal dates (``datetime.date.toordinal``), in any order, duplicates allowed.
    spectra
        (7, time) blue, green, red, nir, swir1, swir2 (× 10 000) and thermal (K × 10).
    qa
        (time,) CFMask values (0 clear, 1 water, 2 shadow, 3 snow, 4 cloud, 255 fill) or,
        with ``bitpacked=True``, the bit-packed ARD QA.

    Returns
    -------
    PyccdSeries
        Values NaN where pyccd's filters drop an observation (saturated or non-positive
        reflectance, implausible temperature); dates sorted with one observation per date
        (the first usable one, as pyccd keeps); QA classes.
    """
    dates = np.asarray(dates).astype(np.int64)
    spectra = np.asarray(spectra, dtype=np.float64)
    qa = np.asarray(qa)
    if spectra.shape != (7, dates.size) or qa.shape != dates.shape:
        raise ConfigError(f"from_pyccd: spectra must be (7, {dates.size}) and qa ({dates.size},)"
                          f"; got {spectra.shape} and {qa.shape}")
    if bitpacked:
        classes = ard_qa_classes(qa)
    else:
        unknown = sorted(set(np.unique(qa).tolist()) - set(CFMASK_CLASSES))
        if unknown:
            raise ConfigError(f"from_pyccd: CFMask values {unknown} are not among "
                              f"{sorted(CFMASK_CLASSES)}; pass bitpacked=True for ARD QA")
        classes = np.vectorize(CFMASK_CLASSES.__getitem__, otypes=[np.int8])(qa)
    celsius = spectra[6] * 10 - 27315  # pyccd's kelvin_to_celsius, °C × 100
    ok = (np.all((spectra[:6] > 0) & (spectra[:6] < 10_000), axis=0)
          & (celsius > -9320) & (celsius < 7070))
    values = np.vstack([spectra[:6] / 10_000, celsius[None] / 100]).T
    values[~ok] = np.nan
    usable = ok & np.isin(classes, (QA_CLEAR, QA_WATER))
    order = np.lexsort((~usable, dates))  # by date, usable observations first within a date
    dates, values, classes = dates[order], values[order], classes[order]
    first = np.r_[True, np.diff(dates) > 0]
    day = (dates[first] - EPOCH_ORDINAL).astype("timedelta64[D]") + np.datetime64("1970-01-01")
    return PyccdSeries(values[first][None], day, classes[first][None])
