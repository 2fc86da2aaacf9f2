"""Land surface temperature of the synthetic city, for the roof-greening criteria.

A daytime summer LST at 10 m from the class fractions of a ``Scene`` (roofs and roads hot,
vegetation and water cool), a smooth urban-heat-island dome centred on the city, and seeded
spatially correlated noise, blurred to the ~60–100 m footprint of a thermal sensor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.ndimage as ndi

from eocube.synth.sensors import (
    GROUND,
    NEW_SITE,
    PARK,
    ROAD,
    ROOF_CONCRETE,
    ROOF_METAL,
    ROOF_TILE,
    WATER,
)

if TYPE_CHECKING:
    from eocube.synth.sensors import Scene

__all__ = ["CLASS_DELTA_C", "land_surface_temperature"]

#: Temperature offset (°C) of each land-cover class above the base temperature.
CLASS_DELTA_C = {GROUND: 3.0, ROAD: 7.0, WATER: -6.0, PARK: -4.0, ROOF_CONCRETE: 8.0,
                 ROOF_METAL: 10.0, ROOF_TILE: 6.5, NEW_SITE: 4.0}


def land_surface_temperature(scene: Scene, /, *, base_c: float = 30.0, uhi_c: float = 3.0,
                             noise_c: float = 0.6, blur_m: float = 40.0) -> np.ndarray:
    """Daytime LST (°C, float32) on ``scene.geobox`` (10 m).

    Parameters
    ----------
    scene
        The simulated scene; its class fractions and the city seed drive the result.
    base_c
        Temperature of a neutral surface outside the heat island.
    uhi_c
        Amplitude of the urban-heat-island dome (°C at the centre, Gaussian fall-off).
    noise_c
        Standard deviation of the correlated noise.
    blur_m
        Gaussian blur (σ, metres) standing for the sensor's footprint.
    """
    fr = scene.fractions
    t = np.full(fr.shape[1:], base_c, dtype=np.float64)
    for k, d in CLASS_DELTA_C.items():
        t += fr[k] * d
    ny, nx = t.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((yy - ny / 2) ** 2 + (xx - nx / 2) ** 2) / (0.35 * max(ny, nx)) ** 2
    t += uhi_c * np.exp(-r2)
    rng = np.random.default_rng([scene.world.seed, 7, 0])
    noise = ndi.gaussian_filter(rng.normal(size=t.shape), 3.0)
    noise *= noise_c / max(noise.std(), 1e-12)
    t += noise
    t = ndi.gaussian_filter(t, blur_m / 10.0, mode="nearest")
    return t.astype("float32")
