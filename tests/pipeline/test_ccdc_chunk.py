"""The CCDC stage's chunks follow the run's ``chunk`` (capped), not a fixed size: a fixed 256
px made a worker's peak memory grow with the area (benchmarks/scaling.py, 64 px chunks);
the VHR image's chunks cover the run chunk's ground."""

from __future__ import annotations

import pytest

from eocube.pipeline.config import load_config
from eocube.pipeline.stages import CCDC_MAX_CHUNK, VHR_MAX_CHUNK, ccdc_chunk, vhr_chunk


@pytest.mark.parametrize(("chunk", "side"), [(64, 64), (128, 128), (256, 256), (512, 256),
                                             (4096, 256)])
def test_ccdc_chunks_follow_the_run_chunk_up_to_the_cap(tmp_path, chunk, side):
    cfg = load_config(None, output=tmp_path / "run").model_copy(update={"chunk": chunk})
    assert CCDC_MAX_CHUNK == 256 and ccdc_chunk(cfg) == side


@pytest.mark.parametrize(("chunk", "res", "side"), [(64, 2.0, 320), (128, 2.0, 640),
                                                    (512, 2.0, 2048), (64, 0.5, 1280),
                                                    (64, 10.0, 64)])
def test_vhr_chunks_cover_the_run_chunk_on_the_ground_up_to_the_cap(tmp_path, chunk, res, side):
    """A fixed 2048 px VHR chunk put a whole 2.6 km image in one building-model task, so a
    worker's peak memory grew with the area; now a chunk covers the run chunk's ground."""
    cfg = load_config(None, output=tmp_path / "run").model_copy(update={"chunk": chunk})
    assert cfg.resolution == 10.0 and VHR_MAX_CHUNK == 2048
    assert vhr_chunk(cfg, res) == side
