from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

import eocube.synth.build as archive_mod
from eocube.catalog import open_archive
from eocube.catalog.validate import stac_problems
from eocube.errors import ArchiveError
from eocube.synth import build_city
from eocube.synth.construction import standing
from eocube.synth.sensors import Scene

SMALL = {"preset": "tiny", "years": 1, "s2_revisit_days": 30, "s1_revisit_days": 36}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_builds_with_one_seed_are_byte_identical(tmp_path):
    a = build_city(tmp_path / "a", seed=7, **SMALL)
    b = build_city(tmp_path / "sub" / "b", seed=7, workers=2, **SMALL)
    ta, tb = _tree(a), _tree(b)
    assert ta.keys() == tb.keys()
    assert [k for k in ta if ta[k] != tb[k]] == []
    c = build_city(tmp_path / "c", seed=8, **SMALL)
    assert (a / "manifest.json").read_bytes() != (c / "manifest.json").read_bytes()


def test_manifest_lists_every_file_with_its_checksum(tiny_archive):
    man = json.loads((tiny_archive / "manifest.json").read_text())
    files = {p.relative_to(tiny_archive).as_posix() for p in tiny_archive.rglob("*")
             if p.is_file() and p.name != "manifest.json"}
    assert set(man["files"]) == files
    assert man["preset"] == "tiny" and man["seed"] == 0


def test_every_stac_object_validates(tiny_archive):
    objs = [p for p in tiny_archive.rglob("*.json") if p.name != "manifest.json"]
    assert len(objs) > 500
    problems = [pr for p in objs for pr in stac_problems(json.loads(p.read_text()))]
    assert problems == []


def test_cogs_are_tiled_compressed_with_overviews(tiny_archive):
    for path in [next(tiny_archive.glob("sentinel-2-l2a/*/B04.tif")),
                 next(tiny_archive.glob("sentinel-1-rtc/*/vv.tif")),
                 next(tiny_archive.glob("eocube-synth-vhr/*/visual.tif"))]:
        with rasterio.open(path) as ds:
            assert ds.profile["tiled"] and ds.compression.value == "DEFLATE"
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.overviews(1), path


def test_truth_vectors_are_geoparquet_with_all_attributes(tiny_archive, tiny_world):
    import geopandas as gpd

    b = gpd.read_parquet(tiny_archive / "truth" / "buildings.parquet")
    assert b.crs == tiny_world.buildings.crs
    for col in ("floors", "height", "function", "structure", "year_built", "occupants",
                "stock_total_t", "taz_id", "community_id"):
        assert col in b
    census = gpd.read_parquet(tiny_archive / "vectors" / "census.parquet")
    up = standing(b, pd.Timestamp(tiny_world.spec.end))  # demolished buildings left out
    assert census["pop_end"].sum() == b.loc[up, "occupants"].sum()
    for col in ("clearing_date", "foundation_date", "structure_date", "demolished_date",
                "replaces_id"):
        assert col in b
    for name in ("roads", "taz", "communities", "pois"):
        assert len(gpd.read_parquet(tiny_archive / "truth" / f"{name}.parquet")) > 0
    for name in ("osm_roads", "osm_pois", "osm_buildings", "osm_landuse"):
        assert len(gpd.read_parquet(tiny_archive / "vectors" / f"{name}.parquet")) > 0
    assert not (tiny_archive / "vectors" / "buildings.parquet").exists()


def test_stac_geoparquet_holds_every_item(tiny_archive):
    import rustac

    items = rustac.read_sync(str(tiny_archive / "items.parquet"))["features"]
    man = json.loads((tiny_archive / "manifest.json").read_text())
    assert len(items) == sum(man["collections"].values())
    assert all((tiny_archive / a["href"]).exists() for it in items[:50]
               for a in it["assets"].values())


def test_a_crash_while_writing_leaves_no_archive(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(archive_mod, "_truth", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build_city(tmp_path / "city", **SMALL)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArchiveError, match="does not exist"):
        open_archive(tmp_path / "city")


def test_a_crash_while_overwriting_keeps_the_old_archive(tmp_path, monkeypatch):
    good = build_city(tmp_path / "city", **SMALL)
    before = _tree(good)
    monkeypatch.setattr(archive_mod, "_mobile", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build_city(good, overwrite=True, **SMALL)
    assert _tree(good) == before
    assert [p.name for p in tmp_path.iterdir()] == ["city"]


def test_an_existing_archive_is_not_overwritten_silently(tmp_path):
    (tmp_path / "city").mkdir()
    with pytest.raises(ArchiveError, match="already exists; pass overwrite=True"):
        build_city(tmp_path / "city", **SMALL)


def test_an_archive_without_manifest_is_incomplete(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "catalog.json").write_text("{}")
    with pytest.raises(ArchiveError, match=r"is incomplete: it has no manifest\.json"):
        open_archive(tmp_path / "half")


def _series(root: Path, collection: str, asset: str, row: int, col: int):
    """Values of one asset at a pixel of tile 50Q0000 across the series, by date."""
    out = {}
    for p in sorted(root.glob(f"{collection}/*50Q0000*/{asset}.tif")):
        item = json.loads(next(p.parent.glob("*.json")).read_text())
        with rasterio.open(p) as ds:
            out[pd.Timestamp(item["properties"]["datetime"]).tz_localize(None)] = ds.read(
                1, window=((row, row + 1), (col, col + 1)))[0, 0]
    return pd.Series(out).sort_index()


def test_change_dates_appear_in_the_s2_and_s1_series(tiny_archive, tiny_world):
    """A pure pixel of a new building is vegetated before its site is cleared and not after
    the building is complete (S2), and the change date is the building's completion. (S1 is
    not asked to brighten over the roof: flat roofs are about as dark as the ground, and a
    window's mean is dominated by the neighbours' double bounce; ``test_physics`` pins S1's
    dependence on height with everything else held fixed.)"""
    scene = Scene(tiny_world)
    cd = scene.change_date
    half = cd.shape[0] // tiny_world.spec.tiles_per_side  # the first tile, 50Q0000
    sub = cd[:half, :half]
    new = scene.fractions[7][:half, :half]
    b = tiny_world.buildings.set_index("building_id")
    # pure pixels of buildings whose site is cleared two months or more into the series
    late = b["clearing_date"] >= pd.Timestamp(tiny_world.spec.start) + pd.Timedelta(days=60)
    lut = np.zeros(int(b.index.max()) + 1, bool)
    lut[b.index[late]] = True
    rows, cols = np.nonzero((sub >= 0) & (new > 0.95) & lut[scene.building_id[:half, :half]])
    assert rows.size >= 5, "the tiny city must have pure changed pixels in its first tile"
    checked = 0
    for r, c in list(zip(rows, cols, strict=True))[::max(rows.size // 8, 1)][:8]:
        when = pd.Timestamp(int(sub[r, c]), unit="D")
        bld = b.loc[int(scene.building_id[r, c])]
        assert bld["built_date"].normalize() == when
        b04 = _series(tiny_archive, "sentinel-2-l2a", "B04", r, c).astype(float)
        b08 = _series(tiny_archive, "sentinel-2-l2a", "B08", r, c).astype(float)
        scl = _series(tiny_archive, "sentinel-2-l2a", "SCL", r // 2, c // 2)
        clear = ~scl.isin([3, 8, 9, 10]).to_numpy()
        ndvi = ((b08 - b04) / (b08 + b04 - 2000))[clear]
        before = ndvi[ndvi.index < bld["clearing_date"]]
        after = ndvi[ndvi.index >= when]
        if len(before) >= 2 and len(after) >= 2:
            # vegetated site before clearing, roof after completion
            assert before.median() > after.median() + 0.1, (r, c, when)
            checked += 1
    assert checked >= 3


def test_truth_rasters_are_consistent(tiny_world):
    """built-up(end) & not built-up(start) ⊆ changed; a changed pixel not built-up at the end
    was demolished after; a pixel built-up at the start and not at the end was demolished."""
    scene = Scene(tiny_world)
    y0, y1 = tiny_world.spec.start.year, tiny_world.spec.end.year
    b0, b1 = scene.builtup(y0 - 1), scene.builtup(y1)
    changed = scene.change_date >= 0
    gone = scene.demolition_date >= 0
    assert gone[changed & (b0 == 1)].all()  # built, demolished, rebuilt
    assert (changed[(b1 == 1) & (b0 == 0)]).all()
    assert gone[(b0 == 1) & (b1 == 0)].all()
    assert (b1[changed & ~gone] == 1).all()
    assert gone.any(), "demolitions must reach the truth rasters"
    # away from demolitions, built-up only grows
    assert (b1[~gone] >= b0[~gone]).all()


def test_overwrite_never_deletes_what_eocube_did_not_write(tmp_path):
    import shutil

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    with pytest.raises(ArchiveError, match=r"mine is not an archive eocube built \(it has no "
                                           r"manifest\.json .* even with overwrite=True"):
        build_city(mine, overwrite=True, **SMALL)
    assert (mine / "thesis.txt").read_text() == "years of work"
    city = build_city(tmp_path / "city", **SMALL)
    (city / "truth" / "notes.txt").write_text("mine")
    with pytest.raises(ArchiveError, match=r"holds 1 file\(s\) eocube did not write "
                                           r"\('truth/notes\.txt'\)"):
        build_city(city, overwrite=True, seed=1, **SMALL)
    assert (city / "truth" / "notes.txt").read_text() == "mine"
    assert json.loads((city / "manifest.json").read_text())["seed"] == 0
    # without truth/ (fewer files than its manifest lists) it is still eocube's to replace
    shutil.rmtree(city / "truth")
    build_city(city, overwrite=True, seed=1, **SMALL)
    assert json.loads((city / "manifest.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["city", "mine"]


def test_scl_cloud_classes_are_the_catalogs() -> None:
    """The simulator's cloud classes are the set the cube's masks drop (one set, two names:
    synth's ``SCL_SHADOW`` is the code 3, catalog's ``SCL_CLOUD_SHADOW`` the class set)."""
    from eocube.catalog.profiles import SCL_CLOUD_SHADOW
    from eocube.synth.sensors import SCL_CLOUD_AND_SHADOW, SCL_SHADOW

    assert tuple(SCL_CLOUD_AND_SHADOW) == tuple(SCL_CLOUD_SHADOW)
    assert SCL_SHADOW == 3
