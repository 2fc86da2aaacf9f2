"""eocube: Earth-observation data-cube analytics on Dask for urban science.

The package follows the data flow: ``catalog → cube → models → infer → change → zonal →
estimates → pipeline``. Importing ``eocube`` is cheap: subpackages load on first use and torch
is imported only by ``models`` and ``infer``.
"""

from __future__ import annotations

import importlib
from typing import Any

from eocube.errors import EocubeError

__version__ = "0.1.0"

_SUBPACKAGES = ("catalog", "synth", "cube", "models", "infer", "change", "zonal", "estimates",
                "pipeline", "testing")

__all__ = ["EocubeError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"eocube.{name}")
    raise AttributeError(f"module 'eocube' has no attribute {name!r}")
