"""One full pipeline run on the tiny city per session, shared by the pipeline tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


def tiny_config(archive: Path, output: Path, *, where: Path | None = None, **extra) -> Path:
    """A run configuration of the tiny city (threaded scheduler: fast in tests), written beside
    the output folder or into ``where``."""
    cfg = {"city": {"preset": "tiny", "seed": 0, "archive": str(archive)},
           "output": str(output), "cluster": {"kind": "threads"}, **extra}
    path = (where or output.parent) / f"{output.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def output_sums(run: Path, stages) -> dict[str, str]:
    """Output checksums of ``stages`` recorded in a run's manifest."""
    man = json.loads((run / "manifest.json").read_text())
    return {rel: sha for s in stages for rel, sha in man["stages"][s]["outputs"].items()}


@pytest.fixture(scope="session")
def tiny_run(tiny_archive, tmp_path_factory):
    """The whole flow, evaluation and report included, on the session's tiny city."""
    from eocube.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("pipeline") / "run"
    result = run_pipeline(tiny_config(tiny_archive, out), console=False)
    assert result.status == "completed", result
    return out
