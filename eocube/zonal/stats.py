"""Zonal statistics of lazy cubes over polygon zones, chunk by chunk.

Per spatial chunk, the coverage block (a sparse zones × pixels matrix, see ``coverage.py``)
meets the values of every time step and band at once and yields per-zone *partial aggregates*;
partials of the chunks are merged by a dask tree reduction, so a zone straddling chunks is
exact and the raster is never held whole.

Partials and how they merge:

* ``n = Σc``, ``sum = Σc·v`` (and ``Σc·w``, ``Σc·w·v`` with weights): added.
* variance: per chunk West's weighted running mean / M2, merged with Chan's parallel formula.
* ``min`` / ``max``: over pixels with coverage > 0, merged with ``fmin`` / ``fmax``.
* ``median`` / ``majority``: a per-zone histogram ``value → Σc`` (identical values merged,
  so a categorical raster costs one entry per class and zone; a continuous one as many as the
  zone's distinct values, the price of an exact answer). The median is exactextract's weighted
  quantile (linear interpolation between values, coverage as weight), the majority the value
  with the largest covered area, ties to the greater value.

Coverage ``c`` is the covered fraction of the pixel (``method="exact"``) or 1 for pixels whose
centre is inside (``method="center"``); NaN and the raster's fill value (``nodata`` /
``_FillValue`` attribute or rioxarray's nodata, of any dtype: see :func:`nodata_value`) are
skipped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from eocube.errors import ConfigError, GridError
from eocube.zonal.coverage import Coverage, CoverageBlock, zonal_coverage

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["STATS", "zonal_stats", "zonal_sums"]

STATS = ("sum", "mean", "count", "min", "max", "std", "variance", "median", "majority",
         "weighted_sum", "weighted_mean", "weighted_count", "weighted_std",
         "weighted_variance")
_ALIASES = {"stdev": "std", "var": "variance", "mode": "majority",
            "weighted_stdev": "weighted_std", "weighted_var": "weighted_variance"}
# fields of the moment partial (see kernels.block_moments)
_N, _SUM, _MEAN, _M2, _MIN, _MAX, _WN, _WSUM, _WMEAN, _WM2 = range(10)


@dataclass(frozen=True)
class _Opts:
    weighted: bool
    want_var: bool
    want_minmax: bool
    want_hist: bool
    nodata: float | None


def _parse_stats(stats: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(stats, str):
        stats = (stats,)
    out = []
    for s in stats:
        name = _ALIASES.get(s, s)
        if name not in STATS:
            raise ConfigError(f"Unknown zonal statistic {s!r}; choose from {list(STATS)}.")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError("stats is empty; ask for at least one statistic, e.g. stats=['mean'].")
    return tuple(out)


def _empty_partial(nl: int) -> dict[str, Any]:
    return {"zones": np.zeros(0, np.int64), "m": np.zeros((10, 0, nl)), "hist": None}


def _hist_reduce(lead: np.ndarray, zone: np.ndarray, val: np.ndarray, cov: np.ndarray):
    order = np.lexsort((val, zone, lead))
    lead, zone, val, cov = lead[order], zone[order], val[order], cov[order]
    if lead.size == 0:
        return lead, zone, val, cov
    new = np.r_[True, (lead[1:] != lead[:-1]) | (zone[1:] != zone[:-1]) | (val[1:] != val[:-1])]
    starts = np.flatnonzero(new)
    return lead[starts], zone[starts], val[starts], np.add.reduceat(cov, starts)


def _partial(values: np.ndarray, block: CoverageBlock, weights: np.ndarray | None,
             opts: _Opts) -> dict[str, Any]:
    from eocube.zonal.kernels import block_moments

    nl = math.prod(values.shape[:-2])
    if block.zones.size == 0:
        return _empty_partial(nl)
    v = np.ascontiguousarray(values.reshape(nl, -1), dtype=np.float64)
    if opts.nodata is not None and not np.isnan(opts.nodata):
        v = np.where(v == opts.nodata, np.nan, v)
    w = (np.ascontiguousarray(weights.reshape(nl, -1), dtype=np.float64)
         if weights is not None else np.zeros((1, 1)))
    m = block_moments(block.indptr, block.pix, block.weight, v, w, opts.weighted,
                      opts.want_var, opts.want_minmax)
    hist = None
    if opts.want_hist:
        zrep = np.repeat(block.zones, np.diff(block.indptr))
        vals = v[:, block.pix].T.ravel()
        keep = ~np.isnan(vals)
        hist = _hist_reduce(np.tile(np.arange(nl), block.nnz)[keep],
                            np.repeat(zrep, nl)[keep], vals[keep],
                            np.repeat(block.weight.astype(np.float64), nl)[keep])
    return {"zones": block.zones, "m": m, "hist": hist}


def _merge(parts: list[dict[str, Any]], opts: _Opts) -> dict[str, Any]:
    parts = [p for p in parts if p["zones"].size]
    if len(parts) <= 1:
        return parts[0] if parts else _empty_partial(0)
    z = np.concatenate([p["zones"] for p in parts])
    m = np.concatenate([p["m"] for p in parts], axis=1)
    order = np.argsort(z, kind="stable")
    z, m = z[order], m[:, order]
    starts = np.flatnonzero(np.r_[True, z[1:] != z[:-1]])
    inv = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, z.size]))
    out = np.zeros((10, starts.size, m.shape[2]))
    out[_N] = np.add.reduceat(m[_N], starts, axis=0)
    out[_SUM] = np.add.reduceat(m[_SUM], starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if opts.want_var:
            _chan(m, out, starts, inv, _N, _MEAN, _M2)
        if opts.weighted:
            out[_WN] = np.add.reduceat(m[_WN], starts, axis=0)
            out[_WSUM] = np.add.reduceat(m[_WSUM], starts, axis=0)
            if opts.want_var:
                _chan(m, out, starts, inv, _WN, _WMEAN, _WM2)
    if opts.want_minmax:
        out[_MIN] = np.fmin.reduceat(m[_MIN], starts, axis=0)
        out[_MAX] = np.fmax.reduceat(m[_MAX], starts, axis=0)
    hist = None
    if opts.want_hist:
        hs = [p["hist"] for p in parts]
        hist = _hist_reduce(*(np.concatenate([h[i] for h in hs]) for i in range(4)))
    return {"zones": z[starts], "m": out, "hist": hist}


def _chan(m, out, starts, inv, n, mean, m2) -> None:
    """Chan et al.'s pairwise variance merge, for any number of partials per group."""
    tot = out[n]
    mu = np.add.reduceat(m[n] * m[mean], starts, axis=0) / tot
    mu = np.where(tot > 0, mu, 0.0)
    out[mean] = mu
    out[m2] = np.add.reduceat(m[m2] + m[n] * (m[mean] - mu[inv]) ** 2, starts, axis=0)


def _finalize(part: dict[str, Any], outside: np.ndarray, lead_shape: tuple[int, ...],
              stats: tuple[str, ...]) -> np.ndarray:
    from eocube.zonal.kernels import group_quantile_mode

    nz = outside.size
    nl = math.prod(lead_shape)
    zones, m = part["zones"], part["m"]

    def dense(field: int, fill: float = 0.0) -> np.ndarray:
        a = np.full((nz, nl), fill)
        if zones.size:
            a[zones] = m[field]
        return a

    res = np.full((nz, nl, len(stats)), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = dense(_N)
        wn = dense(_WN)
        for i, s in enumerate(stats):
            if s == "sum":
                r = dense(_SUM)
            elif s == "count":
                r = n
            elif s == "mean":
                r = np.where(n > 0, dense(_SUM) / n, np.nan)
            elif s in ("std", "variance"):
                r = np.where(n > 0, np.maximum(dense(_M2) / n, 0.0), np.nan)
                r = np.sqrt(r) if s == "std" else r
            elif s == "min":
                r = dense(_MIN, np.nan)
            elif s == "max":
                r = dense(_MAX, np.nan)
            elif s == "weighted_sum":
                r = dense(_WSUM)
            elif s == "weighted_count":
                r = wn
            elif s == "weighted_mean":
                r = np.where(wn != 0, dense(_WSUM) / wn, np.nan)
            elif s in ("weighted_std", "weighted_variance"):
                r = np.where(wn > 0, np.maximum(dense(_WM2) / wn, 0.0), np.nan)
                r = np.sqrt(r) if s == "weighted_std" else r
            else:  # median, majority
                r = np.full((nz, nl), np.nan)
                lead, zone, val, cov = part["hist"] if part["hist"] is not None else ((),) * 4
                if len(lead):
                    g = np.flatnonzero(np.r_[True, (lead[1:] != lead[:-1])
                                             | (zone[1:] != zone[:-1])])
                    quant, mode = group_quantile_mode(np.r_[g, len(lead)].astype(np.int64),
                                                      val, cov, 0.5)
                    r[zone[g], lead[g]] = quant if s == "median" else mode
            res[:, :, i] = r
    res[outside] = np.nan
    return res.transpose(1, 0, 2).reshape(*lead_shape, nz, len(stats))


#: attributes that name a raster's fill value (CF, GDAL/rioxarray, the old xarray.open_rasterio)
_NODATA_ATTRS = ("_FillValue", "missing_value", "fill_value", "nodata")


def nodata_value(data: xr.DataArray, /) -> float | None:
    """The fill value that marks missing pixels of ``data``, ``None`` if it has none.

    Looked up as rioxarray does: the attributes ``_FillValue``, ``missing_value``,
    ``fill_value``, ``nodata`` (then ``nodatavals``), then ``.rio.nodata`` where rioxarray
    holds one; then the encoded fill (``encoding["_FillValue"]``, ``.rio.encoded_nodata``)
    unless the encoding also scales the values (the fill is then in raw units, and a masked
    read has already turned it into NaN). The value is cast to the data's dtype first, so a
    float32 raster matches a fill written as a float64 attribute. A NaN fill is returned as
    NaN (nothing to mask beyond NaN itself).

    Parameters
    ----------
    data
        A raster of any dtype.

    Returns
    -------
    float or None
    """
    import sys

    nd = next((data.attrs[k] for k in _NODATA_ATTRS if data.attrs.get(k) is not None), None)
    if nd is None:
        vals = data.attrs.get("nodatavals")
        if vals is not None and len(np.atleast_1d(vals)):
            nd = np.atleast_1d(vals)[0]
    if nd is None and "rioxarray" in sys.modules:
        # a value given with .rio.set_nodata lives on the accessor, not in the attributes
        rio = data.rio
        nd = rio.nodata if rio.encoded_nodata is None else None
    enc = data.encoding
    if nd is None and enc.get("_FillValue") is not None and not (
            "scale_factor" in enc or "add_offset" in enc):
        nd = enc["_FillValue"]
    if nd is None:
        return None
    if data.dtype.kind not in "iuf":
        return None
    try:
        value = float(nd)
        cast = float(np.asarray(value).astype(data.dtype))
    except (TypeError, ValueError, OverflowError):
        return None
    if data.dtype.kind in "iu" and cast != value:
        return None  # e.g. nodata=-1 on uint8: no pixel can hold it (the cast would wrap)
    return cast


def mask_nodata(data: xr.DataArray, /) -> xr.DataArray:
    """``data`` with its fill value (:func:`nodata_value`) turned into NaN, lazily; as it is
    when it has none. Other attributes are kept."""
    nd = nodata_value(data)
    if nd is None or np.isnan(nd):
        return data
    return data.where(data != nd).assign_attrs(
        {k: v for k, v in data.attrs.items() if k not in (*_NODATA_ATTRS, "nodatavals")})


def zonal_stats(
    data: xr.DataArray | xr.Dataset,
    zones: gpd.GeoDataFrame | gpd.GeoSeries | Coverage,
    /,
    *,
    stats: str | Sequence[str] = ("mean",),
    method: Literal["exact", "center"] = "exact",
    weights: xr.DataArray | None = None,
    id_col: str | None = None,
    split_every: int = 8,
) -> xr.Dataset:
    """Statistics of ``data`` over each zone, for every time step and band.

    Parameters
    ----------
    data
        A cube with a GeoBox: any leading dims (``time``, ``band`` …) and two spatial dims.
        Dask-backed data gives a lazy result with the same leading chunks; numpy data an
        eager one (same code, run at once). A Dataset is stacked along a new ``band`` dim.
        Pixels equal to the fill value (:func:`nodata_value`: the ``_FillValue`` / ``nodata``
        attribute ``rioxarray.open_rasterio`` sets, or ``.rio.nodata``), per variable of a
        Dataset, are skipped like NaN, whatever the dtype.
    zones
        Polygons (GeoDataFrame / GeoSeries with a CRS, reprojected to the cube's CRS when
        needed, invalid ones repaired with a warning), or a :class:`Coverage` already built
        for this grid, to share one coverage pass across many calls (the cube is then
        rechunked, lazily, to the Coverage's spatial chunks).
    stats
        Any of :data:`STATS` (``stdev`` and ``mode`` are accepted aliases). ``weighted_*``
        need ``weights``. Definitions follow exactextract: ``count = Σc``, ``sum = Σc·v``,
        ``mean = sum / count``, population ``std``; ``weighted_sum = Σc·w·v``,
        ``weighted_count = Σc·w``, ``weighted_mean = weighted_sum / weighted_count``.
    method
        ``"exact"``: ``c`` is the covered fraction of each pixel. ``"center"``: ``c = 1`` for
        pixels whose centre is inside the zone. Ignored when ``zones`` is a Coverage.
    weights
        A raster on the same grid, broadcast against ``data`` (e.g. a population grid without
        a time dim).
    id_col
        Column of ``zones`` holding the zone ids (default: the index).
    split_every
        Fan-in of the tree reduction across chunks.

    Returns
    -------
    xarray.Dataset
        One variable per statistic, dims ``(*leading dims, "zone")``; coordinate ``zone``
        holds the ids (join back with ``zones.join(ds.to_dataframe(), on=...)``) and the
        boolean coordinate ``outside`` flags zones that miss the raster (their statistics are
        NaN). Zones on the raster with no valid pixel get ``sum = count = 0`` and NaN others.

    Raises
    ------
    ConfigError
        Unknown statistic, weighted statistic without weights.
    GridError
        No GeoBox, a rotated grid, a Coverage or weights for a different grid.
    ZoneError
        Unusable zones (no CRS, not polygons, duplicated ids).

    Examples
    --------
    >>> from odc.geo.geobox import GeoBox
    >>> from odc.geo.xr import xr_zeros
    >>> import geopandas as gpd, shapely
    >>> gbox = GeoBox.from_bbox((0, 0, 100, 100), "EPSG:32650", resolution=10)
    >>> cube = xr_zeros(gbox, dtype="float64") + 1.0
    >>> zones = gpd.GeoDataFrame(geometry=[shapely.box(5, 5, 25, 25)], crs="EPSG:32650")
    >>> float(zonal_stats(cube, zones, stats=["count"])["count"][0])
    4.0
    """
    import dask.array as da
    import xarray as xr
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    stats = _parse_stats(stats)
    if split_every < 2:
        raise ConfigError(f"split_every must be at least 2, not {split_every}.")
    if isinstance(data, xr.Dataset):
        if "band" in data.dims:
            raise ConfigError("The Dataset already has a 'band' dim; pass one DataArray.")
        # per-band nodata would be lost in the stack: mask it (lazily) first
        data = xr.Dataset({k: mask_nodata(v) for k, v in data.data_vars.items()}
                          ).to_dataarray(dim="band")
    # before any other xarray operation: a value set with .rio.set_nodata lives on this object
    nodata = nodata_value(data)
    geobox = data.odc.geobox
    if geobox is None:
        raise GridError(
            "zonal_stats needs a cube with a GeoBox (CRS and spatial coords); load it with "
            "odc-stac or assign one with data.odc.assign_crs(...)."
        )
    ydim, xdim = data.odc.spatial_dims
    lead_dims = [d for d in data.dims if d not in (ydim, xdim)]
    data = data.transpose(*lead_dims, ydim, xdim)
    weighted = any(s.startswith("weighted_") for s in stats)
    if weighted and weights is None:
        raise ConfigError(
            f"{[s for s in stats if s.startswith('weighted_')]} need a weights raster: pass "
            "weights=<DataArray on the same grid>."
        )

    eager = not isinstance(data.data, da.Array)
    if isinstance(zones, Coverage):
        cov = zones
        if cov.geobox != geobox:
            raise GridError(
                "The Coverage was built for another grid; build it from this cube with "
                "zonal_coverage(zones, cube)."
            )
    else:
        cov_chunks = None if eager else (data.chunks[-2], data.chunks[-1])
        cov = zonal_coverage(zones, geobox, method=method, chunks=cov_chunks, id_col=id_col)

    lead_chunks = tuple((n,) for n in data.shape[:-2]) if eager else data.chunks[:-2]
    chunks = (*lead_chunks, *cov.chunks)
    arr = da.from_array(data.data, chunks=chunks) if eager else data.data.rechunk(chunks)

    warr = None
    if weights is not None:
        if weights.odc.geobox != geobox:
            raise GridError("weights must be on the same grid (GeoBox) as data.")
        extra = set(weights.dims) - set(data.dims)
        if extra:
            raise GridError(f"weights has dims {sorted(extra)} that data lacks.")
        wb = mask_nodata(weights).broadcast_like(data).transpose(*data.dims)
        warr = (wb.data.rechunk(chunks) if isinstance(wb.data, da.Array)
                else da.from_array(np.asarray(wb.data), chunks=chunks))

    opts = _Opts(weighted=weighted,
                 want_var=any(s.endswith(("std", "variance")) for s in stats),
                 want_minmax=any(s in ("min", "max") for s in stats),
                 want_hist=any(s in ("median", "majority") for s in stats),
                 nodata=nodata)

    token = tokenize(arr.name, None if warr is None else warr.name, cov.name, stats, opts,
                     split_every)
    pname, mname, oname = (f"zonal-{p}-{token}" for p in ("partial", "merge", "stats"))
    okey = oname + "-outside"
    layer: dict[Any, Any] = dict(cov.layer)
    layer[okey] = cov.outside
    nyb, nxb = cov.block_shape
    for lead in itertools.product(*(range(len(c)) for c in lead_chunks)):
        keys: list[Any] = []
        for iy in range(nyb):
            for ix in range(nxb):
                k = (pname, *lead, iy, ix)
                wkey = None if warr is None else (warr.name, *lead, iy, ix)
                layer[k] = (_partial, (arr.name, *lead, iy, ix), (cov.name, iy, ix), wkey, opts)
                keys.append(k)
        level = 0
        while len(keys) > 1:
            nxt = []
            for j in range(0, len(keys), split_every):
                nk = (mname, level, *lead, j // split_every)
                layer[nk] = (_merge, keys[j:j + split_every], opts)
                nxt.append(nk)
            keys, level = nxt, level + 1
        shape = tuple(int(lead_chunks[d][i]) for d, i in enumerate(lead))
        layer[(oname, *lead, 0, 0)] = (_finalize, keys[0], okey, shape, stats)
    deps = [arr] if warr is None else [arr, warr]
    hlg = HighLevelGraph.from_collections(oname, layer, dependencies=deps)
    out = da.Array(hlg, oname, chunks=(*lead_chunks, (cov.nzones,), (len(stats),)),
                   dtype=np.float64)

    coords: dict[str, Any] = {
        name: c for name, c in data.coords.items()
        if set(c.dims) <= set(lead_dims) and c.dims and name not in (ydim, xdim)
    }
    coords.update({d: data.coords[d] for d in lead_dims if d in data.coords})
    coords["zone"] = np.asarray(cov.zone)
    coords["outside"] = ("zone", cov.outside)
    units = data.attrs.get("units")
    variables = {}
    for i, s in enumerate(stats):
        attrs = {"method": cov.method}
        if units is not None and s not in ("count", "weighted_count", "variance",
                                           "weighted_variance"):
            attrs["units"] = units
        variables[s] = xr.Variable((*lead_dims, "zone"), out[..., i], attrs=attrs)
    ds = xr.Dataset(variables, coords=coords, attrs={"zonal_method": cov.method})
    if cov.zone.name is not None:
        ds["zone"].attrs["long_name"] = str(cov.zone.name)
    return ds.compute() if eager else ds


def zonal_sums(
    rasters: Mapping[str, xr.DataArray],
    zones: gpd.GeoDataFrame | gpd.GeoSeries,
    /,
    *,
    method: Literal["exact", "center"] = "exact",
    density: bool | Mapping[str, bool] = False,
    id_col: str | None = None,
) -> xr.Dataset:
    """Sums of several rasters of different resolutions over the same zones.

    Each raster keeps its own grid (NTL at 500 m, mobile signal at 100 m …): the zones are
    covered once per grid and summed there, so nothing is resampled.

    Parameters
    ----------
    rasters
        Name → cube. Leading dims (``time`` …) are kept.
    zones
        Polygon zones with a CRS.
    method
        Coverage rule, as in :func:`zonal_stats`.
    density
        Whether a raster holds a quantity per unit area (per m² of its CRS); such a raster is
        multiplied by the pixel area, so the sum is the zone total. Per raster or for all.
    id_col
        Column of ``zones`` holding the zone ids.

    Returns
    -------
    xarray.Dataset
        One variable per raster, dims ``(*leading dims, "zone")``; lazy if the rasters are.
    """
    import xarray as xr

    if not rasters:
        raise ConfigError("rasters is empty; pass a mapping name → DataArray.")
    out = {}
    for name, r in rasters.items():
        per_area = density.get(name, False) if isinstance(density, Mapping) else density
        # mask the fill before the arithmetic below drops the attribute that names it
        r = mask_nodata(r)
        if per_area:
            res = r.odc.geobox.resolution
            r = r * abs(res.x * res.y)
        out[name] = zonal_stats(r, zones, stats=["sum"], method=method, id_col=id_col)["sum"]
    return xr.Dataset(out)
