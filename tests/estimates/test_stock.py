from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eocube.errors import EstimateError
from eocube.estimates.stock import (
    DEFAULT_INTENSITY,
    bottom_up_stock,
    ntl_stock_regression,
    stock_grid,
)


def _inputs(world):
    return world.buildings.drop(columns=[c for c in world.buildings if c.startswith("stock_")])


def test_bottom_up_equals_truth(tiny_world):
    s = bottom_up_stock(_inputs(tiny_world))
    for col in [c for c in tiny_world.buildings if c.startswith("stock_")]:
        # truth volume uses the float64 height; the published column is float32
        np.testing.assert_allclose(s[col], tiny_world.buildings[col], rtol=1e-6)
    assert (s["height_source"] == "height").all()


def test_bottom_up_floors_fallback(tiny_world):
    b = _inputs(tiny_world).drop(columns=["height"])
    s = bottom_up_stock(b)
    assert (s["height_source"] == "floors").all()
    # floors × storey height is the truth height without its parapet (0.5–2.5 m)
    ratio = s["stock_total_t"] / tiny_world.buildings["stock_total_t"]
    assert ratio.between(0.7, 1.0).all()


def test_missing_structure_type_is_named(tiny_world):
    table = DEFAULT_INTENSITY.drop(index="steel")
    with pytest.raises(EstimateError, match=r"no row for structure type\(s\) \['steel'\]"):
        bottom_up_stock(_inputs(tiny_world), intensity=table)


def test_stock_grid_keeps_total(tiny_world):
    s = bottom_up_stock(_inputs(tiny_world))
    g = stock_grid(s, tiny_world.geobox(100.0))
    assert float(g["stock_total_t"].sum()) == pytest.approx(s["stock_total_t"].sum(), rel=1e-9)


def test_ntl_loglog_regression_recovers_power_law():
    rng = np.random.default_rng(0)
    ntl = rng.lognormal(3, 1, 200)
    cells = pd.DataFrame({"ntl_sum": ntl, "stock_t": 5.0 * ntl**1.3})
    out = ntl_stock_regression(cells, train=np.arange(200) < 150)
    a, b = out.attrs["coef"]
    assert b == pytest.approx(1.3) and np.exp(a) == pytest.approx(5.0)
    with pytest.raises(EstimateError, match="singular"):
        ntl_stock_regression(cells.assign(ntl_sum=2.0), train=np.ones(200, bool))
