"""A run reuses its own city archive and never deletes what eocube did not build."""

from __future__ import annotations

import json

import pytest

from eocube.errors import ArchiveError, ConfigError
from eocube.pipeline import load_config
from eocube.pipeline.sources import archive_for_run
from eocube.synth import build_city

SMALL = {"preset": "tiny", "years": 1, "s2_revisit_days": 30, "s1_revisit_days": 36}


def _cfg(tmp_path, seed):
    return load_config(None, output=tmp_path / "run",
                       city={"preset": "tiny", "seed": seed,
                             "archive": str(tmp_path / "run" / "archive")})


def test_the_archive_of_the_same_city_is_reused(tmp_path):
    archive = build_city(tmp_path / "run" / "archive", seed=0, **SMALL)
    mtime = (archive / "manifest.json").stat().st_mtime_ns
    assert archive_for_run(_cfg(tmp_path, 0)) == archive
    assert (archive / "manifest.json").stat().st_mtime_ns == mtime


def test_a_run_with_another_seed_refuses_to_replace_the_archive(tmp_path):
    archive = build_city(tmp_path / "run" / "archive", seed=0, **SMALL)
    notes = archive / "my_notes.txt"
    notes.write_text("keep me")
    with pytest.raises(ConfigError, match=r"holds another city \(preset 'tiny' seed 0\), not "
                                          r"preset 'tiny' seed 1; .*--overwrite"):
        archive_for_run(_cfg(tmp_path, 1))
    # even when asked to overwrite, a file of the user's inside stops it
    with pytest.raises(ArchiveError, match=r"did not write \('my_notes\.txt'\)"):
        archive_for_run(_cfg(tmp_path, 1), overwrite=True)
    assert notes.read_text() == "keep me"
    assert json.loads((archive / "manifest.json").read_text())["seed"] == 0


def test_a_folder_that_is_not_an_archive_is_never_deleted(tmp_path):
    folder = tmp_path / "run" / "archive"
    folder.mkdir(parents=True)
    (folder / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match=r"not a complete eocube archive.*--overwrite"):
        archive_for_run(_cfg(tmp_path, 0))
    with pytest.raises(ConfigError, match=r"is not an eocube archive"):
        archive_for_run(_cfg(tmp_path, 0), overwrite=True)
    assert (folder / "data.csv").read_text() == "a,b\n1,2\n"
