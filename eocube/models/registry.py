"""The fixed registry of architectures a weights file may name, and a model built from a spec.

A model is rebuilt from this registry, never from a class path found in a file; the spec's band
lists are checked against the layers that consume them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from eocube.errors import ModelSpecError
from eocube.models.nets import DualStreamUNet, SiamDiffDualTask, StockRegressor, UNet
from eocube.models.spec import ModelSpec

__all__ = ["ARCHITECTURES", "build_model"]

#: The only architectures a weights file can name.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "dual_stream_unet": DualStreamUNet,
    "siam_diff_dual_task": SiamDiffDualTask,
    "stock_regressor": StockRegressor,
}


def build_model(spec: ModelSpec) -> nn.Module:
    """An untrained model of ``spec``'s architecture, checked against the spec's inputs."""
    try:
        cls = ARCHITECTURES[spec.architecture]
    except KeyError:
        raise ModelSpecError(f"unknown architecture {spec.architecture!r} in model "
                             f"{spec.name!r}; known: {sorted(ARCHITECTURES)}") from None
    params = inspect.signature(cls).parameters
    unknown = sorted(set(spec.kwargs) - set(params))
    if unknown:
        raise ModelSpecError(f"model {spec.name!r}: {spec.architecture} takes no arguments "
                             f"{unknown}; it takes {sorted(params)}")
    try:
        model = cls(**dict(spec.kwargs))
    except (TypeError, ValueError) as e:
        raise ModelSpecError(f"model {spec.name!r}: cannot build {spec.architecture} from "
                             f"{dict(spec.kwargs)}: {e}") from None
    channels = model.input_channels()
    if len(channels) != len(spec.inputs):
        raise ModelSpecError(
            f"model {spec.name!r}: {spec.architecture} takes {len(channels)} inputs, the spec "
            f"lists {len(spec.inputs)} ({[i.name for i in spec.inputs]})")
    for inp, n in zip(spec.inputs, channels, strict=True):
        if len(inp.bands) != n:
            raise ModelSpecError(
                f"model {spec.name!r}: input {inp.name!r} has band list {list(inp.bands)} "
                f"({len(inp.bands)} bands) but the network takes {n} channels there; the band "
                "list does not belong to these weights")
    return model
