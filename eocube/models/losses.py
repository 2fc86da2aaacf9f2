"""Losses: the power-Jaccard loss and multi-modal consistency regularisation (MMCR)."""

from __future__ import annotations

import math

import torch


def _soft_jaccard(a: torch.Tensor, b: torch.Tensor, *, power: float, eps: float) -> torch.Tensor:
    inter = (a * b).sum()
    union = (a.pow(power) + b.pow(power)).sum() - inter
    return 1.0 - (inter + eps) / (union + eps)


def power_jaccard_loss(logits: torch.Tensor, target: torch.Tensor, /, *, power: float = 2.0,
                       mask: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Power-Jaccard loss ``1 - Σpy / (Σ(p^k + y^k) - Σpy)`` over all pixels of the batch.

    Parameters
    ----------
    logits
        Raw network output; the sigmoid is applied here, in float32.
    target
        0/1 (or soft) labels of the same shape.
    power
        The exponent ``k`` (Duque-Arias et al. 2021); 1 gives the soft Jaccard loss.
    mask
        Pixels that count (1) and those that do not (0); all count when left out.
    """
    p = torch.sigmoid(logits.float())
    t = target.float()
    if mask is not None:
        m = mask.float()
        p, t = p * m, t * m
    return _soft_jaccard(p, t, power=power, eps=eps)


def consistency_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, /, *, power: float = 2.0,
                     mask: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Power-Jaccard disagreement between two heads' probability maps (symmetric)."""
    pa, pb = torch.sigmoid(logits_a.float()), torch.sigmoid(logits_b.float())
    if mask is not None:
        m = mask.float()
        pa, pb = pa * m, pb * m
    return _soft_jaccard(pa, pb, power=power, eps=eps)


def mmcr_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor, labelled: torch.Tensor,
              /, *, consistency_weight: float = 1.0, power: float = 2.0
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Multi-modal consistency regularisation for the Dual-Stream U-Net.

    Where labels exist (``labelled`` = 1): the power-Jaccard loss of the fusion, SAR and optical
    heads. Where they do not: the consistency loss between the SAR and optical heads, times
    ``consistency_weight``. With ``consistency_weight=0`` this is plain supervised training on
    the labelled pixels.

    Parameters
    ----------
    outputs
        The model's output: ``out`` (fusion), ``sar`` and ``optical`` logits, (B, 1, H, W).
    target
        Labels (B, 1, H, W); ignored where ``labelled`` is 0.
    labelled
        (B, 1, H, W) or (B,) mask of labelled pixels or samples.

    Returns
    -------
    The total loss and its parts as floats (``supervised``, ``consistency``).
    """
    lab = labelled.float()
    if lab.ndim == 1:
        lab = lab.reshape(-1, 1, 1, 1).expand_as(target)
    sup = sum(power_jaccard_loss(outputs[k], target, power=power, mask=lab)
              for k in ("out", "sar", "optical"))
    parts = {"supervised": float(sup.detach())}
    total = sup
    if consistency_weight > 0 and bool((lab < 1).any()):
        cons = consistency_loss(outputs["sar"], outputs["optical"], power=power, mask=1 - lab)
        total = total + consistency_weight * cons
        parts["consistency"] = float(cons.detach())
    return total, parts


def consistency_rampup(step: int, /, *, weight: float, rampup_steps: int) -> float:
    """The consistency weight at optimisation ``step``: ``weight · exp(-5 (1 - step / R)²)`` for
    the first ``R = rampup_steps`` steps, then ``weight``.

    The sigmoid-shaped ramp-up of Laine & Aila (2017): the heads first learn from the labels
    alone, so early, near-random SAR and optical predictions are not pulled towards each other.
    ``rampup_steps=0`` gives the full weight from the first step.
    """
    if step >= rampup_steps:
        return weight
    t = 1.0 - max(step, 0) / rampup_steps
    return weight * math.exp(-5.0 * t * t)
