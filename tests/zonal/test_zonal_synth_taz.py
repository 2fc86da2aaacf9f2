"""TAZ rebuilt from the synthetic city's roads match the generator's TAZ; buildings land in
the TAZ and community the generator put them in."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from eocube.zonal import admin_zones, assign_zones, taz_from_roads

synth = pytest.importorskip("eocube.synth", reason="eocube.synth (the synthetic city) is absent")


def _best_iou(truth, built) -> tuple[np.ndarray, np.ndarray]:
    a, b = built.sindex.query(truth.geometry.values, predicate="intersects")
    ga, gb = truth.geometry.values[a], built.geometry.values[b]
    iou = shapely.area(shapely.intersection(ga, gb)) / shapely.area(shapely.union(ga, gb))
    best = np.zeros(len(truth))
    match = np.full(len(truth), -1)
    order = np.argsort(iou)  # ascending, so the best overwrites
    best[a[order]] = iou[order]
    match[a[order]] = b[order]
    return best, match


@pytest.mark.parametrize("preset", ["tiny", "demo"])
def test_taz_from_roads_match_the_generator(preset):
    w = synth.make_world(preset, seed=0)
    taz = taz_from_roads(w.roads, boundary=w.spec.bounds)
    assert len(taz) == len(w.taz)
    best, match = _best_iou(w.taz, taz)
    assert best.min() >= 0.95, f"worst IoU {best.min():.3f}"
    assert len(set(match)) == len(taz)  # one-to-one


def test_buildings_are_assigned_to_their_taz_and_community():
    w = synth.make_world("tiny", seed=0)
    taz = taz_from_roads(w.roads, boundary=w.spec.bounds)
    _, match = _best_iou(w.taz, taz)
    ours_to_truth = dict(zip(taz["taz_id"].to_numpy()[match], w.taz["taz_id"], strict=True))
    b = assign_zones(w.buildings, taz, id_col="taz_id", name="taz")
    assert b["taz"].notna().all() and (b["taz_share"] > 0.999).all()
    np.testing.assert_array_equal(b["taz"].map(ours_to_truth).to_numpy(dtype=int),
                                  w.buildings["taz_id"].to_numpy())
    com = admin_zones(w.communities, id_col="community_id")
    b = assign_zones(w.buildings, com, id_col="community_id", name="community")
    np.testing.assert_array_equal(b["community"].to_numpy(dtype=int),
                                  w.buildings["community_id"].to_numpy())
