from __future__ import annotations

import shutil

import pytest

from eocube.catalog.hrefs import HrefPolicy
from eocube.catalog.search import search
from eocube.synth.sensors import Scene


@pytest.fixture(scope="session")
def tiny_scene(tiny_world):
    return Scene(tiny_world)


@pytest.fixture(scope="module")
def s2_items(stac_api):
    # one clear and some cloudy dates
    return search(stac_api, profile="s2", datetime="2020-05-01/2020-06-30")


@pytest.fixture()
def broken_policy(tiny_archive, tmp_path):
    """The href policy that lets loads read the broken files (outside the archive)."""
    return HrefPolicy(roots=(tiny_archive, tmp_path))


@pytest.fixture()
def broken_items(s2_items, tmp_path):
    """Items of the first date; one tile's B04 corrupted, another's B08 file missing and a
    third item without its B04 asset at all."""
    t0 = s2_items[0].datetime
    items = [it.clone() for it in s2_items if it.datetime == t0]
    assert len(items) == 4
    src = items[0].assets["B04"].get_absolute_href().removeprefix("file://")
    bad = tmp_path / "corrupt.tif"
    shutil.copy(src, bad)
    raw = bytearray(bad.read_bytes())
    raw[-2000:] = b"\x00\x13" * 1000  # garbage in the last tiles' compressed bytes
    raw[len(raw) // 2:len(raw) // 2 + 4000] = b"\xff" * 4000
    bad.write_bytes(bytes(raw))
    items[0].assets["B04"].href = bad.as_uri()
    items[1].assets["B08"].href = (tmp_path / "gone.tif").as_uri()
    del items[2].assets["B04"]
    return items
