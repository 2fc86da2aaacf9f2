"""Floors in the pipeline's buildings: mapped levels, else the height model, else neighbours;
and the height model's floors against the neighbour fallback, measured on the truth."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from eocube.pipeline.buildings import estimate_floors, floors_from_height


def _truth_floors(archive, b: gpd.GeoDataFrame) -> np.ndarray:
    """The true floors of the truth building under each footprint's representative point
    (NaN where none)."""
    from eocube.synth import read_truth

    tb = read_truth(archive, "buildings").to_crs(b.crs)
    pts = gpd.GeoDataFrame(geometry=b.geometry.representative_point(), crs=b.crs)
    hit = gpd.sjoin(pts, tb[["floors", "geometry"]], predicate="within", how="left")
    hit = hit[~hit.index.duplicated()]
    return hit["floors"].reindex(b.index).to_numpy(np.float64)


def test_unmapped_buildings_take_their_floors_from_the_height_model(tiny_run):
    b = gpd.read_parquet(tiny_run / "buildings" / "buildings.parquet")
    mapped = b["levels"].notna()
    assert (b.loc[mapped, "floors_source"] == "osm").all()
    assert (b.loc[mapped, "floors"] == np.maximum(np.round(b.loc[mapped, "levels"]), 1)).all()
    src = b.loc[~mapped, "floors_source"]
    assert (src == "height_model").mean() > 0.9, src.value_counts()
    hm = b[b["floors_source"] == "height_model"]
    np.testing.assert_array_equal(hm["floors"], np.maximum(np.round(hm["height_model_m"] / 3.0),
                                                           1.0))
    assert (tiny_run / "buildings" / "height.zarr").exists()


def test_height_model_floors_beat_the_neighbour_fallback(tiny_archive, tiny_run):
    b = gpd.read_parquet(tiny_run / "buildings" / "buildings.parquet")
    truth = _truth_floors(tiny_archive, b)
    model = b["floors_source"] == "height_model"
    neighbours = estimate_floors(b, b["levels"])["floors"].to_numpy()
    sel = model.to_numpy() & np.isfinite(truth)
    assert sel.sum() > 50
    err_model = np.abs(b["floors"].to_numpy()[sel] - truth[sel])
    err_nb = np.abs(neighbours[sel] - truth[sel])
    within_model, within_nb = (err_model <= 1).mean(), (err_nb <= 1).mean()
    print(f"floors MAE model {err_model.mean():.2f} neighbours {err_nb.mean():.2f}; "
          f"within one {within_model:.3f} vs {within_nb:.3f} ({sel.sum()} buildings)")
    assert err_model.mean() < err_nb.mean()
    assert within_model > within_nb


def _raster(value: float) -> xr.DataArray:
    gb = GeoBox.from_bbox((0, 0, 100, 100), crs=32650, resolution=10)
    return xr.DataArray(np.full((10, 10), value), dims=("y", "x"),
                        coords=xr_coords(gb, crs_coord_name="spatial_ref"))


def test_floors_from_height_order_of_sources():
    b = gpd.GeoDataFrame(geometry=[shapely.box(i * 20, 0, i * 20 + 15, 15) for i in range(4)]
                         + [shapely.box(500, 500, 515, 515)], crs=32650)
    levels = pd.Series([4.0, None, None, 6.0, None])
    h = _raster(21.0).where(lambda r: r["x"] < 40)  # NaN over the third footprint
    fl = floors_from_height(b, levels, h, storey_height_m=3.5)
    # the fifth lies outside the raster and 500 m from any mapped building
    assert fl["floors_source"].tolist() == ["osm", "height_model", "neighbours", "osm",
                                            "city_median"]
    assert fl["floors"].tolist() == [4.0, 6.0, 5.0, 6.0, 5.0]  # 21 m / 3.5 m; median of 4, 6
    # no height model: the neighbour fallback alone
    pd.testing.assert_frame_equal(floors_from_height(b, levels, None)[["floors", "floors_source"]],
                                  estimate_floors(b, levels))


def test_height_model_key_in_the_configuration(tmp_path):
    from eocube.pipeline.config import load_config

    assert load_config().buildings.height_model == "height_s1s2"
    p = tmp_path / "c.yaml"
    p.write_text("buildings: {height_model: null}\n")
    assert load_config(p).buildings.height_model is None


@pytest.mark.parametrize("value", [3.0, 30.0])
def test_floors_follow_the_modelled_height(value):
    b = gpd.GeoDataFrame(geometry=[shapely.box(10, 10, 40, 40)], crs=32650)
    fl = floors_from_height(b, pd.Series([None]), _raster(value), storey_height_m=3.0)
    assert fl["floors"].iloc[0] == max(round(value / 3.0), 1)
    assert fl["height_model_m"].iloc[0] == value
