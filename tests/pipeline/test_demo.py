from __future__ import annotations

import json

from eocube.pipeline import run_demo


def test_main_job_on_the_tiny_city_writes_quicklooks_and_summary(tmp_path):
    summary = run_demo(tmp_path / "run", preset="tiny", seed=1, workers=2, verbose=False)
    out = tmp_path / "run"
    for name in ("quicklook_s2.png", "quicklook_s1.png", "quicklook_ntl.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["cube"]["crs"] == "EPSG:32650"
    assert summary["cube"]["shape"] == [128, 128]
    assert all(n > 0 for n in summary["items"].values())
    assert 0.0 < summary["stats"]["median_ndvi"] < 0.9
    assert summary["stats"]["clear_fraction_s2_composite"] > 0.95
    # a second run reuses the complete archive instead of rebuilding it
    mtime = (out / "archive" / "manifest.json").stat().st_mtime_ns
    run_demo(out, preset="tiny", seed=1, workers=2, verbose=False)
    assert (out / "archive" / "manifest.json").stat().st_mtime_ns == mtime
