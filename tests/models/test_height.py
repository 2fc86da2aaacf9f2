"""The height model's data, read-out, metrics and baseline, against hand computations."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from eocube.models.height import (
    HEIGHT_BANDS,
    footprint_median,
    height_city,
    height_metrics,
    land_use_mean_height,
)


def _raster(a: np.ndarray) -> xr.DataArray:
    gb = GeoBox.from_bbox((0, 0, 10 * a.shape[1], 10 * a.shape[0]), crs=32650, resolution=10)
    return xr.DataArray(a, dims=("y", "x"), coords=xr_coords(gb, crs_coord_name="spatial_ref"))


def test_footprint_median_against_a_hand_computation():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 50, (6, 8))
    a[0, 0] = np.nan
    r = _raster(a)
    fp = gpd.GeoDataFrame(geometry=[
        shapely.box(0, 30, 30, 60),      # rows 0-2, cols 0-2, one NaN pixel left out
        shapely.box(52, 2, 58, 8),       # smaller than a pixel: the pixel under it (row 5, col 5)
        shapely.box(200, 200, 210, 210),  # outside
        shapely.box(40, 0, 80, 10),      # row 5, cols 4-7
    ], crs=32650)
    got = footprint_median(r, fp)
    block = a[0:3, 0:3].ravel()
    assert got[0] == pytest.approx(np.median(block[np.isfinite(block)]))
    assert got[1] == pytest.approx(a[5, 5])
    assert np.isnan(got[2])
    assert got[3] == pytest.approx(np.median(a[5, 4:8]))
    # another CRS is reprojected to the raster's
    again = footprint_median(r, fp.iloc[[0, 3]].to_crs(4326))
    np.testing.assert_allclose(again, got[[0, 3]], rtol=1e-6)


def test_height_metrics_by_hand():
    m = height_metrics([9.0, 30.0, 3.0, 61.0], [10.0, 20.0, 7.0, 60.0], [3, 7, 1, 20],
                       storey_height_m=3.0)
    assert m["mae_m"] == pytest.approx((1 + 10 + 4 + 1) / 4)
    assert m["rmse_m"] == pytest.approx(np.sqrt((1 + 100 + 16 + 1) / 4), abs=1e-3)
    # floors 3, 10, 1, 20 against 3, 7, 1, 20: three within one
    assert m["floors_within_one"] == 0.75


def test_land_use_baseline_means():
    b = pd.DataFrame({"land_use": ["residential", "residential", "industrial"],
                      "height": [10.0, 20.0, 9.0]})
    means = land_use_mean_height(b)
    assert means["residential"] == 15.0 and means["industrial"] == 9.0
    assert means["*"] == pytest.approx(13.0)


def test_height_city_inputs_and_truth(tiny_city):
    h = height_city(tiny_city)
    assert list(h.inputs.data_vars) == list(HEIGHT_BANDS)
    assert h.inputs.odc.geobox == tiny_city.inputs[h.year].odc.geobox
    # the orbits are apart: the descending swath edge leaves the western columns empty
    assert np.isnan(h.inputs["vv_desc"][:, 0]).all() and np.isfinite(h.inputs["vv_asc"]).all()
    assert not np.allclose(h.inputs["vv_asc"][:, 5:], h.inputs["vv_desc"][:, 5:])
    np.testing.assert_array_equal(h.inputs["B04"], tiny_city.inputs[h.year]["B04"])
    # the target is each building's own height at its pixel centres, 0 elsewhere
    ht = h.height.to_numpy()
    assert ht.min() == 0 and 0.02 < (ht > 0).mean() < 0.6
    med = footprint_median(h.height, h.buildings)
    inside = np.isfinite(med) & (med > 0)
    assert inside.mean() > 0.9
    same = np.isclose(med[inside], h.buildings["height"].to_numpy()[inside], rtol=1e-5)
    # a footprint that holds no pixel centre reads the pixel under it: often its neighbour's
    assert same.mean() > 0.9


def test_height_loss_reads_building_pixels_only(tiny_city):
    import torch

    from eocube.models import RECIPES

    job = RECIPES["height_s1s2"].make([tiny_city], width=4, depth=2)
    assert job.spec.task == "regression" and job.spec.units == "m"
    assert job.spec.inputs[0].bands == HEIGHT_BANDS
    _, ys = job.sample(np.random.default_rng(0), 2)
    assert ys["m"].any() and not ys["m"].all()
    y = {k: torch.from_numpy(v) for k, v in ys.items()}
    out = torch.zeros_like(y["y"])
    base, _ = job.loss({"out": out}, y, 0)
    off = out + torch.where(y["m"] > 0, 0.0, 100.0)  # changes off buildings only
    assert float(job.loss({"out": off}, y, 0)[0]) == pytest.approx(float(base))
    on = out + torch.where(y["m"] > 0, 1.0, 0.0)
    assert float(job.loss({"out": on}, y, 0)[0]) != pytest.approx(float(base))


def test_a_trained_height_model_predicts_metres_through_predict(tiny_city, tmp_path):
    from eocube.infer import predict
    from eocube.models import train

    path, _ = train("height_s1s2", out=tmp_path, steps=40, batch=4, width=4, depth=2,
                    cities=[tiny_city], device="cpu", progress=False)
    h = height_city(tiny_city)
    pred = predict(h.inputs, path, device="cpu").compute()
    assert pred.attrs["units"] == "m" and pred.attrs["task"] == "regression"
    med = footprint_median(pred.isel(time=0) if "time" in pred.dims else pred, h.buildings)
    # heights in metres, of the order of the city's buildings (not logits, not log-heights)
    assert np.nanmedian(med) == pytest.approx(h.buildings["height"].median(), rel=0.6)
