from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from odc.geo.xr import wrap_xr

from eocube.errors import EstimateError
from eocube.estimates.greening import (
    ahp_weights,
    candidate_roofs,
    greening_criteria,
    greening_suitability,
)

from ._city import regression_city


def test_ahp_saaty_worked_example():
    # Saaty's classic 3 × 3 example: weights 0.637, 0.258, 0.105 and λ_max 3.039;
    # CI = (λ_max − 3)/2 = 0.0193, CR = CI / RI(3) = 0.0193 / 0.52 = 0.037
    r = ahp_weights(np.array([[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]]))
    np.testing.assert_allclose(r.weights, [0.637, 0.258, 0.105], atol=5e-4)
    assert r.lambda_max == pytest.approx(3.0385, abs=1e-4)
    assert r.ci == pytest.approx(0.01926, abs=1e-4)
    assert r.cr == pytest.approx(0.0370, abs=2e-4)


def test_ahp_consistent_matrix_is_exact():
    w = np.array([0.4, 0.3, 0.2, 0.1])
    r = ahp_weights(pd.DataFrame(w[:, None] / w[None, :], index=list("abcd")))
    np.testing.assert_allclose(r.weights, w)
    assert r.lambda_max == pytest.approx(4.0) and r.cr == pytest.approx(0.0, abs=1e-12)
    assert list(r.weights.index) == list("abcd")


def test_ahp_inconsistent_matrix_is_refused_with_cr():
    a = np.array([[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]])
    with pytest.raises(EstimateError, match=r"inconsistent: CR = \d+\.\d{3} ≥ 0.1"):
        ahp_weights(a)
    with pytest.raises(EstimateError, match="not reciprocal"):
        ahp_weights(np.array([[1, 2], [2, 1]]))


def test_candidate_roofs_rules():
    crs = "EPSG:32650"
    b = gpd.GeoDataFrame(
        {"height": [20.0, 60.0, 20.0, 20.0, np.nan],
         "roof_material": ["concrete", "concrete", "metal", "concrete", None],
         "floors": [6, 20, 6, 6, 4]},
        geometry=[shapely.box(0, 0, 20, 10), shapely.box(0, 0, 20, 10),
                  shapely.box(0, 0, 20, 10),
                  shapely.Polygon([(0, 0), (40, 0), (40, 2), (2, 2), (2, 40), (0, 40)]),
                  shapely.box(0, 0, 10, 10)], crs=crs)
    c = candidate_roofs(b)
    assert c["candidate"].tolist() == [True, False, False, False, True]
    assert c["reason"].tolist() == ["", "taller than 45 m", "roof material", "irregular shape",
                                    ""]
    assert c["height_used_m"].iloc[4] == 12.0


def test_greening_on_synthetic_city():
    from eocube.estimates.population import deff
    from eocube.synth.thermal import land_surface_temperature

    ci, feats = regression_city()
    w = ci.world
    r = deff(ci.buildings, pois=w.pois, taz=w.taz, communities=w.communities, census=w.census,
             features=feats)
    lst = wrap_xr(land_surface_temperature(ci.scene).astype("float64"), ci.scene.geobox)
    crit = greening_criteria(r.buildings, roads=w.roads, lst=lst, grid=w.geobox(30.0))
    assert crit["lst"].odc.geobox.resolution.x == 30.0
    g = greening_suitability(r.buildings, criteria=crit, districts=ci.districts)
    cand = g.roofs[g.roofs["candidate"]]
    assert set(cand["suitability"]) == {"low", "medium", "high"}
    assert (g.roofs.loc[~g.roofs["candidate"], "suitability"] == "").all()
    assert cand["score"].between(1, 5).all()
    d = g.districts
    assert d["candidates"].sum() == len(cand)
    np.testing.assert_allclose(d[["share_high", "share_medium", "share_low"]].sum(axis=1), 1)
    # the LST criterion follows the class fractions: roofs hotter than parks and water
    assert float(crit["lst"].max()) - float(crit["lst"].min()) > 5
