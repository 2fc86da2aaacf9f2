"""The sensors that observe the synthetic city: Sentinel-2 L2A, Sentinel-1 RTC, monthly night
lights, a high-resolution RGB image, night-time mobile signal, and the truth rasters.

A ``Scene`` rasterises the world once (class fractions at 10 m from a 2 m class map, the
construction timeline as a sparse pixel × building matrix) and then simulates any acquisition
date on demand. Each acquisition draws from its own generator seeded by (city seed, sensor,
date index), so dates can be simulated in any order or in parallel with identical results.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.ndimage as ndi
import scipy.sparse as sp
import shapely
from odc.geo.geobox import GeoBox
from rasterio import features
from rasterio.transform import Affine

from eocube.synth.mobile import night_mobile_signal
from eocube.synth.world import World

# class codes of the 2 m class map
GROUND, ROAD, WATER, PARK, ROOF_CONCRETE, ROOF_METAL, ROOF_TILE, NEW_SITE = range(8)
N_CLASSES = 8

S2_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
S2_20M = ("B11", "B12")
#: Sentinel-2 band metadata: common name, centre wavelength (µm), FWHM (µm), resolution (m).
S2_BAND_META = {
    "B02": ("blue", 0.490, 0.098, 10), "B03": ("green", 0.560, 0.045, 10),
    "B04": ("red", 0.665, 0.038, 10), "B08": ("nir", 0.842, 0.145, 10),
    "B11": ("swir16", 1.610, 0.143, 20), "B12": ("swir22", 2.190, 0.242, 20),
}
#: Sentinel-2 L2A since processing baseline 04.00: reflectance = (DN + BOA_ADD_OFFSET) / 10000
S2_QUANTIFICATION = 10_000
S2_BOA_ADD_OFFSET = -1_000
S2_PROCESSING_BASELINE = "05.10"

# SCL class codes as published by ESA for Sentinel-2 L2A
# (class 3, cloud shadows, is ``SCL_SHADOW``: ``eocube.catalog.profiles.SCL_CLOUD_SHADOW`` names
# the set of classes a cloud mask drops, which ``SCL_CLOUD_AND_SHADOW`` equals)
SCL_NO_DATA, SCL_SATURATED, SCL_DARK, SCL_SHADOW, SCL_VEGETATION = 0, 1, 2, 3, 4
SCL_NOT_VEGETATED, SCL_WATER, SCL_UNCLASSIFIED, SCL_CLOUD_MEDIUM = 5, 6, 7, 8
SCL_CLOUD_HIGH, SCL_THIN_CIRRUS, SCL_SNOW = 9, 10, 11
SCL_CLOUD_AND_SHADOW = (SCL_SHADOW, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_THIN_CIRRUS)

S1_NODATA = -32768.0
NTL_RES_DEG = 15.0 / 3600.0  # 15 arc-seconds, the VIIRS Black Marble grid

# surface reflectance endmembers, bands as S2_BANDS
_E = {
    "soil": np.array([0.10, 0.14, 0.18, 0.25, 0.33, 0.28]),
    "veg_green": np.array([0.03, 0.07, 0.04, 0.40, 0.20, 0.10]),
    "veg_dry": np.array([0.06, 0.09, 0.11, 0.26, 0.28, 0.20]),
    "road": np.array([0.07, 0.08, 0.09, 0.12, 0.15, 0.14]),
    "water": np.array([0.06, 0.05, 0.03, 0.02, 0.01, 0.006]),
    "concrete": np.array([0.17, 0.18, 0.19, 0.21, 0.25, 0.23]),
    "metal": np.array([0.26, 0.27, 0.28, 0.29, 0.26, 0.23]),
    "tile": np.array([0.09, 0.10, 0.16, 0.21, 0.29, 0.25]),
}
#: per landscape (``CitySpec.landscape``): the open ground's mix of vegetation and soil and the
#: soil's reflectance; parks keep their vegetation but are drier in an arid landscape
LANDSCAPES = {
    "temperate": {"ground_veg": 0.5, "soil": _E["soil"], "park_greenness": 1.0},
    # bright, calcareous soil: within a few hundredths of concrete and tile roofs in every band
    "arid": {"ground_veg": 0.1, "soil": np.array([0.17, 0.20, 0.23, 0.26, 0.33, 0.30]),
             "park_greenness": 0.5},
}
# gamma0 backscatter (linear power) per class: (VV, VH)
_S1 = {
    GROUND: (0.045, 0.009), ROAD: (0.010, 0.002), WATER: (0.003, 0.0005), PARK: (0.080, 0.020),
    ROOF_CONCRETE: (0.45, 0.055), ROOF_METAL: (0.70, 0.060), ROOF_TILE: (0.35, 0.050),
}

_SENSOR_CODE = {"s2": 2, "s1": 1, "ntl": 3, "vhr": 4, "mobile": 5, "texture": 6}


def apply_affine(a: Affine, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` applied to coordinate arrays (x, y), written out to stay vectorised."""
    return a.a * x + a.b * y + a.c, a.d * x + a.e * y + a.f


def _rng(world: World, sensor: str, index: int) -> np.random.Generator:
    return np.random.default_rng([world.seed, _SENSOR_CODE[sensor], index])


def greenness(t: pd.Timestamp | pd.DatetimeIndex) -> np.ndarray:
    """Seasonal vegetation greenness in [0, 1], peaking in early August."""
    doy = np.asarray(pd.DatetimeIndex(np.atleast_1d(t)).dayofyear, dtype=float)
    return 0.5 + 0.5 * np.cos(2 * np.pi * (doy - 215.0) / 365.25)


@dataclasses.dataclass
class Scene:
    """Rasterised truth of a ``World`` and the simulation of its sensors."""

    world: World

    # ---- grids -------------------------------------------------------------------------
    @cached_property
    def geobox(self) -> GeoBox:
        return self.world.geobox(10.0)

    @cached_property
    def geobox_20m(self) -> GeoBox:
        return self.world.geobox(20.0)

    @cached_property
    def geobox_vhr(self) -> GeoBox:
        return self.world.geobox(float(self.world.spec.vhr_res_m))

    @cached_property
    def geobox_100m(self) -> GeoBox:
        return self.world.geobox(100.0)

    # ---- 2 m class map and building ids ------------------------------------------------
    def _building_ids(self, gb: GeoBox) -> np.ndarray:
        b = self.world.buildings
        return features.rasterize(
            zip(b.geometry.values, b["building_id"].to_numpy(), strict=True),
            out_shape=gb.shape.yx, transform=gb.transform, fill=0, dtype="int32")

    @cached_property
    def building_id_vhr(self) -> np.ndarray:
        """Building id of each VHR pixel (0 = none), pixel-centre rule."""
        return self._building_ids(self.geobox_vhr)

    @cached_property
    def class_vhr(self) -> np.ndarray:
        """Land-cover class of each VHR pixel at the end of the series."""
        w = self.world
        gb = self.geobox_vhr
        from eocube.synth.world import road_surface

        shapes = []
        lu = w.taz["land_use"].to_numpy()
        for code, use in ((WATER, "water"), (PARK, "green")):
            shapes += [(g, code) for g in w.taz.geometry.values[lu == use]]
        shapes.append((road_surface(w.roads), ROAD))
        cls = features.rasterize(shapes, out_shape=gb.shape.yx, transform=gb.transform,
                                 fill=GROUND, dtype="uint8")
        b = w.buildings
        roof_code = np.select(
            [b["built_in_series"].to_numpy(), b["roof_material"].to_numpy() == "metal",
             b["roof_material"].to_numpy() == "tile"],
            [NEW_SITE, ROOF_METAL, ROOF_TILE], ROOF_CONCRETE).astype("uint8")
        lut = np.zeros(len(b) + 1, dtype="uint8")
        lut[b["building_id"].to_numpy()] = roof_code
        bid = self.building_id_vhr
        return np.where(bid > 0, lut[bid], cls)

    @cached_property
    def _factor(self) -> int:
        return int(round(10.0 / self.world.spec.vhr_res_m))

    def _block_mean(self, a: np.ndarray, f: int) -> np.ndarray:
        h, w = a.shape
        return a.reshape(h // f, f, w // f, f).mean(axis=(1, 3))

    @cached_property
    def fractions(self) -> np.ndarray:
        """Class fractions at 10 m, shape (N_CLASSES, y, x), float32."""
        f = self._factor
        cls = self.class_vhr
        return np.stack([self._block_mean((cls == k).astype("float32"), f)
                         for k in range(N_CLASSES)]).astype("float32")

    @cached_property
    def _new_matrix(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """(pixels × new buildings) area fractions and each new building's date (ns)."""
        f = self._factor
        b = self.world.buildings
        new = b[b["built_in_series"]]
        bid = self.building_id_vhr
        h, w = bid.shape
        py, px = np.nonzero(bid > 0)
        keep = np.isin(bid[py, px], new["building_id"].to_numpy())
        py, px = py[keep], px[keep]
        col_of = np.full(len(b) + 1, -1, dtype=np.int64)
        col_of[new["building_id"].to_numpy()] = np.arange(len(new))
        rows = (py // f) * (w // f) + (px // f)
        cols = col_of[bid[py, px]]
        m = sp.coo_matrix((np.full(rows.size, 1.0 / f**2), (rows, cols)),
                          shape=((h // f) * (w // f), len(new))).tocsr()
        m.sum_duplicates()
        return m, new["built_date"].to_numpy().astype("datetime64[ns]")

    def new_built_fraction(self, t: pd.Timestamp) -> np.ndarray:
        """Fraction of each 10 m pixel covered by roofs built in the series on or before t."""
        m, dates = self._new_matrix
        built = (dates <= np.datetime64(pd.Timestamp(t).tz_localize(None), "ns")).astype(float)
        return (m @ built).reshape(self.geobox.shape.yx).astype("float32")

    def builtup_fraction(self, t: pd.Timestamp) -> np.ndarray:
        fr = self.fractions
        return fr[ROOF_CONCRETE] + fr[ROOF_METAL] + fr[ROOF_TILE] + self.new_built_fraction(t)

    # ---- truth rasters -------------------------------------------------------------------
    def builtup(self, year: int) -> np.ndarray:
        """Built-up truth (uint8) at the end of ``year``: roof fraction ≥ 0.5."""
        return (self.builtup_fraction(pd.Timestamp(f"{year}-12-31")) >= 0.5).astype("uint8")

    @cached_property
    def change_date(self) -> np.ndarray:
        """Day of change since 1970-01-01 (int32) where a pixel became built-up in the series;
        -1 elsewhere. The date is that of the building whose completion took the pixel's roof
        fraction to 0.5 or more."""
        m, dates = self._new_matrix
        fr = self.fractions
        old = (fr[ROOF_CONCRETE] + fr[ROOF_METAL] + fr[ROOF_TILE]).ravel()
        coo = m.tocoo()
        days = dates.astype("datetime64[D]").astype(np.int64)[coo.col]
        order = np.lexsort((days, coo.row))
        r, d, v = coo.row[order], days[order], coo.data[order]
        csum = np.zeros_like(v)
        # cumulative fraction per pixel, in date order
        starts = np.r_[0, np.flatnonzero(np.diff(r)) + 1]
        csum = np.cumsum(v)
        base = np.repeat(csum[starts] - v[starts], np.diff(np.r_[starts, r.size]))
        csum = csum - base
        crossing = (old[r] < 0.5) & (old[r] + csum >= 0.5 - 1e-9)
        out = np.full(old.size, -1, dtype=np.int64)
        # first crossing per pixel: iterate in reverse so the earliest write wins
        idx = np.flatnonzero(crossing)[::-1]
        out[r[idx]] = d[idx]
        return out.reshape(self.geobox.shape.yx).astype("int32")

    @cached_property
    def building_id(self) -> np.ndarray:
        """Building id at 10 m (int32, 0 = none), pixel-centre rule."""
        return self._building_ids(self.geobox)

    # ---- Sentinel-2 L2A ------------------------------------------------------------------
    @cached_property
    def _texture(self) -> np.ndarray:
        """Static per-pixel brightness variation (1 ± a few %), the same on every date."""
        rng = _rng(self.world, "texture", 0)
        t = rng.normal(1.0, 0.04, self.geobox.shape.yx)
        return ndi.gaussian_filter(t, 0.7).astype("float32")

    def s2_reflectance(self, t: pd.Timestamp) -> np.ndarray:
        """Cloud-free surface reflectance (band, y, x) at 10 m on date t, before noise."""
        fr = self.fractions
        land = LANDSCAPES[self.world.spec.landscape]
        g = float(greenness(t)[0]) * land["park_greenness"]
        veg = _E["veg_dry"] + g * (_E["veg_green"] - _E["veg_dry"])
        ground = land["ground_veg"] * veg + (1 - land["ground_veg"]) * land["soil"]
        new_roof = self.new_built_fraction(t)
        site_veg = fr[NEW_SITE] - new_roof
        terms = (
            (fr[GROUND], ground), (fr[ROAD], _E["road"]), (fr[WATER], _E["water"]),
            (fr[PARK], veg), (fr[ROOF_CONCRETE] + new_roof, _E["concrete"]),
            (fr[ROOF_METAL], _E["metal"]), (fr[ROOF_TILE], _E["tile"]), (site_veg, veg),
        )
        out = np.zeros((len(S2_BANDS), *fr.shape[1:]), dtype="float32")
        for frac, em in terms:
            out += frac[None] * em.astype("float32")[:, None, None]
        return out * self._texture[None]

    def s2_clouds(self, index: int, cover: float) -> np.ndarray:
        """SCL cloud/shadow codes at 20 m for one date (0 where clear)."""
        shape = self.geobox_20m.shape.yx
        out = np.zeros(shape, dtype="uint8")
        if cover <= 0:
            return out
        rng = _rng(self.world, "s2", 10_000 + index)
        field = ndi.gaussian_filter(rng.normal(size=shape), sigma=max(shape) / 24, mode="wrap")
        thr = np.quantile(field, 1 - cover)
        core = np.quantile(field, 1 - 0.7 * cover)
        cloud = field >= thr
        out[cloud] = SCL_CLOUD_MEDIUM
        out[field >= core] = SCL_CLOUD_HIGH
        # shadows fall north-west of the clouds (the sun stands in the south-east at overpass)
        dy, dx = -max(2, shape[0] // 40), -max(2, shape[1] // 50)
        shadow = np.zeros_like(cloud)
        shadow[: shape[0] + dy, : shape[1] + dx] = cloud[-dy:, -dx:]
        out[shadow & ~cloud] = SCL_SHADOW
        if rng.uniform() < 0.3:
            cir = ndi.gaussian_filter(rng.normal(size=shape), sigma=max(shape) / 10, mode="wrap")
            out[(cir >= np.quantile(cir, 0.85)) & (out == 0)] = SCL_THIN_CIRRUS
        return out

    def s2_cover(self, index: int) -> float:
        """Fraction of the city under cloud or shadow on date ``index`` (0 on clear days)."""
        u = _rng(self.world, "s2", 20_000 + index).uniform(size=2)
        return 0.0 if u[0] < 0.55 else float(0.05 + 0.6 * u[1])

    def s2_scene(self, index: int, t: pd.Timestamp) -> dict[str, np.ndarray]:
        """One Sentinel-2 L2A acquisition: uint16 DNs per band (10 m or 20 m) and SCL (20 m)."""
        rng = _rng(self.world, "s2", index)
        refl = self.s2_reflectance(t)
        refl *= np.float32(rng.uniform(0.97, 1.03))  # residual atmospheric correction error
        refl += rng.normal(0, 0.004, refl.shape).astype("float32")
        scl20 = self.s2_clouds(index, self.s2_cover(index))
        scl10 = np.repeat(np.repeat(scl20, 2, axis=0), 2, axis=1)
        cloud = np.isin(scl10, (SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH))
        refl = np.where(cloud[None], 0.45 + 0.1 * rng.uniform(size=refl.shape[1:])[None], refl)
        refl = np.where((scl10 == SCL_THIN_CIRRUS)[None], refl + 0.08, refl)
        refl = np.where((scl10 == SCL_SHADOW)[None], refl * 0.35, refl)
        out: dict[str, np.ndarray] = {}
        for i, band in enumerate(S2_BANDS):
            r = refl[i]
            if band in S2_20M:
                r = self._block_mean(r, 2)
            dn = np.round(r * S2_QUANTIFICATION - S2_BOA_ADD_OFFSET)
            out[band] = np.clip(dn, 1, 65535).astype("uint16")
        # the scene classification of clear pixels, from the 20 m surface
        clear = scl20 == 0
        ndvi = (out["B08"] - out["B04"].astype("float32")) / np.maximum(
            out["B08"].astype("float32") + out["B04"] - 2 * -S2_BOA_ADD_OFFSET, 1)
        ndvi20 = self._block_mean(ndvi, 2)
        water20 = self._block_mean(self.fractions[WATER], 2) > 0.5
        scl = scl20.copy()
        scl[clear] = np.where(water20, SCL_WATER,
                              np.where(ndvi20 > 0.4, SCL_VEGETATION, SCL_NOT_VEGETATED))[clear]
        out["SCL"] = scl
        return out

    # ---- Sentinel-1 RTC ------------------------------------------------------------------
    def s1_scene(self, index: int, t: pd.Timestamp, *, orbit: str) -> dict[str, np.ndarray]:
        """One Sentinel-1 RTC acquisition: gamma0 VV and VH in linear power (float32, 10 m).

        Buildings give strong double-bounce returns that differ between ascending and
        descending geometry; speckle is multiplicative gamma noise of about 4.4 looks. The
        descending swath edge leaves a strip of nodata on the western border.
        """
        rng = _rng(self.world, "s1", index)
        fr = self.fractions
        new_roof = self.new_built_fraction(t)
        g = float(greenness(t)[0])
        orient = 1.0 if orbit == "ascending" else 0.8
        out = {}
        for p, pol in enumerate(("vv", "vh")):
            sig = np.zeros(fr.shape[1:], dtype="float32")
            veg = _S1[PARK][p] * (0.8 + 0.4 * g)
            for k in (GROUND, ROAD, WATER):
                sig += fr[k] * _S1[k][p]
            sig += fr[PARK] * veg
            for k in (ROOF_CONCRETE, ROOF_METAL, ROOF_TILE):
                sig += fr[k] * _S1[k][p] * orient
            sig += new_roof * _S1[ROOF_CONCRETE][p] * orient + (fr[NEW_SITE] - new_roof) * veg
            looks = 4.4
            sig = sig * rng.gamma(looks, 1.0 / looks, sig.shape).astype("float32")
            if orbit == "descending":
                sig[:, :3] = S1_NODATA
            out[pol] = sig.astype("float32")
        return out

    # ---- VHR RGB -------------------------------------------------------------------------
    def vhr_rgb(self, t: pd.Timestamp) -> np.ndarray:
        """High-resolution true-colour image (3, y, x) uint8 at ``vhr_res_m`` on date t."""
        rng = _rng(self.world, "vhr", 0)
        cls = self.class_vhr.copy()
        b = self.world.buildings
        future = b["built_date"].to_numpy() > np.datetime64(pd.Timestamp(t).tz_localize(None))
        if future.any():
            cls[np.isin(self.building_id_vhr, b["building_id"].to_numpy()[future])] = PARK
        cls[cls == NEW_SITE] = ROOF_CONCRETE
        palette = np.array([
            [128, 120, 98], [70, 70, 72], [38, 62, 92], [60, 112, 48],
            [178, 176, 170], [150, 160, 172], [150, 80, 60], [178, 176, 170]], dtype="float32")
        img = palette[cls]  # (y, x, 3)
        # each roof its own shade, so that touching roofs stay distinguishable
        shade = rng.uniform(0.8, 1.15, len(b) + 1).astype("float32")
        img = img * shade[self.building_id_vhr][..., None]
        img += rng.normal(0, 6, img.shape).astype("float32")
        # a dark outline where a roof meets the ground (the building's shadow)
        bid = self.building_id_vhr
        edge = (bid > 0) & ~(np.roll(bid, 1, axis=0) == bid)
        img[np.roll(edge, -1, axis=0)] *= 0.6
        return np.clip(img, 0, 255).astype("uint8").transpose(2, 0, 1)

    # ---- night-time mobile signal and lights --------------------------------------------
    def _emission_100m(self, weights: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Sum ``weights`` of buildings into 100 m cells by centroid."""
        gb = self.geobox_100m
        b = self.world.buildings
        cen = shapely.centroid(b.geometry.values)
        col, row = apply_affine(~gb.transform, shapely.get_x(cen), shapely.get_y(cen))
        idx = np.floor(row).astype(int) * gb.shape.x + np.floor(col).astype(int)
        w = weights if mask is None else np.where(mask, weights, 0.0)
        return np.bincount(idx, weights=w, minlength=gb.shape.y * gb.shape.x).reshape(
            gb.shape.yx)

    def mobile_signal(self, kind: str) -> np.ndarray:
        """Night-time mobile-signal devices per 100 m cell, for ``kind`` weekday or weekend
        (see :func:`eocube.synth.mobile.night_mobile_signal`)."""
        return night_mobile_signal(self.world, self.geobox_100m, kind)

    @cached_property
    def ntl_geobox(self) -> GeoBox:
        """The 15 arc-second EPSG:4326 grid that covers the city with a 2 km margin."""
        from odc.geo.geom import BoundingBox

        x0, y0, x1, y1 = self.world.spec.bounds
        bb = BoundingBox(x0 - 2000, y0 - 2000, x1 + 2000, y1 + 2000, crs=self.world.crs)
        ll = bb.to_crs("EPSG:4326")
        r = NTL_RES_DEG
        left, right = np.floor(ll.left / r) * r, np.ceil(ll.right / r) * r
        bottom, top = np.floor(ll.bottom / r) * r, np.ceil(ll.top / r) * r
        nx, ny = int(round((right - left) / r)), int(round((top - bottom) / r))
        return GeoBox((ny, nx), Affine(r, 0, left, 0, -r, top), "EPSG:4326")

    @cached_property
    def _ntl_bins(self) -> tuple[np.ndarray, np.ndarray]:
        """For each 100 m cell of a 2 km-padded UTM grid: its NTL pixel index (or -1)."""
        from pyproj import Transformer

        gb = self.geobox_100m
        pad = 20
        ny, nx = gb.shape.y + 2 * pad, gb.shape.x + 2 * pad
        a = gb.transform
        cols, rows = np.meshgrid(np.arange(nx) - pad + 0.5, np.arange(ny) - pad + 0.5)
        x, y = apply_affine(a, cols, rows)
        lon, lat = Transformer.from_crs(self.world.crs, "EPSG:4326", always_xy=True).transform(
            x, y)
        ng = self.ntl_geobox
        c, r = apply_affine(~ng.transform, lon, lat)
        c, r = np.floor(c).astype(int), np.floor(r).astype(int)
        ok = (c >= 0) & (c < ng.shape.x) & (r >= 0) & (r < ng.shape.y)
        return np.where(ok, r * ng.shape.x + c, -1).ravel(), np.array([ny, nx, pad])

    def ntl_month(self, index: int, month_end: pd.Timestamp) -> np.ndarray:
        """Monthly mean night-time radiance (nW·cm⁻²·sr⁻¹, float32) on ``ntl_geobox``.

        Light comes from residents, commercial floor area and roads, only from buildings
        standing at ``month_end``; it spills over ~500 m before it is averaged onto the
        15″ grid, and carries a few percent of month-to-month noise.
        """
        b = self.world.buildings
        standing = b["built_date"].to_numpy() <= np.datetime64(month_end.tz_localize(None))
        comm = np.where(b["function"].isin(["commercial", "mixed", "public"]),
                        b["floors"] * b["area"], 0.0)
        em = self._emission_100m(0.004 * b["occupants"].to_numpy() + 0.0015 * comm,
                                 mask=standing)
        road = self._road_density_100m * 0.8
        bins, (ny, nx, pad) = self._ntl_bins
        big = np.zeros((ny, nx))
        big[pad:-pad, pad:-pad] = em + road
        big = ndi.gaussian_filter(big, sigma=4.0)  # ~400 m spill-over
        ng = self.ntl_geobox
        ok = bins >= 0
        s = np.bincount(bins[ok], weights=big.ravel()[ok], minlength=ng.shape.y * ng.shape.x)
        n = np.bincount(bins[ok], minlength=ng.shape.y * ng.shape.x)
        rad = (s / np.maximum(n, 1)).reshape(ng.shape.yx)
        rng = _rng(self.world, "ntl", index)
        rad = rad * rng.lognormal(0, 0.03, rad.shape) + rng.gamma(2.0, 0.15, rad.shape)
        return rad.astype("float32")

    @cached_property
    def _road_density_100m(self) -> np.ndarray:
        from eocube.synth.world import road_surface

        gb = self.geobox_100m
        hi = features.rasterize([(road_surface(self.world.roads), 1)],
                                out_shape=(gb.shape.y * 10, gb.shape.x * 10),
                                transform=gb.transform * Affine.scale(0.1), fill=0, dtype="uint8")
        return self._block_mean(hi.astype("float32"), 10)
