"""Search any STAC API — the local one over the synthetic city, Planetary Computer, Earth
Search — with one call, and get ``pystac`` items ready for ``eocube.cube.load``.

Property filters go to the server as CQL2 (Filter extension) or as a Query-extension query when
the server's ``/conformance`` declares one of them; otherwise (``rustac serve``'s in-memory
backend, for one) they are applied here, on the client. Either way the items are checked here
too, so the result is the same whatever the server implements.

Paging is guarded: a ``next`` link that repeats an earlier request, a page that repeats an
earlier page or brings only items already returned, is a ``SearchError`` at once, and no search
follows more than ``max_pages`` pages; an empty page that still has a ``next`` link is followed.
The collection ids of a catalog are fetched once per URL and process (Planetary Computer's
``/collections`` is 1.3 MB) and fetched again only when a wanted id is not among them.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from eocube.catalog.hrefs import redact, redact_text
from eocube.catalog.profiles import SensorProfile, get_profile
from eocube.errors import ConfigError, EmptySearchError, SearchError

#: Environment variable naming the default STAC API (``eocube serve`` prints its URL).
ENV_URL = "EOCUBE_STAC_URL"
#: HTTP statuses worth retrying: rate limiting and transient server-side failures.
TRANSIENT_STATUS = (429, 500, 502, 503, 504)
#: Items asked per page (Planetary Computer allows 1,000, Earth Search 10,000; rustac more).
PAGE_SIZE = 250
#: Default cap on the pages one search follows (500,000 items at 250 a page).
MAX_PAGES = 2000
#: Longest ``Retry-After`` honoured, in seconds (a server may ask for hours).
RETRY_AFTER_MAX = 60

_known_collections: dict[str, frozenset[str]] = {}
_known_lock = threading.Lock()

_OPS: dict[str, tuple[str, str, Callable[[Any, Any], bool]]] = {
    # eocube op: (CQL2 op, Query-extension op, python check)
    "=": ("=", "eq", operator.eq), "!=": ("<>", "neq", operator.ne),
    "<": ("<", "lt", operator.lt), "<=": ("<=", "lte", operator.le),
    ">": (">", "gt", operator.gt), ">=": (">=", "gte", operator.ge),
    "in": ("in", "in", lambda a, b: a in b),
}
_OP_ALIASES = {"eq": "=", "==": "=", "neq": "!=", "ne": "!=", "lt": "<", "lte": "<=",
               "le": "<=", "gt": ">", "gte": ">=", "ge": ">="}

Filters = Mapping[str, Any]
Signer = Callable[[Any], Any]


def _normalise_filters(filters: Filters | None) -> list[tuple[str, str, Any]]:
    out = []
    for prop, cond in (filters or {}).items():
        if isinstance(cond, tuple) and len(cond) == 2 and isinstance(cond[0], str):
            op, value = cond
        elif isinstance(cond, (list, set, frozenset)):
            op, value = "in", list(cond)
        else:
            op, value = "=", cond
        op = _OP_ALIASES.get(op, op)
        if op not in _OPS:
            raise ConfigError(f"filter {prop!r}: unknown operator {cond[0]!r}; use one of "
                              f"{sorted(_OPS)} as in {{{prop!r}: ('<', 30)}}")
        if op == "in":
            value = list(value)
        out.append((prop, op, value))
    return out


def _passes(props: Mapping[str, Any], conds: list[tuple[str, str, Any]]) -> bool:
    for prop, op, value in conds:
        if prop not in props or props[prop] is None:
            return False
        try:
            if not _OPS[op][2](props[prop], value):
                return False
        except TypeError:
            return False
    return True


def _cql2(conds: list[tuple[str, str, Any]]) -> dict[str, Any]:
    args = [{"op": _OPS[op][0], "args": [{"property": p}, v]} for p, op, v in conds]
    return args[0] if len(args) == 1 else {"op": "and", "args": args}


def _query(conds: list[tuple[str, str, Any]]) -> dict[str, Any]:
    q: dict[str, dict[str, Any]] = {}
    for p, op, v in conds:
        q.setdefault(p, {})[_OPS[op][1]] = v
    return q


def resolve_url(catalog: Any) -> str:
    """The URL of ``catalog``: a URL string, anything with a ``.url`` (a ``LocalStacApi``),
    or ``None`` for the ``EOCUBE_STAC_URL`` environment variable."""
    if catalog is None:
        url = os.environ.get(ENV_URL)
        if not url:
            raise ConfigError(f"no STAC API given and {ENV_URL} is not set; pass a URL, a "
                              "running eocube.catalog.LocalStacApi, or start one with "
                              f"`eocube serve PATH` and export {ENV_URL}=<its URL>")
        return url
    url = getattr(catalog, "url", catalog)
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"catalog={catalog!r} is not a STAC API URL (http(s)://…) nor a "
                          "running LocalStacApi")
    return url


def _entry_key(entry: Any) -> str:
    if isinstance(entry, Mapping):
        return f"{entry.get('collection', '')}/{entry.get('id', '')}"
    return repr(entry)


def _link_key(link: Mapping[str, Any]) -> str:
    return json.dumps({k: link.get(k) for k in ("href", "method", "body")}, sort_keys=True,
                      default=str)


# A body cut short (the connection dropped mid-page) is transient too, but urllib3 retries only
# what fails before the body; pystac-client turns it into an APIError carrying this text.
_BROKEN_BODY = ("Connection broken", "IncompleteRead", "Connection aborted",
                "RemoteDisconnected", "ChunkedEncodingError", "Expecting ", "Unterminated string",
                "Read timed out")


def _read_page(io: Any, target: Any, **kw: Any) -> dict[str, Any]:
    """``io.read_json``, retried (``io.page_retries`` times, exponential ``io.backoff``) when
    the body arrives broken; every other error is left to urllib3's retries."""
    import time

    for attempt in range(int(getattr(io, "page_retries", 0)) + 1):
        try:
            return dict(io.read_json(target, **kw))
        except Exception as e:
            text = str(e)
            # "Max retries exceeded": urllib3 has retried this one already
            if (attempt >= getattr(io, "page_retries", 0) or "Max retries exceeded" in text
                    or not any(t in text for t in _BROKEN_BODY)):
                raise
            time.sleep(float(getattr(io, "backoff", 0.0)) * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _guarded_pages(io: Any, url: str, method: str | None, parameters: Any,
                   max_pages: int) -> Iterator[dict[str, Any]]:
    """The pages of a STAC paging endpoint (``/search``, ``/collections``), as pystac-client's
    ``StacApiIO.get_pages`` yields them, but ending in bounded time on a misbehaving server."""
    from pystac import Link

    where = redact(url)
    requested = {_link_key({"href": url, "method": method or "GET", "body": parameters})}
    first_seen: dict[tuple[str, ...], int] = {}
    returned: set[str] = set()
    warned = False
    page = _read_page(io, url, method=method, parameters=parameters)
    n = 1
    while True:
        kind = "features" if "features" in page else "collections"
        entries = page.get(kind) or []
        keys = tuple(_entry_key(e) for e in entries)
        if entries:
            if keys in first_seen:
                raise SearchError(
                    f"the STAC API at {where!r} loops: page {n} repeats page "
                    f"{first_seen[keys]} (its 'next' links never end); the {len(returned)} "
                    "items before it are not returned. Report it to the server's operator, or "
                    "narrow the search (bbox, datetime) so that it fits in fewer pages")
            first_seen[keys] = n
            fresh = [e for e, k in zip(entries, keys, strict=True) if k not in returned]
            if not fresh:
                raise SearchError(
                    f"the STAC API at {where!r} loops: page {n} holds only items of earlier "
                    f"pages (its 'next' links never end); the {len(returned)} items before it "
                    "are not returned. Report it to the server's operator, or narrow the search")
            if len(fresh) < len(entries) and not warned:
                warned = True
                warnings.warn(f"the STAC API at {where!r} returned {len(entries) - len(fresh)} "
                              f"items twice (page {n}); eocube dropped the repeats",
                              RuntimeWarning, stacklevel=2)
            returned.update(keys)
            page[kind] = fresh
            yield page
        nxt = next((ln for ln in page.get("links", []) if ln.get("rel") == "next"), None)
        if nxt is None:
            return
        key = _link_key(nxt)
        if key in requested:
            raise SearchError(
                f"the STAC API at {where!r} loops: the 'next' link of page {n} "
                f"({redact(str(nxt.get('href')))!r}) repeats an earlier request; the "
                f"{len(returned)} items before it are not returned. Report it to the server's "
                "operator, or narrow the search (bbox, datetime)")
        if n >= max_pages:
            raise SearchError(
                f"the search at {where!r} stopped after max_pages={max_pages} pages "
                f"({len(returned)} items) and the server still offers a 'next' page; narrow the "
                "search (bbox, datetime, collections) or pass a larger max_pages=")
        requested.add(key)
        page = _read_page(io, Link.from_dict(nxt), parameters=parameters)
        n += 1


@functools.cache
def _guarded_io_class() -> type[Any]:
    from pystac_client.stac_api_io import StacApiIO

    class GuardedStacApiIO(StacApiIO):  # type: ignore[misc]
        """``StacApiIO`` whose paging ends in bounded time (``_guarded_pages``)."""

        max_pages: int = MAX_PAGES
        page_retries: int = 0
        backoff: float = 0.0

        def get_pages(self, url: str, method: str | None = None,
                      parameters: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
            return _guarded_pages(self, url, method, parameters, self.max_pages)

    return GuardedStacApiIO


def _stac_io(retries: int, backoff: float, timeout: float, max_pages: int = MAX_PAGES) -> Any:
    from urllib3.util.retry import Retry

    kw: dict[str, Any] = dict(
        total=retries, connect=retries, read=retries, status=retries,
        backoff_factor=backoff, status_forcelist=TRANSIENT_STATUS,
        allowed_methods=None,  # POST searches are idempotent: retry them too
        raise_on_status=True, respect_retry_after_header=True)
    try:  # urllib3 >= 2.? caps Retry-After itself; older ones honour any value
        retry = Retry(**kw, retry_after_max=RETRY_AFTER_MAX)
    except TypeError:
        retry = Retry(**kw)
    io = _guarded_io_class()(max_retries=retry, timeout=timeout)
    io.max_pages, io.page_retries, io.backoff = max_pages, retries, backoff
    return io


def open_client(catalog: Any = None, /, *, retries: int = 3, backoff: float = 0.5,
                timeout: float = 30.0, max_pages: int = MAX_PAGES) -> Any:
    """A ``pystac_client.Client`` on ``catalog`` with retrying, time-limited HTTP and guarded
    paging (see the module's docstring).

    Raises
    ------
    SearchError
        If the URL cannot be reached or does not answer as a STAC API.
    """
    import pystac_client

    url = resolve_url(catalog)
    try:
        # timeout= again: Client.open resets the StacApiIO's timeout to its own argument
        return pystac_client.Client.open(url, stac_io=_stac_io(retries, backoff, timeout,
                                                               max_pages), timeout=timeout)
    except Exception as e:  # requests, urllib3 and pystac-client errors alike
        raise SearchError(f"could not reach a STAC API at {redact(url)!r} "
                          f"({type(e).__name__}: {_short(e)}){_timeout_hint(e, timeout)}; "
                          "check the URL and that the server is running") from e


def _short(e: BaseException) -> str:
    s = redact_text(str(e))
    return s if len(s) < 300 else s[:297] + "..."


def _timeout_hint(e: BaseException, timeout: float) -> str:
    if "timed out" in str(e).lower() or isinstance(e, TimeoutError):
        return (f"; the server did not answer within timeout={timeout:g} s (per request, "
                "per retry): pass a larger timeout= if it is only slow")
    return ""


def clear_collection_cache() -> None:
    """Forget the collection ids remembered per catalog URL."""
    with _known_lock:
        _known_collections.clear()


def _list_collections(client: Any, url: str) -> frozenset[str]:
    try:
        have = frozenset(c.id for c in client.get_collections())
    except SearchError:
        raise
    except Exception as e:
        raise SearchError(f"could not list the collections of {redact(url)!r} "
                          f"({_short(e)})") from e
    with _known_lock:
        _known_collections[url.rstrip("/")] = have
    return have


def _check_collections(client: Any, url: str, wanted: Sequence[str]) -> None:
    with _known_lock:
        have = _known_collections.get(url.rstrip("/"))
    if have is not None and all(c in have for c in wanted):
        return
    have = _list_collections(client, url)  # first search of this URL, or a new collection
    missing = [c for c in wanted if c not in have]
    if missing:
        raise SearchError(f"the catalog at {redact(url)!r} has no collection {missing}; it has "
                          f"{sorted(have)}")


def _check_lonlat(values: Sequence[float], what: str) -> None:
    """Refuse a bbox that is not (west, south, east, north) in degrees, naming the likely
    mistake (latitude first, or projected metres)."""
    x0, y0, x1, y1 = values
    order = "(minx, miny, maxx, maxy) = (west, south, east, north) in lon/lat degrees"
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{what}={list(values)} has a value that is not finite; pass "
                          f"{order}")
    if any(abs(v) > 360 for v in values):
        raise ConfigError(
            f"{what}={list(values)} is not in degrees (|value| > 360): it looks like projected "
            f"coordinates (metres); STAC searches take {order} — transform it to EPSG:4326 "
            "first, e.g. odc.geo.geom.box(*bbox, crs).to_crs(4326).boundingbox")
    if not (-90 <= y0 <= 90 and -90 <= y1 <= 90):
        hint = ""
        if -90 <= x0 <= 90 and -90 <= x1 <= 90 and -180 <= y0 <= 180 and -180 <= y1 <= 180:
            hint = (f"; it looks like latitude first — did you mean "
                    f"{[y0, x0, y1, x1]}?")
        raise ConfigError(f"{what}={list(values)}: latitude {y0 if abs(y0) > 90 else y1} is "
                          f"outside -90..90; STAC searches take {order}{hint}")
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180):
        raise ConfigError(f"{what}={list(values)}: longitude {x0 if abs(x0) > 180 else x1} is "
                          f"outside -180..180; pass {order}")
    if y0 > y1:
        raise ConfigError(f"{what}={list(values)}: south {y0} is north of north {y1}; pass "
                          f"{order}")
    if x0 > x1 and not (x0 > 0 > x1):  # west > east only where the box crosses 180°
        raise ConfigError(f"{what}={list(values)}: west {x0} is east of east {x1} (and the box "
                          f"does not cross the antimeridian); pass {order}")


def _check_bbox(bbox: Sequence[float]) -> list[float]:
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise ConfigError(f"bbox={bbox!r} is not four numbers; pass (minx, miny, maxx, maxy) "
                          "= (west, south, east, north) in lon/lat degrees") from None
    if len(values) == 6:  # 3-D STAC bbox: (minx, miny, minz, maxx, maxy, maxz)
        _check_lonlat([values[0], values[1], values[3], values[4]], "bbox")
        return values
    if len(values) != 4:
        raise ConfigError(f"bbox={list(bbox)} has {len(values)} values; pass four: (minx, "
                          "miny, maxx, maxy) = (west, south, east, north) in lon/lat degrees")
    _check_lonlat(values, "bbox")
    return values


def _check_geometry(geom: Any) -> Any:
    import shapely.geometry

    try:
        bounds = shapely.geometry.shape(geom).bounds
    except Exception as e:
        raise ConfigError(f"intersects= is not a GeoJSON geometry ({type(e).__name__}: "
                          f"{_short(e)}); pass a dict, a shapely geometry or anything with "
                          "__geo_interface__, in lon/lat degrees") from None
    if all(math.isfinite(b) for b in bounds):
        _check_lonlat(list(bounds), "the bounds of intersects")
    return geom


def search(catalog: Any = None, /, *, bbox: Sequence[float] | None = None,
           intersects: Any = None, datetime: str | Sequence[Any] | None = None,
           collections: str | Sequence[str] | None = None,
           profile: str | SensorProfile | None = None, filters: Filters | None = None,
           limit: int | None = None, sign: Signer | str | None = None, retries: int = 3,
           backoff: float = 0.5, timeout: float = 30.0, max_pages: int = MAX_PAGES,
           allow_empty: bool = False) -> Any:
    """Search a STAC API and return the matching items.

    Parameters
    ----------
    catalog
        STAC API URL, a running ``LocalStacApi``, or ``None`` for ``$EOCUBE_STAC_URL``.
    bbox, intersects
        Area of interest: ``(minx, miny, maxx, maxy)`` = ``(west, south, east, north)`` in
        lon/lat degrees (EPSG:4326), or a GeoJSON geometry in lon/lat (a dict, a shapely
        geometry or anything with ``__geo_interface__``). Latitudes outside ±90, values in
        metres, south above north are refused with the order expected.
    datetime
        An RFC 3339 instant or interval (``"2020-06-01/2020-09-30"``, ``"2020-07"``).
    collections, profile
        Collection ids, or a sensor profile whose collection id in this catalog is used.
    filters
        Item properties to match: ``{"eo:cloud_cover": ("<", 30), "platform":
        "sentinel-2a", "sat:orbit_state": ["ascending"]}``; operators ``= != < <= > >= in``.
        Items lacking the property do not match.
    limit
        Return at most this many items (after filtering).
    sign
        A hook applied to each item before it is returned, such as Planetary Computer's
        ``planetary_computer.sign_inplace``; ``"planetary-computer"`` imports that one.
    retries, backoff, timeout
        Retries (with exponential ``backoff`` seconds) on connection errors, timeouts, pages
        cut short and HTTP 429/500/502/503/504 (a ``Retry-After`` is honoured up to 60 s),
        and the per-request timeout in seconds: a server that
        hangs fails after about ``(retries + 1) * timeout`` seconds per request.
    max_pages
        Most result pages followed; a server whose ``next`` links never end (fresh links and
        fresh items on every page) is a ``SearchError`` after this many. Looping ``next``
        links and repeated pages are caught at once, whatever ``max_pages``.
    allow_empty
        Return an empty collection instead of raising ``EmptySearchError``.

    Returns
    -------
    pystac.ItemCollection

    Raises
    ------
    SearchError
        The URL cannot be reached, a collection is not in the catalog, the server's pages
        loop or never end, or the search fails.
    EmptySearchError
        Nothing matched (unless ``allow_empty``).
    ConfigError
        Contradictory or malformed arguments.

    Examples
    --------
    >>> with LocalStacApi("runs/tiny") as api:  # doctest: +SKIP
    ...     items = search(api, profile="s2", datetime="2020-07",
    ...                    filters={"eo:cloud_cover": ("<", 30)})
    """
    import pystac

    if bbox is not None and intersects is not None:
        raise ConfigError("pass bbox= or intersects=, not both")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit={limit} must be a positive number of items")
    if max_pages < 1:
        raise ConfigError(f"max_pages={max_pages} must be a positive number of pages")
    bbox = None if bbox is None else _check_bbox(bbox)
    if intersects is not None:
        intersects = _check_geometry(getattr(intersects, "__geo_interface__", intersects))
    url = resolve_url(catalog)
    if collections is None and profile is not None:
        collections = [get_profile(profile).collection(url)]
    elif isinstance(collections, str):
        collections = [collections]
    if not collections:
        raise ConfigError("pass collections=[...] or profile= to say what to search")
    signer = _resolve_signer(sign)
    conds = _normalise_filters(filters)
    client = open_client(url, retries=retries, backoff=backoff, timeout=timeout,
                         max_pages=max_pages)
    _check_collections(client, url, list(collections))

    kw: dict[str, Any] = {"collections": list(collections), "limit": PAGE_SIZE}
    if bbox is not None:
        kw["bbox"] = bbox
    if intersects is not None:
        kw["intersects"] = intersects
    if datetime is not None:
        kw["datetime"] = datetime
    server_side = False
    if conds:
        from pystac_client.conformance import ConformanceClasses

        if client.conforms_to(ConformanceClasses.FILTER):
            kw["filter"], kw["filter_lang"], server_side = _cql2(conds), "cql2-json", True
        elif client.conforms_to(ConformanceClasses.QUERY):
            kw["query"], server_side = _query(conds), True
    if limit is not None and (not conds or server_side):
        kw["limit"] = min(limit, PAGE_SIZE)  # page size; a client-side filter needs full pages
        kw["max_items"] = limit

    found: list[Any] = []
    try:
        for item in client.search(**kw).items():
            if conds and not _passes(item.properties, conds):
                continue
            found.append(item)
            if limit is not None and len(found) >= limit:
                break
    except SearchError:
        raise
    except Exception as e:
        raise SearchError(f"search of {list(collections)} at {redact(url)!r} failed "
                          f"({type(e).__name__}: {_short(e)}){_timeout_hint(e, timeout)}"
                          ) from e
    if signer is not None:
        found = [_sign(signer, it) for it in found]
    if not found and not allow_empty:
        what = {k: v for k, v in kw.items() if k not in ("limit", "max_items")}
        if conds and not server_side:
            what["filters (client-side)"] = dict(filters or {})
        raise EmptySearchError(f"the search at {redact(url)!r} matched no item: {what}; widen "
                               "the area, the dates or the filters (bbox is (west, south, "
                               "east, north) in lon/lat degrees)")
    return pystac.ItemCollection(found, clone_items=False)


def _resolve_signer(sign: Signer | str | None) -> Signer | None:
    if sign is None or callable(sign):
        return sign
    if sign in ("planetary-computer", "pc"):
        import importlib.util

        if importlib.util.find_spec("planetary_computer") is None:
            raise ImportError("sign='planetary-computer' needs the package "
                              "'planetary-computer'; install it with "
                              "`pip install planetary-computer`")
        import planetary_computer

        return planetary_computer.sign_inplace
    raise ConfigError(f"sign={sign!r} is neither a callable nor 'planetary-computer'")


def _sign(signer: Signer, item: Any) -> Any:
    out = signer(item)
    return item if out is None else out


def filter_items(items: Iterable[Any], /, *, filters: Filters) -> list[Any]:
    """The items whose properties match ``filters`` (as in ``search``), on the client."""
    conds = _normalise_filters(filters)
    return [it for it in items if _passes(_properties(it), conds)]


def _properties(item: Any) -> dict[str, Any]:
    """Properties of a pystac Item or an item dict (an Item's may be empty)."""
    props = getattr(item, "properties", None)
    return props if props is not None else item.get("properties", {})
