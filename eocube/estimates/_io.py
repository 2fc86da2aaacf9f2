"""Writers of estimate results: GeoParquet / Parquet, written atomically (temp file + rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

__all__ = ["to_geoparquet"]


def to_geoparquet(result: gpd.GeoDataFrame | pd.DataFrame, path: str | os.PathLike[str], /
                  ) -> Path:
    """Write a result table to ``path`` atomically.

    A GeoDataFrame is written as GeoParquet, a plain DataFrame as Parquet. The table is written
    to a temporary file in the destination folder and moved over ``path`` with ``os.replace``,
    so a reader never sees a half-written file and a failed write leaves the old file intact.

    Parameters
    ----------
    result
        The table to write; not modified.
    path
        Destination file; its folder is created if missing.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    import geopandas as gpd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if isinstance(result, gpd.GeoDataFrame):
            result.to_parquet(tmp, index=False)
        else:
            result.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
