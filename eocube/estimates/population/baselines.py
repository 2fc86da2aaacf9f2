"""Gridded-product style population baselines from a coarse census: census areal weighting,
built-up dasymetric (GHS-POP style) and a coarse smoothed surface (LandScan style).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eocube.errors import EstimateError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["areal_weighting", "coarse_districts", "dasymetric", "smoothed_surface",
           "surface_to_communities"]


def coarse_districts(census: gpd.GeoDataFrame, /, *, cell_m: float, pop_col: str = "pop_end",
                     community_id_col: str = "community_id") -> gpd.GeoDataFrame:
    """Coarse census districts: communities dissolved by the ``cell_m`` grid cell of their
    representative point, with the summed population (the coarse census a gridded product
    starts from).

    Returns
    -------
    geopandas.GeoDataFrame
        ``district_id``, ``pop``, the member ``community_ids`` and the dissolved geometry.
    """
    import shapely

    pts = shapely.point_on_surface(np.asarray(census.geometry.values, dtype=object))
    x0, y0 = census.total_bounds[:2]
    ix = np.floor((shapely.get_x(pts) - x0) / cell_m).astype(int)
    iy = np.floor((shapely.get_y(pts) - y0) / cell_m).astype(int)
    key = iy * (ix.max() + 1) + ix
    c = census[[community_id_col, pop_col, "geometry"]].copy()
    c["district_id"] = pd.factorize(key, sort=True)[0] + 1
    d = c.dissolve(by="district_id", aggfunc={pop_col: "sum", community_id_col: list})
    d = d.rename(columns={pop_col: "pop", community_id_col: "community_ids"}).reset_index()
    return d


def areal_weighting(districts: gpd.GeoDataFrame, communities: gpd.GeoDataFrame, /, *,
                    community_id_col: str = "community_id") -> pd.Series:
    """Census areal weighting: each district's population spread evenly over its area.

    Returns
    -------
    pandas.Series
        Population per community (index ``community_id``).
    """
    import geopandas as gpd

    ov = gpd.overlay(communities[[community_id_col, "geometry"]],
                     districts[["district_id", "pop", "geometry"]], how="intersection")
    darea = districts.set_index("district_id").geometry.area
    ov["est"] = ov["pop"] * ov.geometry.area / ov["district_id"].map(darea)
    est = ov.groupby(community_id_col)["est"].sum()
    return est.reindex(communities[community_id_col]).fillna(0.0)


def _district_raster(districts: gpd.GeoDataFrame, geobox) -> np.ndarray:
    from rasterio import features

    return features.rasterize(
        zip(districts.geometry.values, districts["district_id"].to_numpy(), strict=True),
        out_shape=geobox.shape.yx, transform=geobox.transform, fill=0, dtype="int32")


def dasymetric(districts: gpd.GeoDataFrame, builtup: xr.DataArray, /, *,
               resolution: float = 100.0) -> xr.DataArray:
    """Built-up dasymetric surface (GHS-POP style): each district's population spread over
    its built-up pixels, summed to a ``resolution`` grid (people per cell). Eager.

    Parameters
    ----------
    districts
        Coarse census districts (``district_id``, ``pop``), e.g. :func:`coarse_districts`.
    builtup
        Built-up map (0/1 or fraction) at a finer resolution, with a GeoBox; the output cell
        must be an integer multiple of its pixel.
    resolution
        Output cell size (m).
    """

    gb = builtup.odc.geobox
    d = districts.to_crs(gb.crs)
    dr = _district_raster(d, gb)
    bu = np.asarray(builtup.values, dtype=np.float64)
    tot = np.bincount(dr.ravel(), weights=bu.ravel(), minlength=int(dr.max()) + 1)
    pop = np.zeros(tot.size)
    pop[d["district_id"].to_numpy()] = d["pop"].to_numpy(np.float64)
    if np.any((pop > 0) & (tot == 0)):
        bad = np.flatnonzero((pop > 0) & (tot == 0)).tolist()
        raise EstimateError(f"districts {bad} have population but no built-up pixel; the "
                            "dasymetric surface would lose them.")
    per = np.divide(pop, tot, out=np.zeros_like(pop), where=tot > 0)
    people = bu * per[dr]
    return _block_sum(people, gb, resolution)


def _block_sum(a: np.ndarray, gb, resolution: float) -> xr.DataArray:
    """Sum a fine raster into ``resolution`` cells anchored at its top-left corner (the last
    row/column of cells may extend past the fine grid)."""
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import wrap_xr

    f = int(round(resolution / abs(gb.resolution.x)))
    if f < 1 or abs(f * abs(gb.resolution.x) - resolution) > 1e-6 * resolution:
        raise EstimateError(f"resolution={resolution} must be a whole multiple of the pixel "
                            f"size {abs(gb.resolution.x)}.")
    h, w = a.shape
    H, W = -(-h // f) * f, -(-w // f) * f
    pad = np.zeros((H, W))
    pad[:h, :w] = a
    coarse = pad.reshape(H // f, f, W // f, f).sum(axis=(1, 3))
    out = wrap_xr(coarse, GeoBox((H // f, W // f), gb.affine * gb.affine.scale(f), gb.crs))
    out.attrs["units"] = "people per cell"
    return out


def smoothed_surface(surface: xr.DataArray, /, *, resolution: float = 1000.0,
                     sigma_cells: float = 1.0) -> xr.DataArray:
    """A coarse smoothed product (LandScan style): a people-per-cell surface summed to
    ``resolution`` cells and Gaussian-smoothed (mass preserving up to the edges). Eager."""
    import scipy.ndimage as ndi
    from odc.geo.xr import wrap_xr

    coarse = _block_sum(np.asarray(surface.values, dtype=np.float64), surface.odc.geobox,
                        resolution)
    c = np.asarray(coarse.values)
    sm = ndi.gaussian_filter(c, sigma_cells, mode="constant")
    sm *= c.sum() / sm.sum() if sm.sum() > 0 else 1.0
    out = wrap_xr(sm, coarse.odc.geobox)
    out.attrs["units"] = "people per cell"
    return out


def surface_to_communities(surface: xr.DataArray, communities: gpd.GeoDataFrame, /, *,
                           community_id_col: str = "community_id") -> pd.Series:
    """People per community from a people-per-cell surface (exact-coverage sums). Eager.

    Returns
    -------
    pandas.Series
        Population per community, in ``communities`` order (0 where the surface is absent).
    """
    from eocube.zonal import zonal_stats

    s = zonal_stats(surface, communities, stats=["sum"], method="exact",
                    id_col=community_id_col)["sum"]
    return pd.Series(s.values, index=s["zone"].values).reindex(
        communities[community_id_col]).fillna(0.0)
