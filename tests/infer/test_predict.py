"""predict / predict_change on dask cubes: seamless and chunk-independent, lazy with a graph
proportional to chunks, correct against a hand-built numpy reference, provenance attached."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from eocube.errors import GridError, ModelSpecError
from eocube.infer import WeightsRef, clear_cache, get_model, predict, predict_change, stats
from eocube.infer.tiling import BLENDS, Tiling
from eocube.models import ModelSpec, forward_arrays, load_model
from eocube.testing import scenes as scene


def _np(da: xr.DataArray) -> np.ndarray:
    return da.compute(scheduler="sync").values


def test_three_chunkings_give_the_same_result_and_no_seam(unet_path):
    """Seam test: the same cube under three chunkings (one of them not aligned to anything)
    agrees within 1e-5 (so chunk borders leave no trace); at tile borders the blended map stays
    far closer to the model run on the whole image than hard tile cuts (overlap=0), which show
    seams; the default "trim" window is closer than the full "cosine" ramp."""
    c = scene.cube(160, 224, 1)
    kw = dict(tile=64, overlap=16, device="cpu")
    maps = [_np(predict(c.chunk(y=cy, x=cx), unet_path, **kw))[0]
            for cy, cx in ((160, 224), (64, 64), (37, 101))]
    for m in maps[1:]:
        np.testing.assert_allclose(m, maps[0], atol=1e-5, rtol=0)
    model = load_model(unet_path, device="cpu")
    x = np.stack([c[b].values[0] for b in scene.BANDS])
    whole = forward_arrays({"s2": x}, model, device="cpu")["out"]
    # mean error per column against the untiled forward, away from the top and bottom edge
    cols = np.abs(maps[2] - whole)[16:-16].mean(axis=0)
    tile_borders = [int(o) + d for o in Tiling(64, 16).origins(224)[1:] for d in range(16)]
    assert cols.max() < 1e-3
    hard = _np(predict(c, unet_path, tile=64, overlap=0, device="cpu"))[0]
    hard_cols = np.abs(hard - whole)[16:-16].mean(axis=0)
    assert hard_cols[[63, 64, 127, 128]].min() > 5 * np.median(hard_cols)  # seams are visible
    assert cols[tile_borders].max() < 0.1 * hard_cols[[63, 64, 127, 128]].min()
    cosine = _np(predict(c, unet_path, blend="cosine", **kw))[0]
    assert np.abs(maps[0] - whole).max() < 0.5 * np.abs(cosine - whole).max()


@pytest.mark.parametrize("blend", BLENDS)
def test_matches_a_numpy_reference_of_the_blending(unet_path, blend):
    """The dask result equals a plain loop over the global tiles with the model and windows."""
    c = scene.cube(100, 90, 1, chunks=40)
    t = Tiling(48, 12, blend)
    got = _np(predict(c, unet_path, tile=48, overlap=12, blend=blend, device="cpu"))[0]
    model = load_model(unet_path, device="cpu")
    x = np.stack([c[b].values[0] for b in scene.BANDS])
    acc = np.zeros((100, 90))
    for oy in t.origins(100):
        for ox in t.origins(90):
            p = forward_arrays({"s2": x[:, oy:oy + 48, ox:ox + 48]}, model,
                               device="cpu")["out"]
            acc[oy:oy + 48, ox:ox + 48] += p * np.outer(t.window(100, oy), t.window(90, ox))
    ref = acc / np.outer(t.weight_sum(100, 0, 100), t.weight_sum(90, 0, 90))
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_building_the_graph_computes_nothing_and_grows_with_chunks(unet_path, no_compute):
    small, big = scene.cube(128, 128, 1, chunks=64), scene.cube(256, 256, 1, chunks=64)
    with no_compute():
        a = predict(small, unet_path, tile=64, overlap=16)
        b = predict(big, unet_path, tile=64, overlap=16)
    na, nb = len(a.data.__dask_graph__()), len(b.data.__dask_graph__())
    ca, cb = a.data.npartitions, b.data.npartitions
    assert (ca, cb) == (4, 16)
    assert na / ca == pytest.approx(nb / cb, rel=0.01)  # tasks per chunk: a constant
    assert na / ca <= 16  # 3 band sources, stacking, tiles, blend
    # keys from tokenize: the same call gives the same graph
    assert predict(small, unet_path, tile=64, overlap=16).data.name == a.data.name
    assert predict(small, unet_path, tile=64, overlap=8).data.name != a.data.name


def test_graph_carries_a_weights_reference_never_a_model(unet_path):
    r = predict(scene.cube(64, 64, 1), unet_path, tile=32, overlap=8)
    blob = pickle.dumps(dict(r.data.__dask_graph__()))
    assert b"torch" not in blob and len(blob) < 200_000
    ref = WeightsRef.of(unet_path)
    assert ref.sha256 == hashlib.sha256(unet_path.read_bytes()).hexdigest()


def test_torch_is_not_imported_to_build_a_prediction(unet_path):
    code = ("import sys; from eocube.testing import scenes as scene; "
            "from eocube.infer import predict; "
            f"r = predict(scene.cube(64, 64, 1), {str(unet_path)!r}, tile=32, overlap=8); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(r.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 64, 64)"


def test_time_series_predicts_every_step_on_the_cube_grid(unet_path):
    c = scene.cube(64, 96, 3, chunks=48)
    r = predict(c, unet_path, tile=48, overlap=8, device="cpu")
    assert r.dims == ("time", "y", "x") and r.dtype == np.float32
    xr.testing.assert_equal(r["time"], c["time"])
    assert r.odc.geobox == c.odc.geobox
    allsteps = _np(r)
    one = _np(predict(c.isel(time=[1]), unet_path, tile=48, overlap=8, device="cpu"))
    np.testing.assert_allclose(allsteps[1], one[0], atol=1e-6)
    assert not np.allclose(allsteps[0], allsteps[1])


def test_provenance_in_attrs(unet_path):
    r = predict(scene.cube(64, 64, 1), unet_path, tile=32, overlap=8, blend="gaussian")
    assert r.name == "builtup"
    assert r.attrs["weights_sha256"] == hashlib.sha256(unet_path.read_bytes()).hexdigest()
    assert ModelSpec.from_json(r.attrs["model_spec"]).name == "tiny_unet"
    assert (r.attrs["tile"], r.attrs["overlap"], r.attrs["blend"], r.attrs["amp"]) == (
        32, 8, "gaussian", "fp32")
    json.dumps(r.attrs)  # writable to Zarr / STAC as it is


def test_nan_pixels_stay_nan_and_cube_without_time(unet_path):
    c = scene.cube(64, 64, 1).isel(time=0).compute()
    c["B02"][10:20, 10:20] = np.nan
    c["B03"][10:20, 10:20] = np.nan
    c["B04"][10:15, 10:20] = np.nan
    r = predict(c, unet_path, tile=32, overlap=8, device="cpu")
    assert r.dims == ("y", "x") and r.chunks is not None
    v = _np(r)
    assert np.isnan(v[10:15, 10:20]).all() and np.isfinite(v[15:20, 10:20]).all()
    assert np.isfinite(v).sum() == 64 * 64 - 50


def test_missing_band_and_non_dense_model_are_refused(unet_path):
    c = scene.cube(64, 64, 1).drop_vars("B03")
    with pytest.raises(ModelSpecError, match=r"needs bands \['B02', 'B03', 'B04'\] in that "
                                             r"order; missing \['B03'\]"):
        predict(c, unet_path)
    with pytest.raises(ModelSpecError, match="has heads \\['out'\\]"):
        predict(scene.cube(64, 64, 1), unet_path, heads="sar")


def test_two_inputs_from_a_mapping_and_grid_mismatch(dual_path):
    s2 = scene.cube(64, 80, 1, chunks=40)
    s1 = scene.cube(64, 80, 1, chunks=40, bands=scene.S1, seed=3)
    both = xr.merge([s1, s2], compat="override", join="exact")
    r1 = predict({"s1": s1, "s2": s2}, dual_path, tile=32, overlap=8, device="cpu",
                 heads=("out", "sar", "optical"))
    r2 = predict(both.chunk(x=80, y=64), dual_path, tile=32, overlap=8, device="cpu",
                 heads=("out", "sar", "optical"))
    assert isinstance(r1, xr.Dataset) and list(r1.data_vars) == ["builtup", "sar", "optical"]
    xr.testing.assert_allclose(r1.compute(), r2.compute(), atol=1e-5)
    with pytest.raises(GridError, match="align them first"):
        predict({"s1": s1.isel(x=slice(1, None)), "s2": s2.isel(x=slice(1, None)).isel(
            y=slice(1, None))}, dual_path)


def test_change_between_two_dates_is_lazy_and_chunk_independent(change_path, no_compute):
    c = scene.cube(96, 96, 2, chunks=96)
    with no_compute():
        r = predict_change(c.isel(time=[0]), c.isel(time=1), change_path, tile=48, overlap=12,
                           heads=("out", "seg_t1", "seg_t2"), device="cpu")
    assert r["new_builtup"].dims == ("y", "x")
    assert (r.attrs["time_before"], r.attrs["time_after"]) == ("2019-06-01", "2020-06-01")
    a = r.compute(scheduler="sync")
    cc = c.chunk(x=30, y=41)
    b = predict_change(cc.isel(time=0), cc.isel(time=1), change_path, tile=48, overlap=12,
                       heads=("out", "seg_t1", "seg_t2"), device="cpu").compute()
    xr.testing.assert_allclose(a, b, atol=1e-5)
    assert float(a["new_builtup"].std()) > 0


def test_model_is_built_once_per_process_and_sha_is_checked(unet_path, tmp_path):
    ref = WeightsRef.of(unet_path)
    clear_cache()  # else an earlier test's model is reused and nothing is built at all
    before = stats().get("models_built", 0)
    predict(scene.cube(64, 64, 1), ref, tile=32, overlap=8, device="cpu").compute()
    predict(scene.cube(64, 64, 2), ref, tile=32, overlap=8, device="cpu").compute()
    assert stats().get("models_built", 0) - before == 1
    import torch

    (module, spec), _ = get_model(ref, device="cpu")  # prepared once for inference, cached
    assert spec == ref.spec()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())
    bad = WeightsRef(ref.path, "0" * 64)
    with pytest.raises(ModelSpecError, match="the file changed since predict"):
        get_model(bad, device="cpu")


torch = pytest.importorskip("torch")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_with_and_without_amp_matches_cpu(unet_path):
    c = scene.cube(128, 128, 1)
    cpu = _np(predict(c, unet_path, tile=64, overlap=16, device="cpu"))
    gpu = _np(predict(c, unet_path, tile=64, overlap=16, device="cuda"))
    amp = _np(predict(c, unet_path, tile=64, overlap=16, device="cuda", amp=True))
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    np.testing.assert_allclose(amp, cpu, atol=3e-2)


def test_batch_size_by_device_and_result_independent_of_it(unet_path):
    """Left to the device, a CPU batch holds as many tiles as fit its pixel budget (at least
    one); an explicit size is kept; the map does not depend on the batch size."""
    from eocube.infer.runtime import BATCH_PIXELS, RunOptions, batch_size

    cpu = BATCH_PIXELS["cpu"]
    assert batch_size(RunOptions(device="cpu"), 384 * 384) == max(1, cpu // 384**2)
    assert batch_size(RunOptions(device="cpu"), 64 * 64) == cpu // 64**2
    assert batch_size(RunOptions(device="cpu"), 4 * cpu) == 1
    assert batch_size(RunOptions(batch_size=3, device="cpu"), 64 * 64) == 3
    c = scene.cube(100, 90, 1, chunks=50)
    kw = dict(tile=32, overlap=8, device="cpu")
    clear_cache()
    before = stats().get("batches", 0)
    auto = _np(predict(c, unet_path, **kw))
    n_auto = stats()["batches"] - before
    one = _np(predict(c, unet_path, batch_size=1, **kw))
    n_one = stats()["batches"] - before - n_auto
    np.testing.assert_allclose(auto, one, atol=1e-6, rtol=0)
    assert n_auto < n_one  # the auto batches held several tiles
    with pytest.raises(Exception, match="batch_size=0"):
        predict(c, unet_path, batch_size=0, **kw)


def test_cpu_workers_tune_glibc_malloc_once_unless_told_not_to():
    code = ("from eocube.infer.runtime import tune_malloc as t; "
            "import sys; print(t(), t())")
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=120, check=True)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True, env={**os.environ, "EOCUBE_TUNE_MALLOC": "0"})
    assert on.stdout.split() == (["True", "True"] if sys.platform.startswith("linux")
                                 else ["False", "False"])
    assert off.stdout.split() == ["False", "False"]


def test_band_aliases_give_the_same_prediction_as_asset_names():
    """A cube loaded with the profile's common names (red, nir, swir16 …, as
    ``eocube.cube.load(bands=[...])`` names them) predicts as one with the asset keys."""
    s2 = ("B02", "B03", "B04", "B08", "B11", "B12")
    alias = dict(zip(s2, ("blue", "green", "red", "nir", "swir16", "swir22"), strict=True))
    c = scene.cube(48, 48, 1, bands=s2) * 0.25
    kw = dict(tile=32, overlap=8, device="cpu")
    ref = _np(predict(c, "urban_s2", **kw))
    np.testing.assert_array_equal(_np(predict(c.rename(alias), "urban_s2", **kw)), ref)
    arr = c.rename(alias).to_dataarray("band")  # a DataArray with a band coordinate
    np.testing.assert_array_equal(_np(predict(arr, "urban_s2", **kw)), ref)
    # an asset key present is taken as it is (its alias beside it stays an extra variable)
    both = c.assign(red=c["B04"] * 0 + 0.9)
    np.testing.assert_array_equal(_np(predict(both, "urban_s2", **kw)), ref)
    # a band that neither name gives is named in the error
    with pytest.raises(ModelSpecError, match=r"missing \['B12'\]"):
        predict(c.rename(alias).drop_vars("swir22"), "urban_s2", **kw)
