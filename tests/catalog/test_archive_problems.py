"""archive_problems: a missing truth/ folder is allowed (the pipeline needs none), a missing
file of a present truth/ is not."""

from __future__ import annotations

import shutil

from eocube.catalog.validate import archive_problems


def test_truth_may_go_whole_but_not_in_part(tiny_archive, tmp_path):
    a = tmp_path / "a"
    shutil.copytree(tiny_archive, a)
    assert archive_problems(a) == []
    (a / "truth" / "buildings.parquet").unlink()
    probs = archive_problems(a)
    assert len(probs) == 1 and probs[0].startswith("truth/buildings.parquet: listed in manifest")
    shutil.rmtree(a / "truth")
    assert archive_problems(a) == []
    (a / "vectors" / "osm_roads.parquet").unlink()
    assert [p.split(":")[0] for p in archive_problems(a)] == ["vectors/osm_roads.parquet"]
