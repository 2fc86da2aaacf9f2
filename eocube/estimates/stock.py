"""Building material stock: bottom-up per building, gridded, and the top-down NTL regression.

Bottom-up: footprint area × height (or floors × storey height) × material intensity of the
structure type (kg per m³ of gross volume) from an editable table. Top-down (Bao et al. 2023):
stock per grid cell regressed from imagery; the classical baseline here is the log-log
regression of cell stock on the cell's NTL sum; :func:`topdown_stock` runs the shipped fused
ORS + NTL network and its ORS-only and NTL-only baselines next to it (``eocube.models``,
imported lazily, never at module top).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from eocube.errors import EstimateError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr
    from odc.geo.geobox import GeoBox

    from eocube.infer import WeightsRef
    from eocube.models import ModelSpec

__all__ = ["DEFAULT_INTENSITY", "DEFAULT_STOREY_HEIGHT", "MATERIALS", "STOCK_MODELS",
           "CellInputs", "LogLogPredictor", "NetworkPredictor", "Predictor", "TopDownStock",
           "bottom_up_stock", "cell_patches", "grid_cells", "loglog_stock",
           "ntl_stock_regression", "stock_grid", "stock_metrics", "topdown_stock"]

MATERIALS = ("concrete", "steel", "brick", "wood", "glass")

#: Material intensity (kg per m³ of gross building volume), rows = structure type, columns =
#: material: a published-style average, not the synthetic city's generator table. The
#: magnitudes follow the per-floor-area intensities of building material-stock inventories
#: (Heeren & Fishman 2019, Sci. Data 6:23; Marinova et al. 2020, J. Clean. Prod. 247:119146),
#: rounded, in kg/m² of floor: reinforced-concrete frames ~1150 concrete, 75 steel, 150 brick,
#: 10 wood, 5 glass; masonry with concrete slabs ~600 concrete, 25 steel, 700 brick, 20 wood,
#: 3 glass; masonry with timber floors ~150 concrete, 7 steel, 750 brick, 110 wood, 2 glass;
#: steel-framed halls ~650 concrete, 120 steel, 60 brick, 10 wood, 10 glass — divided by a
#: storey height of 3.3 m (frames), 3.0 m (masonry) and 6 m (halls). One table for all
#: construction years and districts; pass your own table (same shape) for a real city.
DEFAULT_INTENSITY = pd.DataFrame({
    "reinforced_concrete": {"concrete": 350.0, "steel": 23.0, "brick": 45.0, "wood": 3.0,
                            "glass": 1.5},
    "brick_concrete": {"concrete": 200.0, "steel": 8.0, "brick": 235.0, "wood": 7.0,
                       "glass": 1.0},
    "brick_wood": {"concrete": 50.0, "steel": 2.5, "brick": 250.0, "wood": 37.0, "glass": 0.7},
    "steel": {"concrete": 110.0, "steel": 20.0, "brick": 10.0, "wood": 1.7, "glass": 1.7},
}).T.rename_axis("structure")[list(MATERIALS)]

#: Storey height (m) by building function, used where a building has floors but no height.
DEFAULT_STOREY_HEIGHT: dict[str, float] = {"residential": 3.0, "mixed": 3.3, "commercial": 4.0,
                                           "industrial": 6.0, "public": 4.0, "default": 3.0}


def _intensity_table(intensity: pd.DataFrame | Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    t = intensity if isinstance(intensity, pd.DataFrame) else pd.DataFrame(intensity).T
    t = t.astype("float64")
    if t.isna().any().any() or (t < 0).any().any():
        raise EstimateError("the material intensity table has missing or negative values; "
                            "fill every structure × material cell with kg/m³ ≥ 0.")
    return t


def bottom_up_stock(
    buildings: gpd.GeoDataFrame,
    /,
    *,
    intensity: pd.DataFrame | Mapping[str, Mapping[str, float]] = DEFAULT_INTENSITY,
    structure_col: str = "structure",
    height_col: str | None = "height",
    floors_col: str | None = "floors",
    function_col: str | None = "function",
    storey_height: float | Mapping[str, float] = DEFAULT_STOREY_HEIGHT,
) -> gpd.GeoDataFrame:
    """Material stock per building: footprint area × height × intensity of its structure type.

    Height is the building's ``height_col`` where it is known (finite, > 0), else
    ``floors × storey height`` (by function when ``storey_height`` is a mapping, its
    ``"default"`` for other functions). A building with neither is an error naming it.

    Parameters
    ----------
    buildings
        Footprints in a projected CRS (metres) with ``structure_col`` and a height source.
    intensity
        Structure type → material → kg/m³ (rows structures, columns materials). Every structure
        type present in ``buildings`` must have a row, else an :class:`EstimateError` lists the
        missing types.
    structure_col, height_col, floors_col, function_col
        Column names; ``None`` to not use that column.
    storey_height
        Metres per floor, one value or by function.

    Returns
    -------
    geopandas.GeoDataFrame
        A copy with ``footprint_m2``, ``height_used_m``, ``height_source``
        (``"height"``/``"floors"``), ``volume_m3``, ``stock_<material>_t`` and
        ``stock_total_t`` (tonnes).

    Examples
    --------
    >>> from eocube.synth import make_world
    >>> w = make_world("tiny", seed=0)
    >>> s = bottom_up_stock(w.buildings.drop(columns=[c for c in w.buildings
    ...                                               if c.startswith("stock_")]))
    >>> bool((s["stock_total_t"] > 0).all() and s["height_source"].eq("height").all())
    True
    """
    if buildings.crs is None or not buildings.crs.is_projected:
        raise EstimateError("bottom_up_stock needs footprints in a projected CRS (metres); "
                            "reproject with buildings.to_crs(<local UTM>).")
    if structure_col not in buildings.columns:
        raise EstimateError(f"buildings lack the structure column {structure_col!r}; pass "
                            "structure_col= naming it.")
    table = _intensity_table(intensity)
    structure = buildings[structure_col].astype(str).to_numpy()
    missing = sorted(set(structure) - set(table.index.astype(str)))
    if missing:
        raise EstimateError(
            f"the material intensity table has no row for structure type(s) {missing}; it has "
            f"{sorted(table.index.astype(str))}. Add rows for them (kg/m³ per material) or "
            "recode the buildings' structure column.")
    n = len(buildings)
    height = np.full(n, np.nan)
    if height_col is not None and height_col in buildings.columns:
        height = pd.to_numeric(buildings[height_col], errors="coerce").to_numpy(np.float64)
    known = np.isfinite(height) & (height > 0)
    source = np.where(known, "height", "floors").astype(object)
    if not known.all():
        if floors_col is None or floors_col not in buildings.columns:
            bad = buildings.index[~known][:5].tolist()
            raise EstimateError(f"{(~known).sum()} building(s) (index {bad}…) have no height and "
                                f"there is no floors column {floors_col!r} to derive it.")
        floors = pd.to_numeric(buildings[floors_col], errors="coerce").to_numpy(np.float64)
        if isinstance(storey_height, Mapping):
            default = float(storey_height.get("default", DEFAULT_STOREY_HEIGHT["default"]))
            if function_col is not None and function_col in buildings.columns:
                func = buildings[function_col].astype(str).to_numpy()
                sh = np.array([float(storey_height.get(f, default)) for f in func])
            else:
                sh = np.full(n, default)
        else:
            sh = np.full(n, float(storey_height))
        derived = floors * sh
        still = ~known & ~(np.isfinite(derived) & (derived > 0))
        if still.any():
            bad = buildings.index[still][:5].tolist()
            raise EstimateError(f"{still.sum()} building(s) (index {bad}…) have neither a "
                                "height nor a positive number of floors.")
        height = np.where(known, height, derived)
    area = buildings.geometry.area.to_numpy()
    volume = area * height
    out = buildings.copy()
    out["footprint_m2"] = area
    out["height_used_m"] = height
    out["height_source"] = source
    out["volume_m3"] = volume
    total = np.zeros(n)
    rows = table.reindex(structure)
    for mat in table.columns:
        col = rows[mat].to_numpy() * volume / 1000.0
        out[f"stock_{mat}_t"] = col
        total += col
    out["stock_total_t"] = total
    return out


def grid_cells(grid: GeoBox, /) -> gpd.GeoDataFrame:
    """One polygon per cell of ``grid``, row-major: ``cell`` (the row-major index), ``row``,
    ``col`` and the cell's square, in the grid's CRS."""
    import geopandas as gpd
    import shapely

    ny, nx = grid.shape.yx
    r, c = np.divmod(np.arange(ny * nx), nx)
    aff = grid.affine
    x0, y0 = aff.c + c * aff.a, aff.f + r * aff.e
    return gpd.GeoDataFrame({"cell": np.arange(ny * nx), "row": r, "col": c},
                            geometry=shapely.box(x0, y0 + aff.e, x0 + aff.a, y0), crs=grid.crs)


def stock_grid(buildings: gpd.GeoDataFrame, grid: GeoBox, /, *,
               value_cols: str | list[str] = "stock_total_t") -> xr.Dataset:
    """Sum building values into the cells of ``grid``, split by footprint area share.

    Each footprint's value is shared among the cells it overlaps in proportion to the
    overlapping area, so the grid total equals the buildings' total. Eager.

    Parameters
    ----------
    buildings
        Footprints with ``value_cols`` (e.g. the output of :func:`bottom_up_stock`).
    grid
        Output grid (a GeoBox); footprints are reprojected to its CRS.
    value_cols
        Column(s) to sum.

    Returns
    -------
    xarray.Dataset
        One variable per column on ``grid``.
    """
    import shapely
    import xarray as xr
    from odc.geo.xr import wrap_xr

    cols = [value_cols] if isinstance(value_cols, str) else list(value_cols)
    b = buildings.to_crs(grid.crs) if not buildings.crs.equals(grid.crs) else buildings
    ny, nx = grid.shape.yx
    cells = grid_cells(grid)
    fp = np.asarray(b.geometry.values, dtype=object)
    bi, ci = cells.sindex.query(fp, predicate="intersects")
    share = shapely.area(shapely.intersection(fp[bi], cells.geometry.values[ci])) / shapely.area(
        fp[bi])
    out = {}
    for col in cols:
        v = b[col].to_numpy(np.float64)[bi] * share
        arr = np.bincount(ci, weights=v, minlength=ny * nx).reshape(ny, nx)
        out[col] = wrap_xr(arr, grid)
    return xr.Dataset(out)


def ntl_stock_regression(cells: pd.DataFrame, /, *, train: np.ndarray, stock_col: str = "stock_t",
                         ntl_col: str = "ntl_sum") -> pd.DataFrame:
    """The classical top-down baseline: log(stock) = α + β·log(NTL sum), least squares.

    Fitted on the training cells with stock > 0 and NTL > 0, applied to every cell (cells
    with NTL ≤ 0 are predicted 0).

    Parameters
    ----------
    cells
        One row per grid cell with ``stock_col`` (truth or reference) and ``ntl_col``.
    train
        Boolean mask of the training cells.
    stock_col, ntl_col
        Column names.

    Returns
    -------
    pandas.DataFrame
        A copy with ``pred_ntl_loglog``; ``attrs["coef"]`` holds (α, β).
    """
    y = cells[stock_col].to_numpy(np.float64)
    x = cells[ntl_col].to_numpy(np.float64)
    train = np.asarray(train, dtype=bool)
    fit = train & (y > 0) & (x > 0)
    if fit.sum() < 3:
        raise EstimateError(f"only {int(fit.sum())} training cells have stock > 0 and NTL > 0; "
                            "need at least 3 to fit the log-log NTL regression.")
    lx = np.log(x[fit])
    if np.ptp(lx) == 0:
        raise EstimateError("the NTL sums of the training cells are all equal: the log-log "
                            "regression is singular.")
    beta, alpha = np.polyfit(lx, np.log(y[fit]), 1)
    coef = (float(alpha), float(beta))
    out = cells.copy()
    out["pred_ntl_loglog"] = loglog_stock(x, coef=coef)
    out.attrs["coef"] = coef
    return out


def loglog_stock(ntl: np.ndarray, /, *, coef: tuple[float, float]) -> np.ndarray:
    """The log-log regression's stock ``exp(α + β·log NTL)`` (0 where NTL ≤ 0)."""
    x = np.asarray(ntl, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(x > 0, np.exp(coef[0] + coef[1] * np.log(np.maximum(x, 1e-300))), 0.0)


def stock_metrics(y_true: np.ndarray, y_pred: np.ndarray, /) -> dict[str, float]:
    """Spearman ρ, RMSE weighted by the true stock (large stocks count more) and total relative
    error of a stock estimate. Eager."""
    from eocube.estimates import metrics as mt

    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    return {"spearman": float(mt.spearman(t, p)),
            "wRMSE": float(mt.weighted_rmse(t, p, sample_weight=np.abs(t))),
            "total_rel_error": float(mt.total_relative_error(t, p))}


# ---- top-down with the shipped networks ------------------------------------------------------

#: The shipped stock regressors: fused ORS + NTL, and the ORS-only and NTL-only baselines.
STOCK_MODELS = ("stock_fusion", "stock_optical", "stock_ntl")


@dataclasses.dataclass(frozen=True)
class TopDownStock:
    """What :func:`topdown_stock` returns.

    Attributes
    ----------
    cells
        One row per grid cell (``cell`` = row-major index, ``row``, ``col``, the cell's
        polygon): ``stock_t`` (the reference, when given), ``ntl_sum``, ``pred_<model>`` per
        network and ``pred_ntl_loglog`` for the classical regression, ``evaluated`` (the cells
        the metrics are measured on).
    metrics
        One row per estimate (``pred_`` column name without the prefix): ``spearman``,
        ``wRMSE`` (t, weighted by the reference stock), ``total_rel_error`` and ``n_cells``;
        empty without a reference.
    grad_cam
        Grad-CAM of the optical branch on (cell, row, col) in [0, 1] with the pixels' ``x``
        and ``y`` (CRS coordinates) per cell; ``None`` when no cell was asked for.
    """

    cells: gpd.GeoDataFrame
    metrics: pd.DataFrame
    grad_cam: xr.DataArray | None


def topdown_stock(
    cells: xr.Dataset,
    /,
    *,
    optical: xr.Dataset,
    models: Sequence[str | Path] = STOCK_MODELS,
    ntl_fit: np.ndarray | xr.Dataset | Sequence[xr.Dataset] | None = None,
    cam_cells: Sequence[int] = (),
    cam_model: str | Path = "stock_fusion",
    device: str = "cpu",
    batch_size: int = 256,
) -> TopDownStock:
    """Top-down stock per grid cell from the shipped regressors and the classical NTL baseline.

    Each network (:data:`STOCK_MODELS` by default: fused ORS + NTL, ORS-only, NTL-only) gets
    the cell's optical patch (the cell and a margin cut from the S2 composite, bands and margin
    from its ModelSpec) and/or its monthly NTL series, and returns tonnes through the spec's
    target transform (with the retransformation factor stored in the weights). Eager: loads
    ``cells`` and ``optical``; torch is imported here, not with :mod:`eocube.estimates`.

    Steps: the cell inputs (:class:`CellInputs`: NTL series and level, optical patches cut
    once per band set and margin) and the cell polygons (:func:`grid_cells`) → one
    :class:`Predictor` per method — a :class:`NetworkPredictor` per model, run through
    :mod:`eocube.infer`'s per-process model cache, and the :class:`LogLogPredictor` of the
    classical regression (:func:`loglog_stock`) → :func:`stock_metrics` of every prediction
    → Grad-CAM.

    Parameters
    ----------
    cells
        The stock grid: ``ntl`` (time, y, x) monthly radiance per cell, optionally
        ``stock_t`` (y, x), the reference stock in tonnes, for the metrics.
    optical
        The yearly S2 composite (one variable per band, reflectance) on a grid whose pixels
        tile the cells exactly and share their origin.
    models
        Shipped weights names or ``.safetensors`` paths of stock regressors.
    ntl_fit
        Where the classical log-log NTL regression is fitted: a boolean mask over the cells
        (row-major; those cells are then left out of every metric), or other cities' cell
        Datasets with ``ntl`` and ``stock_t``; ``None`` leaves the classical row out.
    cam_cells
        Cell indices (the ``cell`` column) whose Grad-CAM to return.
    cam_model
        The model Grad-CAM explains; it needs an optical branch.
    device
        Torch device (``"auto"`` picks CUDA when present).
    batch_size
        Cells per forward pass.

    Returns
    -------
    TopDownStock

    Raises
    ------
    EstimateError
        If the grids do not line up, a model is not a stock regressor, or a cell index is out
        of range.

    Examples
    --------
    >>> from eocube.models.data import load_city
    >>> from eocube.synth import resolve_spec
    >>> city = load_city(1, spec=resolve_spec("tiny"))
    >>> td = topdown_stock(city.cells, optical=city.inputs[2021], cam_cells=[84])
    >>> bool(td.metrics.loc["stock_fusion", "spearman"] > td.metrics.loc["stock_ntl", "spearman"])
    True
    >>> td.grad_cam.dims
    ('cell', 'row', 'col')
    """
    if "ntl" not in cells:
        raise EstimateError("cells need the monthly NTL series 'ntl' on (time, y, x); it has "
                            f"{sorted(map(str, cells.data_vars))}")
    # every model is checked before any runs
    networks = [NetworkPredictor.of(m, device=device, batch_size=batch_size) for m in models]
    inputs = CellInputs.of(cells, optical=optical)
    out = grid_cells(cells.odc.geobox)
    truth = (cells["stock_t"].to_numpy().reshape(-1).astype("float64")
             if "stock_t" in cells else None)
    if truth is not None:
        out["stock_t"] = truth
    out["ntl_sum"] = inputs.ntl_level
    predictors: list[Predictor] = list(networks)
    evaluated = np.ones(len(out), bool)
    if ntl_fit is not None:
        classical, evaluated = _fit_loglog(ntl_fit, inputs, truth)
        predictors.append(classical)
        out.attrs["ntl_loglog_coef"] = classical.coef
    for predictor in predictors:
        out[f"pred_{predictor.name}"] = predictor(inputs)
    out["evaluated"] = evaluated
    metrics = _metrics_table(out, truth, evaluated)
    cam = None
    if len(cam_cells):
        cam = _cam(cam_model, np.asarray(cam_cells, dtype=int), inputs, cells=cells,
                   optical=optical, device=device)
    return TopDownStock(cells=out, metrics=metrics, grad_cam=cam)


class Predictor(Protocol):
    """One top-down method: cell inputs in, one stock (t) per cell out."""

    name: str

    def __call__(self, inputs: CellInputs, /) -> np.ndarray: ...


@dataclasses.dataclass(eq=False)
class CellInputs:
    """What the top-down predictors read, per cell in row-major order: the NTL series, its
    level (the classical regression's predictor) and the optical patches, cut once per
    (bands, margin) a model asks for."""

    cells: xr.Dataset
    optical: xr.Dataset
    ntl: np.ndarray  # (cell, 1, time)
    ntl_level: np.ndarray  # (cell,)
    _patches: dict[tuple[tuple[str, ...], int], np.ndarray] = dataclasses.field(
        default_factory=dict)

    @classmethod
    def of(cls, cells: xr.Dataset, /, *, optical: xr.Dataset) -> CellInputs:
        """The inputs of ``cells`` (with ``ntl``) and the optical composite."""
        ntl = _cell_series(cells)
        return cls(cells=cells, optical=optical, ntl=ntl, ntl_level=_ntl_level(ntl))

    def patches(self, spec: ModelSpec) -> np.ndarray:
        """(cell, band, P, P) optical patches as ``spec``'s optical input was trained on."""
        bands = spec.input("optical").bands
        margin = int(spec.training.get("optical_margin_px", 0))
        key = (tuple(bands), margin)
        if key not in self._patches:
            self._patches[key] = cell_patches(self.cells, optical=self.optical, bands=bands,
                                              margin=margin)
        p = self._patches[key]
        if p.shape[-1] != spec.patch_size:
            raise EstimateError(f"model {spec.name!r} was trained on {spec.patch_size}-pixel "
                                f"patches; these cells give {p.shape[-1]} (cell size / pixel "
                                f"size + 2 × {margin}). Use the grids it was trained on.")
        return p

    def for_spec(self, spec: ModelSpec) -> dict[str, np.ndarray]:
        """The arrays of every input of ``spec``, by input name."""
        names = [i.name for i in spec.inputs]
        ins = {"ntl": self.ntl} if "ntl" in names else {}
        if "optical" in names:
            ins["optical"] = self.patches(spec)
        return {n: ins[n] for n in names}


@dataclasses.dataclass(frozen=True)
class NetworkPredictor:
    """A shipped (or saved) stock regressor, run through :mod:`eocube.infer`'s model cache
    (built once per process and weights file, checked against its sha256)."""

    ref: WeightsRef
    spec: ModelSpec
    device: str = "cpu"
    batch_size: int = 256

    @property
    def name(self) -> str:
        """The model's name (``stock_fusion`` …)."""
        return self.spec.name

    @classmethod
    def of(cls, weights: str | Path, /, *, device: str = "cpu", batch_size: int = 256
           ) -> NetworkPredictor:
        """The predictor of shipped weights or a ``.safetensors`` path; refuses a model that
        is not a stock regressor (reads the header only)."""
        from eocube.infer import WeightsRef

        ref = WeightsRef.of(weights)
        spec = ref.spec()
        if spec.architecture != "stock_regressor":
            raise EstimateError(f"{str(weights)!r} is a {spec.architecture}, not a stock "
                                f"regressor; use one of {list(STOCK_MODELS)}")
        return cls(ref=ref, spec=spec, device=device, batch_size=int(batch_size))

    def __call__(self, inputs: CellInputs, /) -> np.ndarray:
        from eocube.infer import get_model
        from eocube.models import forward_arrays

        model, dev = get_model(self.ref, device=self.device)
        ins = inputs.for_spec(model.spec)
        n, b = len(inputs.ntl), self.batch_size
        pred = np.concatenate([
            forward_arrays({k: v[i:i + b] for k, v in ins.items()}, model, device=dev)["out"]
            for i in range(0, n, b)])
        return pred.astype("float64")


@dataclasses.dataclass(frozen=True)
class LogLogPredictor:
    """The classical top-down baseline: ``log stock = α + β·log NTL`` with fitted ``coef``."""

    coef: tuple[float, float]
    name: str = "ntl_loglog"

    def __call__(self, inputs: CellInputs, /) -> np.ndarray:
        return loglog_stock(inputs.ntl_level, coef=self.coef)


def _fit_loglog(ntl_fit: np.ndarray | xr.Dataset | Sequence[xr.Dataset], inputs: CellInputs,
                truth: np.ndarray | None) -> tuple[LogLogPredictor, np.ndarray]:
    """The log-log regression fitted on a mask of these cells (which then leave the
    evaluation) or on other cities' cells; and the mask of the evaluated cells."""
    n = len(inputs.ntl_level)
    evaluated = np.ones(n, bool)
    if isinstance(ntl_fit, np.ndarray) or (
            hasattr(ntl_fit, "dtype") and not hasattr(ntl_fit, "data_vars")):
        mask = np.asarray(ntl_fit, dtype=bool).reshape(-1)
        if mask.shape != (n,):
            raise EstimateError(f"ntl_fit mask has {mask.size} values for {n} cells")
        if truth is None:
            raise EstimateError("fitting the NTL regression on these cells needs their "
                                "'stock_t'")
        fit = pd.DataFrame({"stock_t": truth, "ntl_sum": inputs.ntl_level})
        train = mask
        evaluated = ~mask
    else:
        others = [ntl_fit] if hasattr(ntl_fit, "data_vars") else list(ntl_fit)
        fit = pd.DataFrame({
            "stock_t": np.concatenate([o["stock_t"].to_numpy().reshape(-1) for o in others]),
            "ntl_sum": np.concatenate([_ntl_level(_cell_series(o)) for o in others])})
        train = np.ones(len(fit), bool)
    coef = ntl_stock_regression(fit, train=train).attrs["coef"]
    return LogLogPredictor(coef=coef), evaluated


def _metrics_table(out: pd.DataFrame, truth: np.ndarray | None, evaluated: np.ndarray
                   ) -> pd.DataFrame:
    """:func:`stock_metrics` of every ``pred_`` column on the evaluated cells (empty without
    a reference)."""
    rows = {}
    if truth is not None:
        t = truth[evaluated]
        for col in [k for k in out.columns if k.startswith("pred_")]:
            rows[col.removeprefix("pred_")] = {
                **stock_metrics(t, out[col].to_numpy()[evaluated]),
                "n_cells": int(evaluated.sum())}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def _cam(cam_model: str | Path, ids: np.ndarray, inputs: CellInputs, *, cells: xr.Dataset,
         optical: xr.Dataset, device: str) -> xr.DataArray:
    from eocube.models import read_spec

    n = len(inputs.ntl)
    if ids.min() < 0 or ids.max() >= n:
        raise EstimateError(f"cam_cells {ids.tolist()} must be cell indices in [0, {n})")
    cam_spec = read_spec(cam_model)
    if "optical" not in [i.name for i in cam_spec.inputs]:
        raise EstimateError(f"Grad-CAM explains the optical branch; model {cam_spec.name!r}"
                            f" has only {[i.name for i in cam_spec.inputs]}. Use "
                            "cam_model='stock_fusion' or 'stock_optical'.")
    return _grad_cam(cam_model, inputs.ntl[ids], inputs.patches(cam_spec)[ids], ids,
                     optical=optical, cells=cells, device=device)


def cell_patches(cells: xr.Dataset, /, *, optical: xr.Dataset, bands: Sequence[str],
                 margin: int) -> np.ndarray:
    """(cell, band, P, P) optical patches: each cell of ``cells`` and ``margin`` pixels around.

    Cells are in row-major order; ``P`` = cell size / pixel size + 2 × margin. The image is
    reflect-padded where the margin (or a cell overhanging the east or south edge) leaves it,
    as the stock models were trained. Eager.
    """
    cg, og = cells.odc.geobox, optical.odc.geobox
    k = float(cg.resolution.x / og.resolution.x)
    ky = float(cg.resolution.y / og.resolution.y)
    origin_c, origin_o = cg.affine * (0, 0), og.affine * (0, 0)
    if (k != ky or k < 1 or k != round(k) or not cg.crs == og.crs
            or not np.allclose(origin_c, origin_o, atol=1e-6 * abs(og.resolution.x))):
        raise EstimateError(
            f"the optical grid (origin {origin_o}, pixel {og.resolution.xy}) does not tile the "
            f"cells (origin {origin_c}, cell {cg.resolution.xy}); reproject the composite onto "
            "a grid whose pixels divide the cells and share their origin.")
    missing = [b for b in bands if b not in optical]
    if missing:
        raise EstimateError(f"the optical composite lacks bands {missing}; it has "
                            f"{sorted(map(str, optical.data_vars))}")
    k = int(round(k))
    ny, nx = cg.shape.yx
    dims = optical.odc.spatial_dims
    img = np.stack([optical[b].transpose(*dims).to_numpy() for b in bands]).astype("float32")
    pad = np.pad(img, ((0, 0), (margin, margin + max(ny * k - img.shape[1], 0)),
                       (margin, margin + max(nx * k - img.shape[2], 0))), mode="reflect")
    p = k + 2 * margin
    return np.stack([pad[:, r * k:r * k + p, c * k:c * k + p]
                     for r in range(ny) for c in range(nx)])


def _cell_series(cells: xr.Dataset) -> np.ndarray:
    """(cell, 1, time) NTL series, cells row-major."""
    ntl = cells["ntl"]
    dims = cells.odc.spatial_dims
    a = ntl.transpose(*dims, "time").to_numpy().astype("float32")
    return a.reshape(-1, 1, a.shape[-1])


def _ntl_level(series: np.ndarray) -> np.ndarray:
    """The classical regression's NTL predictor: each cell's mean radiance over its last twelve
    months (the NTL sum of a cell as small as one NTL sample)."""
    return series[:, 0, -12:].astype("float64").mean(axis=1)


def _grad_cam(name: str | Path, ntl: np.ndarray, patches: np.ndarray, ids: np.ndarray, *,
              optical: xr.Dataset, cells: xr.Dataset, device: str) -> xr.DataArray:
    import xarray as xr

    from eocube.models import grad_cam, load_model
    from eocube.models.apply import to_tensor

    model, spec = load_model(name, device=device)
    dev = next(model.parameters()).device
    opt = to_tensor(patches, spec, input="optical", device=dev)
    series = (to_tensor(ntl, spec, input="ntl", device=dev)
              if "ntl" in model.branches else None)
    cam = grad_cam(model, opt, series).cpu().numpy()
    # pixel-centre coordinates of each patch (the cell and its margin) on the optical grid
    og = optical.odc.geobox
    margin = int(spec.training.get("optical_margin_px", 0))
    k = int(round(float(cells.odc.geobox.resolution.x / og.resolution.x)))
    nx = cells.odc.geobox.shape.x
    r, c = np.divmod(ids, nx)
    off = np.arange(cam.shape[-1]) - margin + 0.5
    aff = og.affine
    xs = aff.c + (c[:, None] * k + off[None, :]) * aff.a
    ys = aff.f + (r[:, None] * k + off[None, :]) * aff.e
    return xr.DataArray(
        cam.astype("float32"), dims=("cell", "row", "col"),
        coords={"cell": ids, "x": (("cell", "col"), xs), "y": (("cell", "row"), ys)},
        name="grad_cam", attrs={"model": spec.name, "margin_px": margin,
                                "long_name": "Grad-CAM of the optical branch, max 1 per cell"})
