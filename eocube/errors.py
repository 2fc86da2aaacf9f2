"""The error hierarchy: one root, each subclass also a builtin so plain ``except`` still works."""

from __future__ import annotations


class EocubeError(Exception):
    """Root of every error eocube raises on purpose."""


class ConfigError(EocubeError, ValueError):
    """A parameter, preset or configuration value is not acceptable."""


class ArchiveError(EocubeError, OSError):
    """A synthetic or STAC archive on disk is missing, incomplete or corrupt."""


class ServerError(EocubeError, RuntimeError):
    """The local STAC API could not be started, reached or stopped."""


class SearchError(EocubeError, RuntimeError):
    """A STAC search failed or returned nothing where something was required."""


class EmptySearchError(SearchError, LookupError):
    """A STAC search matched no item."""


class ReadError(EocubeError, OSError):
    """A raster asset could not be read; the message names the item and asset."""


class GridError(EocubeError, ValueError):
    """Grids, CRSs or chunking do not line up."""


class ModelSpecError(EocubeError, ValueError):
    """Weights and their ModelSpec do not agree with each other or with the input."""


class ZoneError(EocubeError, ValueError):
    """A zone layer (polygons, labels) is unusable; the message names the feature."""


class EstimateError(EocubeError, ValueError):
    """An estimate cannot be computed from the inputs given."""
