"""Scoring a built-up model on a synthetic city's truth (benchmarks and tests): the model
from ``eocube.models``, the metrics from ``eocube.estimates``, so it sits after both."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from eocube.models.data import CityData
    from eocube.models.io import LoadedModel

__all__ = ["builtup_metrics"]


def builtup_metrics(city: CityData, model: LoadedModel, /, *,
                    device: str | torch.device = "auto", amp: bool = False
                    ) -> dict[str, dict[str, float]]:
    """Map metrics (F1, precision, recall, IoU, kappa) of every output head of a built-up
    ``model`` (module and spec, as ``load_model`` gives them) against ``city``'s built-up
    truth, pooled over its yearly composites; a head's map is its probability > 0.5."""
    from eocube.estimates.metrics import map_metrics
    from eocube.models.apply import forward_arrays
    from eocube.models.data import as_array

    spec = model[1]
    truth, preds = [], {}
    for y in city.years:
        ins = {i.name: as_array(city.inputs[y], i.bands) for i in spec.inputs}
        out = forward_arrays(ins, model, device=device, amp=amp)
        truth.append(city.builtup[y].to_numpy())
        for k, v in out.items():
            preds.setdefault(k, []).append(v > 0.5)
    t = np.stack(truth)
    return {k: map_metrics(t, np.stack(v)) for k, v in preds.items()}
