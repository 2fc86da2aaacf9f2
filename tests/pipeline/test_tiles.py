"""Large AOIs tile by tile (#13.4, #17): the tiny city's grid split on the planner's tile grid
(4 tiles at ``tile_px: 100``), the raster stages committed tile by tile and merged; the merged
outputs against an untiled run; a SIGKILLed ``eocube run`` redoes only its uncommitted tiles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from eocube.pipeline import run_pipeline
from tests.pipeline.conftest import output_sums, tiny_config

TILED = ("cubes", "inference", "change")
STAGES = ("search", *TILED)
#: a short run: two yearly composites from two months, S2 and S1 (the fusion model needs
#: both), no CCDC; 128 × 128 px split into 4 tiles (100 and 28 px on each axis)
CFG = {"stages": list(STAGES), "sensors": ["s2", "s1"], "change": {"ccdc": False},
       "dates": {"start": "2020-12-01", "end": "2021-01-31"}, "tiling": {"tile_px": 100}}


@pytest.fixture(scope="module")
def runs(tiny_archive, tmp_path_factory) -> tuple[Path, Path]:
    """(untiled run, tiled run) of the same configuration."""
    root = tmp_path_factory.mktemp("tiles")
    for name, px in (("untiled", None), ("tiled", 100)):
        r = run_pipeline(tiny_config(tiny_archive, root / name, **{**CFG,
                                                                  "tiling": {"tile_px": px}}),
                         console=False)
        assert r.status == "completed", r
    return root / "untiled", root / "tiled"


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_each_raster_stage_commits_its_tiles_and_lists_them_in_its_item(runs):
    untiled, tiled = runs
    man = _manifest(tiled)
    ids = None
    for s in TILED:
        tiles = man["stages"][s]["tiles"]
        assert len(tiles) == 4 and all(t["status"] == "done" for t in tiles.values()), s
        ids = ids or sorted(tiles)
        assert sorted(tiles) == ids  # the same tiles in every stage
        for rec in tiles.values():  # data, then its checksum in the tile's record
            assert rec["outputs"] and all(len(sha) == 64 for sha in rec["outputs"].values())
            assert all((tiled / rel).exists() for rel in rec["outputs"])
        item = json.loads((tiled / "eocube-run" / s / f"{s}.json").read_text())
        assert sorted(t["id"] for t in item["properties"]["eocube:tiles"]) == ids
    assert ids == ["50N-0200-2500", "50N-0200-2501", "50N-0201-2500", "50N-0201-2501"]
    assert "tiles" not in _manifest(untiled)["stages"]["cubes"]  # smaller AOIs: not split
    log = (tiled / "run.log").read_text()
    assert sum(f"stage cubes: tile {t} committed" in log for t in ids) == 4


def test_the_merged_outputs_equal_the_untiled_run(runs):
    """Composites bit for bit (per-pixel medians); built-up probability within 1e-5 (the
    fusion U-Net's receptive field fits in a tile's halo of ``inference.halo`` px); the
    change probability within the tiled-inference tolerance (Siam-Diff's ASPP pools the whole
    window it sees, so a tile with its halo and the whole grid give it other context, as
    predict's own windows do on a grid larger than one); per-pixel change bit for bit from
    the merged built-up."""
    from eocube.pipeline.stages import builtup_change

    untiled, tiled = runs

    def open_(run: Path, stage: str, name: str) -> xr.Dataset:
        return xr.open_zarr(run / stage / name, decode_coords="all")

    a, b = open_(untiled, "cubes", "composites.zarr"), open_(tiled, "cubes", "composites.zarr")
    assert sorted(a.data_vars) == sorted(b.data_vars) and len(a.data_vars) == 8
    for v in a.data_vars:
        assert np.array_equal(a[v].values, b[v].values, equal_nan=True), v
    for c in ("time", "y", "x"):
        assert np.array_equal(a[c].values, b[c].values), c
    pa = open_(untiled, "inference", "builtup.zarr")["builtup"].values
    pb = open_(tiled, "inference", "builtup.zarr")["builtup"].values
    np.testing.assert_allclose(pb, pa, atol=1e-5, rtol=0)
    ca = open_(untiled, "inference", "change.zarr")["new_builtup"].values
    cb = open_(tiled, "inference", "change.zarr")["new_builtup"].values
    # measured on the tiny city (seed 0): mean |Δ| 0.0068, max 0.54, the ≥ 0.5 maps agree on
    # 99.4 % of pixels (built-up above: max |Δ| 4e-7)
    assert np.abs(cb - ca).mean() < 0.02
    assert ((cb >= 0.5) == (ca >= 0.5)).mean() >= 0.98
    merged = open_(tiled, "change", "builtup_change.zarr")
    whole = builtup_change(open_(tiled, "inference", "builtup.zarr")["builtup"],
                           threshold=0.5).compute()
    for v in ("builtup_year", "new_builtup"):
        assert np.array_equal(merged[v].values, whole[v].values), v


def _committed(run: Path) -> dict[str, set[str]]:
    """Tiles committed per tiled stage, read from the run's manifest."""
    try:
        man = _manifest(run)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {s: {t for t, r in man["stages"].get(s, {}).get("tiles", {}).items()
                if r["status"] == "done"} for s in TILED}


def test_a_sigkilled_tiled_run_redoes_only_its_uncommitted_tiles(tiny_archive, runs, tmp_path):
    _, reference = runs
    out = tmp_path / "run"
    cfg = tiny_config(tiny_archive, out, **CFG)
    total = 4 * len(TILED)
    p = subprocess.Popen([sys.executable, "-m", "eocube.cli", "run", str(cfg)],
                         env={**os.environ, "PYTHONWARNINGS": "ignore"},
                         stdout=subprocess.DEVNULL, stderr=(tmp_path / "err.txt").open("w"),
                         start_new_session=True)
    t0 = time.monotonic()
    while (sum(map(len, _committed(out).values())) < total // 2 and p.poll() is None
           and time.monotonic() - t0 < 240):
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(30)
    done = _committed(out)
    man = _manifest(out)
    n = sum(map(len, done.values()))
    assert total // 2 <= n < total, (n, (tmp_path / "err.txt").read_text()[-2000:])
    stage_done = {s for s in TILED if man["stages"].get(s, {}).get("status") == "done"}

    again = run_pipeline(cfg, console=False)
    assert again.status == "completed"
    redone = 0
    for s in TILED:
        if s in stage_done:
            assert s in again.skipped and s not in again.tiles
            continue
        ran, skipped = again.tiles[s]["ran"], again.tiles[s]["skipped"]
        assert set(skipped) == done[s] and not set(ran) & done[s]
        assert len(ran) + len(skipped) == 4
        redone += len(ran)
    assert redone == total - n  # only the tiles uncommitted at the kill were computed again
    log = (out / "run.log").read_text()
    for s in set(TILED) - stage_done:
        assert all(f"stage {s}: skipped tile {t} (committed)" in log for t in done[s])
    assert output_sums(out, STAGES) == output_sums(reference, STAGES)

    third = run_pipeline(cfg, console=False)
    assert third.ran == () and third.skipped == STAGES and third.tiles == {}
