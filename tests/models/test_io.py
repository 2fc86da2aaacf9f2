"""ModelSpec and weights files: bit-exact round trip, refusal of mismatches, no pickle."""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from eocube.errors import ModelSpecError
from eocube.models import (
    InputSpec,
    LoadedModel,
    ModelSpec,
    as_input,
    available_weights,
    build_model,
    check_input,
    for_inference,
    forward_arrays,
    load_model,
    read_spec,
    save_model,
)

S2 = ("B02", "B03", "B04", "B08", "B11", "B12")


def _spec(**kw) -> ModelSpec:
    base = dict(
        name="t", architecture="dual_stream_unet",
        kwargs={"sar_channels": 2, "optical_channels": 6, "width": 4, "depth": 2},
        inputs=(InputSpec("s1", ("vv", "vh"), (-10, -17), (3, 3), transform="db"),
                InputSpec("s2", S2, [0.1] * 6, [0.05] * 6)),
        task="segmentation", patch_size=32, outputs=("builtup",))
    base.update(kw)
    return ModelSpec(**base)


def _trained(spec: ModelSpec) -> torch.nn.Module:
    m = build_model(spec)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    m.train()(torch.randn(2, 2, 16, 16), torch.randn(2, 6, 16, 16))  # move BN statistics
    return m.eval()


def test_spec_json_round_trip():
    s = _spec(training={"steps": 3}, target_transform={"mean": 1.0})
    assert ModelSpec.from_json(s.to_json()) == s


def test_saved_model_round_trips_bit_exactly(tmp_path):
    spec = _spec()
    m = _trained(spec)
    path = save_model(m, spec, tmp_path / "m.safetensors")
    m2, spec2 = load_model(path, device="cpu")
    assert spec2 == spec
    a, b = m.state_dict(), m2.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    x = (torch.randn(1, 2, 16, 16), torch.randn(1, 6, 16, 16))
    with torch.no_grad():
        assert torch.equal(m(*x)["out"], m2(*x)["out"])


def test_a_wrong_band_list_is_refused(tmp_path):
    spec = _spec()
    path = save_model(_trained(spec), spec, tmp_path / "m.safetensors")
    wrong = dataclasses.replace(spec, inputs=(
        spec.inputs[0], InputSpec("s2", S2[:5], [0.1] * 5, [0.05] * 5)))
    _rewrite_spec(path, wrong)
    with pytest.raises(ModelSpecError, match=r"input 's2' has band list \['B02', 'B03', 'B04', "
                                             r"'B08', 'B11'\] \(5 bands\) but the network takes 6"):
        load_model(path, device="cpu")


def test_a_wrong_tensor_shape_is_refused_naming_the_tensor(tmp_path):
    spec = _spec()
    path = save_model(_trained(spec), spec, tmp_path / "m.safetensors")
    # the same file claims a wider network: every tensor then has the wrong shape
    _rewrite_spec(path, dataclasses.replace(spec, kwargs={**spec.kwargs, "width": 8}))
    with pytest.raises(ModelSpecError, match=r"tensor 'sar\.encoder\.inc\.0\.weight' has shape "
                                             r"\[4, 2, 3, 3\].*needs \[8, 2, 3, 3\]"):
        load_model(path, device="cpu")


def test_missing_tensors_and_unknown_architectures_are_refused(tmp_path):
    spec = _spec()
    path = save_model(_trained(spec), spec, tmp_path / "m.safetensors")
    _rewrite_spec(path, dataclasses.replace(spec, kwargs={**spec.kwargs, "depth": 3}))
    with pytest.raises(ModelSpecError, match="missing tensors"):
        load_model(path, device="cpu")
    _rewrite_spec(path, dataclasses.replace(spec, architecture="os.system"))
    with pytest.raises(ModelSpecError, match=r"unknown architecture 'os\.system'"):
        load_model(path, device="cpu")


def test_a_file_without_spec_or_not_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelSpecError, match="carries no eocube model spec"):
        load_model(tmp_path / "plain.safetensors")
    (tmp_path / "pickle.safetensors").write_bytes(b"\x80\x04\x95" + b"\0" * 20)
    with pytest.raises(ModelSpecError, match="not a safetensors file"):
        read_spec(tmp_path / "pickle.safetensors")
    with pytest.raises(ModelSpecError, match="no weights named 'nope'"):
        read_spec("nope")


def test_save_refuses_a_model_that_does_not_match_its_spec(tmp_path):
    spec = _spec()
    with pytest.raises(ModelSpecError, match="tensor"):
        save_model(build_model(dataclasses.replace(spec, kwargs={**spec.kwargs, "width": 8})),
                   spec, tmp_path / "m.safetensors")


def test_check_input_refuses_a_wrong_band_list():
    spec = _spec()
    assert check_input(["B12", *S2[:5], "SCL"], spec, input="s2") == S2
    with pytest.raises(ModelSpecError, match=r"missing \['B12'\]"):
        check_input(list(S2[:5]), spec, input="s2")
    with pytest.raises(ModelSpecError, match="in that order"):
        check_input(list(reversed(S2)), spec, input="s2", ordered=True)
    with pytest.raises(ModelSpecError, match="say which one"):
        check_input(S2, spec)


def test_check_input_reads_dataset_variables():
    import xarray as xr

    ds = xr.Dataset({b: (("y", "x"), np.zeros((2, 2))) for b in ("vh", "vv")})
    assert check_input(ds, _spec(), input="s1") == ("vv", "vh")


def test_input_spec_validation():
    with pytest.raises(ModelSpecError, match="one mean and one std per band"):
        InputSpec("s2", S2, [0.0] * 5, [1.0] * 6)
    with pytest.raises(ModelSpecError, match="without repeats"):
        InputSpec("s2", ("B02", "B02"), [0, 0], [1, 1])
    with pytest.raises(ModelSpecError, match="unknown transform"):
        InputSpec("s1", ("vv",), [0], [1], transform="sqrt")


def test_predict_normalises_raw_inputs(tmp_path):
    spec = _spec()
    m = _trained(spec)
    rng = np.random.default_rng(0)
    s1 = rng.gamma(2, 0.02, (2, 16, 16)).astype("float32")
    s2 = rng.uniform(0, 0.3, (6, 16, 16)).astype("float32")
    s2[0, 0, 0] = np.nan
    out = forward_arrays({"s1": s1, "s2": s2}, LoadedModel(m, spec), device="cpu")
    assert set(out) == {"out", "sar", "optical"}
    assert out["out"].shape == (16, 16) and np.isfinite(out["out"]).all()
    assert ((out["out"] >= 0) & (out["out"] <= 1)).all()


def test_reading_a_spec_imports_no_torch(tmp_path):
    spec = _spec()
    path = save_model(_trained(spec), spec, tmp_path / "m.safetensors")
    code = ("import sys; from eocube.models import read_spec, check_input; "
            f"s = read_spec({str(path)!r}); check_input(['vv', 'vh'], s, input='s1'); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(s.name)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "t"


@pytest.mark.parametrize("name", available_weights())
def test_shipped_weights_load_and_describe_their_inputs(name):
    model, spec = load_model(name, device="cpu")
    assert spec.name == name
    assert spec.training.get("command", "").startswith(f"eocube train {name}")
    assert not model.training


def _rewrite_spec(path, spec: ModelSpec) -> None:
    """Replace the spec in a safetensors header, keeping the tensors (a tampered file)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header["__metadata__"]["eocube_model_spec"] = spec.to_json()
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n:])


@pytest.mark.parametrize("name", [n for n in available_weights() if not n.startswith("stock")])
def test_for_inference_folds_batchnorm_and_keeps_the_outputs(name):
    model, spec = load_model(name, device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # a copy
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # CPU: NHWC
    torch.manual_seed(0)
    xs = [torch.randn(2, len(i.bands), 72, 88) for i in spec.inputs]
    assert as_input(fast, xs[0]).is_contiguous(memory_format=torch.channels_last)
    assert as_input(model, xs[0]) is xs[0]  # the loaded model keeps its layout
    with torch.inference_mode():
        ref = model(*xs)
        got = fast(*[as_input(fast, x) for x in xs])
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].shape == ref[k].shape
        # logits of order 1–10: agreement to float rounding of the folded weights
        assert torch.allclose(got[k], ref[k], rtol=1e-4, atol=1e-4), k


def test_for_inference_refuses_a_model_in_training_mode():
    with pytest.raises(ModelSpecError, match="eval mode"):
        for_inference(build_model(_spec()).train())


def test_check_input_takes_band_aliases():
    from eocube.models import band_aliases, check_input, read_spec

    spec = read_spec("urban_fusion")
    names = ["blue", "green", "red", "nir", "swir16", "swir22", "vv", "vh"]
    assert check_input(names, spec, input="s2") == ("B02", "B03", "B04", "B08", "B11", "B12")
    assert band_aliases(names, spec.input("s1")) == {}  # vv, vh are already its names
    import pytest

    from eocube.errors import ModelSpecError

    with pytest.raises(ModelSpecError, match=r"missing \['B12'\]"):
        check_input(names[:5], spec, input="s2")
