"""Building-scale population by Dual-Environment Feature Fusion (DEFF, Liu et al. 2023).

The internal environment of a building is its footprint (function, floors, area → capacity
E_in = C·f·a); the external one is its TAZ, scored by DQW-TOPSIS over TAZ features aggregated
from ~100 m rasters (NTL, POI kernel density, night mobile signal). A community regression
``pop = a·ΣE_in + b·ΣE_out`` fitted on census communities puts people into buildings. In flow
order:

* :mod:`~eocube.estimates.population.typing` — building function from POIs, TAZ, land use;
* :mod:`~eocube.estimates.population.capacity` — habitability and capacity E_in;
* :mod:`~eocube.estimates.population.deff` — the inputs prepared once, DQW-TOPSIS, the fit;
* :mod:`~eocube.estimates.population.baselines` — gridded-product style baselines;
* :mod:`~eocube.estimates.population.compare` — DEFF, DEFF1–4, LR(building), LR(TAZ) and the
  baselines on one split.

The TAZ features come from :func:`eocube.zonal.taz_features` (re-exported here).
"""

from __future__ import annotations

from eocube.estimates.mcda import topsis
from eocube.estimates.population.baselines import (
    areal_weighting,
    coarse_districts,
    dasymetric,
    smoothed_surface,
    surface_to_communities,
)
from eocube.estimates.population.capacity import building_capacity
from eocube.estimates.population.compare import (
    EXTERNAL_FORMS,
    VARIANTS,
    PopulationComparison,
    compare_population,
)
from eocube.estimates.population.deff import (
    DeffFit,
    DeffInputs,
    DeffResult,
    DeffVariant,
    deff,
    deff_result,
    dqw_weights,
    fit_variant,
    prepare_inputs,
)
from eocube.estimates.population.typing import (
    FUNCTIONS,
    LAND_USE_FUNCTION,
    POI_AWARENESS,
    POI_FUNCTION,
    classify_function,
)
from eocube.zonal.features import taz_features

__all__ = [
    "EXTERNAL_FORMS", "FUNCTIONS", "LAND_USE_FUNCTION", "POI_AWARENESS", "POI_FUNCTION",
    "VARIANTS", "DeffFit",
    "DeffInputs", "DeffResult", "DeffVariant", "PopulationComparison", "areal_weighting",
    "building_capacity", "classify_function", "coarse_districts", "compare_population",
    "dasymetric", "deff", "deff_result", "dqw_weights", "fit_variant", "prepare_inputs",
    "smoothed_surface", "surface_to_communities", "taz_features", "topsis",
]
