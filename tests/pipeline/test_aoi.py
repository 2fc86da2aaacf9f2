"""Large-area planning: tile counts against hand computation, zones across a border, id ↔
GeoBox, holes, poles, the antimeridian, the streamed manifest and the waves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from eocube.errors import ConfigError, GridError
from eocube.pipeline import aoi as aoi_mod
from eocube.pipeline.aoi import (
    TileGrid,
    aoi_tile_geobox,
    iter_tile_batches,
    plan_tiles,
    read_manifest,
    submit_waves,
    tile_id_of,
    to_geodataframe,
    waves,
    write_manifest,
)

T = 10240.0  # the default tile: 1024 px at 10 m


def utm_rect_lonlat(x0: float, y0: float, x1: float, y1: float, *, epsg: int = 32632,
                    holes: list[tuple[float, float, float, float]] = ()) -> shapely.Polygon:
    """A rectangle drawn in UTM metres, as a densely sampled polygon in lon/lat."""
    inv = Transformer.from_crs(epsg, 4326, always_xy=True)

    def ring(a: float, b: float, c: float, d: float) -> np.ndarray:
        t = np.linspace(0, 1, 200)
        xs = np.concatenate([a + (c - a) * t, np.full(200, c), c - (c - a) * t, np.full(200, a)])
        ys = np.concatenate([np.full(200, b), b + (d - b) * t, np.full(200, d), d - (d - b) * t])
        return np.column_stack(inv.transform(xs, ys))

    return shapely.Polygon(ring(x0, y0, x1, y1), [ring(*h) for h in holes])


def ids(table) -> list[str]:
    return table["tile_id"].to_pylist()


def test_hand_count_of_a_rectangle_in_utm():
    # x 513,000–531,480 lies in columns 50 and 51 (512,000–532,480); y 5,121,000–5,149,000 in
    # rows 500, 501, 502 (5,120,000–5,150,720): 2 × 3 = 6 tiles
    t = plan_tiles(utm_rect_lonlat(513_000, 5_121_000, 531_480, 5_149_000))
    assert sorted(ids(t)) == sorted(f"32N-{c:04d}-{r:04d}" for c in (50, 51)
                                    for r in (500, 501, 502))
    assert set(t["epsg"].to_pylist()) == {32632}
    assert t["x_min"].to_pylist() == [c * T for c in t["col"].to_pylist()]
    # an edge exactly on a tile edge (x = 532,480) does not pull in the next column
    t2 = plan_tiles(utm_rect_lonlat(513_000, 5_121_000, 532_480, 5_149_000))
    assert sorted(set(t2["col"].to_pylist())) == [50, 51]


def test_bbox_count_matches_brute_force_over_every_tile():
    bbox = [8.0, 48.0, 8.3, 48.2]
    got = set(ids(plan_tiles(bbox)))
    # by hand: 8.0°–8.3°E at 48°N is x ≈ 425.4–447.8 km (columns 41–43), 48.0°–48.2°N is
    # y ≈ 5,317–5,339 km (rows 519–521): 9 tiles
    assert len(got) == 9
    # independently: every tile of a wide window, its outline densified into lon/lat
    inv = Transformer.from_crs(32632, 4326, always_xy=True)
    box = shapely.box(*bbox)
    want = set()
    t = np.linspace(0, 1, 50)
    for c in range(35, 50):
        for r in range(512, 528):
            x0, y0 = c * T, r * T
            xs = np.concatenate([x0 + T * t, np.full(50, x0 + T), x0 + T * (1 - t),
                                 np.full(50, x0)])
            ys = np.concatenate([np.full(50, y0), y0 + T * t, np.full(50, y0 + T),
                                 y0 + T * (1 - t)])
            poly = shapely.Polygon(np.column_stack(inv.transform(xs, ys)))
            if poly.intersection(box).area > 0:
                want.add(f"32N-{c:04d}-{r:04d}")
    assert got == want


def test_zone_border_each_side_in_its_zone_and_no_gap():
    aoi = shapely.box(5.7, 45.0, 6.3, 45.3)  # across the 31N | 32N border at 6°E
    g = to_geodataframe(plan_tiles(aoi))
    assert set(g.zone) == {"31N", "32N"}
    assert set(g.epsg) == {32631, 32632}
    west = g.geometry.bounds.maxx <= 6.0
    east = g.geometry.bounds.minx >= 6.0
    assert (g.zone[west] == "31N").all() and west.any()
    assert (g.zone[east] == "32N").all() and east.any()
    # each tile's centre lies in its zone, or (border tiles) at most half a tile across it
    inside = np.where(g.zone == "31N", g.lon < 6.0, g.lon >= 6.0)
    km_across = np.abs(g.lon - 6.0) * 111.32 * math.cos(math.radians(45.15))
    assert inside.mean() > 0.8
    assert (km_across[~inside] < T / 2 * math.sqrt(2) / 1000).all()
    # every point of the AOI is in a tile …
    assert aoi.difference(shapely.union_all(g.geometry.values)).area < 1e-12
    # … which the centre rule alone would not give: the border tiles are needed
    strict = shapely.union_all(g.geometry.values[inside])
    assert aoi.difference(strict).area > 1e-4


def test_tile_id_geobox_round_trip_everywhere():
    grid = TileGrid(polar="ups")
    aois = [[8.0, 48.0, 8.3, 48.2], [-47.0, -16.0, -46.8, -15.9], [179.8, -17.0, -179.8, -16.9],
            [10.0, 85.0, 11.0, 85.2], [-60.0, -81.0, -59.0, -80.8], [5.9, -0.05, 6.1, 0.05]]
    for a in aois:
        t = plan_tiles(a, grid=grid)
        assert t.num_rows > 0
        d = t.to_pydict()
        for i, tid in enumerate(d["tile_id"]):
            gb = aoi_tile_geobox(tid, grid=grid)
            bb = gb.extent.boundingbox
            assert (bb.left, bb.bottom, bb.right, bb.top) == (
                d["x_min"][i], d["y_min"][i], d["x_max"][i], d["y_max"][i])
            assert gb.crs.epsg == d["epsg"][i] and gb.shape == (1024, 1024)
            assert tile_id_of(gb, grid=grid) == tid
            # the lon/lat footprint is the GeoBox's outline
            fp = shapely.from_wkb(d["footprint"][i])
            assert fp.is_valid
            centre = gb.extent.centroid.to_crs("EPSG:4326").geom
            assert fp.buffer(1e-9).contains(centre) or abs(d["lat"][i]) == 90.0


def test_tile_id_and_geobox_errors():
    with pytest.raises(GridError, match="not a tile id: expected like '32N-0123-0456'"):
        aoi_tile_geobox("32-0123-0456")
    with pytest.raises(GridError, match="zones are 01 to 60"):
        aoi_tile_geobox("61N-0001-0001")
    gb = aoi_tile_geobox("32N-0050-0500")
    with pytest.raises(GridError, match="off the 10240 m grid"):
        tile_id_of(gb.translate_pix(3, 0))
    with pytest.raises(GridError, match="not a tile of 512 px"):
        tile_id_of(gb, grid=TileGrid(tile_px=512))


def test_holes_are_respected():
    # 5 × 5 tiles (columns 50–54, rows 500–504); a hole covering columns 51–53 × rows 501–503
    # with 100 m to spare drops those 9: 16 left
    outer = (50 * T + 100, 500 * T + 100, 55 * T - 100, 505 * T - 100)
    hole = (51 * T - 100, 501 * T - 100, 54 * T + 100, 504 * T + 100)
    t = plan_tiles(utm_rect_lonlat(*outer, holes=[hole]))
    got = set(zip(t["col"].to_pylist(), t["row"].to_pylist(), strict=True))
    assert len(got) == 16
    assert not any(51 <= c <= 53 and 501 <= r <= 503 for c, r in got)
    assert len(plan_tiles(utm_rect_lonlat(*outer))) == 25


def test_polar_refused_or_planned_on_ups():
    with pytest.raises(ConfigError, match=r"reaches latitude 86.*pass polar='ups'"):
        plan_tiles([10.0, 80.0, 20.0, 86.0])
    with pytest.raises(ConfigError, match="reaches latitude -81"):
        plan_tiles([10.0, -81.0, 20.0, -70.0])
    grid = TileGrid(resolution=60.0, polar="ups")  # 61.44 km tiles: a few hundred in the cap
    g = to_geodataframe(plan_tiles([-180.0, 83.0, 180.0, 90.0], grid=grid))
    assert {"UPSN"} < set(g.zone) and (g.epsg[g.zone == "UPSN"] == 32661).all()
    assert g.lat.max() == 90.0  # the tile holding the pole
    cap = shapely.box(-180, 84, 180, 90)
    assert cap.difference(shapely.union_all(g.geometry[g.zone == "UPSN"].values)).area < 1e-6
    # UPS tiles reach down only as far as the cap needs (less than a tile's diagonal below 84°)
    assert g[g.zone == "UPSN"].geometry.bounds.miny.min() > 84.0 - 87 / 111.0


def test_antimeridian_bbox_and_footprints():
    t = plan_tiles([179.8, -17.0, -179.8, -16.9])  # Fiji, across 180°
    g = to_geodataframe(t)
    assert set(g.zone) == {"60S", "01S"}
    b = g.geometry.bounds
    assert b.minx.min() >= -180.0 and b.maxx.max() <= 180.0
    assert (g.geometry.geom_type == "MultiPolygon").any()  # split at the antimeridian
    assert g.geometry.is_valid.all()


def test_aoi_inputs():
    gpd = pytest.importorskip("geopandas")
    box = shapely.box(8.0, 48.0, 8.3, 48.2)
    want = ids(plan_tiles(box))
    assert ids(plan_tiles([8.0, 48.0, 8.3, 48.2])) == want
    web = gpd.GeoDataFrame(geometry=[box], crs=4326).to_crs(3857)
    assert ids(plan_tiles(web)) == want
    with pytest.raises(ConfigError, match="has no CRS"):
        plan_tiles(gpd.GeoDataFrame(geometry=[box]))
    with pytest.raises(ConfigError, match=r"bbox \[8.0, 48.2, 8.3, 48.0\] is not"):
        plan_tiles([8.0, 48.2, 8.3, 48.0])
    with pytest.raises(ConfigError, match="not in lon/lat degrees"):
        plan_tiles(shapely.box(500_000, 5_000_000, 510_000, 5_010_000))
    with pytest.raises(ConfigError, match="has no area"):
        plan_tiles(shapely.Point(8, 48))


def test_norway_and_svalbard_exceptions():
    bergen = [5.2, 60.3, 5.4, 60.4]  # west of 6°E but in 32V
    assert set(plan_tiles(bergen)["zone"].to_pylist()) == {"32N"}
    assert set(plan_tiles(bergen, grid=TileGrid(exceptions=False))["zone"].to_pylist()) == {
        "31N"}
    svalbard = [15.0, 78.0, 15.5, 78.2]  # 33X spans 9–21°E
    assert set(plan_tiles(svalbard)["zone"].to_pylist()) == {"33N"}


def test_write_manifest_streams_blocks_and_reads_back(tmp_path, monkeypatch):
    gpd = pytest.importorskip("geopandas")
    aoi = [5.5, 45.0, 6.5, 45.6]
    whole = plan_tiles(aoi)
    monkeypatch.setattr(aoi_mod, "BLOCK_TILES", 7)  # many small blocks: same tiles
    batches = list(iter_tile_batches(aoi))
    assert len(batches) > 5 and max(b.num_rows for b in batches) <= 7
    path = tmp_path / "tiles.parquet"
    n = write_manifest(aoi, path)
    assert n == whole.num_rows
    back = read_manifest(path)
    assert back.to_pydict() == whole.to_pydict()
    g = gpd.read_parquet(path)  # a GeoParquet: footprints in lon/lat
    assert g.crs.equals("OGC:CRS84") and len(g) == n
    assert [p.name for p in tmp_path.iterdir()] == ["tiles.parquet"]  # no temporary left
    with pytest.raises(GridError, match="not an eocube tile manifest"):
        next(waves(whole.replace_schema_metadata({}), 10))


def test_waves_bounded_one_crs_each_and_resumable(tmp_path):
    aoi = [5.5, 45.0, 6.5, 45.6]
    t = plan_tiles(aoi)
    path = tmp_path / "m.parquet"
    write_manifest(aoi, path)
    for source in (t, path):
        ws = list(waves(source, 10))
        assert all(1 <= len(w) <= 10 for w in ws)
        assert all(len({tile.epsg for tile in w}) == 1 for w in ws)
        assert [tile.id for w in ws for tile in w] == ids(t)
    done = set(ids(t)[:25])
    rest = [tile.id for w in waves(path, 10, skip=done) for tile in w]
    assert rest == ids(t)[25:]
    first = next(waves(t, 3))[0]
    assert first.geobox == aoi_tile_geobox(first.id)
    with pytest.raises(ConfigError, match="wave size 0"):
        next(waves(t, 0))


def _tile_area(tile) -> float:
    x0, y0, x1, y1 = tile.bounds
    return (x1 - x0) * (y1 - y0)


def test_submit_waves_never_holds_more_than_a_wave():
    distributed = pytest.importorskip("distributed")
    t = plan_tiles([5.5, 45.0, 6.5, 45.3])
    seen = []
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        for tid, area in submit_waves(t, _tile_area, client=client, size=4, name="area"):
            seen.append(tid)
            assert area == T * T
            held = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            assert held <= 4
    assert sorted(seen) == sorted(ids(t))
