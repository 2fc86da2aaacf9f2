"""Where outputs go: one rule for local paths, ``file://`` URLs and fsspec URLs; JSON written
there atomically; file checksums."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "beside", "file_sha256", "location", "write_json"]


def location(store: str | os.PathLike[str]) -> tuple[str, Path | None]:
    """(what zarr or fsspec opens, the local path or None) of a path or URL.

    A local path or ``file://`` URL gives its path; any other URL (``s3://…``, ``gs://…``,
    ``memory://…``) is returned as it is, with no local path.
    """
    s = os.fspath(store)
    if "://" in s and not s.startswith("file://"):
        return s, None
    p = Path(s.removeprefix("file://"))
    return str(p), p


def beside(root: str, suffix: str) -> str:
    """``…/name.zarr`` → ``…/name<suffix>`` (a path or URL)."""
    head, _, name = root.rstrip("/").rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{head}/{stem}{suffix}" if head else f"{stem}{suffix}"


class atomic_path:
    """A temporary path beside ``path`` that replaces it on success and vanishes on failure.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (d / "a.txt").read_text()
    'done'
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        os.close(fd)
        # mkstemp makes the file private (0600); an output is as readable as any new file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.tmp is not None
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike[str], obj: Mapping[str, Any] | list[Any], /) -> None:
    """Write ``obj`` as indented, key-sorted JSON to a local path (atomically) or an fsspec
    URL."""
    text = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    url, local = location(path)
    if local is not None:
        with atomic_path(local) as tmp:
            tmp.write_text(text)
        return
    import fsspec

    with fsspec.open(url, "w") as f:
        f.write(text)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any], /) -> None:
    """Append one JSON line to ``path`` in one ``write`` on an ``O_APPEND`` descriptor (lines
    of processes writing at once do not interleave) and sync it (a killed process keeps it)."""
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike[str], /) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, oldest first ([] if there is none); a line cut short
    by a killed process is left out."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
