"""The global tile grid and the blending windows: coverage, partition of unity, errors."""

from __future__ import annotations

import numpy as np
import pytest

from eocube.errors import ConfigError
from eocube.infer import Tiling
from eocube.infer.tiling import BLENDS


@pytest.mark.parametrize("n", [1, 40, 64, 65, 100, 250, 1000])
def test_tiles_cover_the_axis_and_stay_inside(n):
    t = Tiling(64, 16)
    o = t.origins(n)
    size = t.size(n)
    assert o[0] == 0 and o[-1] + size == n and np.all(np.diff(o) > 0)
    assert np.all(np.diff(o) <= t.stride)  # neighbours overlap by at least `overlap`
    covered = np.zeros(n, int)
    for v in o:
        covered[v:v + size] += 1
    assert covered.min() >= 1


@pytest.mark.parametrize(("blend", "tile", "overlap", "n"), [
    *((b, 64, 16, 250) for b in BLENDS),
    # the ramps at extreme overlaps (a Gaussian's weights depend on the tile, not the overlap)
    *((b, t, o, n) for b in ("trim", "cosine")
      for t, o, n in ((64, 48, 250), (64, 3, 250), (512, 24, 1600), (40, 39, 41)))])
def test_weight_sum_positive_and_windows_flat_at_image_edges(blend, tile, overlap, n):
    t = Tiling(tile, overlap, blend)
    s = t.weight_sum(n, 0, n)
    assert s.min() > 0.01  # never zero: every pixel has a weighted tile
    assert t.window(n, 0)[0] == 1.0 and t.window(n, int(t.origins(n)[-1]))[-1] == 1.0


@pytest.mark.parametrize("blend", ["cosine", "trim"])
def test_ramps_are_a_partition_of_unity(blend):
    t = Tiling(64, 16, blend)
    n = 16 + 48 * 5  # regular grid: no shifted last tile
    assert len(t.origins(n)) == 5
    np.testing.assert_allclose(t.weight_sum(n, 0, n), 1.0, atol=1e-12)


def test_trim_gives_no_weight_to_the_outer_quarter_of_the_overlap():
    n, tile, overlap = 16 + 48 * 5, 64, 16
    inner = Tiling(tile, overlap, "trim").window(n, 48)  # neighbours on both sides
    assert np.all(inner[:4] == 0) and np.all(inner[-4:] == 0) and inner[4] > 0
    assert np.all(inner[12:52] == 1) and np.all(np.diff(inner[:16]) >= 0)
    cosine = Tiling(tile, overlap, "cosine").window(n, 48)
    assert np.all(cosine[:4] > 0)  # the full ramp keeps some weight at the tile's edge
    assert Tiling(tile, overlap).blend == "trim"  # the default
    assert (Tiling(tile, overlap, "trim").dead, Tiling(tile, overlap, "cosine").dead) == (4, 0)


def test_weight_sum_of_a_window_equals_the_slice_of_the_whole():
    t = Tiling(50, 12, "gaussian")
    whole = t.weight_sum(333, 0, 333)
    np.testing.assert_allclose(t.weight_sum(333, 70, 190), whole[70:190])


def test_bad_overlap_is_refused_with_a_fix():
    with pytest.raises(ConfigError, match=r"overlap=64 must be ≥ 0 and smaller than tile=64; "
                                          r"use e.g. overlap=8"):
        Tiling(64, 64)
    with pytest.raises(ConfigError, match="blend='box'"):
        Tiling(64, 8, "box")  # type: ignore[arg-type]
