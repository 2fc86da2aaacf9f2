"""TAZ from roads on hand-made networks, admin zones, building → zone assignment."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from eocube.errors import ZoneError
from eocube.zonal import GeometryRepairWarning, admin_zones, assign_zones, taz_from_roads
from eocube.zonal.zones import metric_crs, road_corridors

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


def test_self_intersecting_footprint_is_repaired_like_a_zone_with_a_named_warning():
    # the same bow-tie that zonal_stats repairs as a zone (issue 16.7): one rule for both
    bow = shapely.Polygon([(90, 10), (110, 30), (110, 10), (90, 30)])
    zones = gpd.GeoDataFrame({"taz_id": [10, 20]},
                             geometry=[shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)],
                             crs=CRS)
    b = gpd.GeoDataFrame({"building_id": [1, 2]}, geometry=[shapely.box(10, 10, 20, 20), bow],
                         index=["a", "bowtie-7"], crs=CRS)
    with pytest.warns(GeometryRepairWarning,
                      match=r"Repaired 1 invalid building footprint with shapely\.make_valid: "
                            r"'bowtie-7'"):
        out = assign_zones(b, zones, id_col="taz_id")
    # the repaired bow-tie is two triangles of 100 m² each, one on either side
    assert out["taz_id"].tolist() == [10, 10]  # a tie: the representative point, then the id
    np.testing.assert_allclose(out["taz_id_share"], [1.0, 0.5])
    assert out.geometry.iloc[1].equals(bow)  # the output keeps the footprint as given
    # zonal_stats warns the same way for the same polygon as a zone
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_zeros

    from eocube.zonal import zonal_stats

    gb = GeoBox.from_bbox((0, 0, 200, 100), CRS, resolution=10)
    with pytest.warns(GeometryRepairWarning, match=r"1 invalid zone geometry.*'bowtie-7'"):
        zonal_stats(xr_zeros(gb, dtype="float64"), b, stats=["count"])


@pytest.mark.parametrize("crs", ["EPSG:2263", "EPSG:3857"], ids=["us-feet", "web-mercator"])
def test_taz_in_a_crs_not_in_metres_equals_the_metric_taz(crs):
    # a 1 km block of Manhattan in its UTM zone; then the same roads in New York's state plane
    # (US survey feet) and in Web Mercator (1.32 "metres" per metre at 41° N): widths and
    # min_area are metres whatever the CRS (issue 16.8)
    x0, y0, utm = 585_000.0, 4_511_000.0, "EPSG:32618"
    lines = [[(x0 + 500, y0), (x0 + 500, y0 + 1000)], [(x0, y0 + 400), (x0 + 1000, y0 + 400)],
             [(x0 + 800, y0 + 400), (x0 + 800, y0 + 1000)],
             [(x0 + 500, y0 + 412), (x0 + 800, y0 + 412)]]  # leaves a 2 m sliver: min_area
    roads = gpd.GeoDataFrame({"width": [20.0, 40.0, 10.0, 10.0]},
                             geometry=[shapely.LineString(c) for c in lines], crs=utm)
    box = shapely.box(x0, y0, x0 + 1000, y0 + 1000)
    want = taz_from_roads(roads, boundary=box, min_area=5000.0)
    assert len(want) == 5
    other = roads.to_crs(crs)
    got = taz_from_roads(other, boundary=gpd.GeoSeries([box], crs=utm).to_crs(crs).iloc[0],
                         min_area=5000.0)
    assert got.crs == other.crs
    assert got["taz_id"].tolist() == want["taz_id"].tolist()
    np.testing.assert_allclose(got["area"], want["area"], rtol=1e-6)
    back = got.to_crs(utm)
    for a, b in zip(back.geometry, want.geometry, strict=True):
        assert a.symmetric_difference(b).area < 1e-3 * b.area
    corr = gpd.GeoSeries([road_corridors(other)], crs=crs).to_crs(utm).iloc[0]
    assert corr.symmetric_difference(road_corridors(roads)).area < 1e-6 * corr.area
    # a CRS in true metres is used as it is
    assert metric_crs(roads) is None and metric_crs(other) == roads.estimate_utm_crs()
