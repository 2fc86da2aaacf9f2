"""Catalogs: static STAC archives on disk, the local STAC API, and validation."""

from __future__ import annotations

from eocube.catalog.archive import Archive, open_archive
from eocube.catalog.server import LocalStacApi, free_port, serve

__all__ = ["Archive", "LocalStacApi", "free_port", "open_archive", "serve"]
