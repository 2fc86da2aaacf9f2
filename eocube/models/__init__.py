"""Models: torch modules for urban mapping, change, buildings and stock; training on the
synthetic city; weights as safetensors with their ModelSpec.

``ModelSpec``, ``InputSpec``, ``check_input``, ``normalize``, ``read_spec`` and
``available_weights`` work without torch; everything else imports torch on first use.

Every model takes its inputs positionally in the order of ``spec.inputs`` and returns a dict
whose ``"out"`` is the primary output. Shipped weights (``available_weights()``) load with
``load_model(name, device="auto")``, which gives a :class:`LoadedModel` (module and spec in
one object; ``model, spec = load_model(...)`` unpacks it). Functions on data take the data
first and the model (or spec) after: ``forward_arrays(inputs, model)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from eocube.models.io import LoadedModel, available_weights, read_spec, weights_path
from eocube.models.spec import (
    InputSpec,
    ModelSpec,
    band_aliases,
    band_stats,
    check_input,
    normalize,
)

_LAZY = {
    # module: names, in the order of the flow (build, load, prepare, run, train)
    "eocube.models.nets": ("UNet", "DualStreamUNet", "SiamDiffDualTask", "StockRegressor",
                           "DifferenceAttention", "ASPP", "grad_cam"),
    "eocube.models.registry": ("ARCHITECTURES", "build_model"),
    "eocube.models.io": ("load_model", "save_model"),
    "eocube.models.device": ("resolve_device", "for_inference", "as_input"),
    "eocube.models.apply": ("to_tensor", "forward_arrays", "forward_arrays_tiled"),
    "eocube.models.losses": ("power_jaccard_loss", "consistency_loss", "mmcr_loss"),
    "eocube.models.training": ("RECIPES", "train"),
}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}

# in flow order, not alphabetical: the spec and its checks, weights files, then the lazy names
__all__ = [
    "InputSpec", "ModelSpec", "check_input", "band_aliases", "normalize", "band_stats",
    "available_weights", "weights_path", "read_spec", "LoadedModel",
    *_WHERE,
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'eocube.models' has no attribute {name!r}")
