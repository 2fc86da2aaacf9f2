from __future__ import annotations

import json
import os
import socket
import urllib.request

import numpy as np
import pandas as pd
import pystac_client
import pytest
import shapely

from eocube.catalog import LocalStacApi, open_archive
from eocube.errors import ArchiveError, ServerError


def _expected(archive, collection, *, bbox=None, start=None, end=None):
    ids = set()
    for it in open_archive(archive).items(collection):
        t = pd.Timestamp(it["properties"]["datetime"])
        if start is not None and not (pd.Timestamp(start) <= t <= pd.Timestamp(end)):
            continue
        if bbox is not None and not shapely.box(*bbox).intersects(shapely.box(*it["bbox"])):
            continue
        ids.add(it["id"])
    return ids


def test_server_answers_and_lists_every_collection(stac_api, tiny_archive):
    with urllib.request.urlopen(stac_api.url + "/collections") as r:
        cols = {c["id"] for c in json.load(r)["collections"]}
    assert cols == set(open_archive(tiny_archive).collection_ids)
    assert stac_api.url.startswith("http://127.0.0.1:")


def test_search_by_collection_returns_exactly_the_archive_items(stac_api, tiny_archive):
    client = pystac_client.Client.open(stac_api.url)
    got = {i.id for i in client.search(collections=["sentinel-1-rtc"]).items()}
    assert got == _expected(tiny_archive, "sentinel-1-rtc")


def test_search_by_bbox_and_datetime_returns_exactly_the_expected_items(stac_api, tiny_archive):
    client = pystac_client.Client.open(stac_api.url)
    first = next(open_archive(tiny_archive).items("sentinel-2-l2a"))
    x0, y0, x1, y1 = first["bbox"]  # one tile's footprint, shrunk to stay inside it
    bbox = [x0 + 0.2 * (x1 - x0), y0 + 0.2 * (y1 - y0), x0 + 0.4 * (x1 - x0),
            y0 + 0.4 * (y1 - y0)]
    got = {i.id for i in client.search(collections=["sentinel-2-l2a"], bbox=bbox,
                                       datetime="2020-03-01/2020-05-31").items()}
    want = _expected(tiny_archive, "sentinel-2-l2a", bbox=bbox, start="2020-03-01T00:00Z",
                     end="2020-05-31T23:59:59Z")
    assert got == want
    assert 0 < len(got) < 20
    assert {i.split("_T")[-1] for i in got} == {first["properties"]["s2:mgrs_tile"]}


def test_asset_hrefs_resolve_to_files(stac_api):
    client = pystac_client.Client.open(stac_api.url)
    item = next(client.search(collections=["sentinel-2-l2a"], max_items=1).items())
    href = item.assets["B04"].get_absolute_href()
    assert href.startswith("file:///") and os.path.exists(href[len("file://"):])


def test_odc_stac_loads_a_cube_with_the_city_grid(stac_api, tiny_world):
    import odc.stac

    client = pystac_client.Client.open(stac_api.url)
    items = list(client.search(collections=["sentinel-2-l2a"],
                               datetime="2020-07-01/2020-07-31").items())
    ds = odc.stac.load(items, bands=["B04", "B11"], chunks={"x": 64, "y": 64},
                       groupby="solar_day", resolution=10)
    gb = ds.odc.geobox
    assert gb.crs.epsg == 32650
    assert gb.shape.yx == (128, 128)
    assert gb.transform == tiny_world.geobox(10).transform
    assert ds.sizes["time"] == len({i.datetime.date() for i in items})
    b04 = ds.B04.isel(time=0).values
    assert b04.dtype == np.uint16 and (b04 > 1000).all()  # DNs carry the +1000 offset


def test_a_port_in_use_is_a_clear_error(tiny_archive):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} on 127.0.0.1 is in use"):
            LocalStacApi(tiny_archive, port=port).start()


def test_a_missing_archive_is_a_clear_error(tmp_path):
    with pytest.raises(ArchiveError, match="does not exist"):
        LocalStacApi(tmp_path / "nowhere")


def test_no_orphan_process_when_the_caller_raises(tiny_archive):
    api = LocalStacApi(tiny_archive)
    with pytest.raises(KeyError), api:
        pid = api.pid
        assert pid is not None
        raise KeyError("boom")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert api.port is None


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids, seconds: float) -> list[int]:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _wait_line(proc, prefix: str, seconds: float = 60) -> str:
    import selectors
    import time

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline().decode()
            if line.startswith(prefix):
                return line
            if not line and proc.poll() is not None:
                break
    proc.kill()
    raise AssertionError(f"no line starting {prefix!r}: {proc.stderr.read().decode()[-2000:]}")


@pytest.mark.timeout(120)
@pytest.mark.skipif(os.name != "posix", reason="signals and process groups are POSIX")
def test_eocube_serve_stopped_by_sigterm_leaves_no_server_and_no_files(tiny_archive, tmp_path):
    import signal
    import subprocess
    import sys

    import psutil

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    exe = os.path.join(os.path.dirname(sys.executable), "eocube")
    proc = subprocess.Popen([exe, "serve", str(tiny_archive)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(tmp)})
    url = _wait_line(proc, "STAC API at ").split()[3]
    with urllib.request.urlopen(url + "/collections") as r:
        assert r.status == 200
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert children, "the server runs as a child of eocube serve"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0  # a clean exit, not killed by the signal (-15)
    # stop() waited for the server: nothing is left the moment serve has exited (the watchdog
    # would take up to half a second more, so this checks the SIGTERM path, not the watchdog)
    assert [p for p in children if _alive(p)] == []
    assert list(tmp.iterdir()) == []


@pytest.mark.timeout(120)
@pytest.mark.skipif(os.name != "posix", reason="signals and process groups are POSIX")
def test_a_killed_owner_takes_its_server_along(tiny_archive, tmp_path):
    import signal
    import subprocess
    import sys

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    script = ("import sys, time\n"
              "from eocube.catalog import LocalStacApi\n"
              f"api = LocalStacApi({str(tiny_archive)!r}).start()\n"
              "print('PID', api.pid, api.url, flush=True)\n"
              "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(tmp)})
    _, pid, url = _wait_line(proc, "PID ").split()
    with urllib.request.urlopen(url + "/collections") as r:
        assert r.status == 200
    assert _alive(int(pid))
    proc.send_signal(signal.SIGKILL)  # a Jupyter kernel killed: no cleanup code runs
    proc.wait(timeout=10)
    assert _wait_gone([int(pid)], 5) == []
    assert list(tmp.iterdir()) == []  # the inputs were removed once the server had them


def test_the_server_survives_its_starting_thread_and_loses_its_input_files(tiny_archive):
    import threading

    box = {}
    t = threading.Thread(target=lambda: box.setdefault("api", LocalStacApi(tiny_archive).start()))
    t.start()
    t.join()
    api = box["api"]
    pid = api.pid
    try:
        assert api.workdir is None
        with urllib.request.urlopen(api.url + "/collections") as r:
            assert len(json.load(r)["collections"]) == len(open_archive(tiny_archive)
                                                           .collection_ids)
    finally:
        api.stop()
    assert pid is not None and not _alive(pid)


def test_a_port_taken_between_pick_and_bind_is_retried_on_another(tiny_archive, monkeypatch):
    import eocube.catalog.server as server

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = iter([busy.getsockname()[1], server.free_port()])
        monkeypatch.setattr(server, "free_port", lambda host=server.HOST: next(ports))
        with LocalStacApi(tiny_archive) as api:
            assert api.port != busy.getsockname()[1]
            with urllib.request.urlopen(api.url + "/collections") as r:
                assert r.status == 200


def test_a_server_that_never_starts_leaves_nothing(tiny_archive, monkeypatch, tmp_path):
    import eocube.catalog.server as server

    monkeypatch.setattr(server, "_rustac_exe", lambda: "/bin/false")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    api = LocalStacApi(tiny_archive, timeout=5)
    with pytest.raises(ServerError, match="rustac serve did not start"):
        api.start()
    assert api.pid is None and api.port is None and list(tmp_path.iterdir()) == []
