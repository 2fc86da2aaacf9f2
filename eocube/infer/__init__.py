"""Tiled deep-learning inference over lazy cubes on Dask (and dask-cuda) workers: seamless
blending on a global tile grid, one model per worker process, resumable Zarr and COG outputs
with provenance (written by :mod:`eocube.io`, re-exported here: ``to_zarr``, ``to_cog``).

In flow order: a cluster (``start_client``), the weights a task carries (``WeightsRef``),
lazy predictions (``predict``, ``predict_change``), their writers, and the counters.
Nothing here imports torch at import time; the workers do, when they first build a model.
"""

from __future__ import annotations

from eocube.counters import reset_stats, stats
from eocube.infer.cluster import PreloadModel, TorchThreads, WarmUp, start_client
from eocube.infer.predict import predict, predict_change, provenance
from eocube.infer.runtime import RunOptions, WeightsRef, clear_cache, get_model
from eocube.infer.tiling import Tiling
from eocube.io import WriteReport, stac_item, to_cog, to_zarr

# in flow order, not alphabetical: cluster, weights, tiling, prediction, writers, counters
__all__ = [  # noqa: RUF022
    "start_client", "TorchThreads", "PreloadModel", "WarmUp",
    "WeightsRef", "RunOptions", "get_model", "clear_cache",
    "Tiling", "predict", "predict_change", "provenance",
    "to_zarr", "WriteReport", "to_cog", "stac_item",
    "stats", "reset_stats",
]
