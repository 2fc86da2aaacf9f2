"""Search any STAC API — the local one over the synthetic city, Planetary Computer, Earth
Search — with one call, and get ``pystac`` items ready for ``eocube.cube.load``.

Property filters go to the server as CQL2 (Filter extension) or as a Query-extension query when
the server's ``/conformance`` declares one of them; otherwise (``rustac serve``'s in-memory
backend, for one) they are applied here, on the client. Either way the items are checked here
too, so the result is the same whatever the server implements.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from eocube.catalog.profiles import SensorProfile, get_profile
from eocube.errors import ConfigError, EmptySearchError, SearchError

#: Environment variable naming the default STAC API (``eocube serve`` prints its URL).
ENV_URL = "EOCUBE_STAC_URL"
#: HTTP statuses worth retrying: rate limiting and transient server-side failures.
TRANSIENT_STATUS = (429, 500, 502, 503, 504)

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


def _stac_io(retries: int, backoff: float, timeout: float) -> Any:
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                  backoff_factor=backoff, status_forcelist=TRANSIENT_STATUS,
                  allowed_methods=None,  # POST searches are idempotent: retry them too
                  raise_on_status=True, respect_retry_after_header=True)
    return StacApiIO(max_retries=retry, timeout=timeout)


def open_client(catalog: Any = None, /, *, retries: int = 3, backoff: float = 0.5,
                timeout: float = 30.0) -> Any:
    """A ``pystac_client.Client`` on ``catalog`` with retrying, time-limited HTTP.

    Raises
    ------
    SearchError
        If the URL cannot be reached or does not answer as a STAC API.
    """
    import pystac_client

    url = resolve_url(catalog)
    try:
        return pystac_client.Client.open(url, stac_io=_stac_io(retries, backoff, timeout))
    except Exception as e:  # requests, urllib3 and pystac-client errors alike
        raise SearchError(f"could not reach a STAC API at {url!r} ({type(e).__name__}: "
                          f"{_short(e)}); check the URL and that the server is running") from e


def _short(e: BaseException) -> str:
    s = str(e)
    return s if len(s) < 300 else s[:297] + "..."


def _check_collections(client: Any, url: str, wanted: Sequence[str]) -> None:
    try:
        have = {c.id for c in client.get_collections()}
    except Exception as e:
        raise SearchError(f"could not list the collections of {url!r} ({_short(e)})") from e
    missing = [c for c in wanted if c not in have]
    if missing:
        raise SearchError(f"the catalog at {url!r} has no collection {missing}; it has "
                          f"{sorted(have)}")


def search(catalog: Any = None, /, *, bbox: Sequence[float] | None = None,
           intersects: Any = None, datetime: str | Sequence[Any] | None = None,
           collections: str | Sequence[str] | None = None,
           profile: str | SensorProfile | None = None, filters: Filters | None = None,
           limit: int | None = None, sign: Signer | str | None = None, retries: int = 3,
           backoff: float = 0.5, timeout: float = 30.0, allow_empty: bool = False) -> Any:
    """Search a STAC API and return the matching items.

    Parameters
    ----------
    catalog
        STAC API URL, a running ``LocalStacApi``, or ``None`` for ``$EOCUBE_STAC_URL``.
    bbox, intersects
        Area of interest: ``(west, south, east, north)`` in degrees, or a GeoJSON geometry
        (a dict, a shapely geometry or anything with ``__geo_interface__``).
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
        Retries (with exponential ``backoff`` seconds) on connection errors and on HTTP
        429/500/502/503/504, and the per-request timeout in seconds.
    allow_empty
        Return an empty collection instead of raising ``EmptySearchError``.

    Returns
    -------
    pystac.ItemCollection

    Raises
    ------
    SearchError
        The URL cannot be reached, a collection is not in the catalog, or the search fails.
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
    url = resolve_url(catalog)
    if collections is None and profile is not None:
        collections = [get_profile(profile).collection(url)]
    elif isinstance(collections, str):
        collections = [collections]
    if not collections:
        raise ConfigError("pass collections=[...] or profile= to say what to search")
    signer = _resolve_signer(sign)
    conds = _normalise_filters(filters)
    client = open_client(url, retries=retries, backoff=backoff, timeout=timeout)
    _check_collections(client, url, list(collections))

    kw: dict[str, Any] = {"collections": list(collections)}
    if bbox is not None:
        kw["bbox"] = [float(v) for v in bbox]
    if intersects is not None:
        kw["intersects"] = getattr(intersects, "__geo_interface__", intersects)
    if datetime is not None:
        kw["datetime"] = datetime
    server_side = False
    if conds:
        from pystac_client.conformance import ConformanceClasses

        if client.conforms_to(ConformanceClasses.FILTER):
            kw["filter"], kw["filter_lang"], server_side = _cql2(conds), "cql2-json", True
        elif client.conforms_to(ConformanceClasses.QUERY):
            kw["query"], server_side = _query(conds), True
    if limit is not None:
        kw["limit"] = min(limit, 250)  # page size
        if not conds or server_side:
            kw["max_items"] = limit

    found: list[Any] = []
    try:
        for item in client.search(**kw).items():
            if conds and not _passes(item.properties, conds):
                continue
            found.append(item)
            if limit is not None and len(found) >= limit:
                break
    except Exception as e:
        raise SearchError(f"search of {list(collections)} at {url!r} failed "
                          f"({type(e).__name__}: {_short(e)})") from e
    if signer is not None:
        found = [_sign(signer, it) for it in found]
    if not found and not allow_empty:
        what = {k: v for k, v in kw.items() if k not in ("limit", "max_items")}
        if conds and not server_side:
            what["filters (client-side)"] = dict(filters or {})
        raise EmptySearchError(f"the search at {url!r} matched no item: {what}; widen the "
                               "area, the dates or the filters")
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
