"""Every private name of odc-stac / odc-loader that eocube uses, gathered here with the reason
for each, so that an odc release that moves one breaks one import in one file.

Everything else comes from their public API (``odc.loader``: ``RioDriver``, ``RioReader``,
``RasterSource``, ``RasterLoadParams``, ``resolve_src_nodata``, ``resolve_dst_nodata``,
``resolve_fuser``). The pins in ``pyproject.toml`` stop below the next minor releases, which
may move these names. Imported lazily (by the readers only), like odc itself.
"""

from __future__ import annotations

# odc-loader's default fuser (first non-nodata value): the fast path fuses exactly as
# odc-loader's load task does when no fuser is named.
from odc.loader._fuser import fuser_for_nodata

# odc-loader's nodata test (NaN-aware for floats): the fast path's paste masks exactly the
# pixels odc-loader's read masks, which keeps the two paths bit-identical.
from odc.loader._reader import nodata_mask

# odc-stac's STAC metadata parser: eocube subclasses it to attach, to each source, the names
# and the scale/offset/nodata the reader applies (odc-stac has no public hook for
# ``driver_data`` other than a parser of its own, and writing one would duplicate its
# band/asset/grid extraction).
from odc.stac._mdtools import StacMDParser

__all__ = ["StacMDParser", "fuser_for_nodata", "nodata_mask"]
