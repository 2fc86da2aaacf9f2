"""Zonal features: per-zone sums and within-zone variances of feature rasters, the TAZ
features of the population model (NTL, POI kernel density, night mobile signal).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from eocube.errors import ZoneError
from eocube.zonal.stats import mask_nodata, zonal_stats

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["taz_features"]


def taz_features(rasters: Mapping[str, xr.DataArray], taz: gpd.GeoDataFrame, /, *,
                 id_col: str = "taz_id", method: Literal["exact", "center"] = "exact"
                 ) -> xr.Dataset:
    """Per-TAZ sums and within-zone pixel variances of feature rasters (lazy).

    Each raster keeps its own grid (``eocube.zonal.zonal_stats`` covers the zones once per
    grid). The variance is taken of the raster divided by its range over the grid, so that
    the informativeness ``σ_j = Σ_zones var`` of :func:`eocube.estimates.deff` is unit-free
    and comparable between features. A raster's fill value (``nodata`` / ``_FillValue``) is
    left out like NaN.

    Parameters
    ----------
    rasters
        Name → 2-D raster with a GeoBox (e.g. ``ntl``, ``poi_kde``, ``mobile_weekday``,
        ``mobile_weekend`` at ~100 m).
    taz
        TAZ polygons with ``id_col``.
    id_col
        TAZ id column.
    method
        Coverage rule of the zonal statistics.

    Returns
    -------
    xarray.Dataset
        Variables ``<name>`` (sum) and ``<name>_var`` (variance of the range-normalised raster)
        on dim ``zone``; lazy where the rasters are.

    Raises
    ------
    ZoneError
        No raster, or a raster with dims beyond its two spatial ones.
    """
    import xarray as xr

    if not rasters:
        raise ZoneError("taz_features needs at least one raster: pass a mapping name → "
                        "DataArray, e.g. {'ntl': ntl}.")

    out = {}
    for name, r in rasters.items():
        r = mask_nodata(r)  # a fill value would enter the range and the sums
        ydim, xdim = r.odc.spatial_dims
        extra = [d for d in r.dims if d not in (ydim, xdim)]
        if extra:
            raise ZoneError(f"raster {name!r} has extra dims {extra}; reduce them first "
                            "(e.g. .mean('time')).")
        rng = r.max() - r.min()
        scaled = r / xr.where(rng > 0, rng, 1.0)
        s = zonal_stats(r, taz, stats=["sum"], method=method, id_col=id_col)["sum"]
        v = zonal_stats(scaled, taz, stats=["variance"], method=method, id_col=id_col)[
            "variance"]
        out[name] = s.drop_vars("outside", errors="ignore")
        out[f"{name}_var"] = v.drop_vars("outside", errors="ignore")
    return xr.Dataset(out)
