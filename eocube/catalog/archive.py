"""Static STAC archives on disk (such as the synthetic city): open, check, and resolve hrefs.

An archive is complete when its ``manifest.json`` exists; asset hrefs inside are relative and
are turned into absolute ``file://`` URIs here, the form ``pystac-client`` and GDAL both resolve
without guessing (a bare absolute path would be resolved against the API's URL).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eocube.errors import ArchiveError

MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class Archive:
    """A complete static STAC archive at ``root``."""

    root: Path
    manifest: dict[str, Any]

    @property
    def collection_ids(self) -> list[str]:
        return list(self.manifest["collections"])

    def collection(self, cid: str) -> dict[str, Any]:
        """The Collection JSON, with its item links dropped (the API serves the items)."""
        path = self.root / cid / "collection.json"
        if not path.exists():
            raise ArchiveError(f"collection {cid!r} is missing from the archive {self.root}: "
                               f"{path} does not exist")
        col = json.loads(path.read_text())
        col["links"] = [ln for ln in col["links"] if ln["rel"] not in ("item", "child")]
        return col

    def item_paths(self, cid: str) -> list[Path]:
        return sorted((self.root / cid).glob("*/*.json"))

    def items(self, cid: str | None = None) -> Iterator[dict[str, Any]]:
        """Items with absolute ``file://`` asset hrefs, collection by collection."""
        for c in [cid] if cid else self.collection_ids:
            for path in self.item_paths(c):
                yield absolute_item(json.loads(path.read_text()), path.parent)

    def vector_path(self, name: str) -> Path:
        path = self.root / "vectors" / f"{name}.parquet"
        if not path.exists():
            raise ArchiveError(f"vector layer {name!r} is missing: {path} does not exist")
        return path


def absolute_item(item: dict[str, Any], base: Path) -> dict[str, Any]:
    """Copy of ``item`` whose relative asset hrefs are resolved against folder ``base``."""
    out = dict(item)
    out["assets"] = {
        k: {**a, "href": _absolute(a["href"], base)} for k, a in item["assets"].items()
    }
    out["links"] = [ln for ln in item.get("links", []) if ln["rel"] not in
                    ("root", "parent", "collection", "self")]
    return out


def _absolute(href: str, base: Path) -> str:
    if "://" in href:
        return href
    p = Path(href)
    if not p.is_absolute():
        p = (base / p).resolve()
    return p.as_uri()


def open_archive(path: str | os.PathLike[str], /) -> Archive:
    """Open a static STAC archive, refusing one that is missing or incomplete.

    Raises
    ------
    ArchiveError
        If ``path`` does not exist, is not a folder, or has no ``manifest.json`` (a build that
        did not finish).
    """
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise ArchiveError(f"archive path {str(root)!r} does not exist; build one with "
                           f"`eocube synth {root}` or eocube.synth.build_city()")
    if not root.is_dir():
        raise ArchiveError(f"archive path {str(root)!r} is not a folder")
    mpath = root / MANIFEST
    if not mpath.exists():
        raise ArchiveError(f"archive {str(root)!r} is incomplete: it has no {MANIFEST} (a build "
                           "that did not finish); rebuild it with overwrite=True")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise ArchiveError(f"{mpath} is not valid JSON ({e}); rebuild the archive") from e
    return Archive(root=root, manifest=manifest)
