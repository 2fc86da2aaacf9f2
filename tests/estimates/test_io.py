from __future__ import annotations

import geopandas as gpd
import pandas as pd
import shapely

from eocube.estimates._io import to_geoparquet


def test_to_geoparquet_atomic_roundtrip(tmp_path):
    g = gpd.GeoDataFrame({"a": [1, 2]}, geometry=[shapely.Point(0, 0), shapely.Point(1, 1)],
                         crs="EPSG:32650")
    p = to_geoparquet(g, tmp_path / "sub" / "out.parquet")
    back = gpd.read_parquet(p)
    assert back.crs == g.crs and back["a"].tolist() == [1, 2]
    to_geoparquet(pd.DataFrame({"b": [3]}), p)  # overwrite in place
    assert pd.read_parquet(p)["b"].tolist() == [3]
    assert [f.name for f in p.parent.iterdir()] == ["out.parquet"]  # no temp file left


def test_estimates_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, eocube.estimates, eocube.estimates.population, eocube.estimates.stock, "
            "eocube.estimates.greening, eocube.estimates.sdg; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('eocube.models', "
            "'eocube.infer'))]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
