"""Roof greening on a hand-built grid where the answer is known (issue #15, point 7): every
criterion is a benefit that grows eastwards, so the eastern roofs are the most suitable.
Reversed classes or criteria treated as costs fail here."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from odc.geo.geobox import GeoBox
from odc.geo.xr import wrap_xr

from eocube.estimates.greening import DEFAULT_PAIRWISE, greening_suitability

CRS = "EPSG:32650"
GB = GeoBox.from_bbox((0, 0, 1800, 300), crs=CRS, resolution=30)  # 60 × 10 pixels


def _criteria(directions: dict[str, int] | None = None) -> dict:
    """Each criterion a smooth function of x: +1 grows eastwards, -1 westwards."""
    x = np.broadcast_to(GB.coordinates["x"].values[None, :], GB.shape.yx)
    d = {"lst": 1, "population_density": 1, "building_density": 1, "road_density": 1}
    d.update(directions or {})
    shapes = {"lst": lambda v: 300 + v / 100, "population_density": lambda v: np.sqrt(v),
              "building_density": lambda v: v / 1800, "road_density": lambda v: np.log1p(v)}
    return {k: wrap_xr(shapes[k](x if d[k] > 0 else 1800 - x).astype("float64"), GB)
            for k in d}


def _roofs() -> gpd.GeoDataFrame:
    xs = 15 + 60 * np.arange(30)
    return gpd.GeoDataFrame({"building_id": np.arange(30), "height": 12.0,
                             "roof_material": "concrete"},
                            geometry=[shapely.box(x, 130, x + 30, 160) for x in xs], crs=CRS)


def test_suitability_rises_with_every_benefit_criterion():
    g = greening_suitability(_roofs(), criteria=_criteria())
    r = g.roofs.sort_values("building_id")
    assert r["candidate"].all()
    score = r["score"].to_numpy()
    assert np.all(np.diff(score) >= 0) and score[-1] > score[0] + 2  # 1 … 5 levels
    order = {"low": 0, "medium": 1, "high": 2}
    cls = r["suitability"].map(order).to_numpy()
    assert np.all(np.diff(cls) >= 0), r["suitability"].tolist()
    assert r["suitability"].iloc[0] == "low" and r["suitability"].iloc[-1] == "high"
    assert set(r["suitability"]) == {"low", "medium", "high"}
    # the high class holds the highest scores
    hi = r.loc[r["suitability"] == "high", "score"]
    lo = r.loc[r["suitability"] == "low", "score"]
    assert hi.min() > lo.max()


def test_the_heaviest_criterion_decides_when_the_criteria_disagree():
    # LST (AHP weight ≈ 0.47) grows eastwards, the three others (≈ 0.53 together, but none
    # above 0.28) westwards; the overlay is the weighted sum of the classes, so a roof's score
    # is the hand sum below
    w = {"lst": 0.4673, "population_density": 0.2772, "building_density": 0.1601,
         "road_density": 0.0954}
    g = greening_suitability(_roofs(), criteria=_criteria(
        {"population_density": -1, "building_density": -1, "road_density": -1}))
    np.testing.assert_allclose(g.ahp.weights[list(w)], list(w.values()), atol=5e-4)
    r = g.roofs.sort_values("building_id")
    east, west = r.iloc[-1], r.iloc[0]
    # east: LST class 5, the others class 1; west: the reverse
    assert east["score"] == pytest.approx(5 * w["lst"] + (1 - w["lst"]), abs=0.01)
    assert west["score"] == pytest.approx(w["lst"] + 5 * (1 - w["lst"]), abs=0.01)
    assert west["suitability"] == "high" and east["suitability"] == "low"


def test_default_pairwise_puts_heat_first():
    g = greening_suitability(_roofs(), criteria=_criteria())
    w = g.ahp.weights
    assert list(w.sort_values(ascending=False).index) == list(DEFAULT_PAIRWISE.index)
    assert g.ahp.cr < 0.1
    assert isinstance(g.districts, pd.DataFrame) and g.districts["candidates"].sum() == 30
