"""to_zarr on any store: fsspec URLs resume like local paths; a directory that is not a Zarr
store is refused and left as it was."""

from __future__ import annotations

import json
import uuid

import dask
import fsspec
import numpy as np
import pytest
import xarray as xr
import zarr

from eocube.errors import ConfigError
from eocube.io import to_zarr
from eocube.testing import scenes as scene

FAIL: set[tuple[int, ...]] = set()


def _maybe_fail(block: np.ndarray, block_info=None) -> np.ndarray:
    if tuple(block_info[0]["chunk-location"]) in FAIL:
        raise RuntimeError("injected failure")
    return block


def _result() -> xr.DataArray:
    c = scene.cube(96, 128, 2, chunks=32)["B02"]  # 2 × 3 × 4 = 24 chunks
    out = c.copy(data=c.data.map_blocks(_maybe_fail, dtype=c.dtype))
    return out.rename("builtup").assign_attrs(model="test", tile=32)


def test_an_interrupted_write_to_an_fsspec_store_resumes_with_the_missing_chunks():
    url = f"memory://eocube-test-{uuid.uuid4().hex}/urban.zarr"
    res = _result()
    FAIL.clear()
    FAIL.add((1, 2, 1))
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="injected"):
        to_zarr(res, url)
    FAIL.clear()
    marked = int(zarr.open_array(url, path="_eocube_progress/builtup", mode="r")[...].sum())
    assert 0 < marked < 24
    with dask.config.set(scheduler="sync"):
        rep = to_zarr(res, url)
    assert rep.store == url and rep.chunks_total == 24
    assert rep.chunks_skipped == marked and rep.chunks_written == 24 - marked
    back = xr.open_zarr(url)
    assert back.attrs["eocube_complete"] is True
    assert "_eocube_progress" not in back.variables
    np.testing.assert_array_equal(back["builtup"].values, res.values)
    item = json.loads(fsspec.open(url.replace("urban.zarr", "urban.stac-item.json")).open()
                      .read())
    assert item["assets"]["data"]["href"] == "urban.zarr"
    with dask.config.set(scheduler="sync"):
        again = to_zarr(res, url)
    assert again.chunks_written == 0 and again.chunks_skipped == 24


def test_a_directory_that_is_not_a_zarr_store_is_refused_and_untouched(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    for mode in ("resume", "w"):
        with pytest.raises(ConfigError, match="not a Zarr store"):
            to_zarr(_result(), d, mode=mode)
    assert (d / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]


def test_a_committed_chunk_is_never_written_again():
    # a task rerun after its worker died once its write had landed: the marker wins
    from eocube.io import zarr_store

    url = f"memory://eocube-test-{uuid.uuid4().hex}/urban.zarr"
    res = _result()
    FAIL.clear()
    FAIL.add((1, 2, 1))
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="injected"):
        to_zarr(res, url)
    FAIL.clear()
    markers = zarr.open_array(url, path="_eocube_progress/builtup", mode="r")[...]
    where = tuple(int(i) for i in np.argwhere(markers)[0])
    arr = zarr.open_array(url, path="builtup", mode="r")
    loc = [(w * c, w * c + c) for w, c in zip(where, arr.chunks, strict=True)]
    before = arr[...]
    zarr_store._write_block(np.full(arr.chunks, -1.0, "float32"), store=url,
                            var="builtup", block_info={0: {"array-location": loc,
                                                           "chunk-location": where}})
    np.testing.assert_array_equal(zarr.open_array(url, path="builtup", mode="r")[...], before)
