from __future__ import annotations

import geopandas as gpd
import pandas as pd
import shapely

from eocube.io import to_geoparquet


def test_to_geoparquet_atomic_roundtrip(tmp_path):
    g = gpd.GeoDataFrame({"a": [1, 2]}, geometry=[shapely.Point(0, 0), shapely.Point(1, 1)],
                         crs="EPSG:32650")
    p = to_geoparquet(g, tmp_path / "sub" / "out.parquet")
    back = gpd.read_parquet(p)
    assert back.crs == g.crs and back["a"].tolist() == [1, 2]
    to_geoparquet(pd.DataFrame({"b": [3]}), p)  # overwrite in place
    assert pd.read_parquet(p)["b"].tolist() == [3]
    assert [f.name for f in p.parent.iterdir()] == ["out.parquet"]  # no temp file left


def test_to_geoparquet_keeps_a_named_index(tmp_path):
    # The model names of a comparison table are its index: they must come back.
    t = pd.DataFrame({"mape": [9.9, 27.1]}, index=pd.Index(["DEFF", "DEFF1"], name="model"))
    back = pd.read_parquet(to_geoparquet(t, tmp_path / "t.parquet"))
    assert back.index.name == "model" and back.index.tolist() == ["DEFF", "DEFF1"]
    g = gpd.GeoDataFrame({"taz_id": [7, 9]}, geometry=[shapely.Point(0, 0), shapely.Point(1, 1)],
                         crs="EPSG:32650").set_index("taz_id")
    assert gpd.read_parquet(to_geoparquet(g, tmp_path / "g.parquet")).index.tolist() == [7, 9]
    # an unnamed range index is not written as a column
    plain = pd.read_parquet(to_geoparquet(pd.DataFrame({"a": [1]}), tmp_path / "p.parquet"))
    assert list(plain.columns) == ["a"]
