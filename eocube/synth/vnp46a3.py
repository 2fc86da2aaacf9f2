"""The synthetic city's night lights published as NASA Black Marble VNP46A3 monthly HDF5 tiles.

The real product lies on 10° × 10° geographic tiles named by ``h``/``v`` index
(h = ⌊(lon + 180) / 10⌋, v = ⌊(90 − lat) / 10⌋), each 2400 × 2400 pixels of 15″, in
HDF-EOS5 files whose layers sit under ``HDFEOS/GRIDS/VIIRS_Grid_DNB_2d/Data Fields``. Here a
full tile is written with the real layer names and attributes, chunked and compressed: only the
chunks over the city are ever written, the rest stay unallocated fill, so a tile is a few kB.
Files are deterministic: no timestamps, fixed attribute order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from odc.geo.geobox import GeoBox

# the tile grid is the product's, shared with the reader in eocube.cube
from eocube.catalog.tilegrid import RES_DEG, TILE_DEG, TILE_PIX, tile_geobox, tile_name, tile_of

CHUNK = 240
GRID = "HDFEOS/GRIDS/VIIRS_Grid_DNB_2d"
FIELDS = f"{GRID}/Data Fields"
FILL = 65535
QFILL = 255
SCALE = 0.1
#: VNP46A3 quality: 0 good, 1 poor (few observations), 2 gap-filled, 255 fill
Q_GOOD, Q_POOR, Q_GAP = 0, 1, 2
LAYERS_A3 = {
    "radiance": "AllAngle_Composite_Snow_Free",
    "quality": "AllAngle_Composite_Snow_Free_Quality",
    "count": "AllAngle_Composite_Snow_Free_Num",
}
LAYERS_A2 = {
    "radiance": "DNB_BRDF-Corrected_NTL",
    "quality": "Mandatory_Quality_Flag",
    "cloud": "QF_Cloud_Mask",
    "gap_filled": "Gap_Filled_DNB_BRDF-Corrected_NTL",
}


def _offset_in_tile(gb: GeoBox, h: int, v: int) -> tuple[int, int]:
    tgb = tile_geobox(h, v)
    col = (gb.transform.c - tgb.transform.c) / RES_DEG
    row = (tgb.transform.f - gb.transform.f) / RES_DEG
    r0, c0 = int(round(row)), int(round(col))
    if abs(row - r0) > 1e-6 or abs(col - c0) > 1e-6:
        raise ValueError("the grid is not aligned with the Black Marble 15″ grid")
    if r0 < 0 or c0 < 0 or r0 + gb.shape.y > TILE_PIX or c0 + gb.shape.x > TILE_PIX:
        raise ValueError(f"the grid crosses the edge of tile {tile_name(h, v)}")
    return r0, c0


def _attrs(obj: Any, attrs: dict[str, Any]) -> None:
    for k, val in attrs.items():
        obj.attrs[k] = val


def write_vnp46a3(path: Path, radiance: np.ndarray, gb: GeoBox, *, month: pd.Timestamp,
                  rng: np.random.Generator) -> dict[str, Any]:
    """Write one monthly VNP46A3 tile holding ``radiance`` (on ``gb``, a 15″ grid inside one
    tile); a few pixels are marked poor or gap-filled (their values perturbed, as a reader
    that ignores quality would see them). Returns what was written, for tests."""
    import h5py

    cx, cy = gb.extent.centroid.coords[0]
    h, v = tile_of(cx, cy)
    r0, c0 = _offset_in_tile(gb, h, v)
    ny, nx = gb.shape.yx
    dn = np.clip(np.round(np.nan_to_num(radiance, nan=FILL * SCALE) / SCALE), 0, FILL - 1)
    dn = np.where(np.isfinite(radiance), dn, FILL).astype("uint16")
    quality = np.zeros((ny, nx), dtype="uint8")
    u = rng.uniform(size=(ny, nx))
    quality[u < 0.03] = Q_POOR
    quality[u > 0.97] = Q_GAP
    bad = quality != Q_GOOD
    dn[bad] = np.clip(np.round(dn[bad] * 1.5 + 20), 0, FILL - 1).astype("uint16")
    num = np.where(bad, 1, rng.integers(12, 31, size=(ny, nx))).astype("uint16")
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {"chunks": (CHUNK, CHUNK), "compression": "gzip", "compression_opts": 4,
          "shuffle": True, "track_times": False}
    with h5py.File(path, "w", libver="earliest", track_order=True) as f:
        _attrs(f, {
            "ShortName": "VNP46A3", "LongName": "VIIRS/NPP Lunar BRDF-Adjusted Nighttime "
            "Lights Monthly L3 Global 15 arc second Linear Lat Lon Grid",
            "HorizontalTileNumber": f"{h:02d}", "VerticalTileNumber": f"{v:02d}",
            "WestBoundingCoord": -180 + TILE_DEG * h, "EastBoundingCoord": -170 + TILE_DEG * h,
            "NorthBoundingCoord": 90 - TILE_DEG * v, "SouthBoundingCoord": 80 - TILE_DEG * v,
            "RangeBeginningDate": f"{month:%Y-%m-%d}",
            "RangeEndingDate": f"{month + pd.offsets.MonthEnd(0):%Y-%m-%d}",
            "PlatformShortName": "Suomi-NPP", "InstrumentShortName": "VIIRS",
        })
        info = f.create_group("HDFEOS INFORMATION", track_order=True)
        info.create_dataset("StructMetadata.0", data=np.bytes_(_struct_metadata(h, v)),
                            track_times=False)
        fields = f.create_group(FIELDS, track_order=True)
        layers = (
            (LAYERS_A3["radiance"], dn, FILL, {"units": "nW_per_cm2_per_sr",
                                               "scale_factor": SCALE, "add_offset": 0.0}),
            (LAYERS_A3["quality"], quality, QFILL, {"units": "No units"}),
            (LAYERS_A3["count"], num, FILL, {"units": "Number of observations"}),
        )
        for name, arr, fill, extra in layers:
            ds = fields.create_dataset(name, shape=(TILE_PIX, TILE_PIX), dtype=arr.dtype,
                                       fillvalue=fill, **kw)
            ds[r0:r0 + ny, c0:c0 + nx] = arr
            _attrs(ds, {"_FillValue": np.array(fill, dtype=arr.dtype), **extra,
                        "long_name": name})
        tgb = tile_geobox(h, v)
        lat = tgb.coords["latitude"].values
        lon = tgb.coords["longitude"].values
        for name, arr in (("lat", lat), ("lon", lon)):
            ds = fields.create_dataset(name, data=arr.astype("float64"), track_times=False)
            _attrs(ds, {"units": "degrees_north" if name == "lat" else "degrees_east"})
    return {"tile": (h, v), "offset": (r0, c0), "dn": dn, "quality": quality}


def _struct_metadata(h: int, v: int) -> str:
    """HDF-EOS5 grid structure metadata: the tile's extent in packed DMS degrees."""
    def dms(deg: float) -> str:
        return f"{int(round(deg)) * 1_000_000:.6f}"

    west, north = -180 + TILE_DEG * h, 90 - TILE_DEG * v
    return (
        "GROUP=SwathStructure\nEND_GROUP=SwathStructure\nGROUP=GridStructure\n"
        "\tGROUP=GRID_1\n\t\tGridName=\"VIIRS_Grid_DNB_2d\"\n"
        f"\t\tXDim={TILE_PIX}\n\t\tYDim={TILE_PIX}\n"
        f"\t\tUpperLeftPointMtrs=({dms(west)},{dms(north)})\n"
        f"\t\tLowerRightMtrs=({dms(west + TILE_DEG)},{dms(north - TILE_DEG)})\n"
        "\t\tProjection=HE5_GCTP_GEO\n\tEND_GROUP=GRID_1\nEND_GROUP=GridStructure\n"
        "GROUP=PointStructure\nEND_GROUP=PointStructure\nEND\n")
