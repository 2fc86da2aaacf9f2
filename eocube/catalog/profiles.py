"""Sensor profiles: what eocube knows about a product before it reads a pixel of it.

A profile maps a product's bands to the asset keys each public catalog uses (Planetary Computer
keeps Sentinel-2's ``B04``, Earth Search calls it ``red``), and carries per band its dtype,
nodata, scale and offset, native resolution, role and resampling. Profiles are pure metadata:
they read STAC item JSON (dicts or ``pystac.Item``) and never touch a raster; ``eocube.cube``
uses them to load and scale.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, Literal

from eocube.errors import ConfigError

Role = Literal["reflectance", "classification", "backscatter", "radiance", "visual", "quality"]
Resampling = Literal["nearest", "bilinear", "cubic", "average", "mode"]

#: Public STAC APIs and the key each has in ``SensorProfile.collections``.
CATALOG_URLS = {
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "cmr-stac": "https://cmr.earthdata.nasa.gov/stac/LAADS",
}


def catalog_key(url: str | None) -> str:
    """Which catalog ``url`` is: a key of ``CATALOG_URLS``, or ``"local"`` for any other."""
    if url is None:
        return "local"
    u = url.rstrip("/").lower()
    for key, known in CATALOG_URLS.items():
        host = known.split("/")[2]
        if host in u:
            return key
    return "local"


@dataclasses.dataclass(frozen=True)
class BandSpec:
    """One band of a product.

    ``name`` is eocube's canonical name; ``aliases`` are the other asset keys or common names
    under which catalogs publish it (matched case-insensitively). ``asset_band`` is the
    one-based band index inside a multi-band asset (1 for single-band COGs).
    """

    name: str
    aliases: tuple[str, ...] = ()
    resolution: float | None = None
    dtype: str = "float32"
    nodata: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    role: Role = "reflectance"
    resampling: Resampling = "bilinear"
    unit: str | None = None
    asset: str | None = None
    asset_band: int = 1

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key that names this band, canonical first."""
        return (self.name, *self.aliases)

    @property
    def is_class(self) -> bool:
        """Whether the values are codes (read with nearest, kept as integers)."""
        return self.role in ("classification", "quality")


@dataclasses.dataclass(frozen=True)
class SensorProfile:
    """A product: its collection ids per catalog, its bands, and how to scale each.

    Parameters
    ----------
    name
        Short name (``"sentinel-2-l2a"``, ``"s2"`` …) used by ``get_profile``.
    collections
        Collection id per catalog key (``"local"``, ``"planetary-computer"``,
        ``"earth-search"``, ``"cmr-stac"``).
    bands
        The bands, in a stable order.
    quality_band
        Canonical name of the classification or quality band, if the product has one.
    crs
        The CRS the product is published in when it has one fixed CRS (``None``: per item).
    """

    name: str
    collections: Mapping[str, str]
    bands: tuple[BandSpec, ...]
    quality_band: str | None = None
    crs: str | None = None
    description: str = ""

    # ---- bands ----------------------------------------------------------------------------
    def band(self, key: str, /) -> BandSpec:
        """The band that ``key`` names (canonical name or alias, any case).

        Raises
        ------
        ConfigError
            If no band of the profile answers to ``key``.
        """
        b = self._by_key.get(key.lower())
        if b is not None:
            return b
        raise ConfigError(f"profile {self.name!r} has no band {key!r}; its bands are "
                          f"{[b.name for b in self.bands]} (aliases: "
                          f"{sorted({a for b in self.bands for a in b.aliases})})")

    @functools.cached_property
    def _by_key(self) -> dict[str, BandSpec]:
        """Lower-case key → band, the first band that has the key (asked per item and band
        while a load is planned)."""
        out: dict[str, BandSpec] = {}
        for b in self.bands:
            for k in b.keys:
                out.setdefault(k.lower(), b)
        return out

    def has_band(self, key: str, /) -> bool:
        try:
            self.band(key)
        except ConfigError:
            return False
        return True

    def resampling(self, key: str, /) -> str:
        return self.band(key).resampling

    # ---- collections ----------------------------------------------------------------------
    def collection(self, catalog: str | None = None, /) -> str:
        """The collection id in the catalog at URL (or key) ``catalog``; local by default."""
        key = catalog if catalog in self.collections else catalog_key(catalog)
        try:
            return self.collections[key]
        except KeyError:
            raise ConfigError(f"profile {self.name!r} has no collection in the {key!r} catalog; "
                              f"it knows {dict(self.collections)}; pass collections=[...] "
                              "explicitly") from None

    def matches(self, item: Any, /) -> bool:
        """Whether ``item`` belongs to one of this profile's collections."""
        return _item_dict(item).get("collection") in set(self.collections.values())

    # ---- items ----------------------------------------------------------------------------
    def asset_key(self, item: Any, band: str, /) -> str | None:
        """The asset key under which ``item`` holds ``band``; ``None`` if it has none."""
        spec = self.band(band)
        assets = _item_dict(item).get("assets", {})
        if spec.asset is not None:
            return spec.asset if spec.asset in assets else None
        lower = {k.lower(): k for k in assets}
        for k in spec.keys:
            if k.lower() in lower:
                return lower[k.lower()]
        # a single-band asset whose eo:bands name/common_name matches (Earth Search v0 style)
        for ak, a in assets.items():
            ebs = a.get("eo:bands", []) or []
            for eb in ebs if len(ebs) == 1 else []:
                if {str(eb.get("name", "")).lower(), str(eb.get("common_name", "")).lower()} & {
                        x.lower() for x in spec.keys}:
                    return ak
        return None

    def band_map(self, item: Any, /) -> dict[str, str]:
        """Canonical band name → asset key, for every profile band ``item`` holds."""
        out = {}
        for b in self.bands:
            k = self.asset_key(item, b.name)
            if k is not None:
                out[b.name] = k
        return out

    def scale_offset(self, item: Any, band: str, /) -> tuple[float, float]:
        """Scale and offset that turn ``band``'s stored values of ``item`` into physical units.

        The asset's own ``raster:bands`` scale/offset win where present; otherwise the
        profile's rule applies (for Sentinel-2 L2A: offset −0.1 from processing baseline 04.00
        on, 0 before, unless Earth Search marks the offset as already applied).
        """
        spec = self.band(band)
        d = _item_dict(item)
        props = d.get("properties", {})
        rb = self._raster_band(d, band, spec)
        scale = float(rb.get("scale", spec.scale))
        offset = float(rb["offset"]) if "offset" in rb else self._default_offset(spec, props)
        if props.get("earthsearch:boa_offset_applied") is True and spec.role == "reflectance":
            offset = 0.0
        return scale, offset

    def _default_offset(self, spec: BandSpec, props: Mapping[str, Any]) -> float:
        if self.name == "sentinel-2-l2a" and spec.role == "reflectance":
            pb = props.get("s2:processing_baseline")
            if pb is None:
                return spec.offset
            return S2_BOA_OFFSET * spec.scale if _baseline(pb) >= (4, 0) else 0.0
        return spec.offset

    def nodata(self, item: Any, band: str, /) -> float | None:
        """The stored nodata of ``band`` in ``item`` (``raster:bands`` first, then profile)."""
        spec = self.band(band)
        rb = self._raster_band(_item_dict(item), band, spec)
        if "nodata" in rb:
            v = rb["nodata"]
            return float("nan") if isinstance(v, str) and v.lower() == "nan" else float(v)
        return spec.nodata

    def _raster_band(self, d: Mapping[str, Any], band: str, spec: BandSpec) -> dict[str, Any]:
        """The ``raster:bands`` entry of ``band`` in the item dict ``d`` ({} when none)."""
        key = self.asset_key(d, band)
        if key is None:
            return {}
        rbs = d["assets"][key].get("raster:bands") or []
        return rbs[spec.asset_band - 1] if len(rbs) >= spec.asset_band else {}


def _baseline(pb: str | float) -> tuple[int, int]:
    try:
        major, _, minor = str(pb).partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        raise ConfigError(f"s2:processing_baseline {pb!r} is not of the form 'NN.NN'") from None


def _item_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    to_dict = getattr(item, "to_dict", None)
    if to_dict is None:
        raise ConfigError(f"expected a STAC item (dict or pystac.Item), got {type(item).__name__}")
    return to_dict(include_self_link=False, transform_hrefs=False)


# ---- the profiles -------------------------------------------------------------------------

#: Since processing baseline 04.00 (25 January 2022) L2A DNs carry BOA_ADD_OFFSET = −1000.
S2_BOA_OFFSET = -1000.0
#: SCL classes that are not clear surface: no data, saturated, cloud shadow, clouds, cirrus.
SCL_CLOUD_SHADOW = (3, 8, 9, 10)


def _s2(name: str, common: tuple[str, ...], res: float) -> BandSpec:
    return BandSpec(name, aliases=common, resolution=res, dtype="uint16", nodata=0,
                    scale=1e-4, offset=0.0, role="reflectance", resampling="bilinear")


SENTINEL2_L2A = SensorProfile(
    name="sentinel-2-l2a",
    # Earth Search: Collection 1 (reprocessed, offsets in raster:bands) is the one searched;
    # items of its legacy "sentinel-2-l2a" collection are still recognised (same id as PC's)
    collections={"local": "sentinel-2-l2a", "planetary-computer": "sentinel-2-l2a",
                 "earth-search": "sentinel-2-c1-l2a"},
    bands=(
        _s2("B01", ("coastal",), 60), _s2("B02", ("blue",), 10), _s2("B03", ("green",), 10),
        _s2("B04", ("red",), 10), _s2("B05", ("rededge1", "rededge"), 20),
        _s2("B06", ("rededge2",), 20), _s2("B07", ("rededge3",), 20),
        _s2("B08", ("nir",), 10), _s2("B8A", ("nir08",), 20), _s2("B09", ("nir09",), 60),
        _s2("B11", ("swir16",), 20), _s2("B12", ("swir22",), 20),
        BandSpec("SCL", aliases=("scl",), resolution=20, dtype="uint8", nodata=0,
                 role="classification", resampling="nearest"),
    ),
    quality_band="SCL",
    description="Sentinel-2 Level-2A surface reflectance (0-1) with the scene classification",
)

SENTINEL1_RTC = SensorProfile(
    name="sentinel-1-rtc",
    collections={"local": "sentinel-1-rtc", "planetary-computer": "sentinel-1-rtc"},
    bands=(
        BandSpec("vv", aliases=("VV",), resolution=10, dtype="float32", nodata=-32768.0,
                 role="backscatter", resampling="bilinear", unit="linear power"),
        BandSpec("vh", aliases=("VH",), resolution=10, dtype="float32", nodata=-32768.0,
                 role="backscatter", resampling="bilinear", unit="linear power"),
    ),
    description="Sentinel-1 gamma0 RTC backscatter in linear power",
)

NTL_RES_DEG = 15.0 / 3600.0

VIIRS_NTL_MONTHLY = SensorProfile(
    name="viirs-ntl-monthly",
    collections={"local": "viirs-ntl-monthly"},
    bands=(
        # nearest, because radiance is per unit area: on a finer grid every fine pixel keeps
        # its coarse pixel's radiance, which conserves radiance × area (the NTL total)
        BandSpec("radiance", aliases=("AllAngle_Composite_Snow_Free", "ntl"),
                 resolution=NTL_RES_DEG, dtype="float32", nodata=math.nan, role="radiance",
                 resampling="nearest", unit="nW cm-2 sr-1"),
    ),
    crs="EPSG:4326",
    description="VIIRS monthly night-time lights (COG on a 15 arc-second grid)",
)


def _black_marble(product: str, layer: str, cadence: str) -> SensorProfile:
    """A NASA Black Marble product: one radiance band, the HDF5 ``layer``, in the ``h5``
    asset (read by ``eocube.cube.blackmarble``)."""
    return SensorProfile(
        name=product.lower(),
        collections={"local": f"blackmarble-{product.lower()}", "cmr-stac": f"{product}_1"},
        bands=(
            BandSpec("radiance", aliases=(layer, "ntl"),
                     resolution=NTL_RES_DEG, dtype="uint16", nodata=65535, scale=0.1,
                     role="radiance", resampling="nearest", unit="nW cm-2 sr-1", asset="h5"),
        ),
        crs="EPSG:4326",
        description=f"NASA Black Marble {product} {cadence} HDF5 tiles (10° × 10°, "
                    "15 arc-seconds)",
    )


BLACK_MARBLE_VNP46A3 = _black_marble("VNP46A3", "AllAngle_Composite_Snow_Free", "monthly")
BLACK_MARBLE_VNP46A2 = _black_marble("VNP46A2", "DNB_BRDF-Corrected_NTL", "daily")

SYNTH_VHR = SensorProfile(
    name="eocube-synth-vhr",
    collections={"local": "eocube-synth-vhr"},
    bands=tuple(
        BandSpec(c, aliases=(f"visual.{i}",), resolution=2, dtype="uint8", nodata=None,
                 role="visual", resampling="bilinear", asset="visual", asset_band=i)
        for i, c in enumerate(("red", "green", "blue"), start=1)),
    description="High-resolution true-colour RGB of the synthetic city (uint8)",
)

SYNTH_MOBILE = SensorProfile(
    name="eocube-synth-mobile",
    collections={"local": "eocube-synth-mobile"},
    bands=tuple(
        # users per 100 m cell: a density like radiance, so nearest on a finer grid keeps each
        # cell's value per cell area (align averages onto coarser grids)
        BandSpec(kind, aliases=(f"{kind}-night", f"{kind}_night"), resolution=100,
                 dtype="float32", nodata=math.nan, role="radiance", resampling="nearest",
                 unit="users")
        for kind in ("weekday", "weekend")),
    description="Night-time mobile-signal users per 100 m cell, weekday and weekend nights, "
                "as an operator publishes them (synthetic)",
)

PROFILES: dict[str, SensorProfile] = {p.name: p for p in (
    SENTINEL2_L2A, SENTINEL1_RTC, VIIRS_NTL_MONTHLY, BLACK_MARBLE_VNP46A3, BLACK_MARBLE_VNP46A2,
    SYNTH_VHR, SYNTH_MOBILE)}
_SHORT = {"s2": "sentinel-2-l2a", "s1": "sentinel-1-rtc", "ntl": "viirs-ntl-monthly",
          "vhr": "eocube-synth-vhr", "blackmarble": "vnp46a3",
          "mobile": "eocube-synth-mobile"}


def get_profile(name: str | SensorProfile, /) -> SensorProfile:
    """The profile called ``name`` (or a short name: s2, s1, ntl, vhr, blackmarble,
    mobile).

    Raises
    ------
    ConfigError
        If no profile has that name.
    """
    if isinstance(name, SensorProfile):
        return name
    key = _SHORT.get(name.lower(), name.lower())
    try:
        return PROFILES[key]
    except KeyError:
        raise ConfigError(f"unknown sensor profile {name!r}; choose one of "
                          f"{sorted(PROFILES) + sorted(_SHORT)}") from None


def profile_for_item(item: Any, /) -> SensorProfile:
    """The profile whose collections include ``item``'s collection.

    Raises
    ------
    ConfigError
        If ``item`` belongs to no known product; pass ``profile=`` explicitly.
    """
    d = _item_dict(item)
    cid = d.get("collection")
    for p in PROFILES.values():
        if p.matches(d):
            return p
    raise ConfigError(f"item {d.get('id')!r} of collection {cid!r} matches no sensor profile; "
                      f"pass profile= (one of {sorted(PROFILES)})")
