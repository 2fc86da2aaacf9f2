"""Where and how a model runs: the device a name resolves to, and a model prepared for fast
inference on it (BatchNorm folded into the convolutions, channels-last on a CPU).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from eocube.errors import ModelSpecError

__all__ = ["as_input", "for_inference", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def for_inference(model: nn.Module, /) -> nn.Module:
    """A copy of ``model`` rewritten for fast inference, with the same outputs up to float
    rounding (≈1e-5 in the logits of the shipped models).

    Every ``Conv2d`` directly followed by a ``BatchNorm2d`` in an ``nn.Sequential`` becomes one
    convolution with the normalisation folded into its weights and bias (one pass over the
    activations instead of two), and on a CPU the parameters are laid out channels-last, which
    oneDNN's convolutions run much faster (``benchmarks/infer.py`` measures both). Feed it
    channels-last inputs (:func:`as_input`). The copy is for inference only: it cannot be
    trained or saved as the original architecture.

    Raises
    ------
    ModelSpecError
        If ``model`` is in training mode (its BatchNorm statistics would still change).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ModelSpecError("for_inference needs a model in eval mode; call model.eval() "
                             "first (BatchNorm statistics are folded as they stand)")
    out = copy.deepcopy(model)
    for seq in out.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and bn.track_running_stats and bn.running_mean is not None):
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    last = _device(out).type == "cpu"  # oneDNN; on CUDA the layout is left as it is (unmeasured)
    if last:
        out = out.to(memory_format=torch.channels_last)
    out.eocube_channels_last = last
    return out


def as_input(model: nn.Module, x: torch.Tensor, /) -> torch.Tensor:
    """``x`` in the memory layout of ``model``'s convolutions: channels-last when
    :func:`for_inference` chose it, else unchanged."""
    if x.ndim == 4 and getattr(model, "eocube_channels_last", False):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters (CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


