"""stackstac ``Reader`` classes with eocube's failure policy (imported only for that engine).

They live at module level so Dask pickles them by reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stackstac.rio_reader import AutoParallelRioReader

from eocube.cube._read import FAILED, read_error


class ReaderRaise(AutoParallelRioReader):  # type: ignore[misc]
    """Raise ``ReadError`` naming the asset on any failure."""

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        try:
            return super().read(window, **kwargs)
        except Exception as e:
            raise read_error(None, None, self.url, e.__cause__ or e) from e


class ReaderNan(AutoParallelRioReader):  # type: ignore[misc]
    """Return the failure marker over the window on any failure."""

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        try:
            return super().read(window, **kwargs)
        except Exception:
            return np.full((int(window.height), int(window.width)), FAILED, dtype=self.dtype)
