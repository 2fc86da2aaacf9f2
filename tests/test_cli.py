from __future__ import annotations

import subprocess
import sys


def _eocube(*args):
    return subprocess.run([sys.executable, "-m", "eocube.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_unknown_preset_exits_2_with_a_clear_message(tmp_path):
    r = _eocube("synth", str(tmp_path / "x"), "--preset", "huge")
    assert r.returncode == 2
    assert "unknown city preset 'huge'" in r.stderr
    assert not (tmp_path / "x").exists()


def test_validate_a_whole_archive(tiny_archive):
    r = _eocube("validate", str(tiny_archive))
    assert r.returncode == 0, r.stderr
    assert ", 0 problems" in r.stdout


def test_serve_a_missing_archive_exits_2(tmp_path):
    r = _eocube("serve", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "does not exist" in r.stderr
