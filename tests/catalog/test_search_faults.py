"""search against a faulty loopback STAC API (#16.5, #17): transient errors, pages that loop,
empty pages, no result, a server that hangs; each ends in bounded time with the same items
as a fault-free server or a typed error."""

from __future__ import annotations

import importlib
import time

import pytest

from eocube.catalog.search import clear_collection_cache, search
from eocube.errors import ConfigError, EmptySearchError, SearchError
from eocube.testing.http import Fault, FaultServer, StacPages

COLLECTION = "sentinel-2-l2a"
N_ITEMS = 57
PAGE = 10  # the server's page size: 6 pages


def _items(n: int = N_ITEMS) -> list[dict]:
    out = []
    for i in range(n):
        x, y = 114.0 + 0.01 * (i % 5), 22.5
        out.append({
            "type": "Feature", "stac_version": "1.1.0", "id": f"S2_{i:03d}",
            "collection": COLLECTION if i % 7 else "sentinel-1-rtc",
            "geometry": {"type": "Polygon", "coordinates": [
                [[x, y], [x + .01, y], [x + .01, y + .01], [x, y + .01], [x, y]]]},
            "bbox": [x, y, x + 0.01, y + 0.01],
            "properties": {"datetime": f"2020-{1 + i // 28:02d}-{1 + i % 28:02d}T03:00:00Z",
                           "eo:cloud_cover": (i * 37) % 100},
            "links": [], "assets": {},
        })
    return out


ITEMS = _items()
WANT = [it["id"] for it in ITEMS if it["collection"] == COLLECTION]


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_collection_cache()
    yield
    clear_collection_cache()


def _server(faults=(), **pages) -> FaultServer:
    return FaultServer(stac=StacPages(ITEMS, page_size=PAGE, **pages), faults=faults, seed=1)


def _ids(items) -> list[str]:
    return [it.id for it in items]


def test_fault_free_server_gives_every_item_over_several_pages():
    with _server() as srv:
        got = search(srv.url, collections=COLLECTION)
        assert _ids(got) == WANT and len(WANT) > 3 * PAGE
        assert srv.count("^/search") == -(-len(WANT) // PAGE)


@pytest.mark.parametrize("status", [502, 503, 429])
def test_transient_errors_on_a_later_page_are_retried_to_the_same_result(status):
    fault = Fault("^/search", status=status, after=2, first=2, retry_after=0 if status == 429
                  else None)
    with _server([fault]) as srv:
        got = search(srv.url, collections=COLLECTION, retries=3, backoff=0.01)
        assert fault.applied == 2  # pages 0 and 1 served, then two failures on page 2
    assert _ids(got) == WANT


def test_transient_errors_on_a_share_of_requests_give_the_same_result():
    with _server([Fault(".", status=503, share=0.3)]) as srv:
        got = search(srv.url, collections=COLLECTION, retries=6, backoff=0.001,
                     filters={"eo:cloud_cover": ("<", 50)})
    assert _ids(got) == [it["id"] for it in ITEMS if it["collection"] == COLLECTION
                         and it["properties"]["eo:cloud_cover"] < 50]


def test_retries_spent_is_a_search_error_naming_the_url():
    with _server([Fault("^/search", status=502, after=1)]) as srv:
        url = srv.url
        with pytest.raises(SearchError, match=f"at '{url}' failed .*502"):
            search(url, collections=COLLECTION, retries=1, backoff=0.01)


@pytest.mark.parametrize("limit", [None, 35])
def test_a_next_link_that_loops_back_is_an_error_at_once(limit):
    with _server(loop_from=2, loop_to=1) as srv:
        t0 = time.monotonic()
        with pytest.raises(SearchError, match=r"loops: the 'next' link of page 3 .* repeats an "
                                              r"earlier request; the 30 items"):
            search(srv.url, collections=COLLECTION, limit=limit)
        assert time.monotonic() - t0 < 5
        assert srv.count("^/search") == 3  # pages 0, 1, 2, and not one more


def test_a_loop_with_fresh_tokens_is_caught_by_its_repeated_page():
    with _server(loop_from=2, loop_to=1, fresh_tokens=True) as srv:
        with pytest.raises(SearchError, match=r"loops: page 4 repeats page 2"):
            search(srv.url, collections=COLLECTION, limit=40)
        assert srv.count("^/search") == 4


def test_a_client_side_filtered_loop_with_a_limit_does_not_return_repeats():
    # before: 25 items of which 10 unique, no warning
    with _server(loop_from=0, loop_to=0, fresh_tokens=True) as srv, \
            pytest.raises(SearchError, match="loops"):
        search(srv.url, collections=COLLECTION, limit=25, filters={"eo:cloud_cover": ("<=", 100)})


def test_endless_pages_stop_at_max_pages():
    with _server(endless=True) as srv:
        with pytest.raises(SearchError, match=r"stopped after max_pages=8 pages \(\d+ items\)"):
            search(srv.url, collections=COLLECTION, max_pages=8)
        assert srv.count("^/search") == 8
    with pytest.raises(ConfigError, match="max_pages=0"):
        search("http://127.0.0.1:1", collections=COLLECTION, max_pages=0)


def test_empty_pages_with_a_next_link_are_followed():
    with _server(empty_pages=frozenset({1, 2})) as srv:
        got = search(srv.url, collections=COLLECTION)
    with _server() as srv:
        free = search(srv.url, collections=COLLECTION)
    assert _ids(got) == [i for n, i in enumerate(_ids(free)) if n // PAGE not in (1, 2)]


def test_pages_that_overlap_drop_the_repeats_with_a_warning():
    # a server whose page 2 is page 1 again, then carries on: items must not come twice
    with _server() as srv, pytest.warns(RuntimeWarning, match="returned 10 items twice"):
        orig = srv.stac._page

        def page(base, method, q):
            if str(q.get("token", "0")).startswith("2"):
                doc = orig(base, method, {**q, "token": "1"})
                doc["features"] += orig(base, method, {**q, "token": "2"})["features"]
                doc["links"] = orig(base, method, {**q, "token": "2"})["links"]
                return doc
            return orig(base, method, q)

        srv.stac._page = page
        got = search(srv.url, collections=COLLECTION)
    assert _ids(got) == WANT


def test_zero_results_is_a_typed_error_before_any_cube_is_built():
    with _server() as srv:
        with pytest.raises(EmptySearchError, match="matched no item") as info:
            search(srv.url, collections=COLLECTION, datetime="1999-01")
        assert isinstance(info.value, LookupError) and isinstance(info.value, SearchError)
        empty = search(srv.url, collections=COLLECTION, datetime="1999-01", allow_empty=True)
    assert len(empty) == 0
    from eocube.cube import load

    with pytest.raises(EmptySearchError, match="no items to load"):
        load(empty, bands=["B04"])


@pytest.mark.timeout(30)
def test_a_server_that_hangs_fails_in_bounded_time():
    with _server([Fault("^/search", hang=float("inf"))]) as srv:
        t0 = time.monotonic()
        with pytest.raises(SearchError, match=r"did not answer within timeout=0\.5 s"):
            search(srv.url, collections=COLLECTION, timeout=0.5, retries=1, backoff=0.01)
        took = time.monotonic() - t0
        assert took < 4, took
        assert srv.count("^/search") == 2  # the request and its one retry


@pytest.mark.timeout(30)
def test_a_landing_page_that_hangs_fails_in_bounded_time():
    with _server([Fault("^/$", hang=float("inf"))]) as srv:
        t0 = time.monotonic()
        with pytest.raises(SearchError, match=r"could not reach a STAC API.*timeout=0\.5 s"):
            search(srv.url, collections=COLLECTION, timeout=0.5, retries=0)
        assert time.monotonic() - t0 < 3


def test_a_truncated_page_is_retried_to_the_same_result():
    fault = Fault("^/search", truncate=0.5, after=1, first=2)
    with _server([fault]) as srv:
        got = search(srv.url, collections=COLLECTION, retries=2, backoff=0.01)
        assert fault.applied == 2
    assert _ids(got) == WANT


@pytest.mark.timeout(30)
def test_a_page_that_stops_arriving_is_retried_then_fails_in_bounded_time():
    stall = Fault("^/search", truncate=0.5, stall=float("inf"), after=1, first=1)
    with _server([stall]) as srv:
        assert _ids(search(srv.url, collections=COLLECTION, timeout=0.5, retries=1)) == WANT
    with _server([Fault("^/search", truncate=0.5, stall=float("inf"), after=1)]) as srv:
        t0 = time.monotonic()
        with pytest.raises(SearchError, match=r"Read timed out.*within timeout=0\.5 s"):
            search(srv.url, collections=COLLECTION, timeout=0.5, retries=1, backoff=0.01)
        assert time.monotonic() - t0 < 4


def test_a_page_truncated_beyond_the_retries_is_a_search_error():
    with _server([Fault("^/search", truncate=0.5, after=1)]) as srv, \
            pytest.raises(SearchError, match=r"failed .*(IncompleteRead|Connection broken)"):
        search(srv.url, collections=COLLECTION, retries=1, backoff=0.01)


def test_a_permanent_404_is_not_retried():
    with _server([Fault("^/search", status=404)]) as srv:
        with pytest.raises(SearchError, match="404"):
            search(srv.url, collections=COLLECTION, retries=5, backoff=0.5)
        assert srv.count("^/search") == 1


def test_collections_are_listed_once_per_url():
    with _server() as srv:
        for _ in range(3):
            search(srv.url, collections=COLLECTION, limit=1)
        assert srv.count("^/collections") == 1
        with pytest.raises(SearchError, match=r"has no collection \['landsat-c2-l2'\]; it has "
                                              r"\['sentinel-1-rtc', 'sentinel-2-l2a'\]"):
            search(srv.url, collections="landsat-c2-l2")
        assert srv.count("^/collections") == 2  # a miss looks again before it fails
        search(srv.url, collections=["sentinel-1-rtc", COLLECTION], limit=1)
        assert srv.count("^/collections") == 2


def test_a_collection_added_later_is_found():
    with _server() as srv:
        search(srv.url, collections=COLLECTION, limit=1)
        srv.stac.items = [*ITEMS, {**ITEMS[1], "id": "L8_1", "collection": "landsat-c2-l2"}]
        assert _ids(search(srv.url, collections="landsat-c2-l2")) == ["L8_1"]


def test_tokens_in_urls_never_reach_the_message():
    with _server([Fault("^/search", status=502)]) as srv, pytest.raises(SearchError) as info:
        search(srv.url + "/?sig=SECRET", collections=COLLECTION, retries=0)
    assert "SECRET" not in str(info.value)


def test_retry_after_is_capped():
    # the module, not the function eocube.catalog exports under the same name
    search_module = importlib.import_module("eocube.catalog.search")
    io = search_module._stac_io(2, 0.1, 5.0)
    retry = io.session.adapters["http://"].max_retries
    assert retry.retry_after_max == search_module.RETRY_AFTER_MAX == 60


# ---- the fault server itself (eocube.testing.http), which the cube's fault tests reuse ----

def _get(url: str, headers: dict | None = None, timeout: float = 5) -> tuple[int, bytes, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_static_files_with_byte_ranges(tmp_path):
    data = bytes(range(256)) * 4
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "B04.tif").write_bytes(data)
    (tmp_path / "secret").write_bytes(b"s")
    with FaultServer(root=tmp_path / "a") as srv:
        u = srv.url + "/B04.tif"
        assert _get(u)[:2] == (200, data) and _get(u)[2]["Accept-Ranges"] == "bytes"
        st, body, h = _get(u, {"Range": "bytes=10-19"})
        assert (st, body, h["Content-Range"]) == (206, data[10:20], "bytes 10-19/1024")
        assert _get(u, {"Range": "bytes=1000-"})[1] == data[1000:]
        assert _get(u, {"Range": "bytes=-4"})[1] == data[-4:]
        assert _get(u, {"Range": "bytes=5000-5001"})[0] == 416
        assert _get(srv.url + "/missing.tif")[0] == 404
        assert _get(srv.url + "/../secret")[0] == 404
        assert _get(srv.url + "/%2e%2e/secret")[0] == 404


def test_faults_by_share_first_after_and_permanent_404(tmp_path):
    (tmp_path / "x.tif").write_bytes(b"II*\x00")
    faults = [Fault(r"x\.tif$", status=503, share=0.5), Fault("gone", status=404)]
    with FaultServer(root=tmp_path, faults=faults, seed=3) as srv:
        codes = [_get(srv.url + "/x.tif")[0] for _ in range(40)]
        assert 8 < codes.count(503) < 32 and set(codes) == {200, 503}
        assert {_get(srv.url + "/gone.tif")[0] for _ in range(3)} == {404}
    with FaultServer(root=tmp_path, faults=faults, seed=3) as srv:  # same seed, same draws
        assert [_get(srv.url + "/x.tif")[0] for _ in range(40)] == codes
    with FaultServer(root=tmp_path, faults=[Fault(".", status=429, after=1, first=2,
                                                  retry_after=7)]) as srv:
        got = [_get(srv.url + "/x.tif") for _ in range(4)]
        assert [g[0] for g in got] == [200, 429, 429, 200]
        assert got[1][2]["Retry-After"] == "7"


def test_truncated_body_and_released_hang(tmp_path):
    import http.client

    (tmp_path / "x.tif").write_bytes(bytes(1000))
    with FaultServer(root=tmp_path, faults=[Fault("x", truncate=0.25)]) as srv, \
            pytest.raises(http.client.IncompleteRead):
        _get(srv.url + "/x.tif")
    srv = FaultServer(root=tmp_path, faults=[Fault("x", hang=float("inf"))]).start()
    t0 = time.monotonic()
    with pytest.raises(OSError):  # the client's timeout; the server holds the request
        _get(srv.url + "/x.tif", timeout=0.5)
    srv.close()  # releases the stalled handler
    assert time.monotonic() - t0 < 5


def test_gdal_reads_a_cog_through_the_fault_server(tmp_path):
    np = pytest.importorskip("numpy")
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    arr = np.arange(256 * 256, dtype="uint16").reshape(256, 256)
    with rasterio.open(tmp_path / "B04.tif", "w", driver="GTiff", width=256, height=256,
                       count=1, dtype="uint16", tiled=True, blockxsize=128, blockysize=128,
                       crs="EPSG:32650", transform=from_origin(0, 0, 10, 10)) as dst:
        dst.write(arr, 1)
    with FaultServer(root=tmp_path, faults=[Fault("B04", status=503, share=0.3)],
                     seed=0) as srv, rasterio.Env(GDAL_HTTP_MAX_RETRY=10,
                                                  GDAL_HTTP_RETRY_DELAY=0.01,
                                                  GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        with rasterio.open(srv.url + "/B04.tif") as src:
            got = src.read(1)
        assert srv.count("B04") > 1
    assert (got == arr).all()
