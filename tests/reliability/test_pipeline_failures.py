"""A run whose archive has a damaged file ends ``completed_with_errors``, its manifest naming
the file (#17.3): never silently fine, never failed for one tile."""

from __future__ import annotations

import json
import shutil

from eocube.pipeline import run_pipeline
from tests.pipeline.conftest import tiny_config


def test_a_damaged_file_makes_the_run_complete_with_errors_naming_it(tiny_archive, tmp_path):
    arch = tmp_path / "city"
    shutil.copytree(tiny_archive, arch)
    out = tmp_path / "run"
    first = run_pipeline(tiny_config(arch, out, stages=["search"], sensors=["s2"]),
                         console=False)
    assert first.status == "completed"
    victim = json.loads((out / "search" / "s2.json").read_text())["features"][3]
    href = victim["assets"]["B04"]["href"]
    (arch / href.split(str(arch), 1)[1].lstrip("/")).write_bytes(b"")  # a zero-byte COG
    result = run_pipeline(tiny_config(arch, out, stages=["search", "cubes"], sensors=["s2"]),
                          console=False)
    man = json.loads((out / "manifest.json").read_text())
    assert result.status == man["status"] == "completed_with_errors"
    assert [(f["stage"], f["item"], f["asset"], f["class"]) for f in man["failures"]] == [
        ("cubes", victim["id"], "B04", "corrupt")]
    assert man["failures"][0]["href"] == href and man["failures"][0]["attempts"] == 1
    assert man["stages"]["cubes"]["status"] == "done"
