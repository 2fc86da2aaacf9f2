"""The retransformation (smearing) factor of the log-space stock regressors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from eocube.errors import ModelSpecError
from eocube.models import (
    InputSpec,
    LoadedModel,
    ModelSpec,
    build_model,
    forward_arrays,
    load_model,
    read_spec,
    save_model,
    train,
)
from eocube.models.apply import inverse_target, smearing_factor
from eocube.models.data import HELD_OUT_SEED, TRAIN_SEEDS


def _spec(**tt) -> ModelSpec:
    return ModelSpec(
        name="s", architecture="stock_regressor",
        kwargs={"optical_channels": 6, "ntl_length": 12, "width": 4, "branches": ["ntl"]},
        inputs=(InputSpec("ntl", ("radiance",), (1.0,), (0.5,), transform="log1p",
                          resolution_m=0.0),),
        task="regression", patch_size=1, outputs=("stock_total",), units="t",
        target_transform={"transform": "log1p", "mean": 7.0, "std": 2.0, **tt})


def test_inverse_target_applies_the_factor():
    z = np.array([-4.0, -1.0, 0.0, 0.5, 2.0])
    g = z * 2.0 + 7.0
    np.testing.assert_array_equal(inverse_target(z, _spec()), np.maximum(np.expm1(g), 0.0))
    got = inverse_target(z, _spec(smearing=1.13))
    np.testing.assert_allclose(got, np.maximum(1.13 * np.exp(g) - 1.0, 0.0), rtol=1e-12)
    assert (got[1:] > inverse_target(z, _spec())[1:]).all()


def test_ratio_factor_gives_back_the_training_total_and_duan_is_the_mean():
    rng = np.random.default_rng(0)
    spec = _spec(nonnegative=False)
    torch.manual_seed(0)
    module = build_model(spec).eval()
    model = LoadedModel(module, spec)
    x = rng.lognormal(1.0, 1.0, (64, 1, 12)).astype("float32")
    y = rng.lognormal(7.0, 2.0, 64)
    s = smearing_factor({"ntl": x}, y, model, device="cpu", batch_size=10)
    pred = forward_arrays({"ntl": x}, LoadedModel(module, dataclasses.replace(
        spec, target_transform={**spec.target_transform, "smearing": s})),
        device="cpu")["out"]
    assert pred.sum() == pytest.approx(y.sum(), rel=1e-5)
    g = np.log1p(forward_arrays({"ntl": x}, model, device="cpu")["out"].astype("float64"))
    duan = smearing_factor({"ntl": x}, y, model, method="duan", device="cpu")
    assert duan == pytest.approx(np.mean(np.exp(np.log1p(y) - g)), rel=1e-5)
    with pytest.raises(ModelSpecError, match="one per row"):
        smearing_factor({"ntl": x}, y[:3], model, device="cpu")
    with pytest.raises(ModelSpecError, match="unknown smearing method 'mean'"):
        smearing_factor({"ntl": x}, y, model, method="mean", device="cpu")


@pytest.mark.parametrize("name", ["stock_fusion", "stock_optical", "stock_ntl"])
def test_shipped_stock_weights_carry_a_training_city_factor(name):
    spec = read_spec(name)
    s = spec.target_transform["smearing"]
    info = spec.training["smearing"]
    assert s > 1 and info["method"] == "ratio" and info["ratio"] == s
    assert info["city_seeds"] == list(TRAIN_SEEDS) and HELD_OUT_SEED not in info["city_seeds"]
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_smearing_spec_round_trips_through_a_weights_file(tmp_path):
    spec = _spec(smearing=1.25)
    model = build_model(spec)
    path = save_model(model, spec, tmp_path / "s.safetensors")
    _, back = load_model(path, device="cpu")
    assert back == spec and back.target_transform["smearing"] == 1.25


def test_train_stores_the_factor_for_stock_models(tiny_city, tmp_path):
    path, _ = train("stock_ntl", out=tmp_path, steps=2, batch=4, width=4, cities=[tiny_city],
                    device="cpu", progress=False)
    spec = read_spec(path)
    assert spec.target_transform["smearing"] > 0
    assert spec.training["smearing"]["city_seeds"] == [tiny_city.seed]
    assert {"ratio", "duan"} <= set(spec.training["smearing"])
