"""The odc-stac engine: ``odc.stac.load`` reads the plan's items, through eocube's reader
(``_read``: each source scaled, its declared nodata applied, failures handled as the plan
says). Used when some tile is off the output grid; otherwise ``_pasted`` builds the same cube
without odc-stac's planning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from eocube.cube._read import FUSER, SourceInfo, odc_driver
from eocube.cube.plan import LoadPlan


def source_infos(plan: LoadPlan) -> dict[tuple[str, str, int], SourceInfo]:
    """(item id, asset key, one-based band index) → what the reader applies to that source."""
    return {(it.id, s.asset, s.index): SourceInfo(it.id, s.asset, s.scale, s.offset, s.nodata,
                                                  s.sha256)
            for it in plan.items for s in it.sources.values()}


def band_names(plan: LoadPlan) -> dict[str, str]:
    """Band → odc-stac's name for it: the asset key, ``asset.N`` inside a multi-band asset."""
    out = {}
    for b in plan.bands:
        src = next(it.sources[b] for it in plan.items if b in it.sources)
        out[b] = f"{src.asset}.{src.index}" if src.n_bands > 1 else src.asset
    return out


def read(plan: LoadPlan, /) -> xr.Dataset:
    """The plan's raw (time, y, x) bands, read by ``odc.stac.load`` (lazily)."""
    import odc.stac

    items = plan.items
    step = [gi for gi, g in enumerate(plan.groups) for _ in g]  # odc-stac passes the index
    names = band_names(plan)
    assets = {a for a, _ in map(plan.asset_band, plan.bands)}
    ds = odc.stac.load(
        [_with_assets(it.item, assets) for it in items], bands=list(dict.fromkeys(names.values())),
        geobox=plan.geobox, chunks=dict(plan.chunks),
        groupby=lambda item, parsed, idx: step[idx],
        resampling={names[b]: m for b, m in plan.resampling.items()}, dtype="float32",
        driver=odc_driver(plan.on_error, source_infos(plan), plan.guard),
        # without failure markers odc-loader's own NaN fuser takes the first valid value
        fuse_func=FUSER if plan.on_error == "nan" else None, fail_on_error=True,
        nodata=np.nan)
    return xr.Dataset({b: ds[n].variable for b, n in names.items()})


def _with_assets(item: Any, keys: set[str]) -> Any:
    """``item`` holding only the assets ``keys`` (hrefs made absolute): odc-stac parses
    every asset of every item, which costs more than the reads of a small load."""
    import pystac

    assets = {k: pystac.Asset(a.get_absolute_href() or a.href, title=a.title,
                              description=a.description, media_type=a.media_type,
                              roles=a.roles, extra_fields=a.extra_fields)
              for k, a in item.assets.items() if k in keys}
    # a copy of the properties: the constructor writes the datetime back into them
    return pystac.Item(item.id, item.geometry, item.bbox, item.datetime, dict(item.properties),
                       stac_extensions=item.stac_extensions, collection=item.collection_id,
                       assets=assets)
