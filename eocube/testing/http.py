"""A fault-injecting HTTP server on 127.0.0.1 for tests: static files with Range requests, an
optional minimal STAC API over a list of items, and faults chosen per path.

Faults (``Fault``) answer a share or the first N of the requests whose path matches with an
HTTP status (503, 429 with ``Retry-After``, 502, a permanent 404), a hang, or a truncated body.
The STAC API (``StacPages``) pages its search results with ``next`` links and can misbehave
the ways real APIs have: a ``next`` link that loops back, with the same or a fresh token each
time, and empty pages that still carry a ``next`` link.

Examples
--------
>>> with FaultServer(root="archive", faults=[Fault(r"\\.tif$", status=503, share=0.3)],
...                  seed=0) as srv:  # doctest: +SKIP
...     url = srv.url + "/s2/B04.tif"
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Fault", "FaultServer", "StacPages"]

_CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


@dataclass
class Fault:
    """A fault for the requests whose path (with its query) matches ``path`` (``re.search``).

    Parameters
    ----------
    path
        Regular expression searched in the request path, e.g. ``r"^/search"``, ``r"\\.tif$"``.
    status
        Answer with this HTTP status (and a short JSON body) instead of the resource.
    share
        Apply to this share of the matching requests (drawn from the server's seeded RNG).
    first
        Apply to the first ``first`` matching requests only (``None``: no limit).
    after
        Let this many matching requests through before the fault starts (``after=2`` on
        ``^/search`` spares the first two result pages).
    hang
        Seconds to stall before answering; ``float("inf")`` never answers (until the server
        closes). With no ``status`` the stalled request is then served normally.
    truncate
        Send this fraction of the body (with the full ``Content-Length``), then close.
    stall
        With ``truncate``: after the part of the body, stall this many seconds
        (``float("inf")``: until the server closes) before closing — a body that stops
        arriving, which a per-read timeout catches and a total deadline must.
    retry_after
        A ``Retry-After`` header (seconds) sent with ``status``.
    method
        Only requests with this method (``"GET"``, ``"POST"``, ``"HEAD"``).
    """

    path: str
    status: int | None = None
    share: float = 1.0
    first: int | None = None
    after: int = 0
    hang: float | None = None
    truncate: float | None = None
    stall: float | None = None
    retry_after: float | None = None
    method: str | None = None
    applied: int = field(default=0, init=False)
    matched: int = field(default=0, init=False)


def _intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def _in_interval(dt: str, interval: str) -> bool:
    lo, _, hi = interval.partition("/") if "/" in interval else (interval, "", interval)
    lo = "" if lo in ("", "..") else lo
    hi = "" if hi in ("", "..") else hi
    # prefix comparison: "2020-07" covers every instant of July
    return (not lo or dt[:len(lo)] >= lo) and (not hi or dt[:len(hi)] <= hi)


@dataclass
class StacPages:
    """A minimal STAC API (core, item search, collections) over ``items``.

    Searches filter by ``collections``, ``ids``, ``bbox`` and ``datetime`` and page with a
    ``token`` (GET: in the query string; POST: in the ``next`` link's body).

    Parameters
    ----------
    items
        Item dicts (each with ``id``, ``collection``, ``bbox``, ``properties.datetime``).
    collections
        Collection dicts; by default one bare collection per item collection id.
    page_size
        Most items per page, whatever ``limit`` the request asks (as real servers cap it).
    loop_from, loop_to
        From page ``loop_from`` (0-based) on, the ``next`` link points back at page
        ``loop_to``: the pages repeat forever.
    fresh_tokens
        Give each looping ``next`` link a different token, so only the repeated content
        gives the loop away.
    empty_pages
        Pages (0-based) served with no features but with their ``next`` link.
    endless
        Every page has a ``next`` link with new items (``endless-<n>``) beyond the real ones.
    """

    items: Sequence[Mapping[str, Any]]
    collections: Sequence[Mapping[str, Any]] | None = None
    page_size: int = 10
    loop_from: int | None = None
    loop_to: int = 0
    fresh_tokens: bool = False
    empty_pages: frozenset[int] = frozenset()
    endless: bool = False

    def _collections(self) -> list[dict[str, Any]]:
        if self.collections is not None:
            return [dict(c) for c in self.collections]
        ids = sorted({str(it["collection"]) for it in self.items})
        return [{"type": "Collection", "stac_version": "1.1.0", "id": c, "description": c,
                 "license": "other", "links": [],
                 "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                            "temporal": {"interval": [[None, None]]}}} for c in ids]

    def _match(self, q: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        cols = q.get("collections")
        ids = q.get("ids")
        bbox = q.get("bbox")
        dt = q.get("datetime")
        out = []
        for it in self.items:
            if cols and it.get("collection") not in cols:
                continue
            if ids and it["id"] not in ids:
                continue
            if bbox and not _intersects([float(v) for v in bbox], it["bbox"]):
                continue
            if dt and not _in_interval(str(it["properties"]["datetime"]), str(dt)):
                continue
            out.append(it)
        return out

    def answer(self, base: str, method: str, path: str, query: str, body: bytes
               ) -> tuple[int, Any] | None:
        """The status and JSON document for a request, or ``None`` if not an API path."""
        route = path.rstrip("/")
        if route == "":
            return 200, {"type": "Catalog", "stac_version": "1.1.0", "id": "fault-api",
                         "description": "fault-injecting STAC API", "conformsTo": _CONFORMS,
                         "links": [
                             {"rel": "self", "href": base + "/"},
                             {"rel": "root", "href": base + "/"},
                             {"rel": "data", "href": base + "/collections"},
                             {"rel": "conformance", "href": base + "/conformance"},
                             {"rel": "search", "href": base + "/search", "method": "GET",
                              "type": "application/geo+json"},
                             {"rel": "search", "href": base + "/search", "method": "POST",
                              "type": "application/geo+json"}]}
        if route == "/conformance":
            return 200, {"conformsTo": _CONFORMS}
        if route == "/collections":
            cols = self._collections()
            for c in cols:
                c["links"] = [{"rel": "self", "href": f"{base}/collections/{c['id']}"},
                              {"rel": "root", "href": base + "/"}]
            return 200, {"collections": cols, "links": []}
        if route.startswith("/collections/") and route.count("/") == 2:
            cid = route.split("/")[2]
            for c in self._collections():
                if c["id"] == cid:
                    return 200, c
            return 404, {"code": "NotFound", "description": f"no collection {cid}"}
        if route != "/search":
            return None
        if method == "POST":
            q: dict[str, Any] = json.loads(body or b"{}")
        else:
            raw = {k: v[0] for k, v in parse_qs(query).items()}
            q = dict(raw)
            for k in ("collections", "ids"):
                if k in q:
                    q[k] = q[k].split(",")
            if "bbox" in q:
                q["bbox"] = q["bbox"].split(",")
        return 200, self._page(base, method, q)

    def _page(self, base: str, method: str, q: dict[str, Any]) -> dict[str, Any]:
        size = min(int(q.get("limit") or self.page_size), self.page_size)
        token = str(q.get("token", "0"))
        page = int(token.split("-")[0])
        found = self._match(q)
        start = page * size
        feats = [dict(f) for f in found[start:start + size]]
        more = start + size < len(found)
        if self.endless and not more:
            feats = feats or [{**dict(self.items[0]), "id": f"endless-{page}-{i}"}
                              for i in range(size)]
            more = True
        nxt: int | None = page + 1 if more else None
        if self.loop_from is not None and page >= self.loop_from:
            nxt = self.loop_to
        if page in self.empty_pages:
            feats = []
        links: list[dict[str, Any]] = [{"rel": "root", "href": base + "/"}]
        if nxt is not None:
            ntok = f"{nxt}-{time.monotonic_ns()}" if self.fresh_tokens else str(nxt)
            if method == "POST":
                links.append({"rel": "next", "href": base + "/search", "method": "POST",
                              "body": {**{k: v for k, v in q.items() if k != "token"},
                                       "token": ntok}, "merge": False})
            else:
                params = {k: (",".join(map(str, v)) if isinstance(v, list) else v)
                          for k, v in q.items() if k != "token"}
                qs = "&".join(f"{k}={v}" for k, v in params.items())
                links.append({"rel": "next", "method": "GET",
                              "href": f"{base}/search?{qs}&token={ntok}".replace("?&", "?")})
        return {"type": "FeatureCollection", "features": feats, "links": links,
                "numberReturned": len(feats)}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    _stall: float | None = None

    def log_message(self, *args: Any) -> None:  # quiet tests
        pass

    def do_GET(self) -> None:
        self._handle(b"")

    def do_HEAD(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(n) if n else b"")

    def _send(self, status: int, body: bytes, ctype: str, *, headers: Mapping[str, str] = {},
              truncate: float | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        if truncate is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        if truncate is not None:
            self.wfile.write(body[:int(len(body) * truncate)])
            self.wfile.flush()
            if self._stall is not None:
                self.server.owner._closing.wait(
                    None if self._stall == float("inf") else self._stall)
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)  # socket.SHUT_RDWR
            return
        self.wfile.write(body)

    def _handle(self, body: bytes) -> None:
        srv = self.server.owner
        fault = srv._draw(self.command, self.path)
        if fault is not None and fault.hang is not None:
            srv._closing.wait(None if fault.hang == float("inf") else fault.hang)
            if srv._closing.is_set() or fault.hang == float("inf"):
                self.close_connection = True
                return
        if fault is not None and fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            doc = json.dumps({"code": str(fault.status), "description": "injected fault"})
            self._send(fault.status, doc.encode(), "application/json", headers=headers)
            return
        truncate = fault.truncate if fault is not None else None
        self._stall = fault.stall if fault is not None else None
        parts = urlsplit(self.path)
        if srv.stac is not None:
            ans = srv.stac.answer(srv.url, self.command, unquote(parts.path), parts.query, body)
            if ans is not None:
                ctype = "application/geo+json" if parts.path.rstrip("/") == "/search" \
                    else "application/json"
                self._send(ans[0], json.dumps(ans[1]).encode(), ctype, truncate=truncate)
                return
        self._static(unquote(parts.path), truncate)

    def _static(self, path: str, truncate: float | None) -> None:
        srv = self.server.owner
        if srv.root is None or self.command not in ("GET", "HEAD"):
            self._send(404, b"not found", "text/plain")
            return
        root = os.path.realpath(srv.root)
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            self._send(404, b"not found", "text/plain")
            return
        data = Path(full).read_bytes()
        rng = self.headers.get("Range")
        headers = {"Accept-Ranges": "bytes"}
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            n = len(data)
            if m is None or m.groups() == ("", ""):
                self._send(416, b"", "text/plain", headers={"Content-Range": f"bytes */{n}"})
                return
            a, b = m.groups()
            if a == "":  # the last b bytes
                lo, hi = max(0, n - int(b)), n - 1
            else:
                lo, hi = int(a), min(n - 1, int(b)) if b else n - 1
            if lo >= n or lo > hi:
                self._send(416, b"", "text/plain", headers={"Content-Range": f"bytes */{n}"})
                return
            headers["Content-Range"] = f"bytes {lo}-{hi}/{n}"
            self._send(206, data[lo:hi + 1], "application/octet-stream", headers=headers,
                       truncate=truncate)
            return
        self._send(200, data, "application/octet-stream", headers=headers, truncate=truncate)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultServer


class FaultServer:
    """A loopback HTTP server with injected faults; use it as a context manager.

    Parameters
    ----------
    root
        Folder served as static files (GET and HEAD, single byte ranges).
    stac
        A ``StacPages`` API served at ``/``, ``/conformance``, ``/collections`` and
        ``/search``; other paths fall through to ``root``.
    faults
        Checked in order; the first whose path and method match and whose ``first`` budget is
        not spent, and that the RNG draws (``share``), applies.
    seed
        Seed of the RNG that draws ``share``.

    Attributes
    ----------
    url
        ``http://127.0.0.1:<port>`` once started.
    requests
        ``(method, path)`` of every request received, in order.
    """

    def __init__(self, *, root: str | os.PathLike[str] | None = None,
                 stac: StacPages | None = None, faults: Iterable[Fault] = (),
                 seed: int = 0) -> None:
        self.root = None if root is None else os.fspath(root)
        self.stac = stac
        self.faults = list(faults)
        self.requests: list[tuple[str, str]] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def _draw(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests.append((method, path))
            for f in self.faults:
                if f.method is not None and f.method != method:
                    continue
                if not re.search(f.path, path):
                    continue
                f.matched += 1
                if f.matched <= f.after or (f.first is not None and f.applied >= f.first):
                    continue
                if f.share < 1.0 and self._rng.random() >= f.share:
                    return None
                f.applied += 1
                return f
        return None

    def count(self, pattern: str, method: str | None = None) -> int:
        """How many requests so far had a path matching ``pattern`` (and ``method``)."""
        with self._lock:
            return sum(1 for m, p in self.requests
                       if re.search(pattern, p) and (method is None or m == method))

    def start(self) -> FaultServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; stalled requests are released and their connections closed."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
