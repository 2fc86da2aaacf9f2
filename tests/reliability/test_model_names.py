"""Weights names are names: they never resolve outside the shipped weights folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from eocube.errors import ModelSpecError
from eocube.models.io import WEIGHTS_DIR, available_weights, weights_path


@pytest.mark.parametrize("name", ["../x", "../weights/urban_s2", "/etc/passwd", "..",
                                  "a/b", "urban_s2/../urban_s2", "~/x", "", "\\..\\x"])
def test_traversal_names_are_refused(name, tmp_path, monkeypatch):
    # a file that the traversal would reach, were names resolved as paths
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_bytes(b"not weights")
    (tmp_path / "x.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelSpecError, match="no weights named"):
        weights_path(name)


def test_an_existing_file_without_the_suffix_is_not_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil").write_bytes(b"x")
    with pytest.raises(ModelSpecError, match="no weights named 'evil'"):
        weights_path("evil")
    assert weights_path(Path("evil")) == Path("evil")  # a Path is a path


def test_names_and_paths_resolve():
    name = available_weights()[0]
    assert weights_path(name).parent == WEIGHTS_DIR
    p = WEIGHTS_DIR / f"{name}.safetensors"
    assert weights_path(str(p)) == p
    with pytest.raises(ModelSpecError, match="does not exist"):
        weights_path("missing.safetensors")
