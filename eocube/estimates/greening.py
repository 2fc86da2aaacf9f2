"""Roof-greening suitability (Luo et al. 2022): candidate roofs, AHP weights, weighted overlay.

Candidate roofs (height ≤ 45 m, regular shape, a suitable roof material where known) are
scored by the AHP-weighted overlay of reclassified criteria rasters on a 30 m grid (LST,
population density, building density, road density) and put into three suitability classes,
counted per district.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eocube.errors import EstimateError
from eocube.estimates.mcda import RANDOM_INDEX, AHPResult, ahp_weights

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr
    from odc.geo.geobox import GeoBox

__all__ = ["DEFAULT_PAIRWISE", "RANDOM_INDEX", "AHPResult", "GreeningResult", "ahp_weights",
           "candidate_roofs", "greening_criteria", "greening_suitability"]

#: Default pairwise comparisons of (lst, population_density, building_density, road_density):
#: heat first, then the people exposed, then the built and the traffic environment (CR ≈ 0.01).
DEFAULT_PAIRWISE = pd.DataFrame(
    [[1, 2, 3, 4], [1 / 2, 1, 2, 3], [1 / 3, 1 / 2, 1, 2], [1 / 4, 1 / 3, 1 / 2, 1]],
    index=["lst", "population_density", "building_density", "road_density"],
    columns=["lst", "population_density", "building_density", "road_density"])


def candidate_roofs(buildings: gpd.GeoDataFrame, /, *, max_height: float = 45.0,
                    min_rectangularity: float = 0.75, min_compactness: float = 0.4,
                    suitable_roofs: Sequence[str] | None = ("concrete",),
                    height_col: str = "height", roof_col: str = "roof_material",
                    floors_col: str = "floors", storey_height: float = 3.0
                    ) -> gpd.GeoDataFrame:
    """Roofs that can carry a green roof: low enough, regular, of a suitable material.

    * height ≤ ``max_height`` (from ``height_col``, else floors × ``storey_height``);
    * regular shape: rectangularity (area / minimum rotated rectangle) ≥
      ``min_rectangularity`` and Polsby–Popper compactness ``4πA/P²`` ≥ ``min_compactness``;
    * roof material in ``suitable_roofs`` where the material is known (missing → allowed;
      ``None`` skips the rule).

    Returns
    -------
    geopandas.GeoDataFrame
        A copy with ``rectangularity``, ``compactness``, ``height_used_m``, ``candidate`` and
        ``reason`` (why a roof is not a candidate, "" for candidates).
    """
    import shapely

    g = np.asarray(buildings.geometry.values, dtype=object)
    area = shapely.area(g)
    rect = area / np.maximum(shapely.area(shapely.oriented_envelope(g)), 1e-12)
    comp = 4 * np.pi * area / np.maximum(shapely.length(g) ** 2, 1e-12)
    h = np.full(len(g), np.nan)
    if height_col in buildings.columns:
        h = pd.to_numeric(buildings[height_col], errors="coerce").to_numpy(np.float64)
    if np.isnan(h).any() and floors_col in buildings.columns:
        f = pd.to_numeric(buildings[floors_col], errors="coerce").to_numpy(np.float64)
        h = np.where(np.isnan(h), f * storey_height, h)
    reason = np.full(len(g), "", dtype=object)
    if suitable_roofs is not None and roof_col in buildings.columns:
        mat = buildings[roof_col]
        bad = mat.notna().to_numpy() & ~mat.isin(list(suitable_roofs)).to_numpy()
        reason[bad] = "roof material"
    reason[(comp < min_compactness) | (rect < min_rectangularity)] = "irregular shape"
    reason[np.isnan(h)] = "unknown height"
    reason[h > max_height] = f"taller than {max_height:g} m"
    out = buildings.copy()
    out["rectangularity"] = rect
    out["compactness"] = comp
    out["height_used_m"] = h
    out["candidate"] = reason == ""
    out["reason"] = reason.astype(str)
    return out


def _line_points(roads: gpd.GeoDataFrame, step: float) -> gpd.GeoDataFrame:
    import geopandas as gpd
    import shapely

    pts, w = [], []
    for line in roads.geometry.values:
        n = max(int(np.ceil(line.length / step)), 1)
        d = (np.arange(n) + 0.5) * line.length / n
        pts.append(shapely.line_interpolate_point(line, d))
        w.append(np.full(n, line.length / n))
    return gpd.GeoDataFrame({"w": np.concatenate(w)}, geometry=np.concatenate(pts),
                            crs=roads.crs)


def greening_criteria(buildings: gpd.GeoDataFrame, /, *, roads: gpd.GeoDataFrame,
                      lst: xr.DataArray, grid: GeoBox, population_col: str = "population",
                      bandwidth: float = 250.0) -> dict[str, xr.DataArray]:
    """The four criteria rasters on ``grid`` (lazy, except the reprojection of LST).

    * ``lst`` — LST averaged onto the grid;
    * ``population_density`` — kernel density of building centroids weighted by their
      population (people per ha);
    * ``building_density`` — kernel density of centroids weighted by footprint area (share of
      ground covered by buildings);
    * ``road_density`` — kernel density of points every 10 m along the roads weighted by
      length (km of road per km²).
    """
    import geopandas as gpd
    import shapely
    from odc.geo.xr import xr_reproject

    from eocube.zonal import kernel_density

    if population_col not in buildings.columns:
        raise EstimateError(f"buildings lack {population_col!r}; run deff() first or name "
                            "the population column.")
    cen = gpd.GeoDataFrame(
        {"pop": buildings[population_col].to_numpy(np.float64),
         "area": shapely.area(np.asarray(buildings.geometry.values, dtype=object))},
        geometry=shapely.centroid(np.asarray(buildings.geometry.values, dtype=object)),
        crs=buildings.crs)
    return {
        "lst": xr_reproject(lst, grid, resampling="average"),
        "population_density": kernel_density(cen, grid, bandwidth=bandwidth,
                                             weight_col="pop") * 1e4,
        "building_density": kernel_density(cen, grid, bandwidth=bandwidth, weight_col="area"),
        "road_density": kernel_density(_line_points(roads, 10.0), grid, bandwidth=bandwidth,
                                       weight_col="w") * 1e3,
    }


def _reclass(a: np.ndarray, n: int) -> np.ndarray:
    """Classes 1…n by quantiles of the finite values (ties share a class)."""
    v = a[np.isfinite(a)]
    if v.size == 0:
        raise EstimateError("a criterion raster has no finite value.")
    edges = np.quantile(v, np.linspace(0, 1, n + 1)[1:-1])
    return np.where(np.isfinite(a), 1 + np.searchsorted(edges, a, side="right"), np.nan)


@dataclasses.dataclass(frozen=True)
class GreeningResult:
    """What :func:`greening_suitability` returns.

    Attributes
    ----------
    roofs
        Buildings with the candidate rules, ``score`` and ``suitability``
        (``high``/``medium``/``low``; empty for non-candidates) and ``district_id``.
    surface
        The weighted-overlay score on the 30 m grid.
    ahp
        The AHP weights and consistency.
    districts
        Per district: candidate count and count and share per class.
    breaks
        Score breaks between the classes (natural breaks of the candidate scores).
    """

    roofs: gpd.GeoDataFrame
    surface: xr.DataArray
    ahp: AHPResult
    districts: pd.DataFrame
    breaks: np.ndarray


def greening_suitability(
    buildings: gpd.GeoDataFrame,
    /,
    *,
    criteria: Mapping[str, xr.DataArray],
    pairwise: pd.DataFrame = DEFAULT_PAIRWISE,
    districts: gpd.GeoDataFrame | None = None,
    district_id_col: str = "district_id",
    levels: int = 5,
    seed: int = 0,
    candidate_kw: Mapping[str, object] | None = None,
) -> GreeningResult:
    """Roof-greening suitability by AHP weighted overlay. Eager.

    Each criterion raster is reclassified into ``levels`` quantile classes (1 = least need of
    greening … ``levels`` = most: every criterion here is a benefit criterion — hotter, more
    people, denser buildings and roads call for green roofs), the classes are overlaid with the
    AHP weights of ``pairwise`` (refused when CR ≥ 0.1), each candidate roof is scored by the
    exact-coverage mean of the overlay, and the candidates are split into three classes by
    natural breaks (Fisher–Jenks on at most 3,000 scores drawn with ``seed``).

    Parameters
    ----------
    buildings
        Footprints (with height / roof material for :func:`candidate_roofs`).
    criteria
        Name → raster, all on one grid; names must match ``pairwise``'s index.
    pairwise
        AHP pairwise comparisons (a DataFrame indexed by criterion).
    districts
        Optional districts for the counts; buildings are assigned by largest overlap.
    district_id_col
        District id column.
    levels
        Reclassification levels.
    seed
        Seed of the subsample for the class breaks.
    candidate_kw
        Keywords of :func:`candidate_roofs`.

    Returns
    -------
    GreeningResult
    """
    from odc.geo.xr import wrap_xr

    from eocube.estimates.split import jenks_breaks
    from eocube.zonal import assign_zones, zonal_stats

    ahp = ahp_weights(pairwise)
    names = list(ahp.weights.index)
    missing = [n for n in names if n not in criteria]
    if missing:
        raise EstimateError(f"criteria lack {missing} named in the pairwise matrix; pass "
                            f"rasters for {names}.")
    gb = criteria[names[0]].odc.geobox
    for n in names:
        if criteria[n].odc.geobox != gb:
            raise EstimateError(f"criterion {n!r} is not on the grid of {names[0]!r}; "
                                "reproject the criteria to one grid (e.g. 30 m).")
    score = np.zeros(gb.shape.yx)
    for n in names:
        score = score + ahp.weights[n] * _reclass(np.asarray(criteria[n].values, "float64"),
                                                  levels)
    surface = wrap_xr(score, gb)
    surface.attrs["long_name"] = "roof-greening suitability score"
    roofs = candidate_roofs(buildings, **dict(candidate_kw or {}))
    cand = roofs["candidate"].to_numpy()
    roofs["score"] = np.nan
    roofs["suitability"] = ""
    breaks = np.array([])
    if cand.any():
        zs = zonal_stats(surface, roofs.loc[cand].reset_index(drop=True), stats=["mean"],
                         method="exact")["mean"].values
        roofs.loc[cand, "score"] = zs
        s = zs[np.isfinite(zs)]
        rng = np.random.default_rng(seed)
        sample = rng.choice(s, size=min(s.size, 3000), replace=False)
        k = min(3, np.unique(sample).size)
        breaks = jenks_breaks(sample, n_classes=k)[1:-1]
        labels = np.array(["low", "medium", "high"])[-k:] if k < 3 else np.array(
            ["low", "medium", "high"])
        cls = np.searchsorted(breaks, zs, side="left")
        roofs.loc[cand, "suitability"] = np.where(np.isfinite(zs), labels[cls], "")
    if districts is not None:
        roofs = assign_zones(roofs, districts, id_col=district_id_col)
        key = roofs[district_id_col]
    else:
        key = pd.Series("city", index=roofs.index, name=district_id_col)
    c = roofs[cand]
    tab = pd.crosstab(key[cand], c["suitability"]).reindex(columns=["high", "medium", "low"],
                                                          fill_value=0)
    tab.insert(0, "candidates", tab.sum(axis=1))
    for lv in ("high", "medium", "low"):
        tab[f"share_{lv}"] = tab[lv] / tab["candidates"].where(tab["candidates"] > 0, 1)
    tab.index.name = district_id_col
    return GreeningResult(roofs=roofs, surface=surface, ahp=ahp, districts=tab.reset_index(),
                          breaks=breaks)
