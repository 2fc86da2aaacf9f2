"""Read what only the simulator knows from an archive's ``truth/`` folder.

For evaluation code, training labels and tests only: a pipeline stage reads the archive's
collections and open-map layers (``eocube.catalog.vectors``), never this.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eocube.catalog.archive import Archive, open_archive
from eocube.errors import ArchiveError
from eocube.synth.build import TRUTH, TRUTH_COLLECTIONS, TRUTH_VECTORS

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr


def _truth_root(archive: str | os.PathLike[str] | Archive) -> Path:
    arch = archive if isinstance(archive, Archive) else open_archive(archive)
    root = arch.root / TRUTH
    if not root.is_dir():
        raise ArchiveError(f"archive {str(arch.root)!r} has no {TRUTH}/ folder: its truth was "
                           "removed or it is not a synthetic city built by eocube.synth; "
                           "truth exists only for cities built with eocube.synth.build_city")
    return root


def _raster_items(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, item JSON) of every truth raster item."""
    return [(p.parent, json.loads(p.read_text())) for cid in TRUTH_COLLECTIONS
            for p in sorted((root / cid).glob("*/*.json"))]


def truth_layers(archive: str | os.PathLike[str] | Archive, /) -> list[str]:
    """Names ``read_truth`` accepts for ``archive``: the truth vector tables, then the truth
    rasters (``builtup-<year>``, ``change-date``, ``building-id``, ``building-id-vhr``)."""
    root = _truth_root(archive)
    items = _raster_items(root)
    return [*TRUTH_VECTORS, *(items[0][1]["assets"] if items else {})]


def read_truth(archive: str | os.PathLike[str] | Archive, name: str, /
               ) -> gpd.GeoDataFrame | xr.DataArray:
    """A truth layer of a synthetic city archive, for evaluation, training labels and tests.

    Parameters
    ----------
    archive
        A complete archive built by ``eocube.synth.build_city`` (path or ``Archive``).
    name
        A truth vector table (``"buildings"`` with occupants, floors, height, structure,
        stock and dates; ``"taz"`` with the true land use; ``"communities"``, ``"roads"``,
        ``"pois"``) or a truth raster (``"builtup-<year>"``, ``"change-date"``,
        ``"building-id"``, ``"building-id-vhr"``), see ``truth_layers``.

    Returns
    -------
    geopandas.GeoDataFrame or xarray.DataArray
        The table in the city's CRS, or the raster mosaicked over the city on its grid
        (``(y, x)``, with ``nodata`` in its attributes). Eager: the raster is read into memory.

    Raises
    ------
    ArchiveError
        If the archive has no ``truth/`` folder or no layer called ``name``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from eocube.synth import build_city
    >>> p = build_city(pathlib.Path(tempfile.mkdtemp()) / "city", preset="tiny", years=1)
    >>> int(read_truth(p, "buildings")["occupants"].sum()) > 0
    True
    >>> read_truth(p, "change-date").dims
    ('y', 'x')
    """
    root = _truth_root(archive)
    if name in TRUTH_VECTORS:
        import geopandas as gpd

        path = root / f"{name}.parquet"
        if not path.exists():
            raise ArchiveError(f"truth layer {name!r} is missing: {path} does not exist")
        return gpd.read_parquet(path)
    items = _raster_items(root)
    if not items or name not in items[0][1]["assets"]:
        raise ArchiveError(f"the archive's truth has no layer {name!r}; it has "
                           f"{truth_layers(root.parent)}")
    return _mosaic(items, name)


def _mosaic(items: list[tuple[Path, dict[str, Any]]], name: str) -> xr.DataArray:
    import rasterio
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords
    from rasterio.transform import Affine

    assets = [(d, it, it["assets"][name]) for d, it in items]
    a = assets[0][2]["proj:transform"]
    rx, ry = a[0], a[4]
    x0 = min(s["proj:transform"][2] for _, _, s in assets)
    y0 = max(s["proj:transform"][5] for _, _, s in assets)
    x1 = max(s["proj:transform"][2] + s["proj:shape"][1] * rx for _, _, s in assets)
    y1 = min(s["proj:transform"][5] + s["proj:shape"][0] * ry for _, _, s in assets)
    shape = (int(round((y1 - y0) / ry)), int(round((x1 - x0) / rx)))
    band = assets[0][2]["raster:bands"][0]
    nodata = band.get("nodata")
    out = np.full(shape, nodata if nodata is not None else 0, dtype=band["data_type"])
    for d, _, s in assets:
        path = d / s["href"]
        r0 = int(round((s["proj:transform"][5] - y0) / ry))
        c0 = int(round((s["proj:transform"][2] - x0) / rx))
        with rasterio.open(path) as ds:
            out[r0:r0 + ds.height, c0:c0 + ds.width] = ds.read(1)
    gb = GeoBox(shape, Affine(rx, 0, x0, 0, ry, y0), assets[0][1]["properties"]["proj:code"])
    return xr.DataArray(out, dims=("y", "x"), coords=xr_coords(gb), name=name,
                        attrs={"nodata": nodata, "title": assets[0][2].get("title", name)})
