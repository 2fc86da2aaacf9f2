"""Shapes, dtypes and the defining formulas of the networks."""

from __future__ import annotations

import pytest
import torch

from eocube.models import (
    ASPP,
    DifferenceAttention,
    DualStreamUNet,
    SiamDiffDualTask,
    StockRegressor,
    UNet,
    grad_cam,
)


@pytest.mark.parametrize("hw", [(32, 32), (27, 45)])
def test_unet_keeps_the_input_size_even_when_not_a_multiple_of_the_pooling(hw):
    m = UNet(6, 1, width=4, depth=2).eval()
    out = m(torch.randn(2, 6, *hw))
    assert set(out) == {"out"}
    assert out["out"].shape == (2, 1, *hw) and out["out"].dtype == torch.float32


def test_dual_stream_has_three_heads():
    m = DualStreamUNet(2, 6, width=4, depth=2).eval()
    out = m(torch.randn(3, 2, 24, 24), torch.randn(3, 6, 24, 24))
    assert set(out) == {"out", "sar", "optical"}
    assert all(v.shape == (3, 1, 24, 24) for v in out.values())


@pytest.mark.parametrize(("attention", "aspp"), [(True, True), (False, False), (True, False)])
def test_siam_diff_dual_task_outputs_change_and_two_segmentations(attention, aspp):
    m = SiamDiffDualTask(8, width=4, depth=2, difference_attention=attention, aspp=aspp).eval()
    out = m(torch.randn(2, 8, 20, 20), torch.randn(2, 8, 20, 20))
    assert set(out) == {"out", "seg_t1", "seg_t2"}
    assert all(v.shape == (2, 1, 20, 20) for v in out.values())


def test_siam_diff_segments_each_date_alone():
    """The segmentation head of a date does not depend on the other date."""
    m = SiamDiffDualTask(3, width=4, depth=2).eval()
    a, b, c = (torch.randn(1, 3, 16, 16) for _ in range(3))
    o1, o2 = m(a, b), m(a, c)
    torch.testing.assert_close(o1["seg_t1"], o2["seg_t1"])
    assert not torch.allclose(o1["out"], o2["out"])


def test_difference_attention_is_sigmoid_conv_of_the_feature_distance_times_abs_diff():
    da = DifferenceAttention()
    f1, f2 = torch.randn(2, 5, 8, 8), torch.randn(2, 5, 8, 8)
    dist = torch.linalg.vector_norm(f1 - f2, dim=1, keepdim=True)
    expected = torch.sigmoid(da.conv(dist)) * (f1 - f2).abs()
    torch.testing.assert_close(da(f1, f2), expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(da(f1, f1), torch.zeros_like(f1))


def test_aspp_works_with_a_batch_of_one_in_training():
    ASPP(8).train()(torch.randn(1, 8, 6, 6)).sum().backward()


@pytest.mark.parametrize("branches", [("optical", "ntl"), ("optical",), ("ntl",)])
def test_stock_regressor_branches(branches):
    m = StockRegressor(6, ntl_length=12, width=4, branches=branches).eval()
    x = {"optical": torch.randn(5, 6, 20, 20), "ntl": torch.randn(5, 1, 12)}
    out = m(*[x[b] for b in branches])["out"]
    assert out.shape == (5,) and out.dtype == torch.float32
    assert m.input_channels() == tuple(6 if b == "optical" else 1 for b in branches)
    with pytest.raises(ValueError, match="one input per branch"):
        m(x["optical"], x["ntl"], x["ntl"])


def test_grad_cam_is_a_unit_map_over_the_patch():
    m = StockRegressor(6, ntl_length=12, width=4).eval()
    cam = grad_cam(m, torch.randn(3, 6, 20, 20), torch.randn(3, 1, 12))
    assert cam.shape == (3, 20, 20)
    assert float(cam.min()) >= 0 and float(cam.max()) <= 1 + 1e-6
    with pytest.raises(ValueError, match="optical branch"):
        grad_cam(StockRegressor(6, 12, 4, branches=("ntl",)), torch.randn(1, 6, 20, 20))


def test_bf16_autocast_forward_on_cpu():
    from eocube.models.apply import autocast

    m = DualStreamUNet(2, 6, width=4, depth=2).eval()
    with torch.no_grad(), autocast(torch.device("cpu"), True):
        out = m(torch.randn(1, 2, 16, 16), torch.randn(1, 6, 16, 16))
    assert out["out"].dtype == torch.bfloat16
    assert torch.isfinite(out["out"].float()).all()
