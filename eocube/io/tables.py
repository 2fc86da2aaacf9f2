"""Tables out: GeoParquet for a GeoDataFrame, Parquet for a DataFrame, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from eocube.io.paths import atomic_path

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
    A named index (the model names of a comparison table, a zone id) is kept as a column and
    restored as the index on reading; an unnamed range index is dropped.

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

    Examples
    --------
    >>> import tempfile, pathlib, pandas as pd
    >>> t = pd.DataFrame({"mape": [9.9, 27.1]}, index=pd.Index(["DEFF", "DEFF1"], name="model"))
    >>> p = to_geoparquet(t, pathlib.Path(tempfile.mkdtemp()) / "t.parquet")
    >>> pd.read_parquet(p).index.tolist()
    ['DEFF', 'DEFF1']
    """
    path = Path(path)
    keep_index = any(n is not None for n in result.index.names)
    with atomic_path(path) as tmp:
        result.to_parquet(tmp, index=keep_index)
    return path
