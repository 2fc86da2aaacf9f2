"""Writers and readers at the edge of the flow: Zarr (resumable, by region), Cloud-Optimised
GeoTIFF, GeoParquet, STAC Items for outputs, JSON and checksums. Every stage that writes goes
through here; nothing here imports torch or any later folder.
"""

from __future__ import annotations

from eocube.io.cog import to_cog, write_cog
from eocube.io.paths import atomic_path, file_sha256, location, write_json
from eocube.io.stac import stac_item
from eocube.io.tables import to_geoparquet
from eocube.io.zarr_store import WriteReport, to_zarr

__all__ = ["WriteReport", "atomic_path", "file_sha256", "location", "stac_item", "to_cog",
           "to_geoparquet", "to_zarr", "write_cog", "write_json"]
