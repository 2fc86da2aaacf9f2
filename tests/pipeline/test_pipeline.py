"""The whole flow on the tiny city: derived layers only, resume after SIGKILL, the run folder as
a STAC catalog, bad configurations refused before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from eocube.errors import ArchiveError, ConfigError
from eocube.pipeline import STAGES, run_pipeline
from tests.pipeline.conftest import output_sums, tiny_config

UP_TO_ESTIMATES = STAGES[: STAGES.index("estimates") + 1]


def test_every_stage_committed_its_outputs(tiny_run):
    man = json.loads((tiny_run / "manifest.json").read_text())
    assert man["status"] == "completed"
    for s in STAGES:
        e = man["stages"][s]
        assert e["status"] == "done" and e["outputs"], s
        for rel in e["outputs"]:
            assert (tiny_run / rel).exists(), rel
    b = pd.read_parquet(tiny_run / "estimates" / "population_buildings.parquet")
    assert b["population"].sum() > 0 and (b["population"] >= 0).all()


def test_stages_before_the_evaluation_read_no_truth(tiny_archive, tiny_run, tmp_path):
    """Delete truth/ from a copy of the archive: the run to the estimates gives the same
    outputs; only the evaluation needs the truth, and says so."""
    archive = tmp_path / "archive"
    shutil.copytree(tiny_archive, archive)
    shutil.rmtree(archive / "truth")
    out = tmp_path / "run"
    cfg = tiny_config(archive, out)
    with pytest.raises(ArchiveError, match="truth"):
        run_pipeline(cfg, console=False)
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "failed" and "evaluation" in man["reason"]
    # the item collections name the archive's own paths; everything after them is identical
    later = UP_TO_ESTIMATES[1:]
    assert output_sums(out, later) == output_sums(tiny_run, later)


def test_the_evaluation_sets_every_result_beside_its_baselines(tiny_run):
    ev = tiny_run / "evaluation"
    built = pd.read_parquet(ev / "builtup.parquet")
    assert {"NDBI > 0"} <= set(built["method"]) and built["method"].str.contains("Otsu").any()
    fusion = built[built["method"].str.contains("fusion")]
    assert (fusion["f1"] > 0.8).all()
    pop = pd.read_parquet(ev / "population.parquet")
    assert {"DEFF", "capacity-proportional (census × footprint·floors share)"} <= set(
        pop["method"])
    assert set(pop["level"]) == {"building (held-out communities)",
                                 "community (held-out, census)"}
    assert (pop["splits"] == 5).all() and pop["R2_sd"].notna().all()  # a spread, not one split
    stock = pd.read_parquet(ev / "stock.parquet")
    assert stock["spearman_built_cells"].notna().all()
    assert stock["method"].str.contains("top-down stock_fusion").any()
    assert stock["method"].str.contains("volume × mean intensity").any()
    sdg = pd.read_parquet(ev / "sdg.parquet")
    assert sdg["communities"].iloc[0] > 5
    assert pd.read_parquet(ev / "greening.parquet")["candidates"].iloc[0] > 0


def test_the_run_folder_is_a_valid_stac_catalog_served_by_eocube_serve(tiny_run):
    import pystac
    import pystac_client

    from eocube.catalog import LocalStacApi

    r = subprocess.run([sys.executable, "-m", "eocube.cli", "validate", str(tiny_run)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ", 0 problems" in r.stdout
    cat = pystac.Catalog.from_file(str(tiny_run / "catalog.json"))
    items = list(cat.get_items(recursive=True))
    assert sorted(i.id for i in items) == sorted(STAGES)
    inf = next(i for i in items if i.id == "inference")
    assert inf.properties["eocube:weights_sha256"]["urban_fusion"]
    assert all(a.extra_fields["file:checksum"].startswith("1220") for a in inf.assets.values())
    with LocalStacApi(tiny_run) as api:
        found = pystac_client.Client.open(api.url).search(
            collections=["eocube-run"], ids=["estimates"]).item_collection()
    assert [i.id for i in found] == ["estimates"]


def _stages_done(run: Path) -> int:
    try:
        man = json.loads((run / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return sum(e.get("status") == "done" for e in man.get("stages", {}).values())


def test_a_sigkilled_run_resumes_with_identical_outputs(tiny_archive, tiny_run, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(tiny_archive, out)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    p = subprocess.Popen([sys.executable, "-m", "eocube.cli", "run", str(cfg)], env=env,
                         stdout=subprocess.DEVNULL, stderr=(tmp_path / "err.txt").open("w"),
                         start_new_session=True)
    t0 = time.monotonic()
    while _stages_done(out) < 4 and p.poll() is None and time.monotonic() - t0 < 240:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(30)
    killed_at = _stages_done(out)
    assert 4 <= killed_at < len(STAGES)
    result = run_pipeline(cfg, console=False)
    assert result.status == "completed"
    assert len(result.skipped) >= killed_at and set(result.ran) | set(result.skipped) == set(
        STAGES)
    log = (out / "run.log").read_text()
    assert all(f"stage {s}: up to date" in log for s in result.skipped)
    comparable = STAGES[: STAGES.index("evaluation") + 1]
    assert output_sums(out, comparable) == output_sums(tiny_run, comparable)
    third = run_pipeline(cfg, console=False)
    assert third.ran == () and third.skipped == STAGES


BAD = {
    "unknown key": ("city:\n  preset: tiny\n  seeed: 3\n", r"\.yaml:3: city\.seeed: unknown key"),
    "wrong type": ("inference:\n  tile: big\n", r"\.yaml:2: inference\.tile: .*integer"),
    "bbox order": ("aoi: [22.5, 114.0, 22.6, 114.1]\n", r"\.yaml:1: aoi: .*lat"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_configuration_names_line_and_key_and_writes_nothing(tmp_path, case):
    text, pattern = BAD[case]
    out = tmp_path / "out"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text + f"output: {out}\n")
    r = subprocess.run([sys.executable, "-m", "eocube.cli", "run", str(cfg)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    import re

    assert re.search(pattern, r.stderr), r.stderr
    assert not out.exists()


def test_bad_sources_are_refused_before_anything_is_written(tiny_archive, tmp_path):
    from eocube.catalog.server import free_port

    out = tmp_path / "out"
    cases = [
        ({"aoi": [10.0, 50.0, 10.1, 50.1]}, "outside the catalog's coverage"),
        ({"catalog": f"http://127.0.0.1:{free_port()}/stac"}, "unreachable"),
        ({"vectors": {"roads": str(tmp_path / "nope.parquet")}}, r"vectors\.roads"),
    ]
    for extra, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            run_pipeline(tiny_config(tiny_archive, out, **extra), console=False)
        assert not out.exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        run_pipeline(tiny_config(tiny_archive, a_file / "run", where=tmp_path), console=False)



def test_an_unwritable_output_folder_is_refused(tiny_archive, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root ignores modes)")
        with pytest.raises(ConfigError, match="not writable"):
            run_pipeline(tiny_config(tiny_archive, ro / "run", where=tmp_path), console=False)
    finally:
        ro.chmod(0o700)


def test_a_run_never_replaces_another_city_without_overwrite(tiny_archive, tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(tiny_archive, archive)
    (archive / "my_notes.txt").write_text("mine")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"city: {{preset: tiny, seed: 5, archive: {archive}}}\n"
                   f"output: {tmp_path / 'run'}\ncluster: {{kind: threads}}\n")
    with pytest.raises(ConfigError, match="holds another city"):
        run_pipeline(cfg, console=False)
    assert (archive / "my_notes.txt").read_text() == "mine"
    assert json.loads((archive / "manifest.json").read_text())["seed"] == 0


def test_the_features_and_typed_pois_follow_the_inputs(tiny_run):
    comm = pd.read_parquet(tiny_run / "zones" / "communities.parquet")
    built = pd.read_parquet(tiny_run / "features" / "community_builtup.parquet")
    assert sorted(built.index) == sorted(comm["community_id"])
    assert list(built.columns) == ["builtup_m2_2020", "builtup_m2_2021"]
    pois = pd.read_parquet(tiny_run / "zones" / "pois.parquet")
    assert pois["type"].nunique() > 5  # OSM tags mapped to many POI types, not one
    b = pd.read_parquet(tiny_run / "estimates" / "population_buildings.parquet")
    assert b["function"].nunique() > 1


def test_yaml_dates_are_taken_as_dates(tmp_path):
    from eocube.pipeline import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("dates: {start: 2020-03-01, end: '2021-06-30'}\n")
    c = load_config(cfg)
    assert (c.dates.start, c.dates.end) == ("2020-03-01", "2021-06-30")
    cfg.write_text("dates: {start: March}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:1: dates\.start: 'March' is not a date"):
        load_config(cfg)


def test_the_cubes_stage_journals_its_read_failures(tiny_run):
    # every cube the composites read is loaded with the stage's read journal, so a failure
    # outlives a kill between the write and its record (tests/reliability/test_failure_log.py)
    import logging

    from eocube.cube import FAILURES, load
    from eocube.pipeline.config import load_config
    from eocube.pipeline.runner import RunFolder, StageContext
    from eocube.pipeline.stages import READ_JOURNAL, composites, read_items

    cfg = load_config(tiny_run / "config.yaml")
    ctx = StageContext(cfg, RunFolder(tiny_run), "cubes", logging.getLogger("test"))
    ctx.resume = True  # nothing of the run's folder is touched
    s2 = read_items(ctx, "s2")
    gb = load(s2, bands=["SCL"], resolution=cfg.resolution, chunks={}).odc.geobox
    _, loaded = composites(ctx, s2, gb, {"x": 64, "y": 64})
    assert len(loaded) >= 2 * 2  # S2 and S1, per year
    assert {c[FAILURES].attrs.get("eocube:failure_journal") for c in loaded} == {
        str((tiny_run / "cubes" / READ_JOURNAL).resolve())}


def test_the_vhr_image_is_chunked_by_the_run_chunk_on_the_ground(tiny_run):
    # a fixed 2048 px chunk made the building model's task grow with the area
    # (benchmarks/scaling.py); at 64 px run chunks of 10 m, a VHR chunk covers 640 m
    import logging

    from eocube.pipeline.config import load_config
    from eocube.pipeline.runner import RunFolder, StageContext
    from eocube.pipeline.stages import read_items, vhr_chunk, vhr_image

    cfg = load_config(tiny_run / "config.yaml").model_copy(update={"chunk": 64})
    ctx = StageContext(cfg, RunFolder(tiny_run), "cubes", logging.getLogger("test"))
    ctx.resume = True  # nothing of the run's folder is touched
    vhr = vhr_image(ctx, read_items(ctx, "vhr"))
    res = abs(float(vhr.odc.geobox.resolution.x))
    side = vhr_chunk(cfg, res)
    assert side * res == 640 and side < max(vhr.sizes["y"], vhr.sizes["x"])
    assert {c for v in vhr.data_vars.values() for c in v.data.chunks[-1][:-1]} == {side}
    assert all(v.dtype == "float32" for v in vhr.data_vars.values())
