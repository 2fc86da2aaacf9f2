"""Building material stock: bottom-up per building, gridded, and the top-down NTL regression.

Bottom-up: footprint area × height (or floors × storey height) × material intensity of the
structure type (kg per m³ of gross volume) from an editable table. Top-down (Bao et al. 2023):
stock per grid cell regressed from imagery; the classical baseline here is the log-log
regression of cell stock on the cell's NTL sum, and the fused ORS + NTL network lives in
``eocube.models`` (imported lazily, never at module top).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eocube.errors import EstimateError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr
    from odc.geo.geobox import GeoBox

__all__ = ["DEFAULT_INTENSITY", "DEFAULT_STOREY_HEIGHT", "MATERIALS", "bottom_up_stock",
           "ntl_stock_regression", "stock_grid", "stock_metrics"]

MATERIALS = ("concrete", "steel", "brick", "wood", "glass")

#: Material intensity (kg per m³ of gross building volume), rows = structure type, columns =
#: material. The synthetic city's table, whose orders of magnitude follow published
#: building material-stock inventories; pass your own table (same shape) for a real city.
DEFAULT_INTENSITY = pd.DataFrame({
    "reinforced_concrete": {"concrete": 380.0, "steel": 32.0, "brick": 45.0, "wood": 4.0,
                            "glass": 3.0},
    "brick_concrete": {"concrete": 210.0, "steel": 12.0, "brick": 260.0, "wood": 8.0,
                       "glass": 2.0},
    "brick_wood": {"concrete": 60.0, "steel": 3.0, "brick": 300.0, "wood": 45.0, "glass": 1.5},
    "steel": {"concrete": 120.0, "steel": 65.0, "brick": 20.0, "wood": 2.0, "glass": 6.0},
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
    >>> bool(np.allclose(s["stock_total_t"], w.buildings["stock_total_t"]))
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
            default = float(storey_height.get("default", 3.0))
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
    import geopandas as gpd
    import shapely
    import xarray as xr
    from odc.geo.xr import wrap_xr

    cols = [value_cols] if isinstance(value_cols, str) else list(value_cols)
    b = buildings.to_crs(grid.crs) if not buildings.crs.equals(grid.crs) else buildings
    ny, nx = grid.shape.yx
    aff = grid.affine
    r, c = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    x0 = aff.c + c.ravel() * aff.a
    y0 = aff.f + r.ravel() * aff.e
    cells = gpd.GeoDataFrame({"cell": np.arange(ny * nx)},
                             geometry=shapely.box(x0, y0 + aff.e, x0 + aff.a, y0), crs=grid.crs)
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
    out = cells.copy()
    with np.errstate(divide="ignore"):
        out["pred_ntl_loglog"] = np.where(
            x > 0, np.exp(alpha + beta * np.log(np.maximum(x, 1e-300))), 0.0)
    out.attrs["coef"] = (float(alpha), float(beta))
    return out


def stock_metrics(y_true: np.ndarray, y_pred: np.ndarray, /) -> dict[str, float]:
    """Spearman ρ, weighted RMSE and total relative error of a stock estimate."""
    from eocube.estimates import _metrics as m

    return {"spearman": m.spearman(y_true, y_pred), "wRMSE": m.weighted_rmse(y_true, y_pred),
            "total_rel_error": m.total_relative_error(y_true, y_pred)}
