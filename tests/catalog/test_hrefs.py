"""The href policy refuses each class of hostile asset href, naming the href without its
query string and the setting that allows it (#17.4, #17.7)."""

from __future__ import annotations

import doctest
import pickle

import pytest

import eocube.catalog.hrefs as hrefs_module
from eocube.catalog.hrefs import (
    DEFAULT_POLICY,
    HrefPolicy,
    check_href,
    check_raster_size,
    redact,
    redact_text,
    sniff_raster,
)
from eocube.errors import EocubeError, HrefRefused

TIFF = b"II*\x00\x08\x00\x00\x00" + bytes(64)
BIGTIFF = b"II+\x00\x08\x00\x00\x00" + bytes(64)
HDF5 = b"\x89HDF\r\n\x1a\n" + bytes(64)
VRT = b'<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand><SimpleSource>' \
      b"<SourceFilename>/etc/passwd</SourceFilename>"
HTML = b"\xef\xbb\xbf\n  <!DOCTYPE html><html><body>AccessDenied</body></html>"


def test_doctests():
    res = doctest.testmod(hrefs_module, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 4 and res.failed == 0


@pytest.mark.parametrize("href", [
    "https://sentinel2l2a01.blob.core.windows.net/c/T50QKM/B04.tif?st=2020&sig=abc",
    "http://example.com:8080/a/b.tif",
    "s3://sentinel-cogs/sentinel-s2-l2a-cogs/50/Q/KM/B04.tif",
    "https://8.8.8.8/b.tif",
    "https://[2606:4700:4700::1111]/b.tif",
])
def test_public_hrefs_pass_unchanged(href):
    assert check_href(href) == href


@pytest.mark.parametrize(("href", "setting", "says"), [
    ("http://169.254.169.254/latest/meta-data/iam/", "allow_link_local", "link-local"),
    ("http://[fe80::1%25eth0]/x.tif", "allow_link_local", "link-local"),
    ("http://[::ffff:169.254.169.254]/x", "allow_link_local", "link-local"),
    ("http://127.0.0.1:8080/x.tif", "allow_loopback", "loopback"),
    ("http://2130706433/x.tif", "allow_loopback", "loopback"),  # 127.0.0.1 in decimal
    ("http://0x7f.1/x.tif", "allow_loopback", "loopback"),
    ("http://0.0.0.0:9000/x.tif", "allow_loopback", "loopback"),
    ("http://[::1]/x.tif", "allow_loopback", "loopback"),
    ("http://localhost/x.tif", "allow_loopback", "loopback"),
    ("http://10.1.2.3/x.tif", "allow_private", "private"),
    ("http://172.20.0.5/x.tif", "allow_private", "private"),
    ("http://192.168.1.10/x.tif", "allow_private", "private"),
    ("http://[fd00::5]/x.tif", "allow_private", "private"),
    ("/vsicurl/http://169.254.169.254/latest/meta-data/", "allow_vsi", "/vsi"),
    ("/vsizip//data/a.zip/b.tif", "allow_vsi", "/vsi"),
    ("%2Fvsicurl%2Fhttp://evil.example/x", "allow_vsi", "/vsi"),
    ("ftp://example.com/x.tif", "schemes", "scheme 'ftp'"),
    ("gopher://example.com/x", "schemes", "scheme 'gopher'"),
    ("zip+https://example.com/a.zip!/b.tif", "schemes", "scheme 'zip+https'"),
    ("file:///etc/passwd", "roots", "local files are not allowed"),
    ("/etc/passwd", "roots", "local files are not allowed"),
    ("file://fileserver/share/x.tif", "schemes", "network share"),
    ("http://evil.example/x\r\nHost: other", "schemes", "control characters"),
])
def test_hostile_hrefs_are_refused_naming_the_setting(href, setting, says):
    with pytest.raises(HrefRefused, match="refused: .*" + _re(says)) as info:
        check_href(href)
    e = info.value
    assert e.setting == setting and isinstance(e, (PermissionError, EocubeError))
    assert e.href == redact(href) and repr(redact(href)) in str(e)
    if setting.startswith("allow_"):
        assert f"HrefPolicy({setting}=True)" in str(e)
        check_href(href, policy=HrefPolicy(**{setting: True}))  # the named setting allows it


def _re(s: str) -> str:
    import re

    return re.escape(s)


def test_local_files_are_confined_under_the_roots(tmp_path):
    root = tmp_path / "archive"
    (root / "s2").mkdir(parents=True)
    (root / "s2" / "B04.tif").write_bytes(TIFF)
    (tmp_path / "secret.tif").write_bytes(TIFF)
    (root / "s2" / "link.tif").symlink_to(tmp_path / "secret.tif")
    policy = HrefPolicy.for_archive(root)
    for ok in (f"file://{root}/s2/B04.tif", str(root / "s2" / "B04.tif"),
               f"file://localhost{root}/s2/B04.tif", f"file://{root}/s2/B%30%34.tif"):
        assert check_href(ok, policy=policy) == ok
    for bad in (f"file://{root}/../secret.tif", f"{root}/s2/../../secret.tif",
                f"file://{root}/s2/%2e%2e/%2e%2e/secret.tif", f"file://{root}/s2/link.tif",
                f"{root}-other/x.tif", "file:///etc/passwd"):
        with pytest.raises(HrefRefused, match=r"not under the allowed roots") as info:
            check_href(bad, policy=policy)
        assert info.value.setting == "roots"


def test_hosts_allow_list_and_schemes():
    policy = HrefPolicy(hosts=frozenset({"example.com", ".blob.core.windows.net"}))
    check_href("https://example.com/a.tif", policy=policy)
    check_href("https://acct.blob.core.windows.net/a.tif", policy=policy)
    with pytest.raises(HrefRefused, match=r"host 'evil\.example' is not among") as info:
        check_href("https://evil.example/a.tif", policy=policy)
    assert info.value.setting == "hosts"
    with pytest.raises(HrefRefused, match="not among"):  # suffix match needs the dot
        check_href("https://notexample.com/a.tif", policy=policy)
    with pytest.raises(HrefRefused, match="scheme 's3'"):
        check_href("s3://bucket/a.tif", policy=HrefPolicy(schemes=frozenset({"https"})))


def test_a_trailing_dot_does_not_hide_localhost():
    for href in ("http://localhost./x.tif", "http://LOCALHOST/x.tif", "http://a.localhost/x"):
        with pytest.raises(HrefRefused, match="loopback"):
            check_href(href)


def test_resolve_applies_the_address_checks_to_names(monkeypatch):
    import socket

    def fake(host, port, *a, **k):  # a public-looking name that points at the metadata service
        assert host == "meta.evil.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    check_href("http://meta.evil.example/x.tif")  # not resolved by default
    with pytest.raises(HrefRefused, match=r"meta\.evil\.example \(169\.254\.169\.254\) is a "
                       "link-local") as info:
        check_href("http://meta.evil.example/x.tif", policy=HrefPolicy(resolve=True))
    assert info.value.setting == "allow_link_local"


def test_redact_strips_tokens_everywhere():
    signed = "https://u:pw@acct.blob.core.windows.net/c/B04.tif?st=2020-01-01&se=x&sig=SECRET"
    assert redact(signed) == "https://acct.blob.core.windows.net/c/B04.tif"
    text = (f"HTTPSConnectionPool: Max retries exceeded with url: {signed} (Caused by ...); "
            f"also '/vsicurl/{signed}'")
    out = redact_text(text)
    assert "SECRET" not in out and "pw" not in out and "sig=" not in out
    assert "https://acct.blob.core.windows.net/c/B04.tif (Caused" in out
    with pytest.raises(HrefRefused) as info:
        check_href("http://10.0.0.1/B04.tif?sig=SECRET")
    assert "SECRET" not in str(info.value) and "SECRET" not in info.value.href
    assert "SECRET" not in str(pickle.loads(pickle.dumps(info.value)))


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("B04.tif", TIFF, "tiff"), ("B04.TIF", b"MM\x00*" + bytes(8), "tiff"),
    ("big.tif", BIGTIFF, "tiff"), ("VNP46A3.h5", HDF5, "hdf5"),
    ("ub.h5", bytes(512) + HDF5, "hdf5"), ("noext", TIFF, "tiff"),
    ("https://h.example/B04.tif?sig=x", TIFF, "tiff"),
])
def test_sniff_accepts_real_rasters(name, content, kind):
    assert sniff_raster(content, name=name) == kind


@pytest.mark.parametrize(("name", "content", "says"), [
    ("B04.tif", VRT, "XML/HTML/VRT markup"),
    ("https://h.example/B04.tif?sig=SECRET", HTML, "XML/HTML/VRT markup"),
    ("B04.tif", b"<?xml version='1.0'?><VRTDataset/>", "XML/HTML/VRT markup"),
    ("B04.tif", b"GIF89a" + bytes(10), "no TIFF, HDF5 or JPEG 2000 signature"),
    ("VNP46A3.h5", TIFF, "named like HDF5 but its content is TIFF"),
    ("B04.tif", HDF5, "named like TIFF but its content is HDF5"),
    ("B04.tif", b"", "no TIFF"),
])
def test_sniff_refuses_disguised_content(name, content, says):
    with pytest.raises(HrefRefused, match=_re(says)) as info:
        sniff_raster(content, name=name)
    assert info.value.setting == "content" and "SECRET" not in str(info.value)
    assert "fix the asset's href or content" in str(info.value)


def test_sniff_reads_a_file(tmp_path):
    (tmp_path / "B04.tif").write_bytes(VRT)
    (tmp_path / "ok.tif").write_bytes(TIFF)
    assert sniff_raster(tmp_path / "ok.tif") == "tiff"
    with pytest.raises(HrefRefused, match=r"B04\.tif.*VRT"):
        sniff_raster(tmp_path / "B04.tif")


def test_raster_size_cap():
    check_raster_size(10980, 10980, href="B04.tif")
    with pytest.raises(HrefRefused, match=r"1000000 × 1000000 = 1,000,000,000,000 pixels, "
                       r"more than max_pixels=4,294,967,296") as info:
        check_raster_size(1_000_000, 1_000_000, href="https://h.example/B04.tif?sig=x")
    assert info.value.setting == "max_pixels" and "sig" not in str(info.value)
    check_raster_size(1_000_000, 1_000_000, href="x.tif",
                      policy=HrefPolicy(max_pixels=10**12))
    with pytest.raises(HrefRefused, match="0 × 5"):
        check_raster_size(0, 5, href="x.tif")
    assert DEFAULT_POLICY.max_pixels == 2**32
