"""Signed-URL tokens never leave the read (#17.7): not in errors, failure records, logs or
pickled errors; and with ``sign=`` not in the task graph either."""

from __future__ import annotations

import logging
import os
import pickle

import pytest

from eocube.catalog.hrefs import HrefPolicy
from eocube.cube import load, read_failures
from eocube.errors import ReadError
from eocube.testing.http import Fault, FaultServer

TOKEN = "sv=2024&sig=T0KEN-s3cr3t"
LOOPBACK = HrefPolicy(allow_loopback=True)
CHUNKS = {"x": 32, "y": 32}


def sign_from_env(href: str) -> str:
    """A signing hook as a user writes one: the token comes from where the task runs."""
    return f"{href}?{os.environ['EOCUBE_TEST_SAS']}"


def test_a_token_in_the_href_stays_out_of_errors_records_and_logs(staged, caplog):
    gone = staged.source[1]
    caplog.set_level(logging.DEBUG)
    faults = [Fault(f"/{gone['id']}/B08\\.tif", status=404),
              Fault(r"\.tif", status=503, share=0.2)]  # retried: GDAL logs each retry
    with FaultServer(root=staged.root, faults=faults, seed=3) as srv:
        items = staged.items(srv.url, query="?" + TOKEN)
        ok = load(items, bands=["B04"], chunks=CHUNKS, href_policy=LOOPBACK).compute()
        nan = load(items, bands=["B04", "B08"], chunks=CHUNKS, href_policy=LOOPBACK,
                   on_error="nan").compute()
        recs = read_failures(nan)
        with pytest.raises(ReadError) as err:
            load(items, bands=["B08"], chunks=CHUNKS, href_policy=LOOPBACK).compute()
        seen = [p for _, p in srv.requests]
    assert any(TOKEN in p for p in seen), "the reads must carry the token"
    # every 503 is retried and logged with its URL: by GDAL ("Retrying again") when it hits a
    # range read, by eocube's own retries ("retrying …") when it hits the admission's sniff of
    # the first bytes or the open
    assert faults[1].applied > 0 and "retrying" in caplog.text.lower()
    assert ok.B04.notnull().any() and len(recs) == 1 and recs[0]["class"] == "missing"
    texts = [str(err.value), repr(err.value), repr(recs), caplog.text,
             str(err.value.__cause__), pickle.dumps(err.value).decode("latin-1"),
             pickle.dumps(recs).decode("latin-1")]
    for secret in ("T0KEN-s3cr3t", "sig="):
        assert not [t for t in texts if secret in t]


def test_sign_keeps_the_token_out_of_the_graph(staged, monkeypatch):
    monkeypatch.setenv("EOCUBE_TEST_SAS", TOKEN)
    with FaultServer(root=staged.root) as srv:
        signed = load(staged.items(srv.url), bands=["B04"], chunks=CHUNKS,
                      href_policy=LOOPBACK, sign=sign_from_env)
        graph = pickle.dumps(dict(signed.__dask_graph__()))
        v = signed.B04.values
        seen = [p for _, p in srv.requests]
        # the graph of a load whose hrefs carry the token holds it: the reason for sign=
        planted = load(staged.items(srv.url, query="?" + TOKEN), bands=["B04"],
                       chunks=CHUNKS, href_policy=LOOPBACK)
        assert b"T0KEN-s3cr3t" in pickle.dumps(dict(planted.__dask_graph__()))
    assert b"T0KEN-s3cr3t" not in graph
    assert seen and all(p.endswith("?" + TOKEN) for p in seen if p.endswith(".tif" + "?" + TOKEN)
                        or ".tif" in p)
    assert (v == v).any()


@pytest.mark.parametrize("name", ["rasterio._filepath", "odc.loader._rio", "urllib3.connectionpool",
                                  "fsspec.http", "eocube.cube.plan"])
def test_child_loggers_and_tracebacks_are_redacted_too(name, caplog):
    # a logger filter sees only its own logger's records, not a child's that propagate: the
    # redaction must reach rasterio._filepath, odc.loader._rio, urllib3 (which logs every
    # request line with its query at DEBUG) and the URL quoted in a logged traceback
    from eocube.cube.guard import redact_logs

    redact_logs()
    caplog.set_level(logging.DEBUG)
    url = "https://host.example/a/B04.tif?" + TOKEN
    log = logging.getLogger(name)
    log.debug("GET %s", url)
    try:
        raise OSError(f"HTTP error 503 for {url}")
    except OSError:
        log.exception("read of %s failed", url)
    assert "host.example/a/B04.tif" in caplog.text
    assert "T0KEN-s3cr3t" not in caplog.text and "sig=" not in caplog.text


def test_a_retried_admission_read_is_logged_without_its_token(staged, caplog):
    # the first request to every COG is eocube's sniff of its first bytes (is it the raster
    # its name says?): a 503 there is retried by eocube, not GDAL, and must be logged too
    caplog.set_level(logging.WARNING)
    with FaultServer(root=staged.root, faults=[Fault(r"\.tif", status=503, first=1)]) as srv:
        items = staged.items(srv.url, query="?" + TOKEN)
        v = load(items[:1], bands=["B04"], chunks=CHUNKS, href_policy=LOOPBACK).B04.values
    assert (v == v).any()
    assert "retrying the read of http://127.0.0.1" in caplog.text
    assert "T0KEN-s3cr3t" not in caplog.text and "sig=" not in caplog.text
