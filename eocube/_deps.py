"""Optional dependencies, checked without importing them."""

from __future__ import annotations

import importlib.util

_EXTRA_OF = {"torch": "torch", "dask_cuda": "gpu", "cupy": "gpu", "exactextract": "dev",
             "matplotlib": "notebook"}


def has(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def require(module: str, *, purpose: str) -> None:
    """Raise an ImportError naming the extra that installs ``module``."""
    if not has(module):
        extra = _EXTRA_OF.get(module)
        fix = f'pip install "eocube[{extra}]"' if extra else f"pip install {module}"
        raise ImportError(
            f"{purpose} needs the package {module!r}, which is not installed. "
            f"Install it with: {fix}"
        )
