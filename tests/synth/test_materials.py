"""World v2 material stock (issue #15.4): intensity by year, district and building; the
estimators' default table is not the generator's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eocube.estimates import bottom_up_stock
from eocube.estimates.stock import DEFAULT_INTENSITY, MATERIALS
from eocube.synth import make_world, resolve_spec
from eocube.synth.materials import MATERIAL_INTENSITY, intensity_of


@pytest.fixture(scope="module")
def city():
    return make_world(resolve_spec("tiny", size_m=3840, block_m=150), seed=0)


def test_old_brick_wood_differs_from_new():
    s = np.array(["brick_wood", "brick_wood", "reinforced_concrete", "reinforced_concrete"])
    i = intensity_of(s, np.array([1950, 2020, 1950, 2020]))
    assert i["brick"][0] > 1.3 * i["brick"][1] and i["wood"][0] > 1.3 * i["wood"][1]
    assert i["concrete"][3] > 1.1 * i["concrete"][2] and i["steel"][3] > 1.2 * i["steel"][2]


def test_stock_per_volume_follows_year_with_building_noise(city):
    b = city.buildings
    bw = b[b["structure"] == "brick_wood"]
    per_m3 = bw["stock_brick_t"] / bw["volume"] * 1000
    old, new = per_m3[bw["year_built"] < 1995], per_m3[bw["year_built"] >= 2010]
    assert len(old) > 20 and len(new) > 20 and old.median() > 1.15 * new.median()
    # around the expected intensity: per-building log-normal ~25 % plus district and material
    # terms (0.10 each): log sd ≈ 0.29
    expected = intensity_of(b["structure"].to_numpy(), b["year_built"].to_numpy())
    total = sum(expected[m] for m in MATERIALS) * b["volume"].to_numpy() / 1000
    resid = np.log(b["stock_total_t"].to_numpy() / total)
    assert 0.2 < resid.std() < 0.4


def test_default_intensity_is_not_the_generator_table(city):
    gen = pd.DataFrame(MATERIAL_INTENSITY).T.loc[DEFAULT_INTENSITY.index, list(MATERIALS)]
    assert not np.allclose(gen.to_numpy(), DEFAULT_INTENSITY.to_numpy(), rtol=0.05)
    differs = ~np.isclose(gen.to_numpy(), DEFAULT_INTENSITY.to_numpy(), rtol=0.05)
    assert differs.mean() > 0.75
    b = city.buildings
    est = bottom_up_stock(b.drop(columns=[c for c in b.columns if c.startswith("stock_")]))
    log_ratio = np.log(est["stock_total_t"].to_numpy() / b["stock_total_t"].to_numpy())
    assert np.median(np.abs(log_ratio)) > 0.1
