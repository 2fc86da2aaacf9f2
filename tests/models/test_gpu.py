"""The GPU path: bf16 autocast training and inference on CUDA (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from eocube.models import DualStreamUNet, mmcr_loss, resolve_device
from eocube.models.apply import autocast

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_auto_device_is_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.gpu
@cuda
def test_bf16_training_step_and_forward_on_cuda():
    dev = torch.device("cuda")
    m = DualStreamUNet(2, 6, width=8, depth=2).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    s1, s2 = torch.randn(4, 2, 64, 64, device=dev), torch.randn(4, 6, 64, 64, device=dev)
    y = (s2[:, :1] > 0).float()
    with autocast(dev, True):
        out = m(s1, s2)
    assert out["out"].dtype == torch.bfloat16 and out["out"].device.type == "cuda"
    loss, _ = mmcr_loss(out, y, torch.ones(4, device=dev))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
