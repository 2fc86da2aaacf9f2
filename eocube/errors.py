"""The error hierarchy: one root, each subclass also a builtin so plain ``except`` still works.

Every error survives pickling with its type, message and attributes (``item``, ``asset``,
``href`` …), so an error raised in a Dask task reaches the client as itself: a cause that cannot
make the trip (rasterio's, whose chained GDAL error does not unpickle) travels as its text.
"""

from __future__ import annotations

import pickle
from typing import Any


def _travels(obj: object) -> bool:
    """Whether ``obj`` comes back from a pickle round trip (dumping alone is not enough:
    rasterio's GDAL errors pickle but fail to unpickle)."""
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception:
        return False
    return True


def _portable(exc: BaseException | None) -> BaseException | None:
    if exc is None or isinstance(exc, (EocubeError, CauseText)) or _travels(exc):
        return exc
    return CauseText(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")


def _rebuild(cls: type[EocubeError], args: tuple[Any, ...], state: dict[str, Any],
             cause: BaseException | None, context: BaseException | None,
             suppress_context: bool) -> EocubeError:
    # __new__ without __init__: a subclass's own __init__ signature need not match ``args``
    inst = cls.__new__(cls, *args)
    inst.args = args
    inst.__dict__.update(state)
    inst.__cause__, inst.__context__ = cause, context
    inst.__suppress_context__ = suppress_context
    return inst


class CauseText(Exception):
    """The text of a cause that could not be pickled (``"module.Type: message"``), put in its
    place when an eocube error is pickled."""


class EocubeError(Exception):
    """Root of every error eocube raises on purpose.

    Keyword arguments become attributes naming what failed (``item=``, ``asset=``,
    ``href=`` …) and travel with the error when it is pickled.
    """

    def __init__(self, *args: object, **context: Any) -> None:
        super().__init__(*args)
        self.__dict__.update(context)

    def __reduce__(self) -> tuple[Any, ...]:
        # The causes are made portable on the error itself, not only in the pickle: tblib
        # (which distributed installs) reads ``__cause__`` after calling ``__reduce__``.
        self.__cause__ = _portable(self.__cause__)
        self.__context__ = (self.__cause__ if self.__context__ is self.__cause__
                            else _portable(self.__context__))
        state = {k: v if _travels(v) else repr(v) for k, v in self.__dict__.items()}
        return (_rebuild, (type(self), self.args, state, self.__cause__, self.__context__,
                           self.__suppress_context__))


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
    """A raster asset could not be read; the message names the item and asset.

    Attributes ``item``, ``asset`` and ``href`` (query string removed) name what failed, where
    the raiser knows them (``None`` otherwise); ``failure`` is its class.
    """

    item: str | None = None
    asset: str | None = None
    href: str | None = None
    #: ``"transient"``, ``"corrupt"``, ``"missing"`` or ``"forbidden"`` where known
    failure: str | None = None


class ChecksumError(ReadError):
    """A file's checksum differs from its archive manifest's or its asset's
    ``file:checksum`` (or none is known where ``verify=True`` asks for one)."""


class HrefRefused(EocubeError, PermissionError):
    """An asset href is refused by the href policy (scheme, host, address range, GDAL virtual
    file system, a path outside the allowed roots, or content that is not what it claims);
    attributes ``href`` (query string removed) and ``setting`` (the policy field that allows
    it)."""

    href: str | None = None
    setting: str | None = None


class GridError(EocubeError, ValueError):
    """Grids, CRSs or chunking do not line up."""


class ModelSpecError(EocubeError, ValueError):
    """Weights and their ModelSpec do not agree with each other or with the input."""


class ZoneError(EocubeError, ValueError):
    """A zone layer (polygons, labels) is unusable; the message names the feature."""


class EstimateError(EocubeError, ValueError):
    """An estimate cannot be computed from the inputs given."""


class MaskError(EocubeError, ValueError):
    """Input holds fill or saturation values that should have been masked; the message names
    the band and the masking helper to use."""
