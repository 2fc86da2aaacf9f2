"""GeoTIFF out: Cloud-Optimised GeoTIFFs of arrays (archives) and of lazy results (one file per
layer, provenance in tags and a STAC Item beside each)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from eocube.errors import ConfigError, GridError
from eocube.io.paths import write_json
from eocube.io.stac import PROVENANCE, as_dataset, stac_item

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

__all__ = ["to_cog", "write_cog"]


def block_size(h: int, w: int) -> int:
    """The COG tile size: 256, or a multiple of 16 about half the shorter side of small rasters."""
    return 256 if min(h, w) >= 512 else max(16, (min(h, w) // 2) // 16 * 16)


def write_cog(path: str | os.PathLike[str], data: np.ndarray, gb: GeoBox, /, *,
              nodata: float | None, resampling: str = "average",
              tags: dict[str, str] | None = None, descriptions: list[str] | None = None
              ) -> Path:
    """Write ``data`` ((y, x) or (band, y, x)) on ``gb`` as a tiled, DEFLATE-compressed COG
    with overviews. Deterministic: no timestamps are written. Eager."""
    import rasterio

    arr = data if data.ndim == 3 else data[None]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = arr.shape[1:]
    profile = {
        "driver": "COG", "width": w, "height": h, "count": arr.shape[0],
        "dtype": arr.dtype.name, "crs": str(gb.crs), "transform": gb.transform,
        "nodata": nodata, "compress": "DEFLATE",
        "predictor": 3 if arr.dtype.kind == "f" else 2,
        "blocksize": block_size(h, w), "overview_resampling": resampling, "num_threads": 1,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr)
        if tags:
            ds.update_tags(**tags)
        for i, d in enumerate(descriptions or (), start=1):
            ds.set_band_description(i, d)
    return path


def to_cog(result: xr.DataArray | xr.Dataset, path: str | Path, /, *,
           stac: bool = True, overwrite: bool = True) -> list[Path]:
    """Write each (time step, variable) layer of ``result`` as a Cloud-Optimised GeoTIFF.

    ``path`` names the file for a single layer (``urban.tif``); with several layers it is the
    stem: ``urban_<variable>_<YYYY-MM-DD>.tif``. The provenance goes into the GeoTIFF tags and,
    with ``stac=True``, into a STAC Item ``<file stem>.stac-item.json`` beside each file.

    Eager: each layer is computed and held in memory while it is written (one (y, x) layer at a
    time); use :func:`to_zarr` for areas that do not fit.
    """
    ds = as_dataset(result)
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    layers = []
    for k, v in ds.data_vars.items():
        times = list(v["time"].values) if "time" in v.dims else [None]
        for i, t in enumerate(times):
            layer = v.isel(time=i) if t is not None else v
            if layer.ndim != 2:
                raise GridError(f"to_cog writes (y, x) layers; variable {k!r} has dims "
                                f"{layer.dims}")
            layers.append((str(k), t, layer))
    single = len(layers) == 1
    out = []
    for k, t, layer in layers:
        if single:
            f = base.with_suffix(".tif")
        else:
            tag = "" if t is None else "_" + str(np.datetime_as_string(t, unit="D"))
            f = base.with_name(f"{base.stem}_{k}{tag}.tif")
        if f.exists() and not overwrite:
            raise ConfigError(f"{str(f)!r} exists; pass overwrite=True")
        data = np.asarray(layer.compute().values, dtype=np.float32)
        tags = {key: _tag(layer.attrs[key]) for key in (*PROVENANCE, "model_spec")
                if key in layer.attrs}
        write_cog(f, data, layer.odc.geobox, nodata=float("nan"), tags=tags, descriptions=[k])
        if stac:
            attrs = {**ds.attrs, **layer.attrs}
            one = layer.expand_dims(time=[t]) if t is not None else layer
            item = stac_item(one.to_dataset(name=k).assign_attrs(attrs), f.name,
                             media_type="image/tiff; application=geotiff; "
                                        "profile=cloud-optimized")
            write_json(f.with_suffix(".stac-item.json"), item)
        out.append(f)
    return out


def _tag(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)
