"""Tiled deep-learning inference over lazy cubes on Dask (and dask-cuda) workers: seamless
blending on a global tile grid, one model per worker process, resumable Zarr and COG outputs
with provenance (written by :mod:`eocube.io`, re-exported here: ``to_zarr``, ``to_cog``).

Nothing here imports torch at import time; the workers do, when they first build a model.
"""

from __future__ import annotations

from eocube.counters import reset_stats, stats
from eocube.infer.cluster import PreloadModel, TorchThreads, start_client
from eocube.infer.predict import predict, predict_change, provenance
from eocube.infer.runtime import RunOptions, WeightsRef, clear_cache, get_model
from eocube.infer.tiling import Tiling
from eocube.io import WriteReport, stac_item, to_cog, to_zarr

__all__ = ["PreloadModel", "RunOptions", "Tiling", "TorchThreads", "WeightsRef", "WriteReport",
           "clear_cache", "get_model", "predict", "predict_change", "provenance", "reset_stats",
           "stac_item", "start_client", "stats", "to_cog", "to_zarr"]
