"""The NASA Black Marble tile grid: 10° × 10° geographic tiles named by h/v index.

Black Marble (VNP46A1–A4) lies on a linear latitude/longitude grid of 36 × 18 tiles, each
2400 × 2400 pixels of 15″, tile (h, v) covering longitudes −180 + 10h … −170 + 10h and
latitudes 90 − 10v … 80 − 10v (h = ⌊(lon + 180) / 10⌋, v = ⌊(90 − lat) / 10⌋). It is pure
metadata about the product, used both to write tiles (``eocube.synth``) and to place them when
an item lacks projection fields (``eocube.cube``).
"""

from __future__ import annotations

import math
import re
from typing import Any

TILE_DEG = 10.0
TILE_PIX = 2400
RES_DEG = TILE_DEG / TILE_PIX  # 15 arc-seconds
CRS = "EPSG:4326"
_HV = re.compile(r"h(\d\d)v(\d\d)")


def tile_of(lon: float, lat: float) -> tuple[int, int]:
    """(h, v) of the Black Marble tile that contains (lon, lat)."""
    return int(math.floor((lon + 180.0) / TILE_DEG)), int(math.floor((90.0 - lat) / TILE_DEG))


def tile_name(h: int, v: int) -> str:
    """The ``hHHvVV`` name of tile (h, v), as in Black Marble file names and item ids."""
    return f"h{h:02d}v{v:02d}"


def parse_tile(text: str) -> tuple[int, int] | None:
    """(h, v) of the first ``hHHvVV`` tile name in ``text`` (an item id or a file name);
    ``None`` when it holds none."""
    m = _HV.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def tile_transform(h: int, v: int) -> tuple[float, float, float, float, float, float]:
    """The six affine coefficients (a, b, c, d, e, f) of tile (h, v)'s pixel grid."""
    return (RES_DEG, 0.0, -180.0 + TILE_DEG * h, 0.0, -RES_DEG, 90.0 - TILE_DEG * v)


def tile_geobox(h: int, v: int) -> Any:
    """The 2400 × 2400 15″ EPSG:4326 ``GeoBox`` of tile (h, v)."""
    from affine import Affine
    from odc.geo.geobox import GeoBox

    return GeoBox((TILE_PIX, TILE_PIX), Affine(*tile_transform(h, v)), CRS)
