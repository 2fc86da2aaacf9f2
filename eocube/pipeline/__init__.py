"""The pipeline: the stages of the data flow over a resumable run folder (``eocube run``).

``run_pipeline(config)`` checks the configuration and sources, then runs search → cubes →
inference → change → buildings → zones → features → estimates → evaluation → report, each
stage committed (data, checksums, manifest entry) before the next starts.
"""

from __future__ import annotations

from eocube.pipeline.config import STAGES, RunConfig, load_config
from eocube.pipeline.run import DEMO_CONFIG, run_pipeline

__all__ = ["DEMO_CONFIG", "STAGES", "RunConfig", "load_config", "run_pipeline"]
