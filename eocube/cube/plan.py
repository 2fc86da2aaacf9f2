"""Planning, the first step of a load: STAC items → frozen per-item records → a load plan.

Everything a load needs to know about its items is read here, once, from their metadata: the
acquisition time, each asset's pixel grid (the projection extension: the only place eocube
reads ``proj:`` fields), which asset and band hold each requested band, and how the stored
values become physical units (scale, offset and nodata, from the profile's rules and the
items' ``raster:bands``). The engines read what the plan names; nothing here opens a raster.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from eocube.catalog.hrefs import HrefPolicy, check_href
from eocube.catalog.profiles import BandSpec, SensorProfile, get_profile, profile_for_item
from eocube.catalog.tilegrid import CRS as TILE_CRS
from eocube.catalog.tilegrid import TILE_PIX, parse_tile, tile_transform
from eocube.cube._read import OnError, missing_asset_error
from eocube.cube.gdal import gdal_settings
from eocube.cube.guard import (
    ReadGuard,
    Signer,
    default_policy,
    expected_sha256,
    forget_failures,
    record_failure,
)
from eocube.errors import ConfigError, EmptySearchError, GridError, HrefRefused, ReadError

#: ``"odc"``: odc-stac (with eocube's fast path for tiles on the output grid); ``"stackstac"``;
#: ``"hdf5"``: eocube's own reader of Black Marble HDF5 tiles
EngineName = Literal["odc", "stackstac", "hdf5"]
Groupby = Literal["solar_day", "time"]
DEFAULT_CHUNKS: Mapping[str, int] = MappingProxyType({"x": 2048, "y": 2048})
#: assets that only eocube's HDF5 engine reads (GDAL-based engines cannot place them)
HDF5_ASSETS = frozenset({"h5"})


# ---- per-item records -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Grid:
    """A pixel grid from the projection extension: CRS (``"EPSG:32650"``), shape
    ``(rows, cols)`` and the six affine coefficients ``(a, b, c, d, e, f)``; each ``None``
    where the metadata lacks it."""

    crs: str | None = None
    shape: tuple[int, int] | None = None
    transform: tuple[float, float, float, float, float, float] | None = None

    @property
    def complete(self) -> bool:
        """Whether CRS, shape and transform are all known."""
        return None not in (self.crs, self.shape, self.transform)

    def geobox(self) -> Any:
        """The grid as an ``odc.geo`` ``GeoBox`` (``None`` unless ``complete``)."""
        if not self.complete:
            return None
        from affine import Affine
        from odc.geo.geobox import GeoBox

        return GeoBox(self.shape, Affine(*self.transform), self.crs)  # type: ignore[arg-type]

    def bounds(self) -> tuple[float, float, float, float] | None:
        """(x0, y0, x1, y1) in the grid's CRS (``None`` without shape or transform)."""
        if self.shape is None or self.transform is None:
            return None
        from affine import Affine

        a = Affine(*self.transform)
        corners = [a * (c, r) for c, r in ((0, 0), (self.shape[1], self.shape[0]))]
        xs, ys = zip(*corners, strict=True)
        return min(xs), min(ys), max(xs), max(ys)


def parse_grid(properties: Mapping[str, Any], asset: Mapping[str, Any] | None = None) -> Grid:
    """The grid of ``asset`` (its fields win) or of the item (``properties``): the one reader
    of ``proj:code`` / ``proj:epsg``, ``proj:shape`` and ``proj:transform`` in eocube."""
    def field(key: str) -> Any:
        v = asset.get(key) if asset is not None else None
        return properties.get(key) if v is None else v

    code = field("proj:code")
    if not isinstance(code, str):
        epsg = field("proj:epsg")
        code = f"EPSG:{int(epsg)}" if epsg is not None else None
    shape, tr = field("proj:shape"), field("proj:transform")
    return Grid(code,
                (int(shape[0]), int(shape[1])) if shape is not None else None,
                tuple(float(v) for v in tr[:6]) if tr is not None else None)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class BandSource:
    """Where one band of one item is stored and how it becomes physical units.

    ``index`` is the one-based band inside the asset, ``n_bands`` how many the asset holds;
    a value ``v`` of the file means ``v × scale + offset``, and ``nodata`` (the item's
    ``raster:bands`` first, then the profile's; ``None``: only the file's own tag) means
    no data whatever the file itself says.
    """

    asset: str
    href: str
    index: int
    n_bands: int
    grid: Grid
    scale: float
    offset: float
    nodata: float | None
    #: the sha256 the file should have (archive manifest or ``file:checksum``), where known
    sha256: str | None = None


@dataclasses.dataclass(frozen=True)
class ParsedItem:
    """One STAC item as a load sees it: its time, its grid and its requested bands' sources
    (a band the item lacks is absent from ``sources``). ``item`` is the ``pystac.Item``,
    which the odc-stac and stackstac engines hand on."""

    id: str
    time: _dt.datetime
    solar_day: _dt.date
    bbox: tuple[float, ...] | None
    grid: Grid
    proj_ext: bool
    sources: Mapping[str, BandSource]
    item: Any = dataclasses.field(compare=False, repr=False)


def as_items(items: Iterable[Any]) -> list[Any]:
    """``pystac.Item`` objects from items or item dicts.

    Raises
    ------
    EmptySearchError
        If there are none.
    """
    import pystac

    out = [pystac.Item.from_dict(dict(it)) if isinstance(it, Mapping) else it for it in items]
    if not out:
        raise EmptySearchError("no items to load; search returned nothing or the list is empty")
    return out


def nominal_time(item: Any) -> _dt.datetime:
    """The item's ``datetime``, else its ``start_datetime``."""
    return item.datetime or _dt.datetime.fromisoformat(
        item.properties["start_datetime"].replace("Z", "+00:00"))


def solar_day(item: Any) -> _dt.date:
    """The local solar date of the acquisition (UTC + longitude / 15 h), as odc-stac uses."""
    import shapely

    if item.geometry is not None:
        lon = shapely.geometry.shape(item.geometry).centroid.x
    else:
        lon = 0.5 * (item.bbox[0] + item.bbox[2])
    return (nominal_time(item) + _dt.timedelta(hours=lon / 15.0)).date()


def _has_proj_ext(item: Any) -> bool:
    """Whether the item declares the projection extension (odc-stac ignores ``proj:`` fields
    otherwise)."""
    from pystac.extensions.projection import ProjectionExtension

    return ProjectionExtension.has_extension(item) or any(
        e.startswith("https://stac-extensions.github.io/projection/")
        for e in item.stac_extensions)


def parse_item(item: Any, /, *, profile: SensorProfile, bands: Sequence[str],
               checksums: bool = False) -> ParsedItem:
    """The record of ``item`` for loading ``bands`` (names or aliases of ``profile``);
    ``checksums``: look up each file's expected sha256 (``guard.expected_sha256``)."""
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    props = d.get("properties", {})
    sources: dict[str, BandSource] = {}
    for band in bands:
        key = profile.asset_key(d, band)
        if key is None:
            continue
        spec = profile.band(band)
        a = d["assets"][key]
        # codes (classes, quality flags) are never scaled
        scale, offset = (1.0, 0.0) if spec.is_class else profile.scale_offset(d, band)
        grid = parse_grid(props, a)
        if key in HDF5_ASSETS and not grid.complete:
            # Black Marble tiles: geographic; without projection fields, the h/v tile grid
            grid = (dataclasses.replace(grid, crs=TILE_CRS) if grid.crs is None else grid)
            grid = grid if grid.complete else (_tile_grid(item.id) or grid)
        rbs = a.get("raster:bands") or a.get("eo:bands") or [None]
        pa = item.assets[key]
        href = pa.get_absolute_href() or pa.href
        sources[band] = BandSource(key, href, spec.asset_band, len(rbs), grid, scale, offset,
                                   profile.nodata(d, band),
                                   expected_sha256(href, a) if checksums else None)
    return ParsedItem(item.id, nominal_time(item), solar_day(item),
                      tuple(item.bbox) if item.bbox is not None else None,
                      parse_grid(props), _has_proj_ext(item), MappingProxyType(sources), item)


def _tile_grid(item_id: str) -> Grid | None:
    """A Black Marble tile's grid from the ``hHHvVV`` in its id (``None`` without one)."""
    hv = parse_tile(item_id)
    return None if hv is None else Grid(TILE_CRS, (TILE_PIX, TILE_PIX), tile_transform(*hv))


def group_items(items: Sequence[Any], /, *, groupby: Groupby = "solar_day") -> list[list[Any]]:
    """Items (``pystac.Item`` or ``ParsedItem``) grouped into time steps and sorted as the
    loaders stack them: by step, then time, then id."""
    if groupby not in ("solar_day", "time"):
        raise ConfigError(f"groupby={groupby!r}; use 'solar_day' (one step per local day, "
                          "tiles of one overpass fused) or 'time' (one step per timestamp)")

    def keys(it: Any) -> tuple[Any, _dt.datetime]:
        if isinstance(it, ParsedItem):
            return (it.solar_day if groupby == "solar_day" else it.time), it.time
        t = nominal_time(it)
        return (solar_day(it) if groupby == "solar_day" else t), t

    keyed = sorted((*keys(it), it.id, i) for i, it in enumerate(items))
    groups: list[list[Any]] = []
    last: Any = object()
    for k, _, _, i in keyed:
        if k != last:
            groups.append([])
            last = k
        groups[-1].append(items[i])
    return groups


# ---- the grid ---------------------------------------------------------------------------------

def _grid_of(item: Any) -> Grid:
    return item.grid if isinstance(item, ParsedItem) else parse_grid(item.properties)


def _item_crs(items: Sequence[Any]) -> str:
    codes = Counter(g.crs for g in map(_grid_of, items) if g.crs)
    if not codes:
        raise GridError("the items carry no proj:code/proj:epsg; pass crs= and resolution= "
                        "or geobox=")
    return codes.most_common(1)[0][0]


def target_geobox(items: Sequence[Any], /, *, profile: SensorProfile, bands: Sequence[str],
                  geobox: Any = None, like: Any = None, crs: Any = None,
                  resolution: float | None = None, bbox: Sequence[float] | None = None) -> Any:
    """The output GeoBox: ``geobox``, ``like``'s, or one built from CRS + resolution + bbox.

    ``items`` are ``pystac.Item`` or ``ParsedItem`` records. ``bbox`` is (west, south, east,
    north) in degrees; without it the items' footprints are covered. Without ``crs`` the
    items' most common CRS is used, without ``resolution`` the finest native resolution among
    ``bands``. Pixel edges sit on multiples of the resolution.
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
        native_box = _native_bounds(items, out_crs)
        if native_box is not None:
            return GeoBox.from_bbox(native_box, out_crs, resolution=float(resolution),
                                    tight=False)
        bb = np.array([it.bbox for it in items], dtype=float)
        bbox = (bb[:, 0].min(), bb[:, 1].min(), bb[:, 2].max(), bb[:, 3].max())
    w, s, e, n = (float(v) for v in bbox)
    box = BoundingBox(w, s, e, n, crs="EPSG:4326").to_crs(out_crs)
    return GeoBox.from_bbox(box, out_crs, resolution=float(resolution), tight=False)


def _native_bounds(items: Sequence[Any], crs: Any) -> Any:
    """Union of the items' own grids when all of them are in ``crs`` (exact, no lon/lat
    round trip); None when some item lacks projection fields or uses another CRS."""
    from odc.geo.geom import BoundingBox

    boxes = []
    for g in map(_grid_of, items):
        b = g.bounds()
        if g.crs is None or b is None or crs != g.crs:
            return None
        boxes.append(b)
    a = np.array(boxes)
    return BoundingBox(a[:, 0].min(), a[:, 1].min(), a[:, 2].max(), a[:, 3].max(), crs=crs)


# ---- the plan ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class LoadPlan:
    """What a load reads and makes: the output variables (``specs``, named as the caller
    named the bands), the grid, the time steps (``groups`` of records, fused in order), the
    chunks, the resampling per band, the failure policy, the engine and the read guard
    (href policy, checksums, signing; ``guard.load_id`` keys the failure records)."""

    profile: SensorProfile
    specs: Mapping[str, BandSpec]
    geobox: Any
    groups: tuple[tuple[ParsedItem, ...], ...]
    chunks: Mapping[str, int]
    resampling: Mapping[str, str]
    groupby: Groupby
    on_error: OnError
    engine: EngineName
    guard: ReadGuard = dataclasses.field(default_factory=ReadGuard)

    @property
    def bands(self) -> tuple[str, ...]:
        """The output variables, in order."""
        return tuple(self.specs)

    @property
    def items(self) -> list[ParsedItem]:
        """Every record, in time-step order."""
        return [it for g in self.groups for it in g]

    def asset_band(self, band: str) -> tuple[str, int]:
        """(asset key, one-based band index) that hold ``band`` (the same in every item)."""
        src = next(it.sources[band] for it in self.items if band in it.sources)
        return src.asset, src.index

    def times(self) -> Any:
        """The time coordinate: the nominal time of each step's first item (UTC, naive)."""
        import pandas as pd

        return pd.DatetimeIndex([g[0].time for g in self.groups]).tz_convert(None)


def plan_load(items: Iterable[Any], /, *, bands: Sequence[str] | None = None,
              profile: str | SensorProfile | None = None, geobox: Any = None, like: Any = None,
              crs: Any = None, resolution: float | None = None,
              bbox: Sequence[float] | None = None, chunks: Mapping[str, int] | None = None,
              groupby: Groupby = "solar_day", engine: EngineName | None = None,
              on_error: OnError = "raise",
              resampling: str | Mapping[str, str] | None = None,
              href_policy: HrefPolicy | None = None, verify: bool = False,
              sign: Signer | None = None,
              failure_journal: str | os.PathLike[str] | None = None) -> LoadPlan:
    """Items → a ``LoadPlan`` (arguments as for ``eocube.cube.load``). Reads metadata only;
    every href is checked against the href policy here, before any read.

    Raises
    ------
    ConfigError
        For an argument that cannot apply, naming it.
    ReadError
        For an item without a requested band's asset, under ``on_error="raise"``.
    HrefRefused
        For an href the policy refuses, under ``on_error="raise"`` (under ``"nan"`` the
        source is left out and recorded as ``forbidden``).
    GridError, EmptySearchError
    """
    if on_error not in ("raise", "nan"):
        raise ConfigError(f"on_error={on_error!r}; use 'raise' or 'nan'")
    if engine not in (None, "odc", "stackstac", "hdf5"):
        raise ConfigError(f"engine={engine!r}; use 'odc', 'stackstac' or 'hdf5' (or leave it "
                          "out: the profile's own)")
    pitems = as_items(items)
    prof = get_profile(profile) if profile is not None else profile_for_item(pitems[0])
    bands = list(prof.band_map(pitems[0]) if bands is None else bands)
    if len(set(bands)) != len(bands):
        raise ConfigError(f"bands={bands} names a band twice")
    specs = {b: prof.band(b) for b in bands}
    engine = _engine(prof, specs, engine)
    methods = _resampling(specs, resampling)
    if sign is not None and not callable(sign):
        raise ConfigError(f"sign={sign!r} is not callable; pass a function href -> signed href")
    if engine == "stackstac" and (sign is not None or verify):
        raise ConfigError("engine='stackstac' reads through stackstac's own readers, which "
                          "cannot sign at read time or verify checksums; use engine='odc'")
    parsed = [parse_item(it, profile=prof, bands=bands, checksums=verify) for it in pitems]
    if failure_journal is not None and on_error != "nan":
        raise ConfigError("failure_journal= records failed reads, which only on_error='nan' "
                          "lets a load go on past; pass on_error='nan' too")
    guard = _guard(parsed, pitems, href_policy, verify, sign, on_error)
    if failure_journal is not None:
        guard = dataclasses.replace(guard, journal=str(Path(failure_journal).resolve()))
    parsed = [_checked(it, guard, on_error) for it in parsed]
    groups = tuple(tuple(g) for g in group_items(parsed, groupby=groupby))
    _check_assets(groups, prof, bands, on_error, guard)
    if engine == "hdf5":
        for it in parsed:
            for b, src in it.sources.items():
                if not src.grid.complete:
                    raise GridError(f"item {it.id!r} has no proj:shape/proj:transform for "
                                    f"band {b!r} and no hXXvYY tile index in its id; cannot "
                                    "place its Black Marble tile")
    gb = target_geobox(parsed, profile=prof, bands=bands, geobox=geobox, like=like, crs=crs,
                       resolution=resolution, bbox=bbox)
    return LoadPlan(prof, MappingProxyType(specs), gb, groups,
                    MappingProxyType(dict(DEFAULT_CHUNKS if chunks is None else chunks)),
                    MappingProxyType(methods), groupby, on_error, engine, guard)


def _guard(parsed: Sequence[ParsedItem], items: Sequence[Any], policy: HrefPolicy | None,
           verify: bool, sign: Signer | None, on_error: OnError) -> ReadGuard:
    """The read guard: the policy given, else the default one for these hrefs and items;
    its ``load_id`` a token of what the load reads."""
    from dask.base import tokenize

    if policy is None:
        dirs = []
        for it in items:
            self_href = it.get_self_href()
            if self_href and "://" not in self_href.removeprefix("file://"):
                dirs.append(str(Path(self_href.removeprefix("file://")).parent))
        policy = default_policy([s.href for it in parsed for s in it.sources.values()],
                                item_dirs=dirs)
    # the same in every process (a frozenset's order is not: hash seeds differ), so that a
    # failure journal written by a killed attempt is found by the next
    pol = tuple((f.name, sorted(v) if isinstance(v := getattr(policy, f.name),
                                                  (set, frozenset)) else v)
                for f in dataclasses.fields(policy))
    load_id = tokenize([(it.id, b, s.href) for it in parsed for b, s in it.sources.items()],
                       on_error, verify, pol)
    forget_failures(load_id)  # a new cube: the records of an earlier one of the same reads go
    gdal = gdal_settings()
    return ReadGuard(policy=policy, verify=verify, sign=sign, load_id=load_id,
                     http_retries=int(gdal["GDAL_HTTP_MAX_RETRY"]),
                     http_delay=float(gdal["GDAL_HTTP_RETRY_DELAY"]),
                     http_timeout=float(gdal["GDAL_HTTP_TIMEOUT"]))


def _checked(it: ParsedItem, guard: ReadGuard, on_error: OnError) -> ParsedItem:
    """``it`` with every href checked against ``guard.policy``: a refused one raises under
    ``on_error="raise"``, else it is recorded (``forbidden``) and its source left out."""
    keep = {}
    for band, src in it.sources.items():
        try:
            check_href(src.href, policy=guard.policy)
        except HrefRefused as e:
            if on_error == "raise":
                raise HrefRefused(f"item {it.id!r}, asset {src.asset!r}: {e}", href=e.href,
                                  setting=e.setting, item=it.id, asset=src.asset) from None
            record_failure(guard.load_id, journal=guard.journal, item=it.id, asset=src.asset,
                           href=src.href, exc=e, failure="forbidden", attempts=0)
            continue
        keep[band] = src
    if len(keep) == len(it.sources):
        return it
    return dataclasses.replace(it, sources=MappingProxyType(keep))


def _engine(prof: SensorProfile, specs: Mapping[str, BandSpec],
            engine: EngineName | None) -> EngineName:
    """The engine that reads these bands: ``engine`` when it can, else a ``ConfigError``."""
    h5 = {b for b, s in specs.items() if s.asset in HDF5_ASSETS}
    if h5 and len(h5) != len(specs):
        raise ConfigError(f"bands {sorted(h5)} are HDF5 tiles and {sorted(set(specs) - h5)} "
                          "are not; load them separately")
    if engine is None:
        return "hdf5" if h5 else "odc"
    if h5 and engine != "hdf5":
        raise ConfigError(f"engine={engine!r} cannot read the {prof.name!r} HDF5 tiles (GDAL "
                          "cannot place them); leave engine= out or pass engine='hdf5'")
    if not h5 and engine == "hdf5":
        raise ConfigError(f"engine='hdf5' reads Black Marble HDF5 tiles only, not profile "
                          f"{prof.name!r}; pass engine='odc' or 'stackstac'")
    return engine


def _resampling(specs: Mapping[str, BandSpec], resampling: str | Mapping[str, str] | None
                ) -> dict[str, str]:
    """Resampling per band: a mapping names bands, a single method applies to value bands
    (class bands stay nearest), ``None`` takes the profile's."""
    if isinstance(resampling, Mapping):
        unknown = set(resampling) - set(specs)
        if unknown:
            raise ConfigError(f"resampling= names {sorted(unknown)}, which are not among the "
                              f"bands loaded {list(specs)}")
    out = {}
    for b, s in specs.items():
        if isinstance(resampling, Mapping):
            out[b] = resampling.get(b, s.resampling)
        elif isinstance(resampling, str) and not s.is_class:
            out[b] = resampling
        else:
            out[b] = s.resampling
    return out


def _check_assets(groups: Sequence[Sequence[ParsedItem]], prof: SensorProfile,
                  bands: Sequence[str], on_error: OnError, guard: ReadGuard) -> None:
    """Every band is one asset and band index in all items; an item without it raises under
    ``on_error='raise'`` (else it is recorded as ``missing``); a band no item holds always
    raises."""
    for band in bands:
        held: tuple[str, int] | None = None
        lacking = []
        for g in groups:
            for it in g:
                src = it.sources.get(band)
                if src is None:
                    if on_error == "raise":
                        raise missing_asset_error(it.id, band, it.item.assets)
                    lacking.append(it)
                    continue
                if held is not None and (src.asset, src.index) != held:
                    raise ConfigError(f"band {band!r} is asset {held[0]!r} in some items and "
                                      f"{src.asset!r} in item {it.id!r}; load them separately")
                held = (src.asset, src.index)
        for it in lacking:
            key = prof.asset_key(it.item.to_dict(include_self_link=False,
                                                 transform_hrefs=False), band)
            if key is not None:
                continue  # refused by the href policy, recorded as such
            record_failure(guard.load_id, journal=guard.journal, item=it.id,
                           asset=held[0] if held else band, href=None, exc=None,
                           failure="missing", attempts=0)
        if held is None:
            raise ReadError(f"no item holds band {band!r} of profile {prof.name!r}; its "
                            f"aliases are {list(prof.band(band).keys)}")
