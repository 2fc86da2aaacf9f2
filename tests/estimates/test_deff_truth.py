"""DEFF on a hand-built city whose answer is known (issue #15, point 7): occupants are a
TAZ occupancy rate times the residential floor area, two TAZ features follow the TAZ
population and one is pure noise. The tests fail when the TOPSIS criteria are treated as
costs, when DQW falls back to equal weights, or when building populations are permuted within
their community (community totals unchanged)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from eocube.estimates.metrics import r2, spearman
from eocube.estimates.population import DeffVariant, fit_variant, prepare_inputs

CRS = "EPSG:32650"
NX, NY = 4, 4  # communities on a 4 × 4 grid of 200 m squares, two TAZ each, 4 buildings a TAZ
FEATURES = ("ntl", "mobile", "noise")


def hand_city(seed: int = 0) -> dict:
    """Communities, TAZ, buildings with their true occupants, census and TAZ features."""
    rng = np.random.default_rng(seed)
    comms, tazs, blds = [], [], []
    for c in range(NX * NY):
        x0, y0 = (c % NX) * 200.0, (c // NX) * 200.0
        comms.append({"community_id": c, "geometry": shapely.box(x0, y0, x0 + 200, y0 + 200)})
        for k in range(2):
            t = 2 * c + k
            tx = x0 + 100 * k
            # occupancy (people per m² of residential floor) differs by TAZ, 0.01 … 0.05
            occ = float(rng.uniform(0.01, 0.05))
            tazs.append({"taz_id": t, "community_id": c, "land_use": "residential",
                         "occupancy": occ, "geometry": shapely.box(tx, y0, tx + 100, y0 + 200)})
            for j in range(4):
                side = float(rng.uniform(8, 30))  # 64 … 900 m² footprints
                floors = int(rng.integers(1, 12))
                bx, by = tx + 5 + 45 * (j % 2), y0 + 5 + 95 * (j // 2)
                blds.append({"building_id": len(blds), "floors": floors, "taz_id": t,
                             "community_id": c,
                             "occupants_truth": occ * floors * side * side,
                             "geometry": shapely.box(bx, by, bx + side, by + side)})
    taz = gpd.GeoDataFrame(tazs, crs=CRS)
    b = gpd.GeoDataFrame(blds, crs=CRS)
    taz_pop = b.groupby("taz_id")["occupants_truth"].sum().reindex(taz["taz_id"]).to_numpy()
    comm = gpd.GeoDataFrame(comms, crs=CRS)
    census = pd.DataFrame({"community_id": comm["community_id"],
                           "pop_end": b.groupby("community_id")["occupants_truth"].sum()
                           .reindex(comm["community_id"]).to_numpy()})
    scale = taz_pop.mean()
    feats = pd.DataFrame({
        "taz_id": taz["taz_id"],
        "ntl": taz_pop * rng.lognormal(0, 0.05, len(taz)),
        "mobile": taz_pop * rng.lognormal(0, 0.15, len(taz)),
        "noise": rng.uniform(0, 2 * scale, len(taz)),
    })
    for f in FEATURES:  # the same within-zone variance: informativeness does not decide
        feats[f"{f}_var"] = 1.0
    test = np.zeros(len(comm), bool)
    test[[1, 6, 11, 12]] = True
    return {"buildings": b, "taz": taz.drop(columns=["occupancy"]), "communities": comm,
            "census": census, "features": feats, "test": test}


@pytest.fixture(scope="module")
def inputs():
    h = hand_city()
    pois = gpd.GeoDataFrame({"type": []}, geometry=[], crs=CRS)
    p = prepare_inputs(h["buildings"].drop(columns=["occupants_truth"]), pois=pois,
                       taz=h["taz"], communities=h["communities"], census=h["census"],
                       features=h["features"], test=h["test"])
    return p, h


def test_the_external_score_rises_with_the_benefit_features(inputs):
    # every TAZ feature is a benefit criterion: more light, more phones → more people.
    # Treated as costs, the most populous TAZ would score lowest.
    p, h = inputs
    for variant in (DeffVariant(), DeffVariant(weights="equal")):
        f = fit_variant(p, variant)
        e_out = f.topsis["closeness"].to_numpy()
        assert spearman(h["features"]["ntl"].to_numpy(), e_out) > 0.7
    f = fit_variant(p, DeffVariant())
    e_out = f.topsis["closeness"].to_numpy()
    top, low = int(np.argmax(h["features"]["ntl"])), int(np.argmin(h["features"]["ntl"]))
    assert e_out[top] > 0.8 > 0.2 > e_out[low]
    assert f.b > 0  # a positive external coefficient, as the score is a benefit


def test_dqw_weights_the_noise_feature_least(inputs):
    p, _ = inputs
    f = fit_variant(p, DeffVariant())
    w = dict(zip(p.names, f.w, strict=True))
    r = dict(zip(p.names, p.r, strict=True))
    assert r["ntl"] > 0.9 and r["mobile"] > 0.8 and abs(r["noise"]) < 0.5
    assert w["noise"] < 0.5 * min(w["ntl"], w["mobile"])
    eq = fit_variant(p, DeffVariant(weights="equal"))
    np.testing.assert_allclose(eq.w, 1 / 3)


def test_dqw_beats_equal_weights_when_one_feature_is_noise(inputs):
    p, _ = inputs
    te = p.comm["test"].to_numpy()
    y = p.comm["pop"].to_numpy()

    def err(v: DeffVariant) -> float:
        pred = fit_variant(p, v).comm["predicted"].to_numpy()
        return float(np.mean(np.abs(pred[te] - y[te]) / y[te]))

    dqw, equal = err(DeffVariant()), err(DeffVariant(weights="equal"))
    assert dqw < equal, (dqw, equal)


def test_building_population_against_truth(inputs):
    p, h = inputs
    f = fit_variant(p, DeffVariant())
    truth = h["buildings"].set_index("building_id")["occupants_truth"].reindex(
        p.buildings["building_id"]).to_numpy()
    pop = f.pop_b
    # the same community totals, people moved between a community's buildings
    cid = p.buildings["community_id"].to_numpy()
    permuted = pd.Series(pop).groupby(cid).transform(lambda s: s.to_numpy()[::-1]).to_numpy()
    np.testing.assert_allclose(pd.Series(permuted).groupby(cid).sum(),
                               pd.Series(pop).groupby(cid).sum())
    got, shuffled = r2(truth, pop), r2(truth, permuted)
    assert got > 0.8, got
    assert got > shuffled + 0.3, (got, shuffled)
    # exactly: within a TAZ, DEFF places people in proportion to capacity E_in
    ratio = pd.Series(pop / f.e_in).groupby(p.buildings["taz_id"].to_numpy())
    assert (ratio.max() - ratio.min()).max() < 1e-9 * ratio.max().max()
