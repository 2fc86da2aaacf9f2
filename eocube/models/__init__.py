"""Models: torch modules for urban mapping, change, buildings and stock; training on the
synthetic city; weights as safetensors with their ModelSpec.

``ModelSpec``, ``InputSpec``, ``check_input``, ``normalize``, ``read_spec`` and
``available_weights`` work without torch; everything else imports torch on first use.

Every model takes its inputs positionally in the order of ``spec.inputs`` and returns a dict
whose ``"out"`` is the primary output. Shipped weights (``available_weights()``) load with
``load_model(name, device="auto")``.
"""

from __future__ import annotations

import importlib
from typing import Any

from eocube.models.spec import (
    InputSpec,
    ModelSpec,
    available_weights,
    band_stats,
    check_input,
    normalize,
    read_spec,
    weights_path,
)

_LAZY = {
    # module: names
    "eocube.models.nets": ("UNet", "DualStreamUNet", "SiamDiffDualTask", "StockRegressor",
                           "DifferenceAttention", "ASPP", "grad_cam"),
    "eocube.models.losses": ("power_jaccard_loss", "consistency_loss", "mmcr_loss"),
    "eocube.models.io": ("ARCHITECTURES", "as_input", "build_model", "for_inference",
                         "load_model", "resolve_device", "save_model"),
    "eocube.models.apply": ("predict", "predict_tiled", "to_tensor"),
    "eocube.models.training": ("RECIPES", "train"),
}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}

__all__ = ["InputSpec", "ModelSpec", "available_weights", "band_stats", "check_input",
           "normalize", "read_spec", "weights_path", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'eocube.models' has no attribute {name!r}")
