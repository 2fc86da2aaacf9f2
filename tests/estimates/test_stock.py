from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from eocube.errors import EstimateError
from eocube.estimates.stock import (
    DEFAULT_INTENSITY,
    MATERIALS,
    bottom_up_stock,
    ntl_stock_regression,
    stock_grid,
)


def _inputs(world):
    return world.buildings.drop(columns=[c for c in world.buildings if c.startswith("stock_")])


def test_bottom_up_is_volume_times_the_table(tiny_world):
    b = _inputs(tiny_world)
    s = bottom_up_stock(b)
    volume = b.geometry.area.to_numpy() * b["height"].to_numpy(np.float64)
    for m in MATERIALS:
        per_m3 = DEFAULT_INTENSITY.loc[b["structure"], m].to_numpy()
        np.testing.assert_allclose(s[f"stock_{m}_t"], volume * per_m3 / 1000.0, rtol=1e-9)
    assert (s["height_source"] == "height").all()


def test_bottom_up_against_the_world_v2_truth(tiny_world):
    # The truth's intensity varies by construction year, district and building around a table
    # of the generator's own; DEFAULT_INTENSITY is a published-style average (world v1 copied
    # the generator's table, and this test asserted equality). Measured on tiny seeds 0-3 with
    # the truth's own heights and structures: Spearman 0.91-0.93, total -14 % to -22 %,
    # median |log ratio| 0.20-0.23.
    t = tiny_world.buildings["stock_total_t"].to_numpy()
    p = bottom_up_stock(_inputs(tiny_world))["stock_total_t"].to_numpy()
    assert spearmanr(t, p).statistic > 0.85
    assert -0.35 < p.sum() / t.sum() - 1 < -0.05
    assert np.median(np.abs(np.log(p / t))) > 0.1


def test_bottom_up_floors_fallback(tiny_world):
    b = _inputs(tiny_world).drop(columns=["height"])
    s = bottom_up_stock(b)
    assert (s["height_source"] == "floors").all()
    # floors × storey height is the truth height without its parapet (0.5–2.5 m)
    ratio = s["stock_total_t"] / bottom_up_stock(_inputs(tiny_world))["stock_total_t"]
    assert ratio.between(0.7, 1.0).all()


def test_missing_structure_type_is_named(tiny_world):
    table = DEFAULT_INTENSITY.drop(index="steel")
    with pytest.raises(EstimateError, match=r"no row for structure type\(s\) \['steel'\]"):
        bottom_up_stock(_inputs(tiny_world), intensity=table)


def test_stock_grid_keeps_total(tiny_world):
    s = bottom_up_stock(_inputs(tiny_world))
    g = stock_grid(s, tiny_world.geobox(100.0))
    assert float(g["stock_total_t"].sum()) == pytest.approx(s["stock_total_t"].sum(), rel=1e-9)


def test_ntl_loglog_regression_recovers_power_law():
    rng = np.random.default_rng(0)
    ntl = rng.lognormal(3, 1, 200)
    cells = pd.DataFrame({"ntl_sum": ntl, "stock_t": 5.0 * ntl**1.3})
    out = ntl_stock_regression(cells, train=np.arange(200) < 150)
    a, b = out.attrs["coef"]
    assert b == pytest.approx(1.3) and np.exp(a) == pytest.approx(5.0)
    with pytest.raises(EstimateError, match="singular"):
        ntl_stock_regression(cells.assign(ntl_sum=2.0), train=np.ones(200, bool))


# ---- top-down with the shipped regressors ---------------------------------------------------

@pytest.fixture(scope="module")
def held_out(request, tmp_path_factory):
    """The held-out model city (seed 1): its 100 m cells and last-year composite, read from its
    archive with the functions training reads it with (``read_city``), the last year only
    (the archive is built once by two processes, ~1 min, and kept in pytest's cache)."""
    import warnings

    pytest.importorskip("torch")
    from eocube.models.data import (
        HELD_OUT_SEED,
        city_archive,
        composite_inputs,
        s2_grid,
        stock_cells,
    )

    cache = getattr(request.config, "cache", None)
    where = (cache.mkdir("eocube-model-cities") if cache is not None
             else tmp_path_factory.mktemp("model-cities"))
    archive = city_archive(HELD_OUT_SEED, cache_dir=where, workers=2)
    gb = s2_grid(archive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        optical = composite_inputs(archive, geobox=gb).isel(time=-1, drop=True).load()
    return stock_cells(archive, geobox=gb), optical


@pytest.fixture(scope="module")
def topdown(held_out):
    import torch

    from eocube.estimates.stock import topdown_stock

    torch.set_num_threads(1)
    cells, optical = held_out
    return topdown_stock(cells, optical=optical, cam_cells=[525, 140])


def test_cell_patches_are_the_training_patches(held_out):
    from types import SimpleNamespace

    from eocube.estimates.stock import cell_patches
    from eocube.models.training import STOCK_MARGIN_PX, stock_samples
    from eocube.synth.sensors import S2_BANDS

    cells, optical = held_out
    city = SimpleNamespace(inputs={0: optical}, years=(0,), cells=cells)
    opt, _, _ = stock_samples(city)
    p = cell_patches(cells, optical=optical, bands=S2_BANDS, margin=STOCK_MARGIN_PX)
    np.testing.assert_array_equal(p, opt)


def test_topdown_shapes_metrics_and_grad_cam(topdown, held_out):
    cells, _ = held_out
    n = cells.sizes["y"] * cells.sizes["x"]
    c = topdown.cells
    assert len(c) == n and c.crs == cells.odc.geobox.crs
    assert {"pred_stock_fusion", "pred_stock_optical", "pred_stock_ntl"} <= set(c.columns)
    assert (c.filter(like="pred_") >= 0).all().all() and c["evaluated"].all()
    np.testing.assert_array_equal(c["stock_t"], cells["stock_t"].to_numpy().reshape(-1))
    assert list(topdown.metrics.columns) == ["spearman", "wRMSE", "total_rel_error", "n_cells"]
    assert list(topdown.metrics.index) == ["stock_fusion", "stock_optical", "stock_ntl"]
    cam = topdown.grad_cam
    assert cam.dims == ("cell", "row", "col") and cam.shape == (2, 20, 20)
    assert cam["cell"].values.tolist() == [525, 140] and cam["x"].dims == ("cell", "col")
    assert float(cam.min()) >= 0 and float(cam.max(("row", "col")).min()) == pytest.approx(1)
    # the patch is the cell and 5 px around it: its centre pixel lies inside the cell
    cell = c.geometry.iloc[525]
    x, y = float(cam["x"].sel(cell=525)[10]), float(cam["y"].sel(cell=525)[10])
    assert cell.bounds[0] < x < cell.bounds[2] and cell.bounds[1] < y < cell.bounds[3]


def test_fused_beats_both_single_branch_baselines_on_held_out_cells(topdown):
    m = topdown.metrics
    # world v2, shipped weights retrained on it, held-out city seed 1 (1,024 cells): Spearman
    # fused 0.772, optical 0.769, NTL 0.090; total error fused −10.5 %, optical −26.8 %,
    # NTL −3.4 %. The fused model ranks best; the NTL-only model's total is closer (it
    # predicts nearly the training mean everywhere), so the world-v1 target of a fused total
    # within 5 % and closer than both branches is missed on v2 and stated in the README.
    for base in ("stock_optical", "stock_ntl"):
        assert m.loc["stock_fusion", "spearman"] > m.loc[base, "spearman"]
    assert abs(m.loc["stock_fusion", "total_rel_error"]) < abs(
        m.loc["stock_optical", "total_rel_error"])
    # with the retransformation factor of the weights applied: within 15 % on v2
    assert abs(m.loc["stock_fusion", "total_rel_error"]) < 0.15


def test_topdown_classical_row_and_split(held_out):
    from eocube.estimates.stock import topdown_stock

    cells, optical = held_out
    mask = np.arange(cells.sizes["y"] * cells.sizes["x"]) % 4 == 0
    td = topdown_stock(cells, optical=optical, models=["stock_ntl"], ntl_fit=mask)
    assert list(td.metrics.index) == ["stock_ntl", "ntl_loglog"]
    assert (td.metrics["n_cells"] == (~mask).sum()).all()
    assert (td.cells["evaluated"] == ~mask).all() and len(td.cells.attrs["ntl_loglog_coef"]) == 2
    assert td.grad_cam is None


def test_topdown_errors_name_the_fix(held_out):
    from eocube.estimates.stock import topdown_stock

    cells, optical = held_out
    with pytest.raises(EstimateError, match=r"Grad-CAM explains the optical branch.*"
                                            r"cam_model='stock_fusion'"):
        topdown_stock(cells, optical=optical, models=["stock_ntl"], cam_cells=[0],
                      cam_model="stock_ntl")
    shifted = optical.assign_coords(x=optical["x"] + 10.0)
    with pytest.raises(EstimateError, match="does not tile the cells"):
        topdown_stock(cells, optical=shifted, models=["stock_optical"])
    with pytest.raises(EstimateError, match="not a stock regressor"):
        topdown_stock(cells, optical=optical, models=["urban_s2"])


def test_topdown_runs_each_network_once_through_the_infer_cache(held_out):
    # one predictor per method; the networks come from eocube.infer's per-process cache
    from eocube.estimates.stock import (
        CellInputs,
        LogLogPredictor,
        NetworkPredictor,
        grid_cells,
        loglog_stock,
        topdown_stock,
    )
    from eocube.infer import clear_cache, reset_stats, stats

    cells, optical = held_out
    clear_cache()
    reset_stats()
    mask = np.arange(cells.sizes["y"] * cells.sizes["x"]) % 4 == 0
    td = topdown_stock(cells, optical=optical, models=["stock_ntl", "stock_optical"],
                       ntl_fit=mask)
    assert stats().get("models_built", 0) == 2
    topdown_stock(cells, optical=optical, models=["stock_ntl"])
    assert stats().get("models_built", 0) == 2  # reused, not rebuilt
    inputs = CellInputs.of(cells, optical=optical)
    ntl = NetworkPredictor.of("stock_ntl")
    np.testing.assert_array_equal(ntl(inputs), td.cells["pred_stock_ntl"])
    coef = td.cells.attrs["ntl_loglog_coef"]
    classical = LogLogPredictor(coef=coef)(inputs)
    np.testing.assert_array_equal(classical, td.cells["pred_ntl_loglog"])
    np.testing.assert_array_equal(classical, loglog_stock(td.cells["ntl_sum"], coef=coef))
    # the cell polygons are those of stock_grid's grid
    g = grid_cells(cells.odc.geobox)
    assert g.geometry.equals(td.cells.geometry) and (g["row"] == td.cells["row"]).all()
