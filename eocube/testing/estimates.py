"""Inputs of the estimates built from the synthetic city (for tests, benchmarks, notebooks).

No files and no network: the world and its ``Scene`` are simulated in memory and the rasters
wrapped on their GeoBoxes, lazily where a stage of eocube makes them lazy.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

    from eocube.synth import CitySpec, World
    from eocube.synth.sensors import Scene

__all__ = ["TRUTH_COLUMNS", "CityInputs", "city_inputs", "test_spec"]

#: Building columns that are the synthetic truth of the population model; DEFF must not see
#: them (``occupancy`` is the hidden TAZ demand behind ``occupants``; the others are the
#: dwellings and households of ``eocube.synth.households``).
TRUTH_COLUMNS = ("function", "occupants", "residential_share", "dormitory", "dwellings",
                 "second_homes", "households", "fill_months", "occupancy", "land_use")


def test_spec() -> CitySpec:
    """A 3.84 km city with 169 communities and ~2,200 buildings: enough for a regression,
    built in well under a second."""
    from eocube.synth import resolve_spec

    return resolve_spec("tiny", size_m=3840, block_m=150)


@dataclasses.dataclass(frozen=True)
class CityInputs:
    """Everything the estimates take, from one synthetic city."""

    world: World
    scene: Scene
    buildings: gpd.GeoDataFrame  # without TRUTH_COLUMNS, plus "occupants_truth"
    rasters: dict[str, xr.DataArray]
    builtup: xr.DataArray
    districts: gpd.GeoDataFrame


def city_inputs(spec: str | CitySpec | None = None, /, *, seed: int = 0,
                kde_bandwidth: float = 300.0, district_m: float = 1200.0) -> CityInputs:
    """Build the DEFF / greening / SDG inputs of a synthetic city.

    Rasters (all at 100 m on ``scene.geobox_100m``): ``ntl`` — the mean of the last year's
    twelve monthly NTL composites, reprojected (bilinear) from the 15″ grid; ``poi_kde`` —
    POI kernel density (quartic, ``kde_bandwidth``) in POIs per cell; ``mobile_weekday``,
    ``mobile_weekend`` — night-time mobile signal.
    """
    from odc.geo.xr import wrap_xr, xr_reproject

    from eocube.estimates.population import coarse_districts
    from eocube.synth import make_world
    from eocube.synth.sensors import Scene
    from eocube.zonal import kernel_density

    w = make_world(spec if spec is not None else test_spec(), seed=seed)
    scene = Scene(w)
    gb = scene.geobox_100m
    end = pd.Timestamp(w.spec.end)
    months = pd.date_range(end - pd.DateOffset(years=1) + pd.Timedelta(days=1), end, freq="ME")
    first = pd.Timestamp(w.spec.start)
    ntl = np.mean([scene.ntl_month((m.year - first.year) * 12 + m.month - first.month, m)
                   for m in months], axis=0)
    ntl = wrap_xr(ntl.astype("float64"), scene.ntl_geobox)
    ntl100 = xr_reproject(ntl, gb, resampling="bilinear")
    kde = kernel_density(w.pois, gb, bandwidth=kde_bandwidth) * 1e4
    rasters = {
        "ntl": ntl100,
        "poi_kde": kde,
        "mobile_weekday": wrap_xr(scene.mobile_signal("weekday").astype("float64"), gb),
        "mobile_weekend": wrap_xr(scene.mobile_signal("weekend").astype("float64"), gb),
    }
    builtup = wrap_xr(scene.builtup(w.spec.end.year).astype("float32"), scene.geobox)
    b = w.buildings.drop(columns=list(TRUTH_COLUMNS)).copy()
    b["occupants_truth"] = w.buildings["occupants"].to_numpy()
    districts = coarse_districts(w.census, cell_m=district_m)
    return CityInputs(world=w, scene=scene, buildings=b, rasters=rasters, builtup=builtup,
                      districts=districts)
