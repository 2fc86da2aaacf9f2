"""Large-area planning: an area of interest in lon/lat split into fixed-size tiles on a metric
grid per UTM zone (UPS at the poles on request), kept as a Parquet manifest and submitted to a
Dask cluster in waves, so that no task graph ever holds the whole area.

The grid
--------
Each UTM zone (``32N`` → EPSG:32632, ``32S`` → EPSG:32732) has its own grid of square tiles of
``tile_px × resolution`` metres whose edges lie on multiples of that size in the zone's
coordinates (the default 1024 px at 10 m gives 10.24 km tiles). A tile is named
``{zone}-{column:04d}-{row:04d}`` after its grid indices, ``column = x_min / size`` and
``row = y_min / size``: ``32N-0050-0500`` spans x 512,000–522,240 m and y 5,120,000–5,130,240 m
in EPSG:32632. The id alone gives the tile's GeoBox (:func:`aoi_tile_geobox`).

Which zone a tile belongs to
----------------------------
A zone plans the part of the AOI inside its own strip (6° of longitude; 0–84°N or 80°S–0°;
with MGRS's Norway and Svalbard exceptions unless ``exceptions=False``), keeping every tile of
its grid that overlaps that part. A tile therefore sits in the zone of its centre, except along
a zone border: the last tiles of a zone straddle the border and their centre may lie up to half
a tile across it. They are kept on purpose (as Sentinel-2's MGRS tiles are): the two zones'
grids do not line up, and keeping only tiles whose centre is inside their own zone leaves
strips of the AOI along the border that no tile covers (``tests/pipeline/test_aoi.py`` shows
one). Every point of the AOI lies in at least one tile.

Polar regions: UTM ends at 84°N and 80°S. An AOI reaching beyond is refused with a
:class:`~eocube.errors.ConfigError` unless ``polar="ups"``, which plans the caps on the
Universal Polar Stereographic grids (``UPSN`` → EPSG:32661, ``UPSS`` → EPSG:32761) with the same
tile size and ids such as ``UPSN-0195-0195``.

Footprints are the tiles' corners in lon/lat (UPS tiles: 16 points per edge), longitudes
unwrapped around the tile's centre; a footprint crossing the antimeridian is split there into a
MultiPolygon, and a UPS tile holding the pole becomes the band from its lowest latitude to the
pole.

Bounded memory: planning runs zone by zone and, inside a zone, block of rows by block of rows,
with numpy arrays and vectorised shapely 2 calls; :func:`write_manifest` streams each block
into the Parquet file, so the whole manifest is never in memory, and :func:`waves` reads it back
batch by batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from eocube.errors import ConfigError, GridError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from distributed import Client
    from odc.geo.geobox import GeoBox
    from shapely.geometry.base import BaseGeometry

__all__ = [
    "GridTile",
    "Tile",
    "TileGrid",
    "aoi_tile_geobox",
    "grid_tiles",
    "iter_tile_batches",
    "plan_tiles",
    "read_manifest",
    "submit_waves",
    "tile_id_of",
    "to_geodataframe",
    "waves",
    "write_manifest",
]

#: latitudes where UTM ends (UPS beyond)
UTM_SOUTH, UTM_NORTH = -80.0, 84.0
#: candidate tiles tested at once (bounds the memory of planning, not its result)
BLOCK_TILES = 16384
#: tiles shrink by this much (m) before the overlap test, so touching an edge is not overlap
_EPS = 1e-3
_ID = re.compile(r"^(?:(\d{2})([NS])|UPS([NS]))-(\d{4,})-(\d{4,})$")
_SCHEMA_KEY = b"eocube:tile_grid"


@dataclass(frozen=True)
class TileGrid:
    """The tile grid: square tiles of ``tile_px`` pixels of ``resolution`` metres.

    Parameters
    ----------
    tile_px
        Pixels along a tile's edge.
    resolution
        Pixel size in metres.
    polar
        ``"refuse"``: an AOI beyond 84°N or 80°S is an error; ``"ups"``: plan those parts on the
        UPS grids (EPSG:32661 north, EPSG:32761 south).
    exceptions
        Apply MGRS's zone exceptions (32V widened over western Norway, 31X/33X/35X/37X over
        Svalbard); ``False`` uses plain 6° zones everywhere.

    Examples
    --------
    >>> TileGrid().size
    10240.0
    """

    tile_px: int = 1024
    resolution: float = 10.0
    polar: Literal["refuse", "ups"] = "refuse"
    exceptions: bool = True

    def __post_init__(self) -> None:
        if int(self.tile_px) != self.tile_px or self.tile_px < 1:
            raise ConfigError(f"tile_px={self.tile_px!r}: use a positive whole number of pixels")
        if not (self.resolution > 0 and math.isfinite(self.resolution)):
            raise ConfigError(f"resolution={self.resolution!r}: use a positive size in metres")
        if self.polar not in ("refuse", "ups"):
            raise ConfigError(f"polar={self.polar!r}: use 'refuse' or 'ups'")

    @property
    def size(self) -> float:
        """A tile's edge in metres."""
        return float(self.tile_px * self.resolution)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> TileGrid:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Tile:
    """One tile of a manifest: what a task needs to process it (small, picklable).

    ``bounds`` are ``(x_min, y_min, x_max, y_max)`` in the tile's CRS (``EPSG:{epsg}``).
    """

    id: str
    epsg: int
    bounds: tuple[float, float, float, float]
    tile_px: int
    resolution: float

    @property
    def geobox(self) -> GeoBox:
        """The tile's pixel grid (north up, ``tile_px × tile_px``)."""
        return _geobox(self.epsg, self.bounds[0], self.bounds[3], self.tile_px, self.resolution)


# -- zones ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Zone:
    name: str
    epsg: int
    boxes: tuple[tuple[float, float, float, float], ...]  # its region in lon/lat
    polar: bool = False


def _zones(grid: TileGrid) -> list[_Zone]:
    """Every zone with its region in lon/lat (UTM north, UTM south, then UPS if asked)."""
    out = []
    for n in range(1, 61):
        lon0 = -180.0 + 6.0 * (n - 1)
        boxes: list[tuple[float, float, float, float]] = [(lon0, 0.0, lon0 + 6.0, UTM_NORTH)]
        if grid.exceptions and 31 <= n <= 37:
            v = {31: (0.0, 3.0), 32: (3.0, 12.0)}.get(n, (lon0, lon0 + 6.0))
            x = {31: (0.0, 9.0), 33: (9.0, 21.0), 35: (21.0, 33.0), 37: (33.0, 42.0)}.get(n)
            boxes = [(lon0, 0.0, lon0 + 6.0, 56.0), (v[0], 56.0, v[1], 64.0),
                     (lon0, 64.0, lon0 + 6.0, 72.0)]
            if x is not None:
                boxes.append((x[0], 72.0, x[1], UTM_NORTH))
        out.append(_Zone(f"{n:02d}N", 32600 + n, tuple(boxes)))
    out += [_Zone(f"{n:02d}S", 32700 + n, ((-180.0 + 6.0 * (n - 1), UTM_SOUTH,
                                            -174.0 + 6.0 * (n - 1), 0.0),)) for n in range(1, 61)]
    if grid.polar == "ups":
        out += [_Zone("UPSN", 32661, ((-180.0, UTM_NORTH, 180.0, 90.0),), polar=True),
                _Zone("UPSS", 32761, ((-180.0, -90.0, 180.0, UTM_SOUTH),), polar=True)]
    return out


def _zone_of_name(name: str) -> tuple[int, bool]:
    """``"32N"`` → (32632, False); ``"UPSS"`` → (32761, True)."""
    if name in ("UPSN", "UPSS"):
        return (32661 if name == "UPSN" else 32761), True
    return (32600 if name[2] == "N" else 32700) + int(name[:2]), False


# -- the AOI --------------------------------------------------------------------------------

def _aoi_geometry(aoi: Any) -> BaseGeometry:
    """A (multi)polygon in lon/lat from a bbox, a shapely geometry, a GeoSeries or GeoDataFrame."""
    import shapely

    if isinstance(aoi, (list, tuple, np.ndarray)) and len(aoi) == 4 and all(
            isinstance(v, (int, float, np.number)) for v in aoi):
        x0, y0, x1, y1 = (float(v) for v in aoi)
        if not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 < y1 <= 90) or x0 == x1:
            raise ConfigError(f"bbox {list(aoi)} is not [min lon, min lat, max lon, max lat] in "
                              "degrees (lon −180…180, lat −90…90, min lat < max lat)")
        if x0 > x1:  # crosses the antimeridian
            return shapely.union(shapely.box(x0, y0, 180.0, y1), shapely.box(-180.0, y0, x1, y1))
        return shapely.box(x0, y0, x1, y1)
    if hasattr(aoi, "geometry") or hasattr(aoi, "union_all"):  # GeoDataFrame / GeoSeries
        crs = getattr(aoi, "crs", None)
        if crs is None:
            raise ConfigError("the AOI GeoDataFrame has no CRS: set one (aoi.set_crs(4326) for "
                              "lon/lat)")
        if not crs.equals("EPSG:4326"):
            aoi = aoi.to_crs(4326)
        geom = aoi.union_all() if hasattr(aoi, "union_all") else aoi.geometry.union_all()
    elif isinstance(aoi, shapely.Geometry):
        geom = aoi
    else:
        raise ConfigError(f"AOI of type {type(aoi).__name__}: give a bbox [min lon, min lat, "
                          "max lon, max lat], a shapely geometry in lon/lat or a GeoDataFrame")
    if geom.is_empty or geom.area == 0:
        raise ConfigError("the AOI has no area (empty, a point or a line)")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    x0, y0, x1, y1 = geom.bounds
    if x0 < -180 - 1e-9 or x1 > 180 + 1e-9 or y0 < -90 - 1e-9 or y1 > 90 + 1e-9:
        raise ConfigError(f"the AOI's bounds {[round(v, 6) for v in geom.bounds]} are not in "
                          "lon/lat degrees: give it in EPSG:4326 (or a GeoDataFrame with its CRS)")
    return geom


def _check_polar(geom: BaseGeometry, grid: TileGrid) -> None:
    _, y0, _, y1 = geom.bounds
    if grid.polar == "refuse" and (y1 > UTM_NORTH or y0 < UTM_SOUTH):
        raise ConfigError(
            f"the AOI reaches latitude {y1 if y1 > UTM_NORTH else y0:g}, outside UTM (80°S to "
            "84°N): pass polar='ups' to plan the polar parts on UPS (EPSG:32661 / 32761), or "
            "clip the AOI")


# -- planning -------------------------------------------------------------------------------

def _transformer(src: int | str, dst: int | str) -> Any:
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def _project(geom: BaseGeometry, tr: Any) -> BaseGeometry:
    import shapely

    def f(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    # a transverse Mercator (or polar stereographic) map is smooth and one-to-one over a
    # zone, so a valid polygon stays valid: no validity pass over the projected vertices
    return shapely.transform(geom, f)


def _zone_part(geom: BaseGeometry, zone: _Zone, seg_deg: float) -> BaseGeometry | None:
    """The AOI inside a zone's region, densified so its edges stay true once projected."""
    import shapely

    gx0, gy0, gx1, gy1 = geom.bounds
    parts = [shapely.clip_by_rect(geom, *b) for b in zone.boxes
             if b[0] < gx1 and gx0 < b[2] and b[1] < gy1 and gy0 < b[3]]
    parts = [p for p in parts if not p.is_empty and p.area > 0]
    if not parts:
        return None
    part = parts[0] if len(parts) == 1 else shapely.union_all(parts)
    # densify only where a segment is long (a bbox edge, a clipped zone border): a detailed
    # outline (a country's coast) is left as it is, which is most of the time saved
    xy = shapely.get_coordinates(part)
    if xy.shape[0] > 1 and np.hypot(*np.diff(xy, axis=0).T).max() > seg_deg:
        part = shapely.segmentize(part, seg_deg)
    return part


def _footprints(epsg: int, x0: np.ndarray, y0: np.ndarray, size: float, *, polar: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each tile's outline in lon/lat as WKB, and its centre (lon, lat)."""
    import shapely
    import shapely.affinity

    k = 16 if polar else 1
    t = np.arange(k) / k
    # ring: bottom (west→east), right (south→north), top (east→west), left (north→south)
    ux = np.concatenate([t, np.ones(k), 1 - t, np.zeros(k)])
    uy = np.concatenate([np.zeros(k), t, np.ones(k), 1 - t])
    xs = x0[:, None] + size * ux[None, :]
    ys = y0[:, None] + size * uy[None, :]
    inv = _transformer(epsg, 4326)
    lon, lat = inv.transform(xs.ravel(), ys.ravel())
    lon, lat = np.asarray(lon).reshape(xs.shape), np.asarray(lat).reshape(xs.shape)
    clon, clat = (np.asarray(v) for v in inv.transform(x0 + size / 2, y0 + size / 2))
    lon = clon[:, None] + (lon - clon[:, None] + 180.0) % 360.0 - 180.0  # unwrap around centre
    ring = np.concatenate([np.stack([lon, lat], axis=-1), np.stack([lon[:, :1], lat[:, :1]],
                                                                     axis=-1)], axis=1)
    polys = shapely.polygons(ring)
    if polar:  # a tile holding the pole: the band from its lowest latitude to the pole
        pole = (x0 <= 2_000_000.0) & (x0 + size >= 2_000_000.0) & \
               (y0 <= 2_000_000.0) & (y0 + size >= 2_000_000.0)
        if pole.any():
            north = epsg == 32661
            for i in np.flatnonzero(pole):
                edge = float(lat[i].min()) if north else float(lat[i].max())
                polys[i] = shapely.box(-180.0, edge, 180.0, 90.0) if north else \
                    shapely.box(-180.0, -90.0, 180.0, edge)
            clon[pole] = 0.0
            clat[pole] = 90.0 if north else -90.0
    wraps = (lon.min(axis=1) < -180.0) | (lon.max(axis=1) > 180.0)
    for i in np.flatnonzero(wraps):  # split at the antimeridian (few tiles)
        p = polys[i]
        pieces = [shapely.intersection(p, shapely.box(-180.0, -90.0, 180.0, 90.0)),
                  shapely.affinity.translate(shapely.intersection(
                      p, shapely.box(180.0, -90.0, 540.0, 90.0)), -360.0),
                  shapely.affinity.translate(shapely.intersection(
                      p, shapely.box(-540.0, -90.0, -180.0, 90.0)), 360.0)]
        polys[i] = shapely.union_all([q for q in pieces if not q.is_empty])
    clon = (clon + 180.0) % 360.0 - 180.0
    return shapely.to_wkb(polys), clon, clat


def iter_tile_batches(aoi: Any, /, *, grid: TileGrid = TileGrid()) -> Iterator[pa.RecordBatch]:
    """Plan the tiles of ``aoi``, yielding them as Arrow record batches (one block of rows of
    one zone at a time; zones in order 01N…60N, 01S…60S, UPSN, UPSS).

    Parameters
    ----------
    aoi
        ``[min lon, min lat, max lon, max lat]`` (min lon > max lon crosses the antimeridian), a
        shapely (multi)polygon in lon/lat (holes respected), or a GeoDataFrame / GeoSeries in
        any CRS (its union is used).
    grid
        Tile size, resolution, polar policy and zone exceptions.

    Yields
    ------
    pyarrow.RecordBatch
        Columns ``tile_id``, ``zone``, ``epsg``, ``col``, ``row``, ``x_min``, ``y_min``,
        ``x_max``, ``y_max`` (metres in ``EPSG:{epsg}``), ``lon``, ``lat`` (the centre) and
        ``footprint`` (WKB polygon in lon/lat).

    Raises
    ------
    ConfigError
        The AOI is not in lon/lat, has no area, or reaches a polar region with
        ``polar="refuse"``.
    """
    import pyarrow as pa
    import shapely

    geom = _aoi_geometry(aoi)
    _check_polar(geom, grid)
    size = grid.size
    seg_deg = max(size / 111_320.0 / 4.0, 1e-4)
    for zone in _zones(grid):
        part = _zone_part(geom, zone, seg_deg)
        if part is None:
            continue
        proj = _project(part, _transformer(4326, zone.epsg))
        if proj.is_empty or proj.area == 0:
            continue
        shapely.prepare(proj)
        bx0, by0, bx1, by1 = proj.bounds
        c0, c1 = math.floor(bx0 / size), math.ceil(bx1 / size)
        r0, r1 = math.floor(by0 / size), math.ceil(by1 / size)
        cols = np.arange(c0, c1, dtype=np.int64)
        step = max(1, BLOCK_TILES // max(1, cols.size))
        for rs in range(r0, r1, step):
            rows = np.arange(rs, min(rs + step, r1), dtype=np.int64)
            cc, rr = (a.ravel() for a in np.meshgrid(cols, rows))
            x0, y0 = cc * size, rr * size
            boxes = shapely.box(x0 + _EPS, y0 + _EPS, x0 + size - _EPS, y0 + size - _EPS)
            hit = shapely.intersects(proj, boxes)
            del boxes
            if not hit.any():
                continue
            cc, rr, x0, y0 = cc[hit], rr[hit], x0[hit], y0[hit]
            wkb, clon, clat = _footprints(zone.epsg, x0, y0, size, polar=zone.polar)
            ids = np.char.add(np.char.add(np.char.add(f"{zone.name}-",
                                                      np.char.zfill(cc.astype(str), 4)), "-"),
                              np.char.zfill(rr.astype(str), 4))
            n = cc.size
            yield pa.record_batch({
                "tile_id": pa.array(ids.tolist(), pa.string()),
                "zone": pa.array([zone.name] * n, pa.string()),
                "epsg": pa.array(np.full(n, zone.epsg, np.int32)),
                "col": pa.array(cc.astype(np.int32)), "row": pa.array(rr.astype(np.int32)),
                "x_min": pa.array(x0), "y_min": pa.array(y0),
                "x_max": pa.array(x0 + size), "y_max": pa.array(y0 + size),
                "lon": pa.array(clon), "lat": pa.array(clat),
                "footprint": pa.array(wkb, pa.binary()),
            })


def _schema(grid: TileGrid) -> pa.Schema:
    import pyarrow as pa

    geo = {"version": "1.1.0", "primary_column": "footprint",
           "columns": {"footprint": {"encoding": "WKB",
                                     "geometry_types": ["Polygon", "MultiPolygon"]}}}
    fields = [("tile_id", pa.string()), ("zone", pa.string()), ("epsg", pa.int32()),
              ("col", pa.int32()), ("row", pa.int32()), ("x_min", pa.float64()),
              ("y_min", pa.float64()), ("x_max", pa.float64()), ("y_max", pa.float64()),
              ("lon", pa.float64()), ("lat", pa.float64()), ("footprint", pa.binary())]
    return pa.schema(fields, metadata={b"geo": json.dumps(geo).encode(),
                                       _SCHEMA_KEY: grid.to_json().encode()})


def plan_tiles(aoi: Any, /, *, grid: TileGrid = TileGrid()) -> pa.Table:
    """The tile manifest of ``aoi`` as one Arrow table (see :func:`iter_tile_batches` for the
    arguments and columns); the grid rides in the schema metadata.

    For AOIs whose manifest should not be held in memory, use :func:`write_manifest`.

    Examples
    --------
    >>> t = plan_tiles([8.0, 48.0, 8.3, 48.2])
    >>> t.num_rows, t["tile_id"][0].as_py(), t["epsg"][0].as_py()
    (9, '32N-0041-0519', 32632)
    """
    import pyarrow as pa

    schema = _schema(grid)
    return pa.Table.from_batches(list(iter_tile_batches(aoi, grid=grid)), schema=schema)


def write_manifest(aoi: Any, path: str | Path, /, *, grid: TileGrid = TileGrid()) -> int:
    """Plan ``aoi`` and stream the manifest into a (Geo)Parquet file, block by block.

    The file is written beside ``path`` and moved into place when complete; ``footprint`` is
    its GeoParquet geometry column (lon/lat), so ``geopandas.read_parquet`` reads it.

    Returns
    -------
    int
        The number of tiles written.
    """
    import pyarrow.parquet as pq

    from eocube.io.paths import atomic_path

    schema = _schema(grid)
    n = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in iter_tile_batches(aoi, grid=grid):
            writer.write_batch(batch.replace_schema_metadata(schema.metadata))
            n += batch.num_rows
    return n


def _grid_of(schema: pa.Schema) -> TileGrid:
    meta = schema.metadata or {}
    if _SCHEMA_KEY not in meta:
        raise GridError("this table is not an eocube tile manifest (no 'eocube:tile_grid' in "
                        "its metadata): make it with plan_tiles or write_manifest")
    return TileGrid.from_json(meta[_SCHEMA_KEY])


def read_manifest(path: str | Path, /) -> pa.Table:
    """A manifest written by :func:`write_manifest`, as an Arrow table."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    _grid_of(table.schema)
    return table


# -- ids and GeoBoxes -----------------------------------------------------------------------

def _geobox(epsg: int, x0: float, y1: float, tile_px: int, resolution: float) -> GeoBox:
    from affine import Affine
    from odc.geo.geobox import GeoBox

    return GeoBox((tile_px, tile_px), Affine(resolution, 0.0, x0, 0.0, -resolution, y1),
                  f"EPSG:{epsg}")


def aoi_tile_geobox(tile_id: str, /, *, grid: TileGrid = TileGrid()) -> GeoBox:
    """The GeoBox of a tile from its id alone (and the grid it was planned on).

    Examples
    --------
    >>> gb = aoi_tile_geobox("32N-0050-0500")
    >>> gb.crs.epsg, gb.shape, gb.extent.boundingbox.left, gb.extent.boundingbox.bottom
    (32632, Shape2d(x=1024, y=1024), 512000.0, 5120000.0)
    """
    m = _ID.match(tile_id)
    if m is None:
        raise GridError(f"{tile_id!r} is not a tile id: expected like '32N-0123-0456' (UTM zone "
                        "and hemisphere, column, row) or 'UPSN-0195-0195'")
    zone = f"{m[1]}{m[2]}" if m[1] else f"UPS{m[3]}"
    if m[1] and not 1 <= int(m[1]) <= 60:
        raise GridError(f"{tile_id!r}: UTM zones are 01 to 60, not {m[1]}")
    epsg, _ = _zone_of_name(zone)
    size = grid.size
    x0, y0 = int(m[4]) * size, int(m[5]) * size
    return _geobox(epsg, x0, y0 + size, grid.tile_px, grid.resolution)


def tile_id_of(geobox: GeoBox, /, *, grid: TileGrid = TileGrid()) -> str:
    """The id of the tile whose GeoBox is ``geobox`` (the inverse of :func:`aoi_tile_geobox`).

    Raises
    ------
    GridError
        The GeoBox is not one tile of ``grid``: another CRS than UTM/UPS, another resolution or
        shape, or edges off the grid.
    """
    epsg = geobox.crs.epsg if geobox.crs is not None else None
    if epsg is None or not (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760
                            or epsg in (32661, 32761)):
        raise GridError(f"GeoBox in {geobox.crs}: tiles are in UTM (EPSG:326xx / 327xx) or UPS "
                        "(EPSG:32661 / 32761)")
    a = geobox.affine
    if geobox.shape != (grid.tile_px, grid.tile_px) or not math.isclose(
            a.a, grid.resolution) or not math.isclose(a.e, -grid.resolution) or a.b or a.d:
        raise GridError(f"GeoBox {geobox.shape} at {a.a}, {a.e} m is not a tile of "
                        f"{grid.tile_px} px at {grid.resolution} m, north up")
    size = grid.size
    col, row = a.c / size, (a.f - size) / size
    if not (math.isclose(col, round(col), abs_tol=1e-9) and
            math.isclose(row, round(row), abs_tol=1e-9)):
        raise GridError(f"GeoBox corner ({a.c}, {a.f}) is off the {size:g} m grid")
    zone = ("UPSN" if epsg == 32661 else "UPSS" if epsg == 32761
            else f"{epsg % 100:02d}{'N' if epsg < 32700 else 'S'}")
    return f"{zone}-{round(col):04d}-{round(row):04d}"


# -- a run's grid on the tile grid ----------------------------------------------------------

@dataclass(frozen=True)
class GridTile:
    """The part of a run's grid that one tile of the planner's grid covers.

    ``rows`` and ``cols`` are the pixel slices of the run's grid it spans (the tiles of a grid
    partition it: every pixel in exactly one tile); ``geobox`` is that part's GeoBox, a
    slice of the run's, so its pixels are the run grid's pixels.
    """

    id: str
    rows: slice
    cols: slice
    geobox: GeoBox

    def halo(self, shape: tuple[int, int], px: int, /) -> tuple[slice, slice]:
        """The tile's rows and columns grown by ``px`` pixels on every side, within ``shape``
        (the run grid's ``(ny, nx)``): the context a model needs at the tile's edges."""
        ny, nx = shape
        return (slice(max(0, self.rows.start - px), min(ny, self.rows.stop + px)),
                slice(max(0, self.cols.start - px), min(nx, self.cols.stop + px)))


def grid_tiles(geobox: GeoBox, /, *, grid: TileGrid = TileGrid()) -> list[GridTile]:
    """Split a run's GeoBox on the tile grid: the tiles of ``grid`` it overlaps, each with
    the pixels of ``geobox`` it covers, in row-major order from the north-west.

    In UTM or UPS the tiles are the planner's (:func:`plan_tiles`), with its ids; in another
    projected CRS the same grid (edges on multiples of the tile size in that CRS's
    coordinates) is named ``EPSG{code}-{column}-{row}``. A GeoBox no larger than one tile in
    either direction is not split: one tile, the whole grid, with the id of the tile at its
    north-west corner.

    Raises
    ------
    GridError
        The GeoBox is rotated or its pixels are not ``grid.resolution`` metres.

    Examples
    --------
    >>> from odc.geo.geobox import GeoBox
    >>> gb = GeoBox.from_bbox((200_000, 2_500_000, 201_280, 2_501_280), "EPSG:32650",
    ...                       resolution=10)
    >>> [(t.id, t.geobox.shape.yx) for t in grid_tiles(gb, grid=TileGrid(tile_px=100))]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('50N-0200-2501', (28, 100)), ('50N-0201-2501', (28, 28)),
     ('50N-0200-2500', (100, 100)), ('50N-0201-2500', (100, 28))]
    """
    a = geobox.affine
    if a.b or a.d or a.a <= 0 or a.e >= 0:
        raise GridError(f"the run's grid {a} is rotated or not north up: it cannot be split on "
                        "a tile grid")
    if not (math.isclose(a.a, grid.resolution) and math.isclose(-a.e, grid.resolution)):
        raise GridError(f"the run's pixels are {a.a:g} × {-a.e:g} m, the tile grid's "
                        f"{grid.resolution:g} m: plan the tiles at the run's resolution")
    epsg = geobox.crs.epsg if geobox.crs is not None else None
    if epsg is not None and (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        prefix = f"{epsg % 100:02d}{'N' if epsg < 32700 else 'S'}"
    elif epsg in (32661, 32761):
        prefix = "UPSN" if epsg == 32661 else "UPSS"
    else:
        prefix = f"EPSG{epsg}" if epsg is not None else "GRID"
    ny, nx = geobox.shape.yx
    size, res = grid.size, grid.resolution

    def cuts(origin: float, n: int, sign: int) -> list[tuple[int, int, int]]:
        """(grid index, first pixel, end pixel) of each tile along one axis."""
        # pixel k spans origin + sign·k·res …; a tile edge falls at a multiple of size
        lo, hi = sorted((origin, origin + sign * n * res))
        out = []
        for g in range(math.floor(lo / size + 1e-9), math.ceil(hi / size - 1e-9)):
            e0, e1 = (g * size, (g + 1) * size) if sign > 0 else ((g + 1) * size, g * size)
            p0 = max(0, round((e0 - origin) / (sign * res)))
            p1 = min(n, round((e1 - origin) / (sign * res)))
            if p1 > p0:
                out.append((g, p0, p1))
        return out

    if nx <= grid.tile_px and ny <= grid.tile_px:
        col, row = math.floor(a.c / size + 1e-9), math.floor(a.f / size - 1e-9)
        return [GridTile(f"{prefix}-{col:04d}-{row:04d}", slice(0, ny), slice(0, nx), geobox)]
    tiles = []
    for row, r0, r1 in cuts(a.f, ny, -1)[::-1]:  # north first
        for col, c0, c1 in cuts(a.c, nx, 1):
            tiles.append(GridTile(f"{prefix}-{col:04d}-{row:04d}", slice(r0, r1),
                                  slice(c0, c1), geobox[r0:r1, c0:c1]))
    return tiles


# -- waves ----------------------------------------------------------------------------------

def _tiles(batch: pa.RecordBatch | pa.Table, grid: TileGrid) -> list[Tile]:
    d = batch.select(["tile_id", "epsg", "x_min", "y_min", "x_max", "y_max"]).to_pydict()
    return [Tile(t, e, (a, b, c, f), grid.tile_px, grid.resolution)
            for t, e, a, b, c, f in zip(d["tile_id"], d["epsg"], d["x_min"], d["y_min"],
                                        d["x_max"], d["y_max"], strict=True)]


def waves(manifest: pa.Table | str | Path, size: int, /, *, skip: Iterable[str] = ()
          ) -> Iterator[list[Tile]]:
    """The manifest's tiles in waves of at most ``size``, each wave within one zone (one CRS).

    Parameters
    ----------
    manifest
        A table from :func:`plan_tiles`, or the path of a file from :func:`write_manifest`,
        read batch by batch (the whole manifest is never loaded).
    size
        The most tiles in a wave.
    skip
        Tile ids already done (a resumed run): left out.

    Yields
    ------
    list of Tile
        In manifest order.
    """
    if int(size) < 1:
        raise ConfigError(f"wave size {size!r}: use at least 1")
    done = frozenset(skip)
    if isinstance(manifest, (str, Path)):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(manifest)
        grid = _grid_of(pf.schema_arrow)
        batches: Iterable[Any] = pf.iter_batches(batch_size=max(int(size), 1024))
    else:
        grid = _grid_of(manifest.schema)
        batches = manifest.to_batches(max_chunksize=max(int(size), 1024))
    wave: list[Tile] = []
    for batch in batches:
        for tile in _tiles(batch, grid):
            if tile.id in done:
                continue
            if wave and (len(wave) >= size or wave[0].epsg != tile.epsg):
                yield wave
                wave = []
            wave.append(tile)
    if wave:
        yield wave


def submit_waves(manifest: pa.Table | str | Path, fn: Callable[[Tile], Any], /, *,
                 client: Client, size: int, name: str | None = None,
                 skip: Iterable[str] = ()) -> Iterator[tuple[str, Any]]:
    """Run ``fn(tile)`` on a Dask cluster for every tile, one wave at a time.

    A wave's tasks are submitted together; the next wave is submitted once this one is done, so
    the scheduler never holds more than ``size`` of these tasks and the client never builds a
    graph of the whole AOI. Keys are ``{name}-{tile id}`` (deterministic: a rerun finds the
    same keys).

    Parameters
    ----------
    manifest, size, skip
        As for :func:`waves`.
    fn
        A picklable function of one :class:`Tile` (it typically loads the tile's cube on
        ``tile.geobox``, runs the stages and writes the tile's outputs).
    client
        A ``distributed.Client``.
    name
        Key prefix (default: ``fn``'s name).

    Yields
    ------
    (tile id, result)
        As tiles finish; a failed tile raises its error here, after its wave's other tiles
        have finished.
    """
    from distributed import as_completed, wait

    prefix = name or getattr(fn, "__name__", "tile")
    for wave in waves(manifest, size, skip=skip):
        futures = client.map(fn, wave, key=[f"{prefix}-{t.id}" for t in wave], pure=False)
        ids = {f.key: t.id for f, t in zip(futures, wave, strict=True)}
        try:
            for fut in as_completed(futures):
                if fut.status == "error":
                    wait(futures)
                yield ids[fut.key], fut.result()
        finally:
            for f in futures:
                f.release()


def to_geodataframe(manifest: pa.Table, /) -> Any:
    """The manifest as a GeoDataFrame (footprints in EPSG:4326) for a notebook or a map."""
    import geopandas as gpd
    import shapely

    df = manifest.drop_columns(["footprint"]).to_pandas()
    geom = shapely.from_wkb(manifest.column("footprint").to_numpy(zero_copy_only=False))
    return gpd.GeoDataFrame(df, geometry=geom, crs="EPSG:4326")

