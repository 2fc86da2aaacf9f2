"""TAZ from roads on hand-made networks, admin zones, building → zone assignment."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from eocube.errors import ZoneError
from eocube.zonal import GeometryRepairWarning, admin_zones, assign_zones, taz_from_roads

CRS = "EPSG:32650"


def _roads(lines, widths=None) -> gpd.GeoDataFrame:
    data = {} if widths is None else {"width": widths}
    return gpd.GeoDataFrame(data, geometry=[shapely.LineString(c) for c in lines], crs=CRS)


def test_a_cross_in_a_square_gives_four_blocks_with_stable_ids():
    roads = _roads([[(500, 0), (500, 1000)], [(0, 400), (1000, 400)]], widths=[20.0, 40.0])
    taz = taz_from_roads(roads, boundary=(0, 0, 1000, 1000))
    assert list(taz["taz_id"]) == [1, 2, 3, 4]
    # north-west, north-east, south-west, south-east
    expected = [shapely.box(0, 420, 490, 1000), shapely.box(510, 420, 1000, 1000),
                shapely.box(0, 0, 490, 380), shapely.box(510, 0, 1000, 380)]
    for got, want in zip(taz.geometry, expected, strict=True):
        assert got.symmetric_difference(want).area < 1e-6
    np.testing.assert_allclose(taz["area"], [e.area for e in expected])
    again = taz_from_roads(roads.iloc[::-1], boundary=(0, 0, 1000, 1000))
    assert all(a.equals(b) for a, b in zip(taz.geometry, again.geometry, strict=True))


def test_without_boundary_only_closed_faces_count_and_slivers_drop():
    ring = [[(0, 0), (1000, 0)], [(1000, 0), (1000, 1000)], [(1000, 1000), (0, 1000)],
            [(0, 1000), (0, 0)], [(500, 0), (500, 1000)], [(502, 0), (502, 1000)]]
    roads = _roads(ring)  # no widths: the default
    taz = taz_from_roads(roads, default_width=1.0, min_area=1500.0)
    # the strip left between the twin roads (1 m × 999 m) is a sliver
    assert len(taz) == 2
    assert taz["area"].min() > 400_000
    kept = taz_from_roads(roads, default_width=1.0, min_area=0.0)
    assert len(kept) == 3


def test_roads_must_be_lines_in_metres():
    with pytest.raises(ZoneError, match="geographic CRS"):
        taz_from_roads(_roads([[(0, 0), (1, 1)]]).set_crs(4326, allow_override=True))
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)], crs=CRS)
    with pytest.raises(ZoneError, match="LineStrings"):
        taz_from_roads(pts)


def test_assignment_uses_largest_overlap_not_the_centroid():
    zones = gpd.GeoDataFrame({"taz_id": [10, 20]},
                             geometry=[shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)],
                             crs=CRS)
    # an L whose centroid lies in zone 10 but whose larger part lies in zone 20
    ell = shapely.union(shapely.box(0, 0, 100, 10), shapely.box(100, 0, 130, 40))
    assert ell.centroid.x < 100
    straddle = shapely.box(90, 40, 130, 60)  # 75 % in zone 20
    tie = shapely.box(95, 70, 105, 80)  # half and half: the representative point decides
    road = shapely.box(300, 0, 310, 10)  # no zone
    b = gpd.GeoDataFrame(geometry=[ell, straddle, tie, road], crs=CRS)
    out = assign_zones(b, zones, id_col="taz_id")
    by_point = 20 if zones.geometry[1].contains(tie.point_on_surface()) else 10
    assert out["taz_id"].tolist()[:3] == [20, 20, by_point]
    assert out["taz_id"].isna().tolist() == [False, False, False, True]
    np.testing.assert_allclose(out["taz_id_share"], [1200 / 2200, 0.75, 0.5, 0.0])
    assert "taz_id" not in b.columns  # input untouched


def test_admin_zones_are_repaired_with_a_named_warning():
    bad = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    gdf = gpd.GeoDataFrame({"community_id": [7]}, geometry=[bad], crs=CRS)
    with pytest.warns(GeometryRepairWarning, match="7"):
        out = admin_zones(gdf, id_col="community_id")
    assert out.geometry.iloc[0].is_valid and out.geometry.iloc[0].area == pytest.approx(50)
