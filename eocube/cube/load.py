"""Load STAC items into a lazy cube: a Dataset of (time, y, x) variables on one GeoBox, in
physical units, with nodata as NaN.

``load`` reads as the flow it runs, after odc-stac (``parse_items`` → load plan → reader) and
stackstac (prepare → to_dask → ops): ``plan_load`` turns the items into frozen records and a
plan (metadata only), an engine reads the plan into raw bands (``engines``: odc-stac with
eocube's fast path, stackstac, or the HDF5 reader), and ``finish`` names, types and
coordinates them. Nothing is read when the cube is built: the graph holds a few tasks per
chunk (one when the tiles lie on the output grid) and metadata comes from the items alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import xarray as xr

from eocube.cube.engines import ENGINES
from eocube.cube.finish import finish
from eocube.cube.gdal import ensure_configured
from eocube.cube.plan import plan_load


def load(items: Iterable[Any], /, **options: Any) -> xr.Dataset:
    """Load STAC items as a lazy cube in physical units.

    Its keywords are ``plan_load``'s, declared there once (``inspect.signature(load)`` shows
    them); all are keyword-only.

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
        one step per timestamp. Items of one step may scale differently (two processing
        baselines, two collections): each is scaled as it needs before they are fused.
    engine
        ``"odc"`` (odc-stac), ``"stackstac"`` or ``"hdf5"`` (Black Marble tiles); default:
        ``"hdf5"`` for Black Marble profiles, else ``"odc"``. An engine that cannot read the
        items raises ``ConfigError``.
    on_error
        ``"raise"``: a failed read raises ``ReadError`` naming item and asset (at compute
        time; an asset missing from an item's metadata raises at once). ``"nan"``: its pixels
        become NaN (class bands: their nodata) and the boolean variable ``read_failed``
        (time, band) records where; ``read_failures(cube)`` lists them, one record per failed
        item and asset with its failure class. Transient failures are retried (three
        attempts, GDAL's own HTTP retries inside each).
    resampling
        One method for every value band, or a method per band; default per the profile
        (nearest for class bands). Every engine honours it.
    href_policy
        What asset hrefs may point at (``eocube.catalog.hrefs.HrefPolicy``), checked for
        every href before anything is read. Default: public http(s) and s3 hosts (no
        loopback, private or link-local address), no ``/vsi…`` path, and local files only
        inside the eocube archives the items' files lie in (the nearest folder above holding
        a ``manifest.json``) or the folders the items were read from. Each file's first bytes
        must be the raster its name says (a VRT or HTML page named ``.tif`` is refused before
        GDAL opens it) and its header at most ``max_pixels`` pixels.
    verify
        Check each file's sha256 against its archive manifest or its asset's
        ``file:checksum`` (``1220…``) before reading it (once per worker process and file;
        a remote file is downloaded once more for it). A mismatch is a ``ChecksumError``
        (class ``corrupt``); a file with no known checksum fails the same way.
    sign
        ``sign(href) -> signed href``, called inside each read task (engines ``"odc"`` and
        ``"hdf5"``), so that tokens stay out of the task graph; a module-level function
        (pickled by reference) that fetches its token where it runs.
    failure_journal
        A folder every reading process can write (with ``on_error="nan"``): each read
        failure is also appended there as it happens, so ``read_failures`` still lists it
        after the process that read was killed or lost, or when a resumed write skips the
        chunks that failed before. The caller owns the folder (eocube never empties it).

    Returns
    -------
    xarray.Dataset
        Variables (time, y, x): float32 in physical units with NaN for nodata (the item's
        ``raster:bands`` nodata, else the profile's, else the file's own tag); class bands
        (SCL) keep their integer dtype and carry ``nodata``. The GeoBox is
        ``cube.odc.geobox``; CRS in ``spatial_ref``.

    Raises
    ------
    ConfigError, GridError, ReadError, ChecksumError, HrefRefused, EmptySearchError
        (``ReadError`` and ``ChecksumError`` at compute time, with ``failure``, ``item``,
        ``asset`` and ``href`` set; the href without its query string)

    Examples
    --------
    >>> cube = load(items, bands=["red", "nir", "SCL"], resolution=20,
    ...             chunks={"x": 512, "y": 512})  # doctest: +SKIP
    """
    plan = plan_load(items, **options)
    ensure_configured()
    return finish(ENGINES[plan.engine](plan), plan)


# one declaration of the keywords, plan_load's: help(load) and IDEs show them
load.__signature__ = inspect.signature(plan_load).replace(  # type: ignore[attr-defined]
    return_annotation="xr.Dataset")
