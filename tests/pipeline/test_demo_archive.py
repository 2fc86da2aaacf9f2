"""The demo reuses its own archive and never deletes what it did not build."""

from __future__ import annotations

import json
import re

import pytest

from eocube.errors import ArchiveError
from eocube.pipeline.demo import run_demo
from eocube.synth import build_city

SMALL = {"preset": "tiny", "years": 1, "s2_revisit_days": 30, "s1_revisit_days": 36}


def test_a_run_with_another_seed_refuses_to_replace_the_archive(tmp_path):
    archive = build_city(tmp_path / "run" / "archive", seed=0, **SMALL)
    notes = archive / "my_notes.txt"
    notes.write_text("keep me")
    with pytest.raises(ArchiveError, match=rf"{re.escape(str(archive))} holds the archive of "
                                           r"preset 'tiny' seed 0, not the 'tiny' city of seed "
                                           r"1; .*`eocube run --overwrite`"):
        run_demo(tmp_path / "run", preset="tiny", seed=1, workers=1, verbose=False)
    # even when asked to overwrite, a file of the user's inside stops it
    with pytest.raises(ArchiveError, match=r"did not write \('my_notes\.txt'\)"):
        run_demo(tmp_path / "run", preset="tiny", seed=1, workers=1, verbose=False,
                 overwrite=True)
    assert notes.read_text() == "keep me"
    assert json.loads((archive / "manifest.json").read_text())["seed"] == 0


def test_a_folder_that_is_not_an_archive_is_never_deleted(tmp_path):
    folder = tmp_path / "run" / "archive"
    folder.mkdir(parents=True)
    (folder / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ArchiveError, match=r"holds something that is not a complete eocube "
                                           r"archive.*--overwrite"):
        run_demo(tmp_path / "run", preset="tiny", seed=0, workers=1, verbose=False)
    with pytest.raises(ArchiveError, match=r"is not an archive eocube built"):
        run_demo(tmp_path / "run", preset="tiny", seed=0, workers=1, verbose=False,
                 overwrite=True)
    assert (folder / "data.csv").read_text() == "a,b\n1,2\n"
