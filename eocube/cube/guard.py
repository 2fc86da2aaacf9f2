"""What stands between a load's hrefs and its readers: the href policy, the content sniff,
the size cap, checksums, signing at read time, retries, and the record of each failure.

The plan checks every href against an ``HrefPolicy`` before anything reads (``check_plan``);
each read task then admits its source once per process (``admit``: the first bytes must be
the raster the name claims — a VRT or an HTML page named ``.tif`` is refused before GDAL
opens it —, and with ``verify=True`` the file's sha256 must equal the archive manifest's or
the asset's ``file:checksum``), retries transient failures (``attempt``), and under
``on_error="nan"`` records each failure (``FailureRecord``: item, asset, href without its
query string, class, attempts) in the process that read it, where ``failure_records``
collects them (from every worker of a distributed client too).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from eocube.catalog.hrefs import (
    DEFAULT_POLICY,
    HrefPolicy,
    check_raster_size,
    redact,
    redact_text,
    sniff_raster,
)
from eocube.errors import ChecksumError, HrefRefused, ReadError
from eocube.io.paths import append_jsonl, read_jsonl

__all__ = ["FAILURE_CLASSES", "REDACTED_LOGGERS", "FailureClass", "ReadGuard", "Signer",
           "admit", "archive_root", "attempt", "check_size", "classify", "default_policy",
           "expected_sha256", "failure_records", "forget_failures", "local_path",
           "record_failure", "redact_logs", "size_checked"]

#: ``transient``: the source answered with a retryable failure (HTTP 429/5xx, a timeout, a
#: dropped connection) after every attempt; ``corrupt``: its bytes are not a readable raster
#: or not the ones the checksum promises; ``missing``: no such file, HTTP 404/410, or no such
#: asset in the item; ``forbidden``: HTTP 401/403 or refused by the href policy
FailureClass = Literal["transient", "corrupt", "missing", "forbidden"]
FAILURE_CLASSES: tuple[FailureClass, ...] = ("transient", "corrupt", "missing", "forbidden")
#: ``sign(href) -> signed href``, applied inside each read task (tokens stay out of graphs)
Signer = Callable[[str], str]
T = TypeVar("T")

_MISSING = re.compile(r"\b(404|410)\b|no such file|does not exist|not found", re.I)
_FORBIDDEN = re.compile(r"\b(401|403)\b|permission denied|access denied|forbidden", re.I)
_TRANSIENT = re.compile(r"\b(429|500|502|503|504)\b|timed? ?out|timeout|connection|"
                        r"temporar|curl error|reset by peer|broken pipe", re.I)


@dataclass(frozen=True)
class ReadGuard:
    """How a load's read tasks treat their sources (built by ``load``; travels in the graph).

    Parameters
    ----------
    policy
        The href policy (also caps raster sizes: ``max_pixels``).
    verify
        Check each file's sha256 before reading it.
    sign
        Signs an href inside the read task (``None``: hrefs are read as they are).
    attempts
        Reads of a source before a transient failure counts (GDAL's own HTTP retries are
        inside each attempt).
    backoff
        Seconds before the second attempt, doubling after.
    load_id
        The key under which this load's failures are recorded (a token of the plan).
    journal
        A folder every reading process can write (absolute path), or None: each failure
        record is also appended there (``<load_id>.jsonl``) the moment it is made, so that it
        outlives the process that made it (a killed driver, a lost worker); see
        :func:`failure_records`.
    http_retries, http_delay, http_timeout
        Retries, first delay (seconds, doubling) and per-request timeout of eocube's own
        HTTP requests (the first range read that sniffs a file, the download that checksums
        it) on HTTP 429/5xx, timeouts and dropped connections, as GDAL's
        ``GDAL_HTTP_MAX_RETRY``, ``GDAL_HTTP_RETRY_DELAY`` and ``GDAL_HTTP_TIMEOUT`` do for
        its reads (the load takes them from the GDAL settings).
    """

    policy: HrefPolicy = DEFAULT_POLICY
    verify: bool = False
    sign: Signer | None = None
    attempts: int = 3
    backoff: float = 0.25
    load_id: str = ""
    journal: str | None = None
    http_retries: int = 5
    http_delay: float = 1.0
    http_timeout: float = 60.0


# ---- the href policy ------------------------------------------------------------------------

def local_path(href: str, /) -> str | None:
    """The local path of a ``file://`` URL or bare path; ``None`` for other schemes."""
    parts = urlsplit(href)
    if parts.scheme == "file":
        return unquote(parts.path)
    if parts.scheme == "" and not href.startswith("/vsi"):
        return href
    return None


@functools.lru_cache(maxsize=64)
def _is_archive_manifest(path: str, mtime_ns: int, size: int) -> bool:
    """Whether ``path`` is an eocube archive manifest; parsed once per version of the file
    (an archive's manifest lists every file: parsing it per item folder made planning a
    two-year city take 90 s)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "collections" in doc


@functools.lru_cache(maxsize=4096)
def _archive_root_of_dir(folder: str) -> str | None:
    p = Path(folder)
    for d in (p, *p.parents):
        m = d / "manifest.json"
        try:
            st = m.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and _is_archive_manifest(str(m), st.st_mtime_ns,
                                                              st.st_size):
            return str(d)
    return None


def archive_root(path: str | os.PathLike[str], /) -> Path | None:
    """The eocube archive (the nearest folder above ``path`` holding a ``manifest.json``
    with ``collections``) that a local file lies in, after symlinks and ``..``; or ``None``."""
    root = _archive_root_of_dir(os.path.dirname(os.path.realpath(path)))
    return None if root is None else Path(root)


def default_policy(hrefs: Iterable[str], /, *, item_dirs: Iterable[str] = ()) -> HrefPolicy:
    """The policy a load uses without ``href_policy=``: ``DEFAULT_POLICY`` (public http(s)
    and s3 hosts) with local files allowed under the archives the local hrefs lie in and
    under the folders the items were read from (``item_dirs``); nothing else local."""
    roots: dict[str, None] = dict.fromkeys(item_dirs)
    for h in hrefs:
        p = local_path(h)
        if p is not None:
            r = archive_root(p)
            if r is not None:
                roots[str(r)] = None
    return HrefPolicy(roots=tuple(Path(r) for r in roots))


# ---- checksums --------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _manifest_files(root: str, mtime: float) -> Mapping[str, str]:
    doc = json.loads((Path(root) / "manifest.json").read_text())
    return {k: v["sha256"] for k, v in (doc.get("files") or {}).items()
            if isinstance(v, Mapping) and "sha256" in v}


def expected_sha256(href: str, asset: Mapping[str, Any] | None = None, /) -> str | None:
    """The sha256 (hex) an asset's file should have: its ``file:checksum`` (a sha2-256
    multihash, ``1220…``), else, for a file inside an eocube archive, the manifest's; or
    ``None`` when neither knows it."""
    mh = (asset or {}).get("file:checksum")
    if isinstance(mh, str) and re.fullmatch(r"1220[0-9a-fA-F]{64}", mh):
        return mh[4:].lower()
    p = local_path(href)
    if p is None:
        return None
    root = archive_root(p)
    if root is None:
        return None
    rel = os.path.relpath(os.path.realpath(p), os.path.realpath(root)).replace(os.sep, "/")
    files = _manifest_files(str(root), (root / "manifest.json").stat().st_mtime)
    return files.get(rel)


def _sha256(uri: str, guard: ReadGuard) -> str:
    h = hashlib.sha256()
    p = local_path(uri)
    if p is not None:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    h.update(_fetch(uri, None, guard))
    return h.hexdigest()


def _fetch(uri: str, byte_range: tuple[int, int] | None, guard: ReadGuard) -> bytes:
    """The bytes of ``uri`` (or of ``byte_range``), retried like GDAL's HTTP reads."""
    import http.client
    import urllib.request

    req = urllib.request.Request(uri)
    if byte_range is not None:
        req.add_header("Range", f"bytes={byte_range[0]}-{byte_range[1]}")
    for i in range(guard.http_retries + 1):
        try:
            with urllib.request.urlopen(req, timeout=guard.http_timeout) as r:
                return bytes(r.read())
        except (OSError, http.client.HTTPException) as e:
            if i == guard.http_retries or classify(e) != "transient":
                raise
            wait = guard.http_delay * 2 ** i
            _log.warning("retrying the read of %s in %.1f s (attempt %d of %d failed: %s)",
                         redact(uri), wait, i + 1, guard.http_retries + 1, redact_text(str(e)))
            time.sleep(wait)
    raise AssertionError("unreachable")


# ---- admission of a source, retries, classes --------------------------------------------

_admitted: set[tuple[str, str | None, bool, tuple[int, int] | None]] = set()
_sized: set[str] = set()
_lock = threading.Lock()


def admit(uri: str, /, *, guard: ReadGuard, sha256: str | None = None,
          shown: str | None = None) -> None:
    """Check a source before a reader opens it (once per process and source): its first
    bytes are a raster of the kind its name says (local files and http(s); an s3 object is
    left to GDAL), and under ``guard.verify`` its sha256 is ``sha256``.

    Raises
    ------
    HrefRefused
        Its content is not the raster it claims (a VRT, HTML or XML named ``.tif``).
    ChecksumError
        The checksum differs, or ``verify`` is on and no checksum is known.
    OSError
        From the first read (missing file, HTTP status), for ``classify``.
    """
    shown = redact(shown or uri)
    p = local_path(uri)
    # a local file is admitted again once it changes (its size and mtime are in the key)
    st = os.stat(p) if p is not None else None
    key = (shown, sha256, guard.verify, st and (st.st_size, st.st_mtime_ns))
    if key in _admitted:
        return
    if p is not None:
        sniff_raster(p, name=shown)
    elif urlsplit(uri).scheme in ("http", "https"):
        sniff_raster(_fetch(uri, (0, 4095), guard)[:4096], name=shown)
    if guard.verify:
        if sha256 is None:
            raise ChecksumError(f"verify=True, but no checksum is known for {shown}: the "
                                "asset has no file:checksum and the file is in no eocube "
                                "archive manifest; load without verify=True or add one",
                                href=shown)
        got = _sha256(uri, guard)
        if got != sha256:
            raise ChecksumError(f"{shown} has sha256 {got}, not {sha256} as its archive "
                                "manifest or file:checksum says: the file is damaged or was "
                                "replaced; restore it from its source", href=shown)
    with _lock:
        _admitted.add(key)


def check_size(width: int, height: int, /, *, uri: str, guard: ReadGuard) -> None:
    """``check_raster_size`` once per process and source."""
    shown = redact(uri)
    if shown in _sized:
        return
    check_raster_size(width, height, href=shown, policy=guard.policy)
    with _lock:
        _sized.add(shown)


def size_checked(uri: str, /) -> bool:
    """Whether ``check_size`` has passed ``uri`` in this process."""
    return redact(uri) in _sized


def classify(exc: BaseException, /) -> FailureClass:
    """The failure class of an exception raised while reading a source."""
    import urllib.error

    if isinstance(exc, ChecksumError):
        return "corrupt"
    if isinstance(exc, HrefRefused):
        return "corrupt" if getattr(exc, "setting", None) == "content" else "forbidden"
    if isinstance(exc, ReadError) and getattr(exc, "failure", None) in FAILURE_CLASSES:
        return exc.failure  # type: ignore[no-any-return]
    if isinstance(exc, urllib.error.HTTPError):
        code = exc.code
        return ("missing" if code in (404, 410) else "forbidden" if code in (401, 403)
                else "transient" if code == 429 or code >= 500 else "corrupt")
    if isinstance(exc, FileNotFoundError):
        return "missing"
    if isinstance(exc, PermissionError):
        return "forbidden"
    if isinstance(exc, (TimeoutError, ConnectionError, urllib.error.URLError)):
        return "transient"
    text = " ".join(str(e) for e in _chain(exc))
    if _MISSING.search(text):
        return "missing"
    if _FORBIDDEN.search(text):
        return "forbidden"
    if _TRANSIENT.search(text):
        return "transient"
    return "corrupt"


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(out) < 8:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _redact_record(record: logging.LogRecord) -> None:
    """Strip query strings and credentials from the URLs in ``record``'s message and in the
    traceback it carries (GDAL logs the signed URL of every retried request; urllib3 logs every
    request line; an exception's text quotes the URL it failed on)."""
    try:
        msg = record.getMessage()
    except Exception:  # a malformed record: the handler reports it, with nothing to redact
        return
    red = redact_text(msg)
    if red != msg:
        record.msg, record.args = red, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        red = redact_text(text)
        if red != text:  # the formatted, redacted traceback stands in for the exception
            record.exc_info, record.exc_text = None, red


#: the top-level loggers whose records (their children's included) may quote an href: GDAL's
#: (through rasterio), odc-loader's, distributed's, eocube's, and the HTTP and object-store
#: clients (urllib3 logs every request line with its query string at DEBUG)
REDACTED_LOGGERS = ("rasterio", "odc", "distributed", "eocube", "urllib3", "requests",
                    "fsspec", "aiohttp", "s3fs", "botocore", "pystac_client")
_redacting: list[bool] = []
_log = logging.getLogger(__name__)


def redact_logs() -> None:
    """Install (once per process) the redaction of URLs in every log record of
    ``REDACTED_LOGGERS`` and their children; every read task calls it, so workers redact too.

    A ``logging.Filter`` on a logger sees only that logger's own records, not those its
    children propagate, so the redaction wraps the log-record factory instead."""
    if _redacting:
        return
    with _lock:
        if not _redacting:
            make = logging.getLogRecordFactory()

            def redacting_factory(name: str, *args: Any, **kwargs: Any) -> logging.LogRecord:
                record = make(name, *args, **kwargs)
                if name.partition(".")[0] in REDACTED_LOGGERS:
                    _redact_record(record)
                return record

            logging.setLogRecordFactory(redacting_factory)
            _redacting.append(True)


def attempt(read: Callable[[str], T], uri: str, /, *, guard: ReadGuard,
            sha256: str | None = None) -> tuple[T, int]:
    """``read(signed uri)`` after ``admit``, retried while it fails transiently; returns its
    result and the number of attempts. The last failure is raised with ``attempts`` set on
    it (``exc.eocube_attempts``)."""
    redact_logs()
    n = max(1, guard.attempts)
    for i in range(1, n + 1):
        try:
            signed = guard.sign(uri) if guard.sign is not None else uri
            admit(signed, guard=guard, sha256=sha256, shown=uri)
            return read(signed), i
        except Exception as e:
            if i == n or classify(e) != "transient":
                e.eocube_attempts = i  # type: ignore[attr-defined]
                raise
            wait = guard.backoff * 2 ** (i - 1)
            _log.warning("retrying %s in %.1f s (attempt %d of %d failed: %s)", redact(uri),
                         wait, i, n, redact_text(str(e)))
            time.sleep(wait)
    raise AssertionError("unreachable")


# ---- failure records ----------------------------------------------------------------------

@dataclass
class _Records:
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_load: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)


_RECORDS = _Records()


def record_failure(load_id: str, /, *, item: str, asset: str, href: str | None,
                   exc: BaseException | None, failure: FailureClass | None = None,
                   attempts: int | None = None, journal: str | None = None
                   ) -> dict[str, Any]:
    """Record a failed read of ``asset`` of ``item`` under ``load_id`` in this process (the
    href without its query string, the error's class and text, redacted), and in
    ``journal`` (a folder, see :class:`ReadGuard`) when given; returns it."""
    cls = failure or (classify(exc) if exc is not None else "missing")
    rec = {"item": item, "asset": asset, "href": None if href is None else redact(href),
           "class": cls,
           "attempts": attempts if attempts is not None
           else int(getattr(exc, "eocube_attempts", 1)) if exc is not None else 0,
           "error": None if exc is None else redact_text(f"{type(exc).__name__}: {exc}")[:500]}
    with _RECORDS.lock:
        _RECORDS.by_load.setdefault(load_id, {})[(item, asset)] = rec
    if journal is not None:
        _journal_append(journal, load_id, rec)
    return rec


def journal_file(journal: str | os.PathLike[str], load_id: str, /) -> Path:
    """The file of ``load_id``'s records in the folder ``journal``."""
    return Path(journal) / f"{load_id}.jsonl"


def _journal_append(journal: str, load_id: str, rec: dict[str, Any]) -> None:
    """Append ``rec`` to ``load_id``'s journal file, synced before the read goes on."""
    path = journal_file(journal, load_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(path, rec)
    except OSError as e:  # the record stays in this process; the read itself went on
        logging.getLogger("eocube.cube").warning(
            "read failure of item %s asset %s not journalled in %s: %s", rec["item"],
            rec["asset"], journal, e)


def _local_records(load_id: str) -> list[dict[str, Any]]:
    with _RECORDS.lock:
        return [dict(r) for r in _RECORDS.by_load.get(load_id, {}).values()]


def failure_records(load_id: str, /, *, journal: str | os.PathLike[str] | None = None
                    ) -> list[dict[str, Any]]:
    """The failures recorded under ``load_id`` in this process, in ``journal`` (the folder a
    load was given, read back: records of processes since killed or lost, of an earlier
    attempt of the same reads) and, when a distributed client is active, in each of its
    workers (one record per item and asset)."""
    recs = {(r["item"], r["asset"]): r for r in _local_records(load_id)}
    if journal is not None:
        for r in read_jsonl(journal_file(journal, load_id)):
            recs.setdefault((r["item"], r["asset"]), r)
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        for worker_recs in client.run(_local_records, load_id).values():
            for r in worker_recs:
                recs.setdefault((r["item"], r["asset"]), r)
    return list(recs.values())


def forget_failures(load_id: str | None = None, /) -> None:
    """Drop the records of ``load_id`` (``None``: of every load) in this process."""
    with _RECORDS.lock:
        if load_id is None:
            _RECORDS.by_load.clear()
        else:
            _RECORDS.by_load.pop(load_id, None)

