"""The engines, the second step of a load: each reads a ``LoadPlan`` into raw bands.

Every engine honours one contract (``Engine``), so ``load`` neither knows nor cares which one
ran: a Dataset with one float32 variable per plan band on ``("time", "y", "x")``, one step
per plan group and the plan's GeoBox shape, lazy (Dask); each source's stored values times
its scale plus its offset, its declared nodata as NaN, the sources of a step fused in plan
order (first valid value), and under ``on_error="nan"`` +inf where a failed read left no
data. Names, units, class-band dtypes and coordinates are ``finish``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

import xarray as xr

from eocube.cube.plan import LoadPlan


class Engine(Protocol):
    """Reads a plan into raw (time, y, x) bands (see the module docstring)."""

    def __call__(self, plan: LoadPlan, /) -> xr.Dataset: ...


def read_odc(plan: LoadPlan, /) -> xr.Dataset:
    """odc-stac's cube: built by eocube's fast path when every tile lies on the output grid
    (one task per chunk, ``_pasted``), else by ``odc.stac.load`` (``_odc``)."""
    from eocube.cube import _odc, _pasted

    raw = _pasted.read(plan)
    return _odc.read(plan) if raw is None else raw


def read_stackstac(plan: LoadPlan, /) -> xr.Dataset:
    """stackstac's cube (``_stackstac``)."""
    from eocube.cube import _stackstac

    return _stackstac.read(plan)


def read_hdf5(plan: LoadPlan, /) -> xr.Dataset:
    """Black Marble HDF5 tiles read by eocube (``blackmarble``)."""
    from eocube.cube import blackmarble

    return blackmarble.read(plan)


#: engine name (``load(engine=...)``) → engine
ENGINES: Mapping[str, Engine] = MappingProxyType(
    {"odc": read_odc, "stackstac": read_stackstac, "hdf5": read_hdf5})
