"""Load STAC items into a lazy cube: a Dataset of (time, y, x) variables on one GeoBox, in
physical units, with nodata as NaN.

odc-stac is the engine; stackstac can be chosen and gives the same contract (same grid, same
names, same units). Nothing is read when the cube is built: the graph holds a few tasks per
chunk (one when the tiles lie on the output grid, see ``_pasted``), and metadata comes from
the STAC items alone. With odc-stac the reader scales as it
reads, so a chunk is final when its load task ends (no scaling layer, except the marker → NaN
pass under ``on_error="nan"``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from eocube.catalog.profiles import BandSpec, SensorProfile, get_profile, profile_for_item
from eocube.cube._read import FAILED, FUSER, OnError, fuse_finite_first, odc_driver, read_error
from eocube.cube.gdal import ensure_configured, stackstac_env
from eocube.errors import ConfigError, EmptySearchError, GridError, ReadError

Engine = Literal["odc", "stackstac"]
Groupby = Literal["solar_day", "time"]
DEFAULT_CHUNKS = {"x": 2048, "y": 2048}
#: name of the variable that records read failures under ``on_error="nan"``
FAILURES = "read_failed"


def _items(items: Iterable[Any]) -> list[Any]:
    import pystac

    out = []
    for it in items:
        if isinstance(it, Mapping):
            it = pystac.Item.from_dict(dict(it))
        out.append(it)
    if not out:
        raise EmptySearchError("no items to load; search returned nothing or the list is empty")
    return out


def _solar_day(item: Any) -> _dt.date:
    """The local solar date of the acquisition (UTC + longitude / 15 h), as odc-stac uses."""
    import shapely

    t = _nominal(item)
    if item.geometry is not None:
        lon = shapely.geometry.shape(item.geometry).centroid.x
    else:
        lon = 0.5 * (item.bbox[0] + item.bbox[2])
    return (t + _dt.timedelta(hours=lon / 15.0)).date()


def _nominal(item: Any) -> _dt.datetime:
    return item.datetime or _dt.datetime.fromisoformat(
        item.properties["start_datetime"].replace("Z", "+00:00"))


def group_items(items: Sequence[Any], /, *, groupby: Groupby = "solar_day") -> list[list[Any]]:
    """Items grouped into time steps and sorted as the loaders stack them."""
    if groupby not in ("solar_day", "time"):
        raise ConfigError(f"groupby={groupby!r}; use 'solar_day' (one step per local day, "
                          "tiles of one overpass fused) or 'time' (one step per timestamp)")
    key = _solar_day if groupby == "solar_day" else _nominal
    keyed = sorted(((key(it), _nominal(it), it.id, i) for i, it in enumerate(items)))
    groups: list[list[Any]] = []
    last: Any = object()
    for k, _, _, i in keyed:
        it = items[i]
        if k != last:
            groups.append([])
            last = k
        groups[-1].append(it)
    return groups


# ---- the grid ---------------------------------------------------------------------------

def _proj_code(p: Mapping[str, Any]) -> str | None:
    """The CRS of an item's ``proj:code`` or ``proj:epsg`` property; None without either."""
    return p.get("proj:code") or (f"EPSG:{p['proj:epsg']}" if p.get("proj:epsg") else None)


def _item_crs(items: Sequence[Any]) -> str:
    from collections import Counter

    codes = Counter()
    for it in items:
        code = _proj_code(it.properties)
        if code:
            codes[code] += 1
    if not codes:
        raise GridError("the items carry no proj:code/proj:epsg; pass crs= and resolution= "
                        "or geobox=")
    return codes.most_common(1)[0][0]


def target_geobox(items: Sequence[Any], /, *, profile: SensorProfile, bands: Sequence[str],
                  geobox: Any = None, like: Any = None, crs: Any = None,
                  resolution: float | None = None, bbox: Sequence[float] | None = None) -> Any:
    """The output GeoBox: ``geobox``, ``like``'s, or one built from CRS + resolution + bbox.

    ``bbox`` is (west, south, east, north) in degrees; without it the items' footprints are
    covered. Without ``crs`` the items' most common CRS is used, without ``resolution`` the
    finest native resolution among ``bands``. Pixel edges sit on multiples of the resolution.
    """
    from odc.geo.crs import CRS
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import BoundingBox

    given = [x is not None for x in (geobox, like)]
    if sum(given) > 1 or (any(given) and any(x is not None for x in (crs, resolution, bbox))):
        raise ConfigError("give the grid one way: geobox=, like=, or crs=/resolution=/bbox=")
    if geobox is not None:
        return geobox
    if like is not None:
        gb = getattr(getattr(like, "odc", None), "geobox", None)
        if gb is None:
            raise GridError("like= has no GeoBox (no CRS or spatial coordinates); pass a cube "
                            "loaded by eocube.cube.load or a GeoBox as geobox=")
        return gb
    out_crs = CRS(crs if crs is not None else (profile.crs or _item_crs(items)))
    if resolution is None:
        native = [profile.band(b).resolution for b in bands if profile.band(b).resolution]
        if not native:
            raise ConfigError(f"no native resolution known for {list(bands)}; pass "
                              "resolution=")
        resolution = min(native)
        # native resolutions are in the product's own units: degrees for geographic products
        src_geographic = profile.crs is not None and CRS(profile.crs).geographic
        if src_geographic and not out_crs.geographic:
            resolution = resolution * 111_320.0
        elif not src_geographic and out_crs.geographic:
            resolution = resolution / 111_320.0
    if bbox is None:
        native = _native_bounds(items, out_crs)
        if native is not None:
            return GeoBox.from_bbox(native, out_crs, resolution=float(resolution), tight=False)
        bb = np.array([it.bbox for it in items], dtype=float)
        bbox = (bb[:, 0].min(), bb[:, 1].min(), bb[:, 2].max(), bb[:, 3].max())
    w, s, e, n = (float(v) for v in bbox)
    box = BoundingBox(w, s, e, n, crs="EPSG:4326").to_crs(out_crs)
    return GeoBox.from_bbox(box, out_crs, resolution=float(resolution), tight=False)


def _native_bounds(items: Sequence[Any], crs: Any) -> Any:
    """Union of the items' own grids when all of them are in ``crs`` (exact, no lon/lat
    round trip); None when some item lacks projection fields or uses another CRS."""
    from odc.geo.geom import BoundingBox
    from rasterio.transform import Affine

    boxes = []
    for it in items:
        p = it.properties
        code = _proj_code(p)
        shape, tr = p.get("proj:shape"), p.get("proj:transform")
        if code is None or shape is None or tr is None or crs != code:
            return None
        a = Affine(*tr[:6])
        xs, ys = zip(*(a * (c, r) for c, r in ((0, 0), (shape[1], shape[0]))), strict=True)
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    b = np.array(boxes)
    return BoundingBox(b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max(), crs=crs)


# ---- load ---------------------------------------------------------------------------------

def load(items: Iterable[Any], /, *, bands: Sequence[str] | None = None,
         profile: str | SensorProfile | None = None, geobox: Any = None, like: Any = None,
         crs: Any = None, resolution: float | None = None,
         bbox: Sequence[float] | None = None, chunks: Mapping[str, int] | None = None,
         groupby: Groupby = "solar_day", engine: Engine = "odc", on_error: OnError = "raise",
         resampling: str | Mapping[str, str] | None = None) -> xr.Dataset:
    """Load STAC items as a lazy cube in physical units.

    Parameters
    ----------
    items
        ``pystac.Item`` objects or item dicts (an ``ItemCollection`` from ``search``), all of
        one product.
    bands
        Band names or aliases of the profile (``"B04"`` or ``"red"``); variables are named as
        given. Default: every profile band the first item holds.
    profile
        Sensor profile or its name; default: the one matching the items' collection.
    geobox, like, crs, resolution, bbox
        The output grid (see ``target_geobox``); ``like`` takes another cube's GeoBox.
    chunks
        Dask chunk sizes by dimension name (``{"x": 1024, "y": 1024, "time": 1}``).
    groupby
        ``"solar_day"`` fuses the tiles of one overpass into one time step; ``"time"`` keeps
        one step per timestamp.
    engine
        ``"odc"`` (odc-stac) or ``"stackstac"``.
    on_error
        ``"raise"``: a failed read raises ``ReadError`` naming item and asset (at compute
        time; an asset missing from an item's metadata raises at once). ``"nan"``: its pixels
        become NaN (class bands: their nodata) and the boolean variable ``read_failed``
        (time, band) records where; ``read_failures(cube)`` lists them.
    resampling
        One method for every value band, or a method per band; default per the profile
        (nearest for class bands).

    Returns
    -------
    xarray.Dataset
        Variables (time, y, x): float32 in physical units with NaN for nodata; class bands
        (SCL) keep their integer dtype and carry ``nodata``. The GeoBox is
        ``cube.odc.geobox``; CRS in ``spatial_ref``.

    Raises
    ------
    ConfigError, GridError, ReadError, EmptySearchError

    Examples
    --------
    >>> cube = load(items, bands=["red", "nir", "SCL"], resolution=20,
    ...             chunks={"x": 512, "y": 512})  # doctest: +SKIP
    """
    if on_error not in ("raise", "nan"):
        raise ConfigError(f"on_error={on_error!r}; use 'raise' or 'nan'")
    if engine not in ("odc", "stackstac"):
        raise ConfigError(f"engine={engine!r}; use 'odc' or 'stackstac'")
    items = _items(items)
    prof = get_profile(profile) if profile is not None else profile_for_item(items[0])
    if bands is None:
        bands = list(prof.band_map(items[0]))
    bands = list(bands)
    if len(set(bands)) != len(bands):
        raise ConfigError(f"bands={bands} names a band twice")
    specs = {b: prof.band(b) for b in bands}
    gb = target_geobox(items, profile=prof, bands=bands, geobox=geobox, like=like, crs=crs,
                       resolution=resolution, bbox=bbox)
    if any(s.asset == "h5" for s in specs.values()):
        from eocube.cube.blackmarble import load_blackmarble

        return load_blackmarble(items, geobox=gb, profile=prof, bands=bands, chunks=chunks,
                                groupby=groupby, on_error=on_error)
    groups = group_items(items, groupby=groupby)
    table = _SourceTable(prof)
    keys = _asset_keys(groups, table, specs, on_error)
    methods = _resampling(specs, resampling)
    chunks = dict(DEFAULT_CHUNKS if chunks is None else chunks)
    ensure_configured()
    if engine == "stackstac":
        raw = _load_stackstac(items, groups, gb, keys, methods, chunks, on_error)
        return _finish(raw, groups, table, specs, keys, gb, on_error)
    # odc: the reader applies scale and offset as it reads (one pass, no extra graph layer)
    for b, s in specs.items():
        if not s.is_class:
            _scale_table(groups, table, b)  # one scale per time step, as for stackstac
    known = {k for it in items for k in it.assets}
    parts = {b: _odc_band(keys[b], known) for b in specs}
    scales = {(it.id, *parts[b]): table.scale_offset(it, b)
              for g in groups for it in g for b, s in specs.items()
              if not s.is_class and table.asset_key(it, b) is not None}
    raw = _load_pasted(groups, gb, parts, methods, chunks, on_error, scales)
    if raw is None:  # some tile is off the output grid: odc-stac plans the reads
        raw = _load_odc(items, gb, keys, methods, chunks, groupby, on_error, scales,
                        {a for a, _ in parts.values()})
    return _finish(raw, groups, table, specs, keys, gb, on_error, prescaled=True,
                   marked=on_error == "nan")


class _SourceTable:
    """The profile's per-item lookups, each answered once per load and item turned into a
    dict once (a ``pystac.Item`` would be serialised again on every lookup). Keyed by the
    item objects themselves, which the table keeps alive."""

    def __init__(self, prof: SensorProfile) -> None:
        self.prof = prof
        self._docs: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._memo: dict[tuple[str, int, str], Any] = {}

    def _doc(self, item: Any) -> dict[str, Any]:
        got = self._docs.get(id(item))
        if got is None:
            d = item if isinstance(item, Mapping) else item.to_dict(
                include_self_link=False, transform_hrefs=False)
            got = self._docs[id(item)] = (item, d)
        return got[1]

    def _ask(self, what: str, item: Any, band: str) -> Any:
        k = (what, id(item), band)
        if k not in self._memo:
            self._memo[k] = getattr(self.prof, what)(self._doc(item), band)
        return self._memo[k]

    def asset_key(self, item: Any, band: str) -> str | None:
        return self._ask("asset_key", item, band)

    def scale_offset(self, item: Any, band: str) -> tuple[float, float]:
        return self._ask("scale_offset", item, band)


def _odc_band(name: str, assets: set[str]) -> tuple[str, int]:
    """odc band name (``asset`` or ``asset.N``, see ``_asset_keys``) → (asset key, one-based
    band index); ``assets`` are the items' asset keys."""
    if name in assets:
        return name, 1
    asset, _, idx = name.rpartition(".")
    return asset, int(idx)


def _asset_keys(groups: list[list[Any]], table: _SourceTable, specs: dict[str, BandSpec],
                on_error: OnError) -> dict[str, str]:
    """Band → odc band name (asset key, ``asset.N`` for multi-band assets); raises on an item
    that lacks an asset under ``on_error='raise'``."""
    prof = table.prof
    out: dict[str, str] = {}
    for band, spec in specs.items():
        key = None
        for g in groups:
            for it in g:
                k = table.asset_key(it, band)
                if k is None:
                    if on_error == "raise":
                        raise missing_asset_error(it, band)
                    continue
                if key is not None and k != key:
                    raise ConfigError(f"band {band!r} is asset {key!r} in some items and {k!r} "
                                      f"in item {it.id!r}; load them separately")
                key = k
        if key is None:
            raise _no_asset_error(band, prof)
        n_bands = len(groups[0][0].assets[key].extra_fields.get("raster:bands", []) or [1])
        out[band] = f"{key}.{spec.asset_band}" if n_bands > 1 else key
    return out


def missing_asset_error(item: Any, band: str) -> Exception:
    """The ``ReadError`` for an item whose metadata lacks ``band``'s asset."""
    return read_error(item.id, band, "(no such asset in the item)",
                      KeyError(f"item has assets {sorted(item.assets)}"))


def _no_asset_error(band: str, prof: SensorProfile) -> Exception:
    return ReadError(f"no item holds band {band!r} of profile {prof.name!r}; its aliases are "
                     f"{list(prof.band(band).keys)}")


def _resampling(specs: dict[str, BandSpec], resampling: str | Mapping[str, str] | None
                ) -> dict[str, str]:
    out = {}
    for b, s in specs.items():
        if isinstance(resampling, Mapping):
            out[b] = resampling.get(b, s.resampling)
        elif isinstance(resampling, str) and not s.is_class:
            out[b] = resampling
        else:
            out[b] = s.resampling
    return out


def _load_odc(items: list[Any], gb: Any, keys: dict[str, str], methods: dict[str, str],
              chunks: dict[str, int], groupby: Groupby, on_error: OnError,
              scales: Mapping[tuple[str, str, int], tuple[float, float]],
              assets: set[str]) -> xr.Dataset:
    import odc.stac

    key = _solar_day if groupby == "solar_day" else _nominal
    step = [key(it) for it in items]  # odc-stac passes the item's index in ``items``
    asset_names = list(dict.fromkeys(keys.values()))
    ds = odc.stac.load(
        [_with_assets(it, assets) for it in items], bands=asset_names, geobox=gb, chunks=chunks,
        groupby=lambda item, parsed, idx: step[idx],
        resampling={keys[b]: m for b, m in methods.items()}, dtype="float32",
        driver=odc_driver(on_error, scales),
        # without failure markers odc-loader's own NaN fuser takes the first valid value
        fuse_func=FUSER if on_error == "nan" else None, fail_on_error=True, nodata=np.nan)
    return ds.rename({keys[b]: b for b in keys if keys[b] != b})[list(keys)]


def _load_pasted(groups: list[list[Any]], gb: Any, parts: dict[str, tuple[str, int]],
                 methods: dict[str, str], chunks: dict[str, int], on_error: OnError,
                 scales: Mapping[tuple[str, str, int], tuple[float, float]]
                 ) -> xr.Dataset | None:
    """``_load_odc``'s cube built without odc-stac when every tile lies on the output grid
    (see ``_pasted``); ``None`` when one does not."""
    from odc.loader import RasterLoadParams

    from eocube.cube import _pasted

    plans = _pasted.plan(groups, gb, parts, chunks, scales)
    if plans is None:
        return None
    # the load parameters odc-stac resolves for these arguments in ``_load_odc``
    cfgs = {b: RasterLoadParams("float32", fill_value=np.nan, use_overviews=True,
                                resampling=methods[b], fail_on_error=True,
                                fuser_fqn=FUSER if on_error == "nan" else None)
            for b in parts}
    return _pasted.build(plans, gb, chunks, cfgs, on_error, odc_driver(on_error).capture_env())


def _with_assets(item: Any, keys: set[str]) -> Any:
    """``item`` holding only the assets ``keys`` (hrefs made absolute): odc-stac parses
    every asset of every item, which costs more than the reads of a small load."""
    import pystac

    assets = {k: pystac.Asset(a.get_absolute_href() or a.href, title=a.title,
                              description=a.description, media_type=a.media_type,
                              roles=a.roles, extra_fields=a.extra_fields)
              for k, a in item.assets.items() if k in keys}
    # a copy of the properties: the constructor writes the datetime back into them
    return pystac.Item(item.id, item.geometry, item.bbox, item.datetime, dict(item.properties),
                       stac_extensions=item.stac_extensions, collection=item.collection_id,
                       assets=assets)


def _load_stackstac(items: list[Any], groups: list[list[Any]], gb: Any,
                    keys: dict[str, str], methods: dict[str, str], chunks: dict[str, int],
                    on_error: OnError) -> xr.Dataset:
    import stackstac
    from rasterio.enums import Resampling

    from eocube.cube import _stackstac

    epsg = gb.crs.epsg
    if epsg is None:
        raise GridError(f"engine='stackstac' needs a CRS with an EPSG code, not {gb.crs}")
    dicts = [_with_epsg(it.to_dict(transform_hrefs=False)) for g in groups for it in g]
    bounds = tuple(gb.boundingbox)
    res = (abs(gb.resolution.x), abs(gb.resolution.y))
    reader = _stackstac.ReaderRaise if on_error == "raise" else _stackstac.ReaderNan
    cy, cx = int(chunks.get("y", DEFAULT_CHUNKS["y"])), int(chunks.get("x", DEFAULT_CHUNKS["x"]))
    sizes = tuple(len(g) for g in groups)
    out: dict[str, xr.DataArray] = {}
    by_method: dict[str, list[str]] = {}
    for b, m in methods.items():
        by_method.setdefault(m, []).append(b)
    for m, bs in by_method.items():
        # one chunk along time per group of items, so fusing a group is one task per chunk
        arr = stackstac.stack(
            dicts, assets=[keys[b] for b in bs], epsg=int(epsg), resolution=res,
            bounds=bounds, snap_bounds=False, dtype=np.dtype("float32"),
            fill_value=np.float32(np.nan), rescale=False, sortby_date=False,
            chunksize=(sizes, 1, cy, cx), resampling=Resampling[m], reader=reader,
            gdal_env=stackstac_env(), xy_coords="center")
        if arr.shape[-2:] != tuple(gb.shape.yx):
            raise GridError(f"stackstac made a {arr.shape[-2:]} grid for the {gb.shape.yx} "
                            "GeoBox; this is a bug, please report it")
        for b in bs:
            a = arr.sel(band=keys[b]).data
            fused = a.map_blocks(_first_finite_keep, chunks=((1,) * len(groups), *a.chunks[1:]),
                                 dtype=a.dtype)
            out[b] = xr.DataArray(fused, dims=("time", "y", "x"))
    return xr.Dataset(out)


def _with_epsg(d: dict[str, Any]) -> dict[str, Any]:
    """stackstac reads ``proj:epsg`` only; projection v2 items carry ``proj:code``."""
    p = dict(d["properties"])
    code = p.get("proj:code")
    if p.get("proj:epsg") is None and isinstance(code, str) and code.upper().startswith("EPSG:"):
        p["proj:epsg"] = int(code.split(":")[1])
    return {**d, "properties": p}


def _first_finite_keep(a: np.ndarray) -> np.ndarray:
    """``_first_finite`` along the first axis, keeping it (length 1)."""
    return _first_finite(a, 0)[None]


def _first_finite(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Fuse along ``axis``: the first finite value, else a failure marker, else NaN."""
    a = np.moveaxis(a, axis, 0)
    out = np.full(a.shape[1:], np.nan, dtype=a.dtype)
    for layer in a:
        fuse_finite_first(out, layer)
    return out


def _scale_table(groups: list[list[Any]], table: _SourceTable, band: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    scales, offsets = [], []
    for g in groups:
        so = {table.scale_offset(it, band) for it in g if table.asset_key(it, band)}
        if len(so) > 1:
            raise ConfigError(f"items {[it.id for it in g]} of one time step scale band "
                              f"{band!r} differently ({sorted(so)}); load with "
                              "groupby='time'")
        s, o = so.pop() if so else (1.0, 0.0)
        scales.append(s)
        offsets.append(o)
    return np.asarray(scales, "float32"), np.asarray(offsets, "float32")


def _finish(raw: xr.Dataset, groups: list[list[Any]], prof: SensorProfile | _SourceTable,
            specs: dict[str, BandSpec], keys: dict[str, str], gb: Any,
            on_error: OnError, prescaled: bool = False, marked: bool = True) -> xr.Dataset:
    """The engine's raw (time, y, x) bands → the cube: scaled (unless ``prescaled``: already
    in physical units), failure markers to NaN (unless ``marked`` is False: none can occur),
    class bands back to their dtype, coordinates, and ``read_failed`` under ``"nan"``."""
    import pandas as pd
    from odc.geo.xr import xr_coords

    table = prof if isinstance(prof, _SourceTable) else _SourceTable(prof)
    prof = table.prof
    if raw.sizes["time"] != len(groups):
        raise GridError(f"the engine made {raw.sizes['time']} time steps for {len(groups)} "
                        "groups of items; this is a bug, please report it")
    times = pd.DatetimeIndex([_nominal(g[0]) for g in groups]).tz_convert(None)
    coords = {"time": times, **xr_coords(gb)}
    out: dict[str, xr.DataArray] = {}
    failed: dict[str, xr.DataArray] = {}
    for band, spec in specs.items():
        r = raw[band].variable
        r = xr.DataArray(r.data, dims=("time", *gb.dimensions))
        if spec.is_class:
            finite = np.isfinite(r)
            nod = spec.nodata if spec.nodata is not None else 0
            v = r.where(finite, nod).astype(spec.dtype)
            attrs = {"nodata": nod}
        elif prescaled:
            v = _scaled(r, None, None) if marked else r
            attrs = {}
        else:
            v = _scaled(r, *_scale_table(groups, table, band))
            attrs = {}
        if spec.unit:
            attrs["units"] = spec.unit
        elif spec.role == "reflectance":
            attrs["units"] = "1"
        out[band] = v.assign_attrs(attrs)
        if on_error == "nan":
            missing = np.array([any(table.asset_key(it, band) is None for it in g)
                                for g in groups])
            failed[band] = (r == FAILED).any(gb.dimensions) | xr.DataArray(missing, dims="time")
    ds = xr.Dataset(out, coords=coords, attrs={"eocube:profile": prof.name})
    if on_error == "nan":
        ids = [",".join(it.id for it in g) for g in groups]
        ds[FAILURES] = xr.concat(list(failed.values()), dim=xr.Variable("band", list(failed)))
        ds[FAILURES] = ds[FAILURES].transpose("time", "band").assign_attrs(
            {"description": "True where reading the band at that time failed (pixels NaN)",
             "items": ids})
    return ds


def _scale_block(a: np.ndarray, scale: np.ndarray | None, offset: np.ndarray | None
                 ) -> np.ndarray:
    """One pass per chunk: value × scale + offset (both broadcast along time; none: already
    scaled), failure markers to NaN (NaN stays NaN)."""
    if scale is None or offset is None:
        out = a.copy()
    else:
        out = np.multiply(a, scale, dtype="float32")
        out += offset
    out[np.isinf(out)] = np.nan
    return out


def _scaled(r: xr.DataArray, scale: np.ndarray | None, offset: np.ndarray | None
            ) -> xr.DataArray:
    """``r`` (time, y, x) scaled per time step (``None``: only markers to NaN), lazily in one
    task per chunk."""
    if scale is None or offset is None:
        s3 = o3 = None
    else:
        s3 = scale.astype("float32")[:, None, None]
        o3 = offset.astype("float32")[:, None, None]
    if r.chunks is None:
        return r.copy(data=_scale_block(r.values, s3, o3))
    import dask.array as da

    if s3 is None:
        return r.copy(data=da.map_blocks(_scale_block, r.data, None, None, dtype="float32"))
    tch = (r.data.chunks[0], (1,), (1,))
    data = da.map_blocks(_scale_block, r.data, da.from_array(s3, chunks=tch),
                         da.from_array(o3, chunks=tch), dtype="float32")
    return r.copy(data=data)


def read_failures(cube: xr.Dataset, /) -> list[dict[str, Any]]:
    """The read failures recorded by ``load(..., on_error="nan")``, one dict per failed
    (time, band) with the ids of the items of that time step. Computes ``read_failed``.

    Raises
    ------
    ConfigError
        If the cube was not loaded with ``on_error="nan"``.
    """
    import pandas as pd

    if FAILURES not in cube:
        raise ConfigError(f"the cube has no {FAILURES!r} variable; load it with "
                          "on_error='nan' to record read failures")
    f = cube[FAILURES]
    vals = np.asarray(f.values)
    ids = f.attrs.get("items", [""] * vals.shape[0])
    return [{"time": pd.Timestamp(f["time"].values[t]), "band": str(f["band"].values[b]),
             "items": ids[t].split(",")} for t, b in zip(*np.nonzero(vals), strict=True)]

