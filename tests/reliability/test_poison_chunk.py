"""A chunk whose task kills every worker it is given: under on_error="record" the write
completes with that chunk recorded (and left for the next call); the other chunks are as an
undisturbed run wrote them."""

from __future__ import annotations

import os

import dask
import numpy as np
import pytest
import xarray as xr
import zarr

from eocube.io import to_zarr
from eocube.testing import scenes as scene

POISON = (1, 1, 2)  # (time, y, x) chunk index


def _kill_on_poison(block: np.ndarray, block_info=None) -> np.ndarray:
    if tuple(block_info[0]["chunk-location"]) == POISON and os.environ.get("EOCUBE_POISON"):
        os._exit(1)  # the worker process dies, as with a segfault in a native library
    return block


def _result() -> xr.DataArray:
    c = scene.cube(96, 128, 2, chunks=32)["B02"]  # 2 × 3 × 4 = 24 chunks
    return c.copy(data=c.data.map_blocks(_kill_on_poison, dtype=c.dtype)).rename("builtup")


@pytest.mark.slow
def test_a_chunk_that_kills_its_workers_is_recorded_and_the_rest_written(tmp_path):
    from distributed import Client, LocalCluster

    res = _result()
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None, env={"EOCUBE_POISON": "1"}) as cluster, \
            Client(cluster):
        report = to_zarr(res, tmp_path / "out.zarr", on_error="record")
    failed = {tuple(r["chunk"]) for r in report.chunks_failed}
    # the poison, and at most a task that was running beside it when its workers died
    assert POISON in failed and len(failed) <= 3
    assert all(r["variable"] == "builtup" and "KilledWorker" in r["error"]
               for r in report.chunks_failed)
    assert report.chunks_written == 24 - len(failed) and report.chunks_total == 24
    back = xr.open_zarr(tmp_path / "out.zarr")
    assert back.attrs["eocube_complete"] is False
    expected = res.values
    got = back["builtup"].values
    mask = np.ones(expected.shape, bool)
    for t, y, x in failed:
        mask[t, y * 32:(y + 1) * 32, x * 32:(x + 1) * 32] = False
    np.testing.assert_array_equal(got[mask], expected[mask])
    markers = zarr.open_array(str(tmp_path / "out.zarr"), path="_eocube_progress/builtup")[...]
    assert markers.sum() == 24 - len(failed) and not any(markers[c] for c in failed)
    # the next call (the cause gone) computes only the failed chunks and completes the store
    with dask.config.set(scheduler="sync"):
        again = to_zarr(res, tmp_path / "out.zarr")
    assert again.chunks_written == len(failed) and again.chunks_skipped == 24 - len(failed)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "out.zarr")["builtup"].values,
                                  expected)


def test_a_failing_chunk_is_recorded_on_the_threaded_scheduler(tmp_path):
    res = _result()

    def boom(block, block_info=None):
        if tuple(block_info[0]["chunk-location"]) == POISON:
            raise OSError("disk on fire")
        return block

    bad = res.copy(data=res.data.map_blocks(boom, dtype=res.dtype))
    report = to_zarr(bad, tmp_path / "t.zarr", on_error="record")
    assert report.chunks_failed == ({"variable": "builtup", "chunk": list(POISON),
                                     "error": "OSError: disk on fire"},)
    with pytest.raises(OSError, match="disk on fire"):
        to_zarr(bad, tmp_path / "u.zarr")  # the default still raises
