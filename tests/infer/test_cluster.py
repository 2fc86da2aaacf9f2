"""Runs on a real LocalCluster of worker processes, resumable Zarr writes under killed workers
and a killed run, COG/STAC outputs, and a worker's memory bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import numpy as np
import psutil
import pytest
import xarray as xr

from eocube.errors import ConfigError
from eocube.infer import clear_cache, predict, reset_stats, start_client, stats, to_cog, to_zarr
from eocube.io.zarr_store import PROGRESS
from eocube.testing import scenes as scene

pytestmark = pytest.mark.slow
KW = dict(tile=64, overlap=16, device="cpu", batch_size=4)
REPO = Path(__file__).resolve().parents[2]
# slows every batch a little in a worker, so a kill lands mid-run (test-only instrumentation)
SLOW = ("import time, eocube.infer.blocks as b, eocube.infer.runtime as r\n"
        "def _slow(*a, _f=r.forward):\n    time.sleep({s})\n    return _f(*a)\n"
        "b.forward = _slow\n")


@pytest.fixture(scope="module")
def client():
    c = start_client("local", n_workers=2, threads_per_worker=1, torch_threads=1,
                     memory_limit="1.5GiB")
    yield c
    c.close()


def _markers(store: Path) -> int:
    d = store / PROGRESS
    return sum(1 for p in d.rglob("*") if p.is_file() and p.name != "zarr.json") if (
        d.exists()) else 0


def test_two_workers_equal_one_process_and_build_the_model_once_each(client, unet_path):
    c = scene.cube(128, 192, 2, chunks=64)
    local = predict(c, unet_path, **KW).compute(scheduler="sync")
    client.run(reset_stats)
    client.run(clear_cache)
    dist = client.compute(predict(c, unet_path, **KW)).result()
    np.testing.assert_allclose(dist.values, local.values, atol=1e-6, rtol=0)
    per_worker = client.run(stats)
    assert len(per_worker) == 2
    assert sum(s.get("chunks", 0) for s in per_worker.values()) == 2 * 2 * 3
    # every worker that ran chunks built the model exactly once; one that ran none, never
    for s in per_worker.values():
        assert s.get("models_built", 0) == (1 if s.get("chunks", 0) else 0), s


def test_killing_a_worker_mid_write_still_completes_identically(client, unet_path, tmp_path):
    c = scene.cube(128, 256, 2, chunks=64)  # 16 chunks
    ref = predict(c, unet_path, **KW).compute(scheduler="sync")
    client.run(exec, SLOW.format(s=0.15), {})
    store = tmp_path / "kill_worker.zarr"
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "r", to_zarr(predict(c, unet_path, **KW), store)))
    with client.as_current():
        t.start()
        deadline = time.time() + 60
        while _markers(store) < 3 and time.time() < deadline and t.is_alive():
            time.sleep(0.02)
        assert t.is_alive(), "the write finished before a worker could be killed"
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        t.join(120)
    assert result["r"].chunks_total == 16 and result["r"].chunks_written == 16
    back = xr.open_zarr(store)["builtup"]
    np.testing.assert_allclose(back.values, ref.values, atol=1e-6, rtol=0)
    assert xr.open_zarr(store).attrs["eocube_complete"]


def test_killed_run_resumes_computing_only_missing_chunks(unet_path, tmp_path):
    store = tmp_path / "resume.zarr"
    code = (SLOW.format(s=0.1) + "import dask\nfrom eocube.testing import scenes as scene\n"
            "from eocube.infer import predict, to_zarr\n"
            f"c = scene.cube(128, 256, 2, chunks=64)\n"
            f"to_zarr(predict(c, {str(unet_path)!r}, **{KW!r}), {str(store)!r})\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO)
    try:
        deadline = time.time() + 60
        while _markers(store) < 5 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = _markers(store)
    assert 5 <= done < 16
    c = scene.cube(128, 256, 2, chunks=64)
    reset_stats()
    with dask.config.set(scheduler="threads"):  # in this process, so its counters count
        report = to_zarr(predict(c, unet_path, **KW), store)
    s = stats()
    assert (report.chunks_skipped, report.chunks_written) == (done, 16 - done)
    assert s["zarr_chunks"] == 16 - done  # counted where it happens: chunks written here
    assert s["chunks"] < 16  # and the model ran only over tiles the missing chunks need
    ref = predict(c, unet_path, **KW).compute(scheduler="sync")
    np.testing.assert_allclose(xr.open_zarr(store)["builtup"].values, ref.values, atol=1e-6)
    again = to_zarr(predict(c, unet_path, **KW), store)
    assert (again.chunks_skipped, again.chunks_written) == (16, 0)
    with pytest.raises(ConfigError, match=r"holds another result.*mode='w'"):
        to_zarr(predict(c, unet_path, tile=64, overlap=8, device="cpu"), store)


def test_zarr_and_cog_carry_provenance_in_stac_items(unet_path, tmp_path):
    c = scene.cube(64, 96, 2, chunks=48)
    r = predict(c, unet_path, tile=48, overlap=8, device="cpu")
    to_zarr(r, tmp_path / "urban.zarr")
    item = json.loads((tmp_path / "urban.stac-item.json").read_text())
    p = item["properties"]
    assert p["eocube:weights_sha256"] == r.attrs["weights_sha256"]
    assert p["eocube:model_spec"]["name"] == "tiny_unet"
    assert (p["eocube:tile"], p["eocube:overlap"], p["eocube:blend"]) == (48, 8, "trim")
    assert (p["start_datetime"], p["end_datetime"]) == ("2019-06-01T00:00:00Z",
                                                        "2020-06-01T00:00:00Z")
    assert p["proj:code"] == "EPSG:32650" and p["proj:shape"] == [64, 96]
    files = to_cog(r, tmp_path / "cog" / "urban")
    assert [f.name for f in files] == ["urban_builtup_2019-06-01.tif",
                                      "urban_builtup_2020-06-01.tif"]
    import rasterio

    with rasterio.open(files[1]) as ds:
        tags = ds.tags()
        assert ds.crs.to_epsg() == 32650 and ds.shape == (64, 96)
        np.testing.assert_allclose(ds.read(1), r.isel(time=1).values, atol=1e-6)
    assert tags["weights_sha256"] == r.attrs["weights_sha256"]
    cog_item = json.loads(files[1].with_suffix(".stac-item.json").read_text())
    assert cog_item["properties"]["datetime"] == "2020-06-01T00:00:00Z"
    assert cog_item["assets"]["data"]["href"] == files[1].name
    import pystac

    assert pystac.Item.from_dict(cog_item).properties["eocube:tile"] == 48


def _peak_rss(client, unet_path, store: Path, size: int) -> float:
    """Peak RSS (MiB) above its level before the run, of the single worker writing ``size``²."""
    pid = next(iter(client.run(os.getpid).values()))
    proc = psutil.Process(pid)
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    w = threading.Thread(target=watch)
    w.start()
    try:
        with client.as_current():
            to_zarr(predict(scene.cube(size, size, 1, chunks=128), unet_path, tile=128,
                            overlap=16, device="cpu", batch_size=4), store, stac=False)
    finally:
        stop.set()
        w.join()
    return (peak[0] - base) / 2**20


def test_worker_memory_stays_bounded_as_the_area_grows(unet_path, tmp_path):
    """Bound: a worker holds a few chunks per thread, ~ (chunk + tile)² × (bands + 2) × 4 B
    × 4 for input window, canvas, output — here (128 + 128)² × 5 × 16 B ≈ 5 MiB plus torch's
    working memory; asserted as < 150 MiB above idle, and not growing with a 9× larger area
    (whose input and output alone, held at once, would be ≈ 36 MiB more)."""
    with start_client("local", n_workers=1, threads_per_worker=1, torch_threads=1) as cl:
        _peak_rss(cl, unet_path, tmp_path / "warm.zarr", 256)  # model and libraries loaded
        small = _peak_rss(cl, unet_path, tmp_path / "small.zarr", 512)
        big = _peak_rss(cl, unet_path, tmp_path / "big.zarr", 1536)
    assert big < 150
    assert big <= small + 24, (small, big)
