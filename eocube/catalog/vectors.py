"""Vector layers of an archive: the open-map layers (shaped like OpenStreetMap extracts) and
auxiliary tables such as the census, read as GeoDataFrames from a folder or a URL.

An archive keeps them as GeoParquet under ``vectors/``: ``osm_roads``, ``osm_pois``,
``osm_buildings``, ``osm_landuse`` and ``census``. A user's own OSM or census layers go in
the same place under the same names. The synthetic city's truth is not here (see
``eocube.synth.read_truth``, for evaluation only).
"""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from eocube.catalog.archive import Archive
from eocube.errors import ArchiveError

if TYPE_CHECKING:
    import geopandas as gpd

VECTORS = "vectors"

#: Short names of the layers every synthetic archive publishes, and their files' stems.
LAYERS = {"roads": "osm_roads", "pois": "osm_pois", "buildings": "osm_buildings",
          "landuse": "osm_landuse", "census": "census"}

_TRUTH_HINT = ("; the simulator's truth (occupants, floors, heights, true land use …) is not an "
               "input: evaluation code reads it with eocube.synth.read_truth")


def _stem(name: str) -> str:
    return LAYERS.get(name, name)


def _is_url(s: str) -> bool:
    return "://" in s


def layer_names(archive: str | os.PathLike[str] | Archive, /) -> list[str]:
    """Stems of the GeoParquet layers under ``vectors/`` of a local archive, sorted.

    Raises
    ------
    ArchiveError
        If ``archive`` is not a local folder.
    """
    root = _local_root(archive)
    if root is None:
        raise ArchiveError(f"layer_names needs a local archive folder, not {str(archive)!r}")
    return sorted(p.stem for p in (root / VECTORS).glob("*.parquet"))


def _local_root(archive: str | os.PathLike[str] | Archive) -> Path | None:
    if isinstance(archive, Archive):
        return archive.root
    s = os.fspath(archive)
    if _is_url(s):
        u = urllib.parse.urlparse(s)
        return Path(urllib.request.url2pathname(u.path)) if u.scheme == "file" else None
    return Path(s).expanduser().absolute()


def open_layer(archive: str | os.PathLike[str] | Archive, name: str, /, *,
               columns: Sequence[str] | None = None) -> gpd.GeoDataFrame:
    """Read the vector layer ``name`` of an archive.

    Parameters
    ----------
    archive
        An archive folder, an ``Archive``, or the URL of one (``file://``, ``http://``,
        ``https://``; other schemes such as ``s3://`` go through fsspec).
    name
        ``"roads"``, ``"pois"``, ``"buildings"``, ``"landuse"``, ``"census"`` (the files
        ``vectors/osm_roads.parquet`` … ``vectors/census.parquet``) or the stem of any other
        GeoParquet file under ``vectors/``.
    columns
        Columns to read (the geometry is always read); all by default.

    Returns
    -------
    geopandas.GeoDataFrame
        The layer with its CRS.

    Raises
    ------
    ArchiveError
        If the archive or the layer is missing (the message names the layer, its path or URL,
        and for a local archive the layers it has), or a URL cannot be read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from eocube.synth import build_city
    >>> p = build_city(pathlib.Path(tempfile.mkdtemp()) / "city", preset="tiny", years=1)
    >>> sorted(open_layer(p, "roads")["highway"].unique())[:2]
    ['primary', 'residential']
    """
    import geopandas as gpd

    stem = _stem(name)
    cols = None if columns is None else [*columns, "geometry"] if "geometry" not in columns \
        else list(columns)
    root = _local_root(archive)
    if root is not None:
        if not root.is_dir():
            raise ArchiveError(f"archive {str(root)!r} does not exist or is not a folder; "
                               f"cannot read its layer {name!r}")
        path = root / VECTORS / f"{stem}.parquet"
        if not path.exists():
            raise ArchiveError(f"vector layer {name!r} is missing from the archive {str(root)!r}: "
                               f"{path} does not exist; its layers are {layer_names(root)}"
                               + _TRUTH_HINT)
        return gpd.read_parquet(path, columns=cols)
    url = f"{os.fspath(archive).rstrip('/')}/{VECTORS}/{stem}.parquet"
    scheme = urllib.parse.urlparse(url).scheme
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                data = r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise ArchiveError(f"vector layer {name!r} is missing from the archive at "
                                   f"{os.fspath(archive)!r}: {url} answered 404"
                                   + _TRUTH_HINT) from None
            raise ArchiveError(f"could not read vector layer {name!r} from {url}: HTTP "
                               f"{e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            raise ArchiveError(f"could not read vector layer {name!r} from {url}: {e}; check "
                               "the archive URL and that its server is running") from e
        return gpd.read_parquet(io.BytesIO(data), columns=cols)
    try:
        return gpd.read_parquet(url, columns=cols)
    except FileNotFoundError:
        raise ArchiveError(f"vector layer {name!r} is missing from the archive at "
                           f"{os.fspath(archive)!r}: {url} does not exist" + _TRUTH_HINT) from None
