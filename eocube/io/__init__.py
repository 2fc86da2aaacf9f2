"""Writers and readers at the edge of the flow: Zarr (resumable, by region), Cloud-Optimised
GeoTIFF, GeoParquet, STAC JSON (Items for outputs; Catalogs, Collections and Items of
archives), JSON and checksums. Every stage that writes goes through here; nothing here imports
torch or any later folder.
"""

from __future__ import annotations

from eocube.io.cog import to_cog, write_cog
from eocube.io.paths import atomic_path, file_sha256, location, write_json
from eocube.io.stac import (
    archive_asset,
    archive_catalog,
    archive_collection,
    archive_item,
    raster_band,
    stac_item,
)
from eocube.io.tables import to_geoparquet
from eocube.io.zarr_store import WriteReport, to_zarr

# in flow order, not alphabetical: paths and JSON, STAC JSON, then the writers that use them
__all__ = [  # noqa: RUF022
    "location", "atomic_path", "write_json", "file_sha256",
    "raster_band", "archive_asset", "archive_item", "archive_collection", "archive_catalog",
    "stac_item", "write_cog", "to_cog", "to_geoparquet", "to_zarr", "WriteReport",
]
