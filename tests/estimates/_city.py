"""One cached synthetic city for the estimate tests (inputs and TAZ features built once)."""

from __future__ import annotations

from functools import lru_cache

CITY_SEED = 0


@lru_cache(maxsize=1)
def regression_city():
    """121 communities in 300 m TAZ blocks (~11k buildings): big enough for the DEFF split."""
    from eocube.synth import resolve_spec
    from eocube.testing.estimates import city_inputs
    from eocube.zonal import taz_features

    ci = city_inputs(resolve_spec("tiny", size_m=6400, block_m=300), seed=CITY_SEED)
    feats = taz_features(ci.rasters, ci.world.taz).compute()
    return ci, feats
