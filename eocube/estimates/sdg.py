"""SDG 11.3.1: the ratio of land consumption rate to population growth rate (LCRPGR).

Built-up maps at two dates (from change detection or truth) and population at the same dates
(census) → LCR, PGR and LCRPGR per city and per zone. The last stage of the flow before the
report: tables out, written with :func:`eocube.estimates.to_geoparquet`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from eocube.errors import EstimateError

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["lcrpgr", "sdg_rates"]

#: a pair of values at the two dates: a tuple, a list or an array of shape (2, …)
ArrayLike = tuple[Any, Any] | list[Any] | np.ndarray


def sdg_rates(urban: ArrayLike, /, *, population: ArrayLike, years: float,
              on_invalid: Literal["raise", "nan"] = "raise",
              names: np.ndarray | None = None) -> pd.DataFrame:
    """LCR = ln(Urb₂/Urb₁)/y, PGR = ln(Pop₂/Pop₁)/y and LCRPGR = LCR/PGR.

    Parameters
    ----------
    urban
        Built-up area at the two dates (any area unit): ``(urb_t1, urb_t2)``, each a scalar
        or an array over zones (an array of shape ``(2, …)``).
    population
        Population at the two dates, ``(pop_t1, pop_t2)``, shaped like ``urban``.
    years
        Years between the dates (> 0).
    on_invalid
        What to do where a ratio is undefined — zero population growth (PGR = 0), a zero or
        negative population or built-up area at either date: ``"raise"`` an
        :class:`~eocube.errors.EstimateError` naming the zone, or ``"nan"`` and a ``note``.
    names
        Zone names used in messages and the ``zone`` column.

    Returns
    -------
    pandas.DataFrame
        ``zone, urb_t1, urb_t2, pop_t1, pop_t2, years, LCR, PGR, LCRPGR, note``.

    Examples
    --------
    >>> df = sdg_rates((100.0, 121.0), population=(1000.0, 1100.0), years=2)
    >>> round(float(df["LCRPGR"].iloc[0]), 3)
    2.0
    """
    if not years > 0:
        raise EstimateError(f"years={years} must be positive; the two dates must differ.")
    pairs = {}
    for what, v in (("urban", urban), ("population", population)):
        if len(v) != 2:
            raise EstimateError(f"{what} must hold the two dates, (t1, t2), got {len(v)} "
                                "entries.")
        pairs[what] = v
    u1, u2, p1, p2 = (np.atleast_1d(np.asarray(v, dtype=np.float64))
                      for v in (*pairs["urban"], *pairs["population"]))
    u1, u2, p1, p2 = np.broadcast_arrays(u1, u2, p1, p2)
    zone = np.arange(u1.size) if names is None else np.asarray(names)
    note = np.full(u1.size, "", dtype=object)
    bad_u = (u1 <= 0) | (u2 <= 0)
    bad_p = (p1 <= 0) | (p2 <= 0)
    flat = ~bad_p & (p1 == p2)
    note[bad_u] = "no built-up area at a date"
    note[bad_p] = "no population at a date"
    note[flat] = "zero population growth (PGR = 0): LCRPGR undefined"
    bad = bad_u | bad_p | flat
    if bad.any() and on_invalid == "raise":
        i = int(np.flatnonzero(bad)[0])
        raise EstimateError(
            f"LCRPGR is undefined for zone {zone[i]!r}: {note[i]} (built-up {u1[i]:g} → "
            f"{u2[i]:g}, population {p1[i]:g} → {p2[i]:g}). Pass on_invalid='nan' to get NaN "
            "and a note for such zones instead.")
    with np.errstate(divide="ignore", invalid="ignore"):
        lcr = np.where(bad_u, np.nan, np.log(u2 / u1) / years)
        pgr = np.where(bad_p, np.nan, np.log(p2 / p1) / years)
        ratio = np.where(bad, np.nan, lcr / pgr)
    return pd.DataFrame({"zone": zone, "urb_t1": u1, "urb_t2": u2, "pop_t1": p1, "pop_t2": p2,
                         "years": float(years), "LCR": lcr, "PGR": pgr, "LCRPGR": ratio,
                         "note": note})


def _years_between(builtup: xr.DataArray, dim: str) -> float:
    c = builtup[dim].values
    if np.issubdtype(c.dtype, np.datetime64):
        return float((c[1] - c[0]) / np.timedelta64(1, "D") / 365.25)
    return float(c[1] - c[0])


def lcrpgr(
    builtup: xr.DataArray,
    /,
    *,
    population: pd.DataFrame | Mapping[str, float] | tuple[float, float],
    zones: gpd.GeoDataFrame | None = None,
    id_col: str = "community_id",
    pop_cols: tuple[str, str] = ("pop_start", "pop_end"),
    dim: str | None = None,
    years: float | None = None,
    on_invalid: Literal["raise", "nan"] = "raise",
) -> pd.DataFrame:
    """SDG 11.3.1 per city (and per zone) from built-up maps at two dates and population.

    Built-up area at each date is the sum of the built-up raster (0/1 or a fraction) times the
    pixel area — over the whole raster for the city, by exact coverage per zone.
    Eager: the built-up sums are computed.

    Parameters
    ----------
    builtup
        Built-up map with a GeoBox and a leading dim of length 2 (``year`` as integers or
        ``time`` as datetimes) holding the two dates, earlier first.
    population
        For the city only: ``(pop_t1, pop_t2)``. With ``zones``: a table with ``id_col`` and
        the two ``pop_cols`` (a census), whose sums give the city row.
    zones
        Optional zones (with ``id_col``) for per-zone rates.
    id_col, pop_cols
        Columns of ``zones`` / ``population``.
    dim
        The date dim (default: the one non-spatial dim).
    years
        Years between the dates (default: from the ``dim`` coordinate).
    on_invalid
        See :func:`sdg_rates`; applies to zones; the city row always raises.

    Returns
    -------
    pandas.DataFrame
        One row for the city (``zone == "city"``) and one per zone, columns as
        :func:`sdg_rates`; ``urb_*`` in m².
    """
    from eocube.zonal import zonal_stats

    if builtup.odc.geobox is None:
        raise EstimateError("builtup needs a GeoBox (CRS and coords); wrap it with "
                            "odc.geo.xr.wrap_xr(array, geobox).")
    ydim, xdim = builtup.odc.spatial_dims
    lead = [d for d in builtup.dims if d not in (ydim, xdim)]
    dim = dim or (lead[0] if len(lead) == 1 else None)
    if dim is None or builtup.sizes.get(dim) != 2:
        raise EstimateError(
            f"builtup must have one date dim of length 2 (got dims {builtup.dims!r}); "
            "stack the two maps with xr.concat([b1, b2], dim='year').")
    y = float(years) if years is not None else _years_between(builtup, dim)
    res = builtup.odc.geobox.resolution
    px_area = abs(res.x * res.y)
    b = builtup.transpose(dim, ydim, xdim).astype("float64")
    city_urb = (b.sum(dim=(ydim, xdim)) * px_area).values
    if zones is None:
        if isinstance(population, pd.DataFrame):
            raise EstimateError("population is a table but no zones were given; pass zones= "
                                "or population=(pop_t1, pop_t2).")
        p1, p2 = (population[pop_cols[0]], population[pop_cols[1]]) if isinstance(
            population, Mapping) else population
        return sdg_rates(city_urb, population=(p1, p2), years=y, names=np.array(["city"]))
    if not isinstance(population, pd.DataFrame):
        raise EstimateError("with zones, population must be a table with "
                            f"{id_col!r} and {list(pop_cols)}.")
    missing = [c for c in (id_col, *pop_cols) if c not in population.columns]
    if missing:
        raise EstimateError(f"population lacks columns {missing}; it has "
                            f"{list(population.columns)}.")
    zs = zonal_stats(b, zones, stats=["sum"], method="exact", id_col=id_col)["sum"].compute()
    zurb = zs.transpose(dim, "zone").values * px_area
    zid = zs["zone"].values
    pop = population.set_index(id_col).reindex(zid)
    city = sdg_rates(city_urb, population=(float(population[pop_cols[0]].sum()),
                                           float(population[pop_cols[1]].sum())),
                     years=y, names=np.array(["city"]))
    per_zone = sdg_rates(zurb, population=(pop[pop_cols[0]].to_numpy(),
                                           pop[pop_cols[1]].to_numpy()),
                         years=y, on_invalid=on_invalid, names=zid)
    return pd.concat([city, per_zone], ignore_index=True)
