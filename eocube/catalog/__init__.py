"""Catalogs, in the order of the flow: sensor profiles, STAC search, static STAC archives on
disk, the local STAC API over an archive, validation, and the href policy for asset reads.

``search`` here is the function; its module is ``eocube.catalog.search`` (import names from it
with ``from eocube.catalog.search import …``). ``free_port`` stays in
``eocube.catalog.server``.
"""

from __future__ import annotations

from eocube.catalog.archive import Archive, open_archive
from eocube.catalog.hrefs import (
    DEFAULT_POLICY,
    HrefPolicy,
    check_href,
    check_raster_size,
    redact,
    redact_text,
    sniff_raster,
)
from eocube.catalog.profiles import (
    BLACK_MARBLE_VNP46A2,
    BLACK_MARBLE_VNP46A3,
    PROFILES,
    SENTINEL1_RTC,
    SENTINEL2_L2A,
    SYNTH_VHR,
    VIIRS_NTL_MONTHLY,
    BandSpec,
    SensorProfile,
    get_profile,
    profile_for_item,
)
from eocube.catalog.search import filter_items, open_client, search
from eocube.catalog.server import LocalStacApi, serve
from eocube.catalog.validate import StacValidationError, stac_problems, validate_stac

__all__ = [  # noqa: RUF022 - in the order of the flow, not alphabetical
    # profiles
    "BLACK_MARBLE_VNP46A2", "BLACK_MARBLE_VNP46A3", "PROFILES", "SENTINEL1_RTC", "SENTINEL2_L2A",
    "SYNTH_VHR", "VIIRS_NTL_MONTHLY", "BandSpec", "SensorProfile", "get_profile",
    "profile_for_item",
    # search
    "search", "open_client", "filter_items",
    # archive
    "Archive", "open_archive",
    # server
    "LocalStacApi", "serve",
    # validate
    "StacValidationError", "stac_problems", "validate_stac",
    # hrefs
    "DEFAULT_POLICY", "HrefPolicy", "check_href", "sniff_raster", "check_raster_size", "redact",
    "redact_text",
]
