from __future__ import annotations

import http.server
import threading
import urllib.request

import pytest

from eocube.catalog import open_archive
from eocube.catalog.search import _cql2, _normalise_filters, _query, filter_items, search
from eocube.errors import ConfigError, EmptySearchError, SearchError


def _ids(items):
    return {it.id for it in items}


def test_profile_and_property_filter_give_exactly_the_matching_items(stac_api, tiny_archive):
    got = search(stac_api, profile="s2", datetime="2020-01-01/2020-06-30",
                 filters={"eo:cloud_cover": ("<", 20)})
    want = {it["id"] for it in open_archive(tiny_archive).items("sentinel-2-l2a")
            if it["properties"]["datetime"] < "2020-07" and
            it["properties"]["eo:cloud_cover"] < 20}
    assert _ids(got) == want and len(want) > 5
    asc = search(stac_api.url, collections="sentinel-1-rtc", datetime="2020-03",
                 filters={"sat:orbit_state": "ascending"})
    assert {it.properties["sat:orbit_state"] for it in asc} == {"ascending"}


def test_limit_bbox_and_geometry(stac_api, tiny_archive):
    first = next(open_archive(tiny_archive).items("sentinel-2-l2a"))
    assert len(search(stac_api, profile="s2", limit=7)) == 7
    assert len(search(stac_api, profile="s2", limit=3,
                      filters={"eo:cloud_cover": ("<=", 100)})) == 3
    x0, y0, x1, y1 = first["bbox"]
    inner = [x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0), x0 + 0.4 * (x1 - x0),
             y0 + 0.4 * (y1 - y0)]
    import shapely

    by_bbox = search(stac_api, profile="s2", bbox=inner, datetime="2020-05")
    by_geom = search(stac_api, profile="s2", intersects=shapely.box(*inner), datetime="2020-05")
    assert _ids(by_bbox) == _ids(by_geom)
    assert {i.properties["s2:mgrs_tile"] for i in by_bbox} == {first["properties"]["s2:mgrs_tile"]}


def test_sign_hook_is_applied_to_every_item(stac_api):
    def sign(item):
        for a in item.assets.values():
            a.href += "?sig=test"

    items = search(stac_api, profile="s1", datetime="2020-02", sign=sign)
    assert all(a.href.endswith("?sig=test") for it in items for a in it.assets.values())


def test_empty_result_unknown_collection_and_unreachable_url(stac_api):
    with pytest.raises(EmptySearchError, match="matched no item"):
        search(stac_api, profile="s2", datetime="1999-01")
    assert len(search(stac_api, profile="s2", datetime="1999-01", allow_empty=True)) == 0
    with pytest.raises(SearchError, match=r"has no collection \['landsat-c2-l2'\]"):
        search(stac_api, collections=["landsat-c2-l2"])
    from eocube.catalog.server import free_port

    with pytest.raises(SearchError, match="could not reach a STAC API"):
        search(f"http://127.0.0.1:{free_port()}", profile="s2", retries=1, backoff=0.01,
               timeout=2)
    with pytest.raises(ConfigError, match="unknown operator"):
        search(stac_api, profile="s2", filters={"eo:cloud_cover": ("~", 3)})


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Loopback proxy to the STAC API that answers 503 to the first ``fail`` requests."""

    upstream = ""
    fail = 0
    seen = 0

    def _proxy(self, body: bytes | None) -> None:
        cls = type(self)
        cls.seen += 1
        if cls.fail > 0:
            cls.fail -= 1
            self.send_response(503)
            self.end_headers()
            return
        req = urllib.request.Request(cls.upstream + self.path, data=body, method=self.command,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            data = r.read().replace(cls.upstream.encode(), cls.me.encode())
            self.send_response(r.status)
            self.send_header("Content-Type", r.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def do_GET(self):
        self._proxy(None)

    def do_POST(self):
        self._proxy(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def log_message(self, *a):
        pass


def test_transient_http_errors_are_retried(stac_api):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    _Flaky.upstream = stac_api.url
    _Flaky.me = f"http://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        _Flaky.fail, _Flaky.seen = 2, 0
        items = search(_Flaky.me, profile="s1", datetime="2020-02", retries=3, backoff=0.01)
        assert len(items) > 0 and _Flaky.seen > 2
        _Flaky.fail = 100
        with pytest.raises(SearchError):
            search(_Flaky.me, profile="s1", retries=1, backoff=0.01)
    finally:
        srv.shutdown()
        srv.server_close()


def test_filters_translate_to_cql2_query_and_client_checks():
    conds = _normalise_filters({"eo:cloud_cover": ("lt", 30), "platform": ["a", "b"]})
    assert _cql2(conds) == {"op": "and", "args": [
        {"op": "<", "args": [{"property": "eo:cloud_cover"}, 30]},
        {"op": "in", "args": [{"property": "platform"}, ["a", "b"]]}]}
    assert _query(conds) == {"eo:cloud_cover": {"lt": 30}, "platform": {"in": ["a", "b"]}}
    items = [{"properties": {"eo:cloud_cover": c, "platform": p}}
             for c, p in ((10, "a"), (50, "a"), (10, "c"), (None, "a"))]
    assert filter_items(items, filters={"eo:cloud_cover": ("<", 30), "platform": ["a", "b"]}) \
        == items[:1]


@pytest.mark.parametrize(("bbox", "says"), [
    ((22.5, 114.0, 22.6, 114.1), r"latitude 114\.0 is outside -90\.\.90; STAC searches take "
                                 r"\(minx, miny, maxx, maxy\) = \(west, south, east, north\) in "
                                 r"lon/lat degrees; it looks like latitude first — did you mean "
                                 r"\[114\.0, 22\.5, 114\.1, 22\.6\]\?"),
    ((800000, 2490000, 810000, 2500000), r"is not in degrees .* projected coordinates \(metres\)"),
    ((114.0, 95.0, 114.1, 96.0), r"latitude 95\.0 is outside -90\.\.90"),
    ((114.0, 22.6, 114.1, 22.5), r"south 22\.6 is north of north 22\.5"),
    ((114.1, 22.5, 114.0, 22.6), r"west 114\.1 is east of east 114\.0"),
    ((-190.0, 22.5, -185.0, 22.6), r"longitude -190\.0 is outside -180\.\.180"),
    ((114.0, float("nan"), 114.1, 22.6), "not finite"),
    ((114.0, 22.5, 114.1), "has 3 values; pass four"),
    (("a", 1, 2, 3), "is not four numbers"),
])
def test_a_bbox_in_the_wrong_order_or_units_is_refused_before_any_request(bbox, says):
    # port 1: nothing listens, so a check that came after the request would fail differently
    with pytest.raises(ConfigError, match=says):
        search("http://127.0.0.1:1", collections="sentinel-2-l2a", bbox=bbox)


def test_a_geometry_in_metres_is_refused_and_lonlat_boxes_pass():
    import shapely

    with pytest.raises(ConfigError, match=r"the bounds of intersects.*metres"):
        search("http://127.0.0.1:1", collections="x",
               intersects=shapely.box(800000, 2490000, 810000, 2500000))
    from eocube.catalog.search import _check_bbox

    assert _check_bbox((170.0, -10.0, -170.0, 10.0)) == [170.0, -10.0, -170.0, 10.0]  # 180°
    assert _check_bbox([114, 22.5, 0, 114.1, 22.6, 100]) == [114, 22.5, 0, 114.1, 22.6, 100]
    assert _check_bbox((-180, -90, 180, 90)) == [-180, -90, 180, 90]


def test_the_package_exports_its_public_api_in_flow_order():
    import eocube.catalog as catalog
    from eocube.catalog.server import free_port

    assert catalog.search is search and callable(catalog.search)
    assert "free_port" not in catalog.__all__ and free_port() > 0
    for name in catalog.__all__:
        assert getattr(catalog, name) is not None
    modules = [getattr(catalog, n).__module__.rsplit(".", 1)[-1] for n in catalog.__all__
               if hasattr(getattr(catalog, n), "__module__") and callable(getattr(catalog, n))]
    order = ["profiles", "search", "archive", "server", "validate", "hrefs"]
    firsts = [modules.index(m) for m in order]
    assert firsts == sorted(firsts), modules
