"""Observable and truth, apart: what the archive publishes, what only ``truth/`` holds, and an
archive that stays whole without its truth."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

from eocube.catalog import LocalStacApi, open_archive
from eocube.catalog.profiles import get_profile
from eocube.catalog.search import search
from eocube.catalog.vectors import LAYERS, open_layer
from eocube.errors import ArchiveError, SearchError
from eocube.synth import read_truth, truth_layers
from eocube.synth.osm import POI_KEYS, open_map_layers
from eocube.synth.sensors import Scene

TRUTH_COLLECTION = "eocube-synth-truth"
#: columns only the simulator knows; none may reach an open-map layer
HIDDEN = {"building_id", "taz_id", "community_id", "function", "floors", "height", "structure",
          "roof_material", "built_date", "year_built", "built_in_series", "area",
          "habitability", "capacity", "occupants", "occupancy", "volume", "land_use",
          "centrality", "type", "kind", "stock_total_t", "direction", "road_id", "poi_id",
          # world v2: shape, construction process, households, materials, trees
          "shape", "orientation_deg", "shop_units", "clearing_date", "foundation_date",
          "structure_date", "demolished_date", "rubble_cleared_date", "replaces_id",
          "residential_share", "dormitory", "dwellings", "second_homes", "households",
          "fill_months", "stock_concrete_t", "stock_steel_t", "stock_brick_t", "stock_wood_t",
          "stock_glass_t", "tree_id", "setting"}


def test_the_hidden_set_covers_every_attribute_only_the_simulator_knows(tiny_world):
    # a column the world gains is hidden unless listed here as public on purpose: the check
    # above cannot go stale when the generator grows
    public = {"geometry", "width", "highway"}
    for table in (tiny_world.buildings, tiny_world.roads, tiny_world.pois, tiny_world.trees):
        assert set(table.columns) - public <= HIDDEN, set(table.columns) - public - HIDDEN


@pytest.fixture(scope="module")
def osm(tiny_world):
    return open_map_layers(tiny_world)


# ---- what the archive publishes -------------------------------------------------------------

def test_the_top_level_catalog_holds_no_truth(tiny_archive):
    cat = json.loads((tiny_archive / "catalog.json").read_text())
    children = {ln["href"] for ln in cat["links"] if ln["rel"] == "child"}
    assert not any(TRUTH_COLLECTION in h for h in children)
    assert "./eocube-synth-mobile/collection.json" in children
    assert not (tiny_archive / TRUTH_COLLECTION).exists()
    man = json.loads((tiny_archive / "manifest.json").read_text())
    assert TRUTH_COLLECTION not in man["collections"]
    assert man["truth"]["collections"] == {TRUTH_COLLECTION: 4}
    import rustac

    items = rustac.read_sync(str(tiny_archive / "items.parquet"))["features"]
    assert {it["collection"] for it in items} == set(man["collections"])
    # the truth is its own catalog, and every truth file is still in the manifest
    tcat = json.loads((tiny_archive / "truth" / "catalog.json").read_text())
    assert [ln["href"] for ln in tcat["links"] if ln["rel"] == "child"] == [
        f"./{TRUTH_COLLECTION}/collection.json"]
    assert tcat["id"] != cat["id"]
    truth_files = {p.relative_to(tiny_archive).as_posix()
                   for p in (tiny_archive / "truth").rglob("*") if p.is_file()}
    assert truth_files and truth_files <= set(man["files"])


def test_no_vector_outside_truth_carries_a_hidden_attribute(tiny_archive):
    import geopandas as gpd

    files = sorted((tiny_archive / "vectors").glob("*.parquet"))
    assert [p.stem for p in files] == sorted(LAYERS.values())
    for p in files:
        cols = set(gpd.read_parquet(p).columns)
        assert not cols & (HIDDEN - ({"community_id"} if p.stem == "census" else set())), p


def test_the_api_does_not_serve_truth(stac_api):
    with urllib.request.urlopen(stac_api.url + "/collections") as r:
        cols = {c["id"] for c in json.load(r)["collections"]}
    assert TRUTH_COLLECTION not in cols and "eocube-synth-mobile" in cols
    with pytest.raises(SearchError, match="has no collection"):
        search(stac_api, collections=[TRUTH_COLLECTION])


# ---- the open-map layers: partial, imprecise, and tagged like OSM ---------------------------

def test_footprints_are_partial_shifted_and_untruthful(tiny_world, osm):
    b, m = tiny_world.buildings, osm["osm_buildings"]
    old = ~b["built_in_series"]
    # each mapped footprint overlaps one true building; match them by overlap
    ti, mi = b.sindex.query(m.geometry.values, predicate="intersects")
    inter = shapely.area(shapely.intersection(m.geometry.values[ti], b.geometry.values[mi]))
    best = pd.DataFrame({"m": ti, "b": mi, "a": inter}).sort_values("a").groupby("m").last()
    # one-to-one, except in terraces: a row traced a few metres off along its length (a shift
    # of more than half a 6-9 m unit) lands each outline on the next unit, the last on itself
    terrace = (b["shape"] == "terrace").to_numpy()[best["b"].to_numpy()]
    assert len(best) == len(m) and best.loc[~terrace, "b"].is_unique
    assert best.loc[terrace, "b"].duplicated().mean() < 0.1
    mapped = np.zeros(len(b), bool)
    mapped[best["b"].to_numpy()] = True
    assert 0.6 < mapped[old.to_numpy()].mean() < 0.92
    assert mapped[~old.to_numpy()].mean() < mapped[old.to_numpy()].mean()
    iou = best["a"].to_numpy() / shapely.area(shapely.union(
        m.geometry.values[best.index], b.geometry.values[best["b"]]))
    assert 0.5 < np.median(iou) < 0.97 and iou.max() < 0.999
    lv = m["building:levels"]
    assert 0.2 < lv.notna().mean() < 0.4
    floors = b["floors"].to_numpy()[best["b"].to_numpy()]
    diff = (lv.to_numpy(dtype=float, na_value=np.nan) - floors)[lv.notna().to_numpy()]
    assert set(np.unique(diff)) <= {-1.0, 0.0, 1.0} and 0.7 < (diff == 0).mean() < 1.0
    assert set(m["building"]) <= {"residential", "commercial", "industrial", "yes"}
    assert m["osm_id"].is_unique and not set(m.columns) & HIDDEN


def test_roads_pois_landuse_and_census_look_like_their_real_sources(tiny_world, osm):
    roads = osm["osm_roads"]
    assert len(roads) == len(tiny_world.roads)
    assert set(roads["highway"]) <= {"primary", "secondary", "tertiary", "residential",
                                     "service"}
    kind = dict(zip(tiny_world.roads.geometry.to_wkb(), tiny_world.roads["kind"], strict=True))
    for g, h in zip(roads.geometry.to_wkb(), roads["highway"], strict=True):
        assert (kind[g] == "arterial") == (h in ("primary", "secondary"))
    pois = osm["osm_pois"]
    assert 0.75 < len(pois) / len(tiny_world.pois) < 0.95
    tagged = pois[list(POI_KEYS)].notna().sum(axis=1)
    assert (tagged == 1).all() and pois["amenity"].notna().any() and pois["shop"].notna().any()
    lu = osm["osm_landuse"]
    assert 0.45 < len(lu) / len(tiny_world.taz) < 0.75
    assert set(lu["landuse"]) <= {"residential", "commercial", "industrial", "institutional",
                                  "recreation_ground", "basin"}
    census = osm["census"].set_index("community_id")
    from eocube.synth.construction import standing

    b = tiny_world.buildings
    occ = b[standing(b, tiny_world.spec.end)].groupby("community_id")["occupants"].sum()
    assert (census["pop_end"].reindex(occ.index) == occ).all()
    start = tiny_world.buildings[tiny_world.buildings["built_date"] < pd.Timestamp(
        tiny_world.spec.start)].groupby("community_id")["occupants"].sum()
    assert (census["pop_start"].reindex(start.index) == start).all()
    assert set(census["year_start"]) == {2020} and set(census["year_end"]) == {2021}


def test_open_map_layers_depend_only_on_the_seed(tiny_world):
    from eocube.synth import make_world

    a, b = open_map_layers(tiny_world), open_map_layers(make_world("tiny", seed=0))
    for k in a:
        pd.testing.assert_frame_equal(a[k].to_wkb(), b[k].to_wkb())
    c = open_map_layers(make_world("tiny", seed=1))
    assert len(c["osm_buildings"]) != len(a["osm_buildings"]) or not c[
        "osm_buildings"].geometry.geom_equals(a["osm_buildings"].geometry).all()


# ---- reading the layers: catalog.vectors ----------------------------------------------------

def test_open_layer_reads_every_layer_and_names_a_missing_one(tiny_archive, osm):
    for short, stem in LAYERS.items():
        got = open_layer(tiny_archive, short)
        assert got.crs == "EPSG:32650"
        pd.testing.assert_frame_equal(got.to_wkb(), osm[stem].to_wkb())
        assert len(open_layer(open_archive(tiny_archive), stem)) == len(got)
    assert list(open_layer(tiny_archive, "buildings", columns=["osm_id"]).columns) == [
        "osm_id", "geometry"]
    with pytest.raises(ArchiveError, match=r"vector layer 'taz' is missing from the archive .*"
                                           r"its layers are \['census', .*read_truth"):
        open_layer(tiny_archive, "taz")
    with pytest.raises(ArchiveError, match="does not exist or is not a folder"):
        open_layer(tiny_archive / "nowhere", "roads")


def test_open_layer_reads_from_a_url(tiny_archive):
    handler = functools.partial(_QuietHandler, directory=str(tiny_archive.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{httpd.server_address[1]}/{tiny_archive.name}"
            roads = open_layer(url, "roads")
            assert roads.equals(open_layer(tiny_archive, "roads"))
            with pytest.raises(ArchiveError, match=r"vector layer 'occupants' is missing .* "
                                                   r"answered 404"):
                open_layer(url + "/", "occupants")
        finally:
            httpd.shutdown()
    assert len(open_layer(tiny_archive.as_uri(), "census")) == 16


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


# ---- reading the truth: synth.read_truth ----------------------------------------------------

def test_read_truth_gives_the_simulators_tables_and_rasters(tiny_archive, tiny_world):
    b = read_truth(tiny_archive, "buildings")
    pd.testing.assert_frame_equal(b.to_wkb(), tiny_world.buildings.to_wkb())
    taz = read_truth(tiny_archive, "taz")
    assert "land_use" in taz and len(taz) == len(tiny_world.taz)
    scene = Scene(tiny_world)
    cd = read_truth(tiny_archive, "change-date")
    np.testing.assert_array_equal(cd.to_numpy(), scene.change_date)
    assert cd.odc.geobox == scene.geobox and cd.attrs["nodata"] == -1
    np.testing.assert_array_equal(read_truth(tiny_archive, "builtup-2021").to_numpy(),
                                  scene.builtup(2021))
    vhr = read_truth(tiny_archive, "building-id-vhr")
    np.testing.assert_array_equal(vhr.to_numpy(), scene.building_id_vhr)
    assert vhr.odc.geobox == scene.geobox_vhr
    assert "change-date" in truth_layers(tiny_archive)
    with pytest.raises(ArchiveError, match=r"truth has no layer 'occupants'; it has \["
                                           r"'buildings'"):
        read_truth(tiny_archive, "occupants")


# ---- an archive without truth/ --------------------------------------------------------------

def test_an_archive_without_truth_is_valid_servable_and_loadable(tiny_archive, tiny_world,
                                                                 tmp_path):
    from eocube.cli import app
    from eocube.cube import load

    city = Path(shutil.copytree(tiny_archive, tmp_path / "city"))
    shutil.rmtree(city / "truth")
    r = CliRunner().invoke(app, ["validate", str(city)])
    assert r.exit_code == 0, r.output
    assert ", 0 problems" in r.output
    with LocalStacApi(city) as api:
        assert len(search(api, profile="s2", datetime="2020-05")) > 0
        mobile = load(search(api, profile="mobile"))
    for name in LAYERS:
        assert len(open_layer(city, name)) > 0
    with pytest.raises(ArchiveError, match=r"has no truth/ folder: its truth was removed"):
        read_truth(city, "buildings")
    # the mobile-signal rasters load through their profile, as published
    assert get_profile("mobile").name == "eocube-synth-mobile"
    assert set(mobile.data_vars) == {"weekday", "weekend"} and mobile.sizes["time"] == 1
    assert mobile.weekday.attrs["units"] == "users"
    assert mobile.odc.geobox.resolution.x == 100
    np.testing.assert_allclose(mobile.weekend.isel(time=0).to_numpy(),
                               Scene(tiny_world).mobile_signal("weekend"))
