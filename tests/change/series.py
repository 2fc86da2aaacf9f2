"""Hand-made spectral series for the change tests: seeded, small, with known answers."""

from __future__ import annotations

import numpy as np
import xarray as xr

BASE = np.array([0.05, 0.08, 0.25, 0.18])  # green, red, nir, swir1: vegetated soil
AMP = np.array([0.01, 0.02, 0.06, 0.03])  # seasonal amplitude
BUILT = np.array([0.06, 0.07, -0.10, 0.08])  # step to built-up
NOISE = 0.006


def irregular_dates(years: int = 6, revisit: int = 10, seed: int = 0) -> np.ndarray:
    """Irregular acquisition dates: a nominal revisit with ±2 days of jitter."""
    rng = np.random.default_rng(seed)
    d = np.arange(0, years * 365, revisit) + rng.integers(-2, 3, size=len(range(0, years * 365,
                                                                                 revisit)))
    d = np.unique(np.clip(d, 0, None))
    return np.datetime64("2017-01-01") + d.astype("timedelta64[D]")


def harmonic_series(dates: np.ndarray, n_pix: int, *, seed: int = 1, noise: float = NOISE,
                    amp: np.ndarray = AMP) -> np.ndarray:
    """(pixel, time, band) seasonal series with Gaussian noise and no change."""
    rng = np.random.default_rng(seed)
    days = dates.astype("datetime64[D]").astype(float)
    season = np.cos(2 * np.pi * (days - 200) / 365.25)
    y = BASE + amp * season[:, None]
    return y[None] + rng.normal(0, noise, (n_pix, dates.size, BASE.size))


def to_cube(values: np.ndarray, dates: np.ndarray, ny: int, nx: int) -> xr.Dataset:
    """(pixel, time, band) values as a Dataset of (time, y, x) band variables."""
    names = ["green", "red", "nir", "swir1"][: values.shape[-1]]
    v = values.reshape(ny, nx, dates.size, -1).transpose(2, 3, 0, 1)
    return xr.Dataset(
        {n: (("time", "y", "x"), v[:, i]) for i, n in enumerate(names)},
        coords={"time": dates, "y": np.arange(ny) * -10.0, "x": np.arange(nx) * 10.0},
    )
