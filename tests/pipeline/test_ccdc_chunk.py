"""The CCDC stage's chunks follow the run's ``chunk`` (capped), not a fixed size: a fixed 256
px made a worker's peak memory grow with the area (benchmarks/scaling.py, 64 px chunks)."""

from __future__ import annotations

import pytest

from eocube.pipeline.config import load_config
from eocube.pipeline.stages import CCDC_MAX_CHUNK, ccdc_chunk


@pytest.mark.parametrize(("chunk", "side"), [(64, 64), (128, 128), (256, 256), (512, 256),
                                             (4096, 256)])
def test_ccdc_chunks_follow_the_run_chunk_up_to_the_cap(tmp_path, chunk, side):
    cfg = load_config(None, output=tmp_path / "run").model_copy(update={"chunk": chunk})
    assert CCDC_MAX_CHUNK == 256 and ccdc_chunk(cfg) == side
