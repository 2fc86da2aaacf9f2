"""Silent corruption (#17.1): single-byte flips inside COGs are caught by their checksums
when a load asks (``verify=True``) and always by ``eocube validate``."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from eocube.catalog.hrefs import HrefPolicy
from eocube.catalog.validate import archive_problems
from eocube.cube import load, read_failures
from eocube.errors import ChecksumError

FLIPS = 40


def test_forty_single_byte_flips_are_each_caught_by_verify(staged):
    """Each flip on a fresh copy of one file; without verify some load without error and with
    other values (silent corruption: the count is printed), with verify every one is a
    ``corrupt`` record and its pixels are NaN."""
    rng = np.random.default_rng(17)
    policy = HrefPolicy(roots=(staged.root,))
    items = staged.items()
    clean = {b: load(items, bands=[b], href_policy=policy).compute()[b].values
             for b in ("B04", "B08")}
    silent = caught = 0
    for k in range(FLIPS):
        i, band = int(rng.integers(4)), ("B04", "B08")[k % 2]
        p = staged.path(staged.source[i], band)
        good = p.read_bytes()
        raw = bytearray(good)
        pos = int(rng.integers(len(raw)))
        raw[pos] ^= 1 << int(rng.integers(8))
        p.write_bytes(bytes(raw))
        try:
            plain = load(items, bands=[band], href_policy=policy, on_error="nan").compute()
            if not read_failures(plain) and not np.array_equal(plain[band].values, clean[band],
                                                              equal_nan=True):
                silent += 1
            checked = load(items, bands=[band], href_policy=policy, on_error="nan",
                           verify=True).compute()
            recs = read_failures(checked)
            assert [(r["item"], r["asset"], r["class"]) for r in recs] == [
                (staged.source[i]["id"], band, "corrupt")], (k, pos)
            caught += 1
        finally:
            p.write_bytes(good)
    print(f"\n{FLIPS} single-byte flips: {silent} loaded silently with other values "
          f"without verify; {caught} caught with verify=True")
    assert caught == FLIPS


def test_verify_without_a_known_checksum_refuses_to_pretend(staged):
    items = staged.items()
    for it in items:
        del it["assets"]["B04"]["file:checksum"]
    with pytest.raises(ChecksumError, match="no checksum is known"):
        load(items, bands=["B04"], href_policy=HrefPolicy(roots=(staged.root,)),
             verify=True).compute()


def test_verify_uses_the_archive_manifest(first_date):
    cube = load(first_date, bands=["B04"], verify=True).compute()  # no file:checksum there
    assert "file:checksum" not in first_date[0]["assets"]["B04"]
    assert np.isfinite(cube.B04.values).any()


def test_validate_reports_a_damaged_archive_and_exits_1(tiny_archive, tmp_path):
    arch = tmp_path / "city"
    shutil.copytree(tiny_archive, arch)
    assert archive_problems(arch) == []
    victim = sorted((arch / "sentinel-1-rtc").glob("*/vv.tif"))[5]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x04
    victim.write_bytes(bytes(raw))
    rel = victim.relative_to(arch).as_posix()
    probs = archive_problems(arch)
    assert len(probs) == 1 and probs[0].startswith(f"{rel}: sha256")
    r = subprocess.run([sys.executable, "-m", "eocube.cli", "validate", str(arch)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert rel in r.stderr and ", 1 problems" in r.stdout
