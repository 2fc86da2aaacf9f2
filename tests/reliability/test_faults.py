"""Reads against a misbehaving server and damaged files (#17.1, #17.3): transient faults
leave no trace in the cube, a permanent failure costs exactly its pixels and is recorded
once with its class, damaged files are caught by their checksums. Loopback only; every
server answers or fails within seconds."""

from __future__ import annotations

import numpy as np
import pytest

from eocube.catalog.hrefs import HrefPolicy
from eocube.cube import load, read_failures
from eocube.errors import ChecksumError, ReadError
from eocube.testing.http import Fault, FaultServer
from tests.reliability.conftest import chunk_digests

LOOPBACK = HrefPolicy(allow_loopback=True)
CHUNKS = {"x": 32, "y": 32}


def _quadrant(cube, item):
    """The (rows, cols) of ``cube``'s grid that ``item``'s B04 file covers."""
    a = item["assets"]["B04"]
    t, (h, w) = a["proj:transform"], a["proj:shape"]
    gt = cube.odc.geobox.transform
    r0, c0 = round((t[5] - gt.f) / gt.e), round((t[2] - gt.c) / gt.a)
    return np.s_[r0:r0 + h, c0:c0 + w]


def test_transient_503_and_429_leave_every_chunk_as_a_fault_free_run(staged):
    clean = load(staged.items(), bands=["B04", "B08"], chunks=CHUNKS,
                 href_policy=HrefPolicy(roots=(staged.root,)))
    want = chunk_digests(clean)
    faults = [Fault(r"\.tif", status=503, share=0.3),
              Fault(r"\.tif", status=429, share=0.15, retry_after=0)]
    with FaultServer(root=staged.root, faults=faults, seed=17) as srv:
        cube = load(staged.items(srv.url), bands=["B04", "B08"], chunks=CHUNKS,
                    href_policy=LOOPBACK)
        got = chunk_digests(cube)
        injected = sum(f.applied for f in faults)
    print(f"\n{injected} transient faults injected into "
          f"{srv.count(r'[.]tif')} requests; chunks equal: {got == want}")
    assert injected >= 10, injected
    assert got == want
    assert len(want) == 2 * 16  # two bands of 4 × 4 chunks


def test_a_permanent_404_costs_exactly_its_pixels_and_is_recorded_once(staged):
    clean = load(staged.items(), bands=["B04", "B08"], chunks=CHUNKS,
                 href_policy=HrefPolicy(roots=(staged.root,))).compute()
    gone = staged.source[2]
    with FaultServer(root=staged.root,
                     faults=[Fault(f"/{gone['id']}/B04\\.tif", status=404)]) as srv:
        items = staged.items(srv.url, query="?st=2020&sig=SECRET")
        cube = load(items, bands=["B04", "B08"], chunks=CHUNKS, href_policy=LOOPBACK,
                    on_error="nan").compute()
        recs = read_failures(cube)
        url = f"{srv.url}/{gone['id']}/B04.tif"
        with pytest.raises(ReadError) as err:
            load(items, bands=["B04"], chunks=CHUNKS, href_policy=LOOPBACK).compute()
    q = _quadrant(cube, gone)
    b04, ref = cube.B04.values[0], clean.B04.values[0]
    assert np.isnan(b04[q]).all()
    rest = np.ones(b04.shape, bool)
    rest[q] = False
    np.testing.assert_array_equal(b04[rest], ref[rest])
    xr_equal = np.array_equal(cube.B08.values, clean.B08.values, equal_nan=True)
    assert xr_equal
    assert [(r["item"], r["asset"], r["href"], r["class"]) for r in recs] == [
        (gone["id"], "B04", url, "missing")]
    assert recs[0]["attempts"] == 1 and recs[0]["band"] == "B04"
    e = err.value
    assert type(e) is ReadError and (e.item, e.asset, e.href, e.failure) == (
        gone["id"], "B04", url, "missing")
    assert "SECRET" not in str(e) and "SECRET" not in repr(recs)


def _damage(staged, how):
    """Damage item 0's B04 file in one of the ways files get damaged."""
    p = staged.path(staged.source[0], "B04")
    raw = bytearray(p.read_bytes())
    if how == "truncated":
        p.write_bytes(bytes(raw[:len(raw) // 2]))
    elif how == "zero-byte":
        p.write_bytes(b"")
    elif how == "bit-flipped":
        raw[len(raw) - 700] ^= 0x10  # inside the last tile's compressed bytes
        p.write_bytes(bytes(raw))
    elif how == "html-as-tif":
        p.write_bytes(b"<!DOCTYPE html><html><body>Access denied</body></html>")
    return staged.source[0]


@pytest.mark.parametrize("served", [False, True], ids=["local", "http"])
@pytest.mark.parametrize("how", ["truncated", "zero-byte", "bit-flipped", "html-as-tif"])
def test_damaged_cogs_are_recorded_corrupt_and_other_tiles_are_identical(staged, how, served):
    policy = HrefPolicy(roots=(staged.root,), allow_loopback=True)
    clean = load(staged.items(), bands=["B04", "B08"], chunks=CHUNKS,
                 href_policy=policy).compute()
    bad = _damage(staged, how)
    srv = FaultServer(root=staged.root).start() if served else None
    try:
        items = staged.items(srv.url if srv else None)
        cube = load(items, bands=["B04", "B08"], chunks=CHUNKS, href_policy=policy,
                    on_error="nan", verify=True).compute()
        recs = read_failures(cube)
        with pytest.raises(ReadError) as err:  # the strict policy names it too
            load(items, bands=["B04"], chunks=CHUNKS, href_policy=policy,
                 verify=True).compute()
    finally:
        if srv:
            srv.close()
    assert [(r["item"], r["asset"], r["class"]) for r in recs] == [(bad["id"], "B04",
                                                                     "corrupt")]
    assert err.value.failure == "corrupt" and err.value.item == bad["id"]
    if how != "html-as-tif":
        assert isinstance(err.value, ChecksumError) or how == "zero-byte"
    q = _quadrant(cube, bad)
    assert np.isnan(cube.B04.values[0][q]).all()
    rest = np.ones(cube.B04.shape[1:], bool)
    rest[q] = False
    np.testing.assert_array_equal(cube.B04.values[0][rest], clean.B04.values[0][rest])
    np.testing.assert_array_equal(cube.B08.values, clean.B08.values)


def test_a_stalled_server_fails_the_read_in_bounded_time_as_transient(staged):
    """A server that accepts and never answers (or stops mid-body) costs its tile, within
    the timeouts, after three attempts; the other tiles are read."""
    import time

    from eocube.cube import configure_gdal

    stalled, cut = staged.source[0], staged.source[1]
    configure_gdal(GDAL_HTTP_TIMEOUT=1, GDAL_HTTP_MAX_RETRY=0)
    try:
        faults = [Fault(f"/{stalled['id']}/B04\\.tif", hang=float("inf")),
                  Fault(f"/{cut['id']}/B04\\.tif", truncate=0.3, stall=float("inf"))]
        with FaultServer(root=staged.root, faults=faults) as srv:
            t0 = time.monotonic()
            cube = load(staged.items(srv.url), bands=["B04"], chunks=CHUNKS,
                        href_policy=LOOPBACK, on_error="nan").compute()
            took = time.monotonic() - t0
            recs = read_failures(cube)
    finally:
        configure_gdal(GDAL_HTTP_TIMEOUT=60, GDAL_HTTP_MAX_RETRY=5)
    assert took < 30, took
    assert sorted((r["item"], r["class"], r["attempts"]) for r in recs) == sorted(
        [(stalled["id"], "transient", 3), (cut["id"], "transient", 3)])
    for it in staged.source[2:]:
        assert np.isfinite(cube.B04.values[0][_quadrant(cube, it)]).any()
