"""Shared grids for the zonal tests: small, georegistered, built from a GeoBox (no files)."""

from __future__ import annotations

import pytest
from odc.geo.geobox import GeoBox

CRS = "EPSG:32650"


@pytest.fixture(scope="session")
def gbox() -> GeoBox:
    """A 200 × 300 north-up grid of 10 m pixels."""
    return GeoBox.from_bbox((500_000, 3_000_000, 503_000, 3_002_000), CRS, resolution=10)


def _raise_on_compute(dsk, keys, **kwargs):
    raise AssertionError("dask computed while building a lazy result")


@pytest.fixture
def no_compute():
    """Context in which any dask computation fails the test (xarray's raise_if_dask_computes)."""
    import dask

    return lambda: dask.config.set(scheduler=_raise_on_compute)
