"""Which asset hrefs a load may open, and how an href is shown in a message.

A STAC item is input from someone else: its asset hrefs decide which URLs the workers fetch
and which files they open. ``check_href`` holds each href to an ``HrefPolicy`` before anything
reads it (schemes, hosts, address ranges, GDAL virtual file systems, local roots);
``sniff_raster`` checks that the first bytes are the raster the href claims (a VRT or HTML page
named ``.tif`` is refused); ``check_raster_size`` caps what a header may make a reader
allocate. ``redact`` and ``redact_text`` strip query strings, fragments and credentials, so a
signed URL's token never appears in an error or a log. The module sits before ``cube`` in the
flow and imports nothing from it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from eocube.errors import HrefRefused

__all__ = ["DEFAULT_POLICY", "HrefPolicy", "RasterKind", "check_href", "check_raster_size",
           "redact", "redact_text", "sniff_raster"]

RasterKind = Literal["tiff", "hdf5", "jp2"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF5_OFFSETS = (0, 512, 1024, 2048)  # the superblock may follow a user block
_JP2_MAGIC = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_KIND_BY_SUFFIX: dict[str, RasterKind] = {
    ".tif": "tiff", ".tiff": "tiff", ".gtiff": "tiff",
    ".h5": "hdf5", ".hdf5": "hdf5", ".he5": "hdf5",
    ".jp2": "jp2", ".j2k": "jp2",
}
_SNIFF_BYTES = 4096
_URL_IN_TEXT = re.compile(r"(?:/vsi[a-z0-9_]+/)?[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]{}]+")


@dataclass(frozen=True)
class HrefPolicy:
    """What asset hrefs may point at.

    Parameters
    ----------
    schemes
        URL schemes allowed; a bare path counts as ``file``.
    hosts
        ``None``: any host that passes the address checks. Otherwise only these hosts (HTTP
        host names, S3 bucket names); ``".example.com"`` allows every subdomain too.
    roots
        Folders that local files (``file://`` or bare paths) must lie under, after symlinks
        and ``..`` are resolved; empty refuses every local file.
    allow_loopback, allow_private, allow_link_local
        Allow IP literals (and ``localhost``) in 127.0.0.0/8, ::1 and 0.0.0.0; in private
        ranges (10/8, 172.16/12, 192.168/16, fc00::/7, and other non-public ranges); in
        link-local ranges (169.254/16 — cloud metadata services — and fe80::/10).
    allow_vsi
        Allow GDAL virtual file system paths (``/vsicurl/…``, ``/vsizip/…``), which reach
        URLs and archives past the scheme and host checks.
    resolve
        Also resolve host names and apply the address checks to every address they resolve
        to (one DNS lookup per check; off by default).
    max_pixels
        Largest ``width × height`` a raster header may declare (``check_raster_size``).
    """

    schemes: frozenset[str] = frozenset({"file", "http", "https", "s3"})
    hosts: frozenset[str] | None = None
    roots: tuple[Path, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False
    allow_link_local: bool = False
    allow_vsi: bool = False
    resolve: bool = False
    max_pixels: int = 2**32
    _real_roots: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schemes", frozenset(s.lower() for s in self.schemes))
        if self.hosts is not None:
            object.__setattr__(self, "hosts", frozenset(h.lower() for h in self.hosts))
        roots = tuple(Path(r) for r in self.roots)
        object.__setattr__(self, "roots", roots)
        object.__setattr__(self, "_real_roots", tuple(os.path.realpath(r) for r in roots))

    @classmethod
    def for_archive(cls, root: str | os.PathLike[str], /, **kw: object) -> HrefPolicy:
        """The default policy with local files confined to ``root`` (an archive folder)."""
        return cls(roots=(Path(root),), **kw)  # type: ignore[arg-type]


#: Public http(s) and s3 hosts; no local file, no loopback, private or link-local address.
DEFAULT_POLICY = HrefPolicy()


def redact(href: str, /) -> str:
    """``href`` without its query string, fragment and user credentials.

    Signed URLs (Planetary Computer SAS tokens, S3 presigned URLs) carry their secret in the
    query string; every error message that shows an href shows this instead.

    Examples
    --------
    >>> redact("https://user:pw@host.example/a/B04.tif?st=2020&sig=s3cr3t#frag")
    'https://host.example/a/B04.tif'
    >>> redact("/vsicurl/https://host.example/B04.tif?token=abc")
    '/vsicurl/https://host.example/B04.tif'
    """
    href = str(href)
    prefix = ""
    m = re.match(r"^(/vsi[a-z0-9_]+/)+", href)
    if m:
        prefix, href = m.group(0), href[m.end():]
    try:
        parts = urlsplit(href)
    except ValueError:  # an unparsable netloc: keep only what precedes any query
        return prefix + href.split("?", 1)[0].split("#", 1)[0]
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return prefix + urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact_text(text: str, /) -> str:
    """``text`` with every URL in it passed through ``redact`` (for messages of other
    libraries — requests, GDAL — that quote the full signed URL)."""
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), str(text))


def _refuse(href: str, reason: str, setting: str, allow: str | None) -> HrefRefused:
    """The error for ``href``; ``allow`` is the ``HrefPolicy`` argument that would let it
    through, or ``None`` where no setting can (malformed hrefs, content that lies)."""
    shown = redact(href)
    remedy = (f"if it is trusted, allow it with HrefPolicy({allow})" if allow
              else "fix the asset's href or content, or leave the item out")
    return HrefRefused(f"asset href {shown!r} refused: {reason}; {remedy}", href=shown,
                       setting=setting)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` names literally, in any form curl accepts (``127.1``,
    ``0x7f000001``, ``2130706433``, ``::ffff:169.254.169.254``), or ``None`` for a name."""
    h = host.strip("[]")
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        try:  # inet_aton reads the short, octal, hex and decimal forms
            ip = ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _check_address(href: str, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                   policy: HrefPolicy) -> None:
    if ip.is_link_local:
        if not policy.allow_link_local:
            raise _refuse(href, f"host {host} is a link-local address (cloud metadata "
                          "services live at 169.254.169.254)", "allow_link_local",
                          "allow_link_local=True")
    elif ip.is_loopback or ip.is_unspecified:
        if not policy.allow_loopback:
            raise _refuse(href, f"host {host} is a loopback address", "allow_loopback",
                          "allow_loopback=True")
    elif not ip.is_global and not policy.allow_private:
        raise _refuse(href, f"host {host} is in a private or non-public address range",
                      "allow_private", "allow_private=True")


def _host_allowed(host: str, hosts: Iterable[str]) -> bool:
    return any(host == h or (h.startswith(".") and host.endswith(h)) for h in hosts)


def _check_local(href: str, path: str, policy: HrefPolicy) -> None:
    if not policy.roots:
        raise _refuse(href, "local files are not allowed by this policy", "roots",
                      "roots=(<the archive folder>,)")
    real = os.path.realpath(path)
    for root in policy._real_roots:
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return
    shown = ", ".join(str(r) for r in policy.roots)
    raise _refuse(href, f"the file is not under the allowed roots ({shown})", "roots",
                  "roots=(..., <its folder>)")


def check_href(href: str, /, *, policy: HrefPolicy = DEFAULT_POLICY) -> str:
    """Check an asset href against ``policy`` before anything opens it.

    Parameters
    ----------
    href
        The asset href: a URL (``https://``, ``s3://``, ``file://``) or a local path.
    policy
        What is allowed (``HrefPolicy``); the default allows public http(s) and s3 hosts
        and nothing local.

    Returns
    -------
    str
        ``href`` unchanged, so the check can wrap the value it passes on.

    Raises
    ------
    HrefRefused
        Naming the href (query string removed) and the ``HrefPolicy`` setting that would
        allow it (also as the attributes ``href`` and ``setting``).

    Examples
    --------
    >>> check_href("https://example.com/B04.tif?sig=x")
    'https://example.com/B04.tif?sig=x'
    >>> check_href("http://169.254.169.254/latest/meta-data/")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    eocube.errors.HrefRefused: asset href 'http://169.254.169.254/latest/meta-data/' refused: ...
    """
    href = str(href)
    if any(ord(c) < 32 or ord(c) == 127 for c in href):
        raise _refuse(href, "it contains control characters", "schemes", None)
    if unquote(href).lower().startswith("/vsi"):
        if not policy.allow_vsi:
            raise _refuse(href, "GDAL virtual file system paths (/vsi…) reach URLs and "
                          "archives past the scheme and host checks", "allow_vsi",
                          "allow_vsi=True")
        return href
    try:
        parts = urlsplit(href)
        host = (parts.hostname or "").rstrip(".")  # "localhost." is localhost
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as e:
        raise _refuse(href, f"it is not a well-formed URL ({e})", "schemes", None) from None
    scheme = parts.scheme.lower()
    if len(scheme) == 1 and os.name == "nt":  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme in ("", "file"):
        if "file" not in policy.schemes:
            raise _refuse(href, "local files are not allowed", "schemes",
                          "schemes={..., 'file'}")
        if scheme == "file" and host not in ("", "localhost"):
            raise _refuse(href, f"a file:// URL with host {host!r} (a network share)",
                          "schemes", None)
        path = unquote(parts.path) if scheme == "file" else href
        _check_local(href, path, policy)
        return href
    if scheme not in policy.schemes:
        raise _refuse(href, f"scheme {scheme!r} is not among {sorted(policy.schemes)}",
                      "schemes", f"schemes={{..., {scheme!r}}}")
    if not host or "\\" in parts.netloc or " " in parts.netloc:
        raise _refuse(href, "it has no well-formed host", "hosts", None)
    if policy.hosts is not None and not _host_allowed(host, policy.hosts):
        raise _refuse(href, f"host {host!r} is not among the allowed hosts "
                      f"{sorted(policy.hosts)}", "hosts", f"hosts={{..., {host!r}}}")
    if scheme == "s3":  # the host is a bucket name, never an address
        return href
    ip = _ip(host)
    if ip is not None:
        _check_address(href, host, ip, policy)
    elif host == "localhost" or host.endswith(".localhost"):
        if not policy.allow_loopback:
            raise _refuse(href, f"host {host} is the loopback interface", "allow_loopback",
                          "allow_loopback=True")
    elif policy.resolve:
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError as e:
            raise _refuse(href, f"host {host!r} does not resolve ({e})", "resolve",
                          "resolve=False") from None
        for info in infos:
            resolved = _ip(str(info[4][0]))
            if resolved is not None:
                _check_address(href, f"{host} ({resolved})", resolved, policy)
    return href


def _kind_of(head: bytes) -> RasterKind | None:
    if head[:4] in _TIFF_MAGIC:
        return "tiff"
    if head.startswith(_JP2_MAGIC):
        return "jp2"
    if any(head[o:o + 8] == _HDF5_MAGIC for o in _HDF5_OFFSETS):
        return "hdf5"
    return None


def _looks_like_markup(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:64].lower()
    return text.startswith(b"<")


def sniff_raster(source: str | os.PathLike[str] | bytes, /, *, name: str | None = None
                 ) -> RasterKind:
    """Check that a file (or its first bytes) is the raster its name says it is.

    Parameters
    ----------
    source
        A local path, or the first bytes of the file (at least 2,056 of them for an HDF5
        file with a user block; 8 suffice otherwise).
    name
        The href or file name, for the expected kind (``.tif`` → TIFF, ``.h5`` → HDF5,
        ``.jp2`` → JPEG 2000) and the message; defaults to ``source`` when it is a path.

    Returns
    -------
    {"tiff", "hdf5", "jp2"}
        The kind found.

    Raises
    ------
    HrefRefused
        The content is XML, HTML or a GDAL VRT (which can point GDAL at any file or URL),
        is not a raster eocube reads, or is not the kind its name says.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:_SNIFF_BYTES])
        shown = name or "<bytes>"
    else:
        shown = name or os.fspath(source)
        with open(source, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    suffix = os.path.splitext(urlsplit(redact(shown)).path)[1].lower()
    expected = _KIND_BY_SUFFIX.get(suffix)
    kind = _kind_of(head)
    if kind is None:
        what = ("XML/HTML/VRT markup" if _looks_like_markup(head)
                else f"no TIFF, HDF5 or JPEG 2000 signature (starts {head[:8]!r})")
        raise _refuse(shown, f"its content is {what}, not a raster", "content",
                      None)
    if expected is not None and kind != expected:
        raise _refuse(shown, f"it is named like {expected.upper()} but its content is "
                      f"{kind.upper()}", "content", None)
    return kind


def check_raster_size(width: int, height: int, /, *, href: str,
                      policy: HrefPolicy = DEFAULT_POLICY) -> None:
    """Refuse a raster whose header declares more than ``policy.max_pixels`` pixels (a
    hostile header can make a reader allocate terabytes).

    Raises
    ------
    HrefRefused
        Naming the href, its size, and ``max_pixels``.
    """
    if width <= 0 or height <= 0:
        raise _refuse(href, f"its header declares a size of {width} × {height} pixels",
                      "content", None)
    if width * height > policy.max_pixels:
        raise _refuse(href, f"its header declares {width} × {height} = {width * height:,} "
                      f"pixels, more than max_pixels={policy.max_pixels:,}", "max_pixels",
                      f"max_pixels={width * height}")
