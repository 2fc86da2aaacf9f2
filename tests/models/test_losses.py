"""Power-Jaccard and MMCR losses."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from eocube.models import consistency_loss, mmcr_loss, power_jaccard_loss


def test_power_jaccard_is_zero_for_a_perfect_prediction_and_near_one_for_the_opposite():
    y = (torch.rand(2, 1, 8, 8) > 0.5).float()
    logits = (y * 2 - 1) * 30
    assert float(power_jaccard_loss(logits, y)) < 1e-6
    assert float(power_jaccard_loss(-logits, y)) > 0.99


def test_power_jaccard_formula():
    logits, y = torch.randn(1, 1, 5, 5), (torch.rand(1, 1, 5, 5) > 0.5).float()
    p = torch.sigmoid(logits)
    inter = (p * y).sum()
    expected = 1 - (inter + 1e-6) / ((p**2 + y**2).sum() - inter + 1e-6)
    torch.testing.assert_close(power_jaccard_loss(logits, y), expected)


def test_mask_leaves_pixels_out():
    y = torch.zeros(1, 1, 4, 4)
    y[..., :2] = 1
    logits = (y * 2 - 1) * 30
    logits[..., 3] = 30  # wrong, but masked
    mask = torch.ones_like(y)
    mask[..., 3] = 0
    assert float(power_jaccard_loss(logits, y, mask=mask)) < 1e-6


def test_mmcr_supervised_where_labelled_consistency_where_not():
    torch.manual_seed(0)
    out = {k: torch.randn(2, 1, 6, 6, requires_grad=True) for k in ("out", "sar", "optical")}
    y = (torch.rand(2, 1, 6, 6) > 0.5).float()
    lab = torch.zeros(2, 1, 6, 6)
    lab[0] = 1
    total, parts = mmcr_loss(out, y, lab, consistency_weight=0.5)
    sup = sum(power_jaccard_loss(out[k], y, mask=lab) for k in ("out", "sar", "optical"))
    cons = consistency_loss(out["sar"], out["optical"], mask=1 - lab)
    torch.testing.assert_close(total, sup + 0.5 * cons)
    assert set(parts) == {"supervised", "consistency"}
    total.backward()
    # the fusion head gets no gradient from unlabelled pixels
    assert float(out["out"].grad[1].abs().sum()) == 0
    assert float(out["sar"].grad[1].abs().sum()) > 0


def test_mmcr_with_zero_weight_is_plain_supervision():
    out = {k: torch.randn(1, 1, 4, 4) for k in ("out", "sar", "optical")}
    y = torch.ones(1, 1, 4, 4)
    total, parts = mmcr_loss(out, y, torch.tensor([1.0]), consistency_weight=0.0)
    assert "consistency" not in parts
    torch.testing.assert_close(total, sum(power_jaccard_loss(out[k], y)
                                          for k in ("out", "sar", "optical")))


def test_consistency_rampup_grows_from_near_zero_to_the_weight():
    from eocube.models.losses import consistency_rampup

    ws = [consistency_rampup(s, weight=0.5, rampup_steps=100) for s in range(0, 151, 10)]
    assert ws[0] == pytest.approx(0.5 * math.exp(-5))
    assert all(a < b for a, b in itertools.pairwise(ws[:11]))
    assert ws[10:] == [0.5] * 6
    assert consistency_rampup(0, weight=0.5, rampup_steps=0) == 0.5
