"""Hostile inputs (#17.4): hrefs that reach where a load must not go are refused before
any read, content that lies about being a GeoTIFF is refused before GDAL opens it, giant
headers are capped, and a pickle named like weights never runs."""

from __future__ import annotations

import pathlib
import pickle

import numpy as np
import pytest

from eocube.catalog.hrefs import HrefPolicy
from eocube.cube import load, read_failures
from eocube.errors import HrefRefused, ModelSpecError, ReadError
from eocube.testing.http import FaultServer

CHUNKS = {"x": 32, "y": 32}

#: href → the HrefPolicy setting that would allow it
HOSTILE = {
    "/vsicurl/http://example.com/B04.tif": "allow_vsi",
    "/vsizip//tmp/archive.zip/B04.tif": "allow_vsi",
    "/vsicurl%2Fhttp://example.com/B04.tif": "allow_vsi",
    "file:///etc/passwd": "roots",
    "/etc/passwd": "roots",
    "file://fileserver/share/B04.tif": "schemes",
    "http://169.254.169.254/latest/meta-data/iam.tif": "allow_link_local",
    "http://[fe80::1]/B04.tif": "allow_link_local",
    "http://10.0.0.7/B04.tif": "allow_private",
    "http://192.168.1.1/B04.tif": "allow_private",
    "http://127.0.0.1:9/B04.tif": "allow_loopback",
    "http://0x7f000001/B04.tif": "allow_loopback",
    "http://localhost/B04.tif": "allow_loopback",
    "http://[::1]/B04.tif": "allow_loopback",
    "ftp://example.com/B04.tif": "schemes",
    "gopher://example.com/B04.tif": "schemes",
    "http://exa mple.com/B04.tif": "hosts",
    "http://example.com/B04.tif\r\nX-Injected: 1": "schemes",
}


@pytest.fixture()
def no_reads(monkeypatch):
    """Any attempt to open a raster or a URL fails the test."""
    import urllib.request

    import rasterio

    def opened(*a, **k):
        raise AssertionError(f"a read was attempted: {a[:1]}")

    monkeypatch.setattr(rasterio, "open", opened)
    monkeypatch.setattr(urllib.request, "urlopen", opened)


@pytest.mark.parametrize("href", list(HOSTILE))
def test_each_hostile_href_is_refused_before_any_read(href, first_date, no_reads,
                                                     monkeypatch):
    items = [dict(it) for it in first_date]
    items[1] = {**items[1], "assets": {**items[1]["assets"],
                                       "B04": {**items[1]["assets"]["B04"], "href": href}}}
    with pytest.raises(HrefRefused) as err:
        load(items, bands=["B04"], chunks=CHUNKS)
    e = err.value
    assert e.setting == HOSTILE[href] and e.item == items[1]["id"] and e.asset == "B04"
    assert f"item {items[1]['id']!r}, asset 'B04'" in str(e) and "refused" in str(e)
    # under on_error="nan" the source is left out, recorded as forbidden, never read
    cube = load(items, bands=["B04"], chunks=CHUNKS, on_error="nan")
    monkeypatch.undo()  # the other items are read
    recs = read_failures(cube.compute())
    assert [(r["item"], r["class"], r["attempts"]) for r in recs] == [
        (items[1]["id"], "forbidden", 0)]


def test_the_default_policy_reads_the_archive_and_nothing_beside_it(first_date, tmp_path):
    """The default roots: the archive the items' files are in; a file outside it is
    refused even when it exists (here a good COG copied out of the archive)."""
    import shutil

    cube = load(first_date, bands=["B04"], chunks=CHUNKS)
    assert np.isfinite(cube.B04.values).any()
    outside = tmp_path / "B04.tif"
    shutil.copy(first_date[0]["assets"]["B04"]["href"].removeprefix("file://"), outside)
    items = [dict(it) for it in first_date]
    items[0] = {**items[0], "assets": {"B04": {**items[0]["assets"]["B04"],
                                               "href": outside.as_uri()}}}
    with pytest.raises(HrefRefused, match="not under the allowed roots"):
        load(items, bands=["B04"], chunks=CHUNKS)
    traversal = first_date[0]["assets"]["B04"]["href"].rsplit("/", 1)[0] + "/../../../../x.tif"
    items[0]["assets"]["B04"]["href"] = traversal
    with pytest.raises(HrefRefused, match="not under the allowed roots"):
        load(items, bands=["B04"], chunks=CHUNKS)


def _vrt(target: str) -> bytes:
    return (f'<VRTDataset rasterXSize="64" rasterYSize="64"><VRTRasterBand dataType="UInt16" '
            f'band="1"><SimpleSource><SourceFilename relativeToVRT="0">{target}'
            '</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>'
            '</VRTDataset>').encode()


@pytest.mark.parametrize("served", [False, True], ids=["local", "http"])
def test_a_vrt_named_tif_is_refused_before_gdal_follows_it(staged, served):
    """A VRT renamed .tif would make GDAL read the file or fetch the URL it names; its
    first bytes give it away and nothing it names is requested."""
    with FaultServer(root=staged.root) as srv:
        bait = staged.path(staged.source[0], "B04")
        bait.write_bytes(_vrt(f"/vsicurl/{srv.url}/secret/B08.tif"))
        staged.path(staged.source[1], "B04").write_bytes(_vrt("/etc/hostname"))
        policy = HrefPolicy(roots=(staged.root,), allow_loopback=True)
        items = staged.items(srv.url if served else None)
        cube = load(items, bands=["B04"], chunks=CHUNKS, href_policy=policy,
                    on_error="nan").compute()
        recs = read_failures(cube)
        with pytest.raises(ReadError, match="VRT markup, not a raster") as err:
            load(items, bands=["B04"], chunks=CHUNKS, href_policy=policy).compute()
        assert srv.count("/secret/") == 0
        asked = srv.count(f"/{staged.source[0]['id']}/B04")
    # only the first range reads that sniff it (one per chunk the tile covers), no GDAL read
    assert (1 <= asked <= 2 * 4) if served else asked == 0
    assert sorted((r["item"], r["class"]) for r in recs) == sorted(
        (it["id"], "corrupt") for it in staged.source[:2])
    assert err.value.failure == "corrupt"


def test_a_giant_header_is_capped(staged):
    policy = HrefPolicy(roots=(staged.root,), max_pixels=64 * 64 - 1)
    cube = load(staged.items(), bands=["B04"], chunks=CHUNKS, href_policy=policy,
                on_error="nan").compute()
    assert {r["class"] for r in read_failures(cube)} == {"forbidden"}
    assert np.isnan(cube.B04.values).all()
    with pytest.raises(ReadError, match="max_pixels=4,095"):
        load(staged.items(), bands=["B04"], chunks=CHUNKS, href_policy=policy).compute()


class _Payload:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_pickle_disguised_as_weights_never_runs(tmp_path):
    from eocube.models import load_model, read_spec

    marker = tmp_path / "executed"
    evil = tmp_path / "urban_s2.safetensors"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    pickle.loads(evil.read_bytes())  # the payload works: unpickling creates the marker ...
    assert marker.exists()
    marker.unlink()
    for fn in (read_spec, load_model):  # ... and eocube refuses the file without running it
        with pytest.raises(ModelSpecError, match="not a safetensors file"):
            fn(evil)
        with pytest.raises(ModelSpecError, match="not a safetensors file"):
            fn(str(evil))
    assert not marker.exists()
