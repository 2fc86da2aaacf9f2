"""GDAL settings for reading COGs, remote or local: set once, travel with every load.

odc-stac captures them into each load's graph (so Dask workers on other machines read with the
same settings) and stackstac gets them through its ``gdal_env``. Change them with
``configure_gdal(**overrides)`` before loading.
"""

from __future__ import annotations

from typing import Any

#: The settings and why each is there.
GDAL_SETTINGS: dict[str, str | int] = {
    # transient HTTP failures (5xx, 429, dropped connections) are retried, with a delay
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # a stalled server fails the read instead of hanging the worker
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    # opening a COG must not list its bucket "folder" (one request, not thousands)
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.h5,.nc",
    # fewer, larger range requests for neighbouring tiles of a COG
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    # block cache per process (MB): tiles shared by neighbouring chunks are read once
    "GDAL_CACHEMAX": 512,
    # header bytes of remote files cached across opens (bytes)
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(16 * 1024 * 1024),
    # one decode thread per read: Dask provides the parallelism
    "GDAL_NUM_THREADS": "1",
}

_state: dict[str, Any] = {"configured": False, "overrides": {}}


def gdal_settings() -> dict[str, str | int]:
    """The settings in force: ``GDAL_SETTINGS`` updated by ``configure_gdal`` overrides."""
    return {**GDAL_SETTINGS, **_state["overrides"]}


def configure_gdal(**overrides: Any) -> dict[str, str | int]:
    """Install the GDAL settings for every later load (idempotent); returns them.

    Examples
    --------
    >>> configure_gdal(GDAL_HTTP_TIMEOUT=120)["GDAL_HTTP_TIMEOUT"]
    120
    """
    import odc.stac

    _state["overrides"].update({k: v if isinstance(v, int) else str(v)
                               for k, v in overrides.items()})
    settings = gdal_settings()
    odc.stac.configure_rio(cloud_defaults=False, **settings)
    _state["configured"] = True
    return settings


def ensure_configured() -> None:
    """Configure GDAL once per process, on the first load."""
    if not _state["configured"]:
        configure_gdal()


def stackstac_env() -> Any:
    """The settings as a stackstac ``LayeredEnv``."""
    import stackstac

    return stackstac.DEFAULT_GDAL_ENV.updated(always=gdal_settings())
