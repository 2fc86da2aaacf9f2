"""The sensors that observe the synthetic city: Sentinel-2 L2A, Sentinel-1 RTC, monthly night
lights, a high-resolution RGB image, night-time mobile signal, and the truth rasters.

A ``Scene`` rasterises the world once (class fractions at 10 m from a 2 m class map, each lot's
share of each 10 m pixel as a sparse pixel × building matrix) and then simulates any acquisition
date on demand from the state of every lot at that date (``construction.building_phase``).
Each acquisition draws from its own generator seeded by (city seed, sensor,
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

from eocube.synth.construction import PHASES, building_phase, standing
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

# ---- world v2 sensor physics (issue #15). Every value below was set from physical reasoning
# ---- and written down before any model or baseline was measured on this world; do not tune
# ---- them until a model wins.

#: Endmember variability. A city draws one multiplicative factor per material and band
#: (regional aggregates, clays and paints: sd 8 %); each roof draws its own brightness (sd 15 %,
#: paint, gravel, roof furniture) and spectral shape (sd 5 % per band) around that.
CITY_MATERIAL_SD = 0.08
ROOF_BRIGHTNESS_SD = 0.15
ROOF_SHAPE_SD = 0.05
#: Roof ageing: weathering and soiling darken a roof by up to 30 % and mix up to 20 % of the
#: soil spectrum in, with a time constant of 10 years.
AGEING_DARKEN, AGEING_SOIL, AGEING_TAU_YEARS = 0.30, 0.20, 10.0
#: Open ground is a patchwork of gardens, bare soil and paving at ~50–150 m: the vegetated share
#: varies around the landscape's mean with sd 0.2 (clipped to [0, 1]); a share of it is paved
#: (yards, plazas, parking) with a concrete-like spectrum.
GROUND_VEG_SD, GROUND_PATCH_M, GROUND_PAVED_SHARE = 0.20, 80.0, 0.25
#: Residual atmospheric correction per date: a multiplicative factor (sd 4 %) and an additive
#: path-radiance error (sd 0.01 reflectance at 490 nm), both scaling with wavelength^-1.3
#: (aerosol Ångström exponent), so blue is hit hardest.
ATMOS_MULT_SD, ATMOS_ADD_SD, ANGSTROM = 0.04, 0.010, 1.3
#: Cloud edges and small shadows that SCL misses: the 25 % of the cloud field just below the
#: detection threshold adds up to 0.10 of haze; their shadows darken by up to 25 % unflagged.
MISSED_CLOUD_SHARE, MISSED_CLOUD_HAZE, MISSED_SHADOW_DARKEN = 0.25, 0.10, 0.25
#: Multi-temporal misregistration: a per-date sub-pixel shift, sd 0.3 px per axis, its length
#: capped at 1 px (Sentinel-2 co-registration: < 1 px); Sentinel-1 RTC geolocation against S2
#: likewise (sd 0.3 px, at most 1 px).
SHIFT_SD_PX, SHIFT_MAX_PX = 0.3, 1.0
#: Spectra of construction phases: bare soil, foundation (half soil, half fresh concrete at
#: 85 %), a rising frame (concrete at 80 %, shaded), rubble (concrete at 110 % and soil).
FOUNDATION_CONCRETE, FRAME_CONCRETE, RUBBLE_CONCRETE = 0.85, 0.80, 1.10

#: Sentinel-1 geometry: right-looking from a near-polar orbit (heading -12° ascending,
#: 192° descending: ascending looks east, descending west); incidence angle at the city
#: centre by relative orbit, growing 0.068°/km away from the sensor (29°–46° over 250 km).
S1_HEADING_DEG = {"ascending": -12.0, "descending": 192.0}
S1_INCIDENCE_DEG = {"ascending": 39.0, "descending": 34.0}
S1_INCIDENCE_PER_KM = 17.0 / 250.0
#: Roof backscatter (VV, linear) by material: flat concrete roofs are mostly specular (-14 dB),
#: flat metal more so (-17 dB), pitched tiles turn facets to the sensor (-9 dB); each roof
#: varies log-normally (sd 3 dB; 5 dB for corrugated metal) with parapets and roof furniture.
#: VH is 7 dB below VV on roofs.
S1_ROOF_VV = {"concrete": 0.04, "metal": 0.02, "tile": 0.12}
S1_ROOF_SD_DB = {"concrete": 3.0, "metal": 5.0, "tile": 3.0}
S1_ROOF_VH_RATIO = 0.2
#: Double bounce (wall-ground dihedral) at the foot of the wall facing the sensor: σ0 of a 10 m
#: pixel crossed by a wall of height h, wall normal within a few degrees of the look direction:
#: 1.0 × h / 10 m (0 dB for 10 m, +5 dB for 30 m; linear in h, flat above 60 m). It falls off
#: with the angle φ between the wall normal and the sensor, as 0.1 + 0.9 exp(-(φ/10°)²).
#: Double bounce keeps polarisation: VH/VV = 0.06.
S1_DB_PER_10M, S1_DB_MAX_H, S1_DB_PHI_DEG, S1_DB_FLOOR, S1_DB_VH = 1.0, 60.0, 10.0, 0.1, 0.06
#: The facade facing the sensor (windows, balconies) backscatters 0.2 (VV) over its layover band
#: h / tan θ; VH 0.04.
S1_WALL_VV, S1_WALL_VH = 0.20, 0.04
#: Noise-equivalent sigma zero of IW mode: -22 dB VV, -25 dB VH; radar shadow falls to it.
S1_NESZ = {"vv": 10 ** -2.2, "vh": 10 ** -2.5}
#: Lots in construction: (VV, VH) of bare soil, a foundation site, a rising frame (rebar,
#: formwork, cranes), rubble.
S1_SITE = {"soil": (0.02, 0.004), "foundation": (0.08, 0.015), "frame": (0.25, 0.05),
           "rubble": (0.15, 0.03)}
S1_LOOKS = 4.4

#: VHR acquisition: off-nadir angle uniform in 5°–25°, satellite azimuth uniform; local solar
#: time 10:30 (sun-synchronous morning orbit).
VHR_OFF_NADIR_DEG, VHR_LOCAL_SOLAR_HOUR = (5.0, 25.0), 10.5
#: Ground that looks like roofs: paved yards, parking and bare lots as rectangles of 8–40 m,
#: about 3 per hectare of open ground, half concrete-grey, a quarter tile-red soil, a quarter
#: dark asphalt; shadows darken to 45 %.
VHR_LOTS_PER_HA, VHR_LOT_M, VHR_SHADOW = 3.0, (8.0, 40.0), 0.45

#: Night lights: a core spread of 300 m plus a 20 % halo of 1.2 km (blooming of the VIIRS DNB
#: and atmospheric scattering); a soft saturation at 120 nW·cm⁻²·sr⁻¹ (the brightest city
#: cores of monthly composites); lit roads (arterials 2 × locals) and industrial sites whose
#: lighting is log-normal (sd 1) per site and unrelated to residents; a season of ±10 % (longer
#: winter nights, summer foliage) and 8 % month-to-month noise city-wide.
NTL_CORE_M, NTL_HALO_M, NTL_HALO_SHARE, NTL_SATURATION = 300.0, 1200.0, 0.20, 120.0
NTL_ROAD, NTL_INDUSTRY_PER_M2, NTL_SEASON, NTL_MONTH_SD = 1.2, 0.004, 0.10, 0.08

_SENSOR_CODE = {"s2": 2, "s1": 1, "ntl": 3, "vhr": 4, "mobile": 5, "texture": 6}


def apply_affine(a: Affine, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` applied to coordinate arrays (x, y), written out to stay vectorised."""
    return a.a * x + a.b * y + a.c, a.d * x + a.e * y + a.f

def _translate(geoms: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Each geometry moved by its own (dx, dy), vectorised."""
    xy, idx = shapely.get_coordinates(geoms, return_index=True)
    xy = xy + np.c_[np.asarray(dx)[idx], np.asarray(dy)[idx]]
    return shapely.set_coordinates(np.array(geoms, dtype=object).copy(), xy)



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
        lut = np.zeros(int(b["building_id"].max()) + 1, dtype="uint8")
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
    def _lot_matrix(self) -> sp.csr_matrix:
        """(10 m pixels × building ids) area fractions of each lot (building footprint at 2 m,
        pixel-centre rule; a rebuilt lot carries the id of its last building)."""
        f = self._factor
        bid = self.building_id_vhr
        h, w = bid.shape
        py, px = np.nonzero(bid > 0)
        rows = (py // f) * (w // f) + (px // f)
        m = sp.coo_matrix((np.full(rows.size, 1.0 / f**2), (rows, bid[py, px])),
                          shape=((h // f) * (w // f), self._n_ids)).tocsr()
        m.sum_duplicates()
        return m

    @cached_property
    def _n_ids(self) -> int:
        return int(self.world.buildings["building_id"].max()) + 1

    def _by_id(self, col: str, fill: object = 0) -> np.ndarray:
        b = self.world.buildings
        v = b[col].to_numpy()
        out = np.full(self._n_ids, fill, dtype=v.dtype if v.dtype != object else object)
        out[b["building_id"].to_numpy()] = v
        return out

    def lot_state(self, t: pd.Timestamp) -> dict[str, np.ndarray]:
        """Per building id (index), the state of its lot at t: ``phase`` (a position in
        ``construction.PHASES``), ``progress`` of the structure, ``act`` (the building whose
        attributes apply: the demolished one until its rebuild's site is cleared) and
        ``height`` (m, the structure's height: the final one times its progress)."""
        b = self.world.buildings
        ph, prog = building_phase(b, t)
        phase = np.zeros(self._n_ids, dtype="int8")
        progress = np.zeros(self._n_ids)
        ids = b["building_id"].to_numpy()
        phase[ids], progress[ids] = ph, prog
        act = np.arange(self._n_ids)
        if "replaces_id" in b:
            pred = self._by_id("replaces_id")
            early = (pred > 0) & (phase == 0)  # the rebuild's site not yet cleared
            act[early] = pred[early]
            phase[early], progress[early] = phase[pred[early]], progress[pred[early]]
        height = self._by_id("height", 0.0).astype(float)[act] * progress
        return {"phase": phase, "progress": progress, "act": act, "height": height}

    def standing_fraction(self, t: pd.Timestamp) -> np.ndarray:
        """Fraction of each 10 m pixel covered by buildings standing at t (complete, not
        demolished)."""
        st = (self.lot_state(t)["phase"] == PHASES.index("built")).astype(float)
        return (self._lot_matrix @ st).reshape(self.geobox.shape.yx).astype("float32")

    def new_built_fraction(self, t: pd.Timestamp) -> np.ndarray:
        """Fraction of each 10 m pixel covered by buildings built in the series and standing
        at t."""
        s = self.lot_state(t)
        new = self._by_id("built_in_series", False).astype(bool)[s["act"]]
        st = ((s["phase"] == PHASES.index("built")) & new).astype(float)
        return (self._lot_matrix @ st).reshape(self.geobox.shape.yx).astype("float32")

    def builtup_fraction(self, t: pd.Timestamp) -> np.ndarray:
        """Roof fraction of standing buildings at t (structures under construction, rubble and
        cleared lots are not built-up)."""
        return self.standing_fraction(t)

    # ---- truth rasters -------------------------------------------------------------------
    def builtup(self, year: int) -> np.ndarray:
        """Built-up truth (uint8) at the end of ``year``: standing roof fraction ≥ 0.5."""
        return (self.builtup_fraction(pd.Timestamp(f"{year}-12-31")) >= 0.5).astype("uint8")

    def _transitions(self) -> tuple[np.ndarray, np.ndarray]:
        """First day (since 1970) each pixel turns built-up / stops being built-up within the
        series (-1: never), from the built-up state on every day a building is completed or
        demolished."""
        b = self.world.buildings
        start = np.datetime64(pd.Timestamp(self.world.spec.start), "D")
        days = np.concatenate([b["built_date"].to_numpy().astype("datetime64[D]"),
                               b["demolished_date"].to_numpy().astype("datetime64[D]")
                               if "demolished_date" in b else np.array([], "datetime64[D]")])
        days = np.unique(days[~np.isnat(days) & (days >= start)])
        n = self.geobox.shape.y * self.geobox.shape.x
        up = np.full(n, -1, dtype=np.int64)
        down = np.full(n, -1, dtype=np.int64)
        prev = self.builtup_fraction(pd.Timestamp(start - 1)).ravel() >= 0.5
        for d in days:
            cur = self.builtup_fraction(pd.Timestamp(d)).ravel() >= 0.5
            di = int(d.astype(np.int64))
            up[cur & ~prev & (up < 0)] = di
            down[prev & ~cur & (down < 0)] = di
            prev = cur
        shape = self.geobox.shape.yx
        return up.reshape(shape).astype("int32"), down.reshape(shape).astype("int32")

    @cached_property
    def change_date(self) -> np.ndarray:
        """Day of change since 1970-01-01 (int32): the first day in the series on which the
        pixel turned built-up (the completion of a new building or a rebuild took its standing
        roof fraction to 0.5 or more); -1 elsewhere. See ``demolition_date`` for the reverse."""
        return self._transitions()[0]

    @cached_property
    def demolition_date(self) -> np.ndarray:
        """Day since 1970-01-01 (int32) on which a demolition first took the pixel's standing
        roof fraction below 0.5 within the series; -1 elsewhere."""
        return self._transitions()[1]

    @cached_property
    def construction_start_date(self) -> np.ndarray:
        """Day since 1970-01-01 (int32) on which construction began (site clearing) on the
        earliest-cleared lot covering a pixel that turns built-up in the series (where
        ``change_date`` ≥ 0); -1 elsewhere. A change detector reading the surface sees the
        construction process from this day to ``change_date`` (completion)."""
        b = self.world.buildings
        if "clearing_date" not in b:
            return self.change_date.copy()
        clearing = self._by_id("clearing_date", np.datetime64("NaT", "ns"))
        clearing = np.asarray(clearing, dtype="datetime64[ns]").astype("datetime64[D]")
        day = np.where(np.isnat(clearing), np.iinfo(np.int64).max,
                       clearing.astype(np.int64))
        coo = self._lot_matrix.tocoo()
        first = np.full(self._lot_matrix.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, coo.row, day[coo.col])
        change = self.change_date.ravel()
        out = np.where((change >= 0) & (first < np.iinfo(np.int64).max),
                       np.minimum(first, change), change)
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

    @cached_property
    def _material_spectra(self) -> dict[str, np.ndarray]:
        """The city's own endmember of each roof material (a city-level draw)."""
        rng = _rng(self.world, "texture", 1)
        return {m: _E[m] * rng.normal(1.0, CITY_MATERIAL_SD, len(S2_BANDS)).clip(0.7, 1.3)
                for m in ("concrete", "metal", "tile")}

    @cached_property
    def _roof_spectra(self) -> np.ndarray:
        """(building id, band) new-roof reflectance: each roof around its material's city
        endmember."""
        rng = _rng(self.world, "texture", 2)
        mats = self._by_id("roof_material", "concrete")
        out = np.zeros((self._n_ids, len(S2_BANDS)))
        for m, em in self._material_spectra.items():
            out[mats == m] = em
        bright = rng.lognormal(0.0, ROOF_BRIGHTNESS_SD, self._n_ids)[:, None]
        shape = rng.normal(1.0, ROOF_SHAPE_SD, out.shape).clip(0.8, 1.2)
        return out * bright * shape

    @cached_property
    def _ground_fields(self) -> tuple[np.ndarray, np.ndarray]:
        """Per 10 m pixel: the vegetated share of open ground and whether it is paved."""
        rng = _rng(self.world, "texture", 3)
        shape = self.geobox.shape.yx

        def field() -> np.ndarray:
            f = ndi.gaussian_filter(rng.normal(size=shape), GROUND_PATCH_M / 20.0,
                                    mode="reflect")
            return f / max(float(f.std()), 1e-9)

        veg = LANDSCAPES[self.world.spec.landscape]["ground_veg"] + GROUND_VEG_SD * field()
        p = field()
        paved = p > np.quantile(p, 1 - GROUND_PAVED_SHARE)
        return np.clip(veg, 0, 1).astype("float32"), paved.astype("float32")

    def _lot_spectra(self, t: pd.Timestamp, veg: np.ndarray, soil: np.ndarray) -> np.ndarray:
        """(building id, band) reflectance of each lot at t, by its phase."""
        s = self.lot_state(t)
        ph, act = s["phase"], s["act"]
        conc = self._material_spectra["concrete"]
        found = 0.5 * soil + 0.5 * FOUNDATION_CONCRETE * conc
        frame = FRAME_CONCRETE * conc
        p = s["progress"][:, None]
        built = self._by_id("built_date", np.datetime64("NaT", "ns")).astype("datetime64[ns]")
        t64 = np.datetime64(pd.Timestamp(t).tz_localize(None), "ns")
        age = np.nan_to_num((t64 - built[act]).astype("float64") / 8.64e13 / 365.25, nan=0.0)
        a = (1.0 - np.exp(-np.maximum(age, 0.0) / AGEING_TAU_YEARS))[:, None]
        roof = self._roof_spectra[act] * (1 - AGEING_DARKEN * a)
        roof = (1 - AGEING_SOIL * a) * roof + AGEING_SOIL * a * soil
        table = [veg, soil, found, None, None, RUBBLE_CONCRETE * 0.5 * conc + 0.5 * soil, soil]
        out = np.empty((self._n_ids, len(S2_BANDS)))
        for k, em in enumerate(table):
            if em is not None:
                out[ph == k] = em
        m3 = ph == 3
        out[m3] = ((1 - p) * found + p * frame)[m3]
        out[ph == 4] = roof[ph == 4]
        return out

    def s2_reflectance(self, t: pd.Timestamp) -> np.ndarray:
        """Surface reflectance (band, y, x) at 10 m on date t, before atmosphere, clouds,
        misregistration and noise."""
        fr = self.fractions
        land = LANDSCAPES[self.world.spec.landscape]
        g = float(greenness(t)[0]) * land["park_greenness"]
        veg = _E["veg_dry"] + g * (_E["veg_green"] - _E["veg_dry"])
        soil = land["soil"]
        gveg, paved = self._ground_fields
        e = lambda v: v.astype("float32")[:, None, None]  # noqa: E731
        ground = (gveg[None] * e(veg) + (1 - gveg[None]) * e(soil)) * (1 - paved[None]) + (
            paved[None] * e(0.9 * self._material_spectra["concrete"]))
        out = fr[GROUND][None] * ground
        for k, em in ((ROAD, _E["road"]), (WATER, _E["water"]), (PARK, veg)):
            out += fr[k][None] * e(em)
        lots = self._lot_matrix @ self._lot_spectra(t, veg, soil)  # (pixels, band)
        out += lots.T.reshape(out.shape).astype("float32")
        return (out * self._texture[None]).astype("float32")

    def _cloud_field(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        rng = _rng(self.world, "s2", 10_000 + index)
        return ndi.gaussian_filter(rng.normal(size=shape), sigma=max(shape) / 24, mode="wrap")

    @staticmethod
    def _shadow_offset(shape: tuple[int, int]) -> tuple[int, int]:
        # shadows fall north-west of the clouds (the sun stands in the south-east at overpass)
        return -max(2, shape[0] // 40), -max(2, shape[1] // 50)

    @staticmethod
    def _cast(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
        out = np.zeros_like(mask)
        out[: mask.shape[0] + dy, : mask.shape[1] + dx] = mask[-dy:, -dx:]
        return out

    def s2_clouds(self, index: int, cover: float) -> np.ndarray:
        """SCL cloud/shadow codes at 20 m for one date (0 where clear)."""
        shape = self.geobox_20m.shape.yx
        out = np.zeros(shape, dtype="uint8")
        if cover <= 0:
            return out
        rng = _rng(self.world, "s2", 10_000 + index)
        field = self._cloud_field(index, shape)
        rng.normal(size=shape)  # the draw the field used
        thr = np.quantile(field, 1 - cover)
        core = np.quantile(field, 1 - 0.7 * cover)
        cloud = field >= thr
        out[cloud] = SCL_CLOUD_MEDIUM
        out[field >= core] = SCL_CLOUD_HIGH
        shadow = self._cast(cloud, *self._shadow_offset(shape))
        out[shadow & ~cloud] = SCL_SHADOW
        if rng.uniform() < 0.3:
            cir = ndi.gaussian_filter(rng.normal(size=shape), sigma=max(shape) / 10, mode="wrap")
            out[(cir >= np.quantile(cir, 0.85)) & (out == 0)] = SCL_THIN_CIRRUS
        return out

    def s2_missed(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(haze, darkening) at 20 m that SCL leaves clear on date ``index``: thin cloud edges
        just below the detection threshold (haze in reflectance) and their shadows (a factor
        < 1)."""
        shape = self.geobox_20m.shape.yx
        cover = self.s2_cover(index)
        if cover <= 0:
            return np.zeros(shape, "float32"), np.ones(shape, "float32")
        field = self._cloud_field(index, shape)
        thr = np.quantile(field, 1 - cover)
        edge_thr = np.quantile(field, 1 - min(1.0, cover * (1 + MISSED_CLOUD_SHARE)))
        w = np.clip((field - edge_thr) / max(thr - edge_thr, 1e-9), 0, 1) * (field < thr)
        haze = (MISSED_CLOUD_HAZE * w).astype("float32")
        dark = 1.0 - MISSED_SHADOW_DARKEN * self._cast(w, *self._shadow_offset(shape))
        return haze, dark.astype("float32")

    def s2_cover(self, index: int) -> float:
        """Fraction of the city under cloud or shadow on date ``index`` (0 on clear days)."""
        u = _rng(self.world, "s2", 20_000 + index).uniform(size=2)
        return 0.0 if u[0] < 0.55 else float(0.05 + 0.6 * u[1])

    def shift(self, sensor: str, index: int) -> tuple[float, float]:
        """(dy, dx) misregistration in 10 m pixels of acquisition ``index`` of ``sensor``
        (``"s2"`` or ``"s1"``): normal, sd ``SHIFT_SD_PX`` per axis, length ≤ 1 px."""
        d = _rng(self.world, sensor, 30_000 + index).normal(0.0, SHIFT_SD_PX, 2)
        n = float(np.hypot(*d))
        if n > SHIFT_MAX_PX:
            d = d * SHIFT_MAX_PX / n
        return float(d[0]), float(d[1])

    def atmosphere(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(multiplicative, additive) residual correction error per band on date ``index``."""
        rng = _rng(self.world, "s2", 40_000 + index)
        lam = np.array([S2_BAND_META[b][1] for b in S2_BANDS])
        w = (0.49 / lam) ** ANGSTROM
        mult = 1.0 + rng.normal(0.0, ATMOS_MULT_SD) * w
        add = rng.normal(0.0, ATMOS_ADD_SD) * w
        return mult.astype("float32"), add.astype("float32")

    def s2_scene(self, index: int, t: pd.Timestamp) -> dict[str, np.ndarray]:
        """One Sentinel-2 L2A acquisition: uint16 DNs per band (10 m or 20 m) and SCL (20 m)."""
        rng = _rng(self.world, "s2", index)
        refl = self.s2_reflectance(t)
        dy, dx = self.shift("s2", index)
        refl = np.stack([ndi.shift(r, (dy, dx), order=1, mode="nearest") for r in refl])
        mult, add = self.atmosphere(index)
        refl = refl * mult[:, None, None] + add[:, None, None]
        refl += rng.normal(0, 0.004, refl.shape).astype("float32")
        scl20 = self.s2_clouds(index, self.s2_cover(index))
        up = lambda a: np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)  # noqa: E731
        haze, dark = self.s2_missed(index)
        refl = refl * up(dark)[None] + up(haze)[None]
        scl10 = up(scl20)
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
    def s1_incidence(self, orbit: str) -> np.ndarray:
        """Incidence angle (degrees) per 10 m column for ``orbit``: larger away from the
        sensor (east for ascending, which looks east)."""
        gb = self.geobox
        x = (np.arange(gb.shape.x) + 0.5 - gb.shape.x / 2) * 10.0 / 1000.0  # km from centre
        away = x if orbit == "ascending" else -x
        return S1_INCIDENCE_DEG[orbit] + S1_INCIDENCE_PER_KM * away

    @cached_property
    def _s1_static(self) -> dict[str, object]:
        """2 m geometry shared by all dates: ground backscatter of the static classes, wall
        edges facing each orbit's sensor and the walls' angle to it."""
        cls = self.class_vhr
        bid = self.building_id_vhr
        out: dict[str, object] = {}
        for p, pol in enumerate(("vv", "vh")):
            lut = np.zeros(N_CLASSES, dtype="float32")
            for k in (GROUND, ROAD, WATER):
                lut[k] = _S1[k][p]
            out[f"ground_{pol}"] = np.where(bid > 0, 0.0, lut[cls]).astype("float32")
        out["park"] = (cls == PARK) & (bid == 0)
        b = self.world.buildings
        orient = (b["orientation_deg"].to_numpy(float) if "orientation_deg" in b
                  else np.zeros(len(b)))
        for orbit, heading in S1_HEADING_DEG.items():
            # direction to the sensor (math angle: from east, counter-clockwise)
            look_az = heading + 90.0
            to_sensor = 90.0 - (look_az + 180.0)
            d = (orient[:, None] + 90.0 * np.arange(4)[None] - to_sensor + 180.0) % 360 - 180
            phi = np.abs(d).min(axis=1)
            f = np.zeros(self._n_ids)
            f[b["building_id"].to_numpy()] = S1_DB_FLOOR + (1 - S1_DB_FLOOR) * np.exp(
                -(phi / S1_DB_PHI_DEG) ** 2)
            out[f"aspect_{orbit}"] = f
        return out

    def s1_scene(self, index: int, t: pd.Timestamp, *, orbit: str) -> dict[str, np.ndarray]:
        """One Sentinel-1 RTC acquisition: gamma0 VV and VH in linear power (float32, 10 m).

        Simulated at the VHR resolution in ground range: the ground's backscatter; each
        building's roof (flat roofs mostly specular) laid over toward the sensor by h / tan θ;
        the facing facade's return spread over that layover band; double bounce at the foot of
        the facing wall, growing with height and falling off with the wall's angle to the look
        direction; radar shadow (noise floor) over h · tan θ behind it. Ascending passes look
        east, descending west. Then averaged to 10 m, shifted by up to a pixel against the S2
        grid, with gamma speckle of ``S1_LOOKS`` looks. The descending swath edge leaves a
        strip of nodata on the western border.
        """
        rng = _rng(self.world, "s1", index)
        st = self._s1_static
        bid = self.building_id_vhr
        res = float(self.world.spec.vhr_res_m)
        f = self._factor
        ny, nx = bid.shape
        s = self.lot_state(t)
        ph, act, h = s["phase"], s["act"], s["height"]
        g = float(greenness(t)[0])
        tan = np.tan(np.radians(np.repeat(self.s1_incidence(orbit), f)))[None, :]
        toward = -1 if orbit == "ascending" else 1  # pixel step toward the sensor, in x
        # per building id: roof backscatter of the acting building (log-normal per roof)
        r_rng = _rng(self.world, "s1", 50_000)
        mats = self._by_id("roof_material", "concrete")
        roof_vv = np.array([S1_ROOF_VV.get(m, 0.04) for m in mats]) * 10 ** (
            r_rng.normal(0, 1, self._n_ids) * np.array([S1_ROOF_SD_DB.get(m, 3.0)
                                                        for m in mats]) / 10)
        roof_vv = roof_vv[act]
        tall = (ph == 3) | (ph == 4)
        top_vv = np.where(ph == 3, S1_SITE["frame"][0], roof_vv)
        top_vh = np.where(ph == 3, S1_SITE["frame"][1], roof_vv * S1_ROOF_VH_RATIO)
        flat = {k: np.zeros(self._n_ids) for k in ("vv", "vh")}  # lots without height
        for code, key in ((1, "soil"), (2, "foundation"), (5, "rubble"), (6, "soil")):
            flat["vv"][ph == code], flat["vh"][ph == code] = S1_SITE[key]
        veg = [_S1[PARK][p] * (0.8 + 0.4 * g) for p in range(2)]
        flat["vv"][ph == 0], flat["vh"][ph == 0] = veg
        flat["vv"][0] = flat["vh"][0] = 0.0
        # geometry per 2 m pixel
        hp = h[bid]
        on = tall[bid] & (bid > 0) & (hp > 0)
        yy, xx = np.nonzero(on)
        hh = hp[yy, xx]
        tn = tan[0, xx]
        lay = np.rint(hh / tn / res).astype(int)  # layover shift in pixels
        # walls that open onto ground (party walls of attached buildings face no sensor)
        nb_s = np.clip(xx + toward, 0, nx - 1)
        facing = bid[yy, nb_s] == 0
        nb_a = np.clip(xx - toward, 0, nx - 1)
        back = bid[yy, nb_a] == 0
        out = {}
        # shadow: a run of h·tanθ pixels behind each back wall, found by a scan along x
        run = np.zeros((ny, nx), dtype=np.int32)
        run[yy[back], xx[back]] = np.rint(hh[back] * tn[back] / res).astype(np.int32)
        shadow = np.zeros((ny, nx), dtype=bool)
        rem = np.zeros(ny, dtype=np.int32)
        cols = range(nx) if toward < 0 else range(nx - 1, -1, -1)
        for c in cols:  # moving away from the sensor
            rem = np.maximum(rem - 1, 0)
            shadow[:, c] = rem > 0
            rem = np.maximum(rem, run[:, c])
        shadow &= bid == 0
        for pol in ("vv", "vh"):
            img = st[f"ground_{pol}"] + st["park"] * veg[0 if pol == "vv" else 1]
            img = img + np.where(bid > 0, flat[pol][bid], 0.0)
            img[shadow] = 0.0
            tgt_x = np.clip(xx + toward * lay, 0, nx - 1)
            top = (top_vv if pol == "vv" else top_vh)[bid[yy, xx]]
            acc = np.bincount(yy * nx + tgt_x, weights=top, minlength=ny * nx)
            # the facing facade over its layover band (four samples along it)
            fy, fx, fl = yy[facing], xx[facing], lay[facing]
            wall = (S1_WALL_VV if pol == "vv" else S1_WALL_VH) * np.maximum(fl, 1) / 4.0
            for q in (0.125, 0.375, 0.625, 0.875):
                wx = np.clip(fx + toward * np.rint(q * fl).astype(int), 0, nx - 1)
                acc += np.bincount(fy * nx + wx, weights=wall, minlength=ny * nx)
            # double bounce at the foot of the facing wall
            hb = np.minimum(hh[facing], S1_DB_MAX_H)
            db = (S1_DB_PER_10M * hb / 10.0 * (10.0 / res)
                  * st[f"aspect_{orbit}"][act[bid[fy, fx]]])
            if pol == "vh":
                db = db * S1_DB_VH
            acc += np.bincount(fy * nx + fx, weights=db, minlength=ny * nx)
            img = img + acc.reshape(ny, nx) + S1_NESZ[pol]
            sig = self._block_mean(img.astype("float32"), f)
            out[pol] = sig
        dy, dx = self.shift("s1", index)
        for pol in out:
            sig = ndi.shift(out[pol], (dy, dx), order=1, mode="nearest")
            sig = sig * rng.gamma(S1_LOOKS, 1.0 / S1_LOOKS, sig.shape)
            sig = sig.astype("float32")
            if orbit == "descending":
                sig[:, :3] = S1_NODATA
            out[pol] = sig
        return out

    # ---- VHR RGB -------------------------------------------------------------------------
    def sun_position(self, t: pd.Timestamp, *, local_solar_hour: float) -> tuple[float, float]:
        """(elevation, azimuth) of the sun in degrees over the city on t's day at
        ``local_solar_hour`` (declination and hour angle; azimuth clockwise from north)."""
        from pyproj import Transformer

        x0, y0, x1, y1 = self.world.spec.bounds
        _, lat = Transformer.from_crs(self.world.crs, "EPSG:4326", always_xy=True).transform(
            (x0 + x1) / 2, (y0 + y1) / 2)
        doy = pd.Timestamp(t).dayofyear
        dec = np.radians(-23.44 * np.cos(2 * np.pi * (doy + 10) / 365.0))
        ha = np.radians(15.0 * (local_solar_hour - 12.0))
        la = np.radians(lat)
        e = np.arcsin(np.sin(la) * np.sin(dec) + np.cos(la) * np.cos(dec) * np.cos(ha))
        az = np.arctan2(-np.sin(ha) * np.cos(dec),
                        np.cos(la) * np.sin(dec) - np.sin(la) * np.cos(dec) * np.cos(ha))
        return float(np.degrees(e)), float(np.degrees(az) % 360)

    def vhr_geometry(self, t: pd.Timestamp) -> dict[str, float]:
        """Sun elevation/azimuth and the view's off-nadir angle/azimuth (degrees) of the VHR
        image taken at t (10:30 local solar time at the city's latitude)."""
        e, az = self.sun_position(t, local_solar_hour=VHR_LOCAL_SOLAR_HOUR)
        rng = _rng(self.world, "vhr", 1)
        return {"sun_elevation": e, "sun_azimuth": az,
                "off_nadir": float(rng.uniform(*VHR_OFF_NADIR_DEG)),
                "view_azimuth": float(rng.uniform(0, 360))}

    def vhr_rgb(self, t: pd.Timestamp) -> np.ndarray:
        """High-resolution true-colour image (3, y, x) uint8 at ``vhr_res_m`` on date t.

        Roofs lean away from the satellite by h · tan(off-nadir) with their facade in between;
        buildings cast shadows h / tan(sun elevation) long on the side away from the sun; tree
        crowns (``world.trees`` where present) cover roofs and yards; paved yards, parking and
        bare lots look like roofs; lots in construction show their phase.
        """
        rng = _rng(self.world, "vhr", 0)
        gb = self.geobox_vhr
        geo = self.vhr_geometry(t)
        cls = self.class_vhr.copy()
        bid = self.building_id_vhr
        s = self.lot_state(t)
        ph, act, h = s["phase"], s["act"], s["height"]
        palette = np.array([
            [128, 120, 98], [70, 70, 72], [38, 62, 92], [60, 112, 48]], dtype="float32")
        img = palette[np.where(cls < 4, cls, GROUND)].copy()
        # ground that looks like roofs: paved yards, parking, bare lots
        x0, y0, x1, y1 = self.world.spec.bounds
        n_lots = rng.poisson(VHR_LOTS_PER_HA * (x1 - x0) * (y1 - y0) / 1e4 * 0.4)
        cx, cy = rng.uniform(x0, x1, n_lots), rng.uniform(y0, y1, n_lots)
        wx, wy = rng.uniform(*VHR_LOT_M, (2, n_lots))
        kinds = rng.choice(3, n_lots, p=[0.5, 0.25, 0.25])
        lot_rgb = np.array([[178, 176, 170], [150, 90, 66], [64, 64, 66]], dtype="float32")
        if n_lots:
            boxes = shapely.box(cx - wx / 2, cy - wy / 2, cx + wx / 2, cy + wy / 2)
            lotk = features.rasterize(zip(boxes, kinds + 1, strict=True),
                                      out_shape=gb.shape.yx, transform=gb.transform, fill=0,
                                      dtype="uint8")
            m = (lotk > 0) & (cls == GROUND) & (bid == 0)
            shade = rng.uniform(0.8, 1.15, n_lots + 1).astype("float32")
            img[m] = lot_rgb[lotk[m] - 1] * shade[lotk[m]][:, None]
        # lots without a standing structure show their phase
        site_rgb = np.array([palette[PARK], [150, 120, 90], [160, 158, 150], [120, 120, 118],
                             [0, 0, 0], [170, 165, 155], [150, 120, 90]], dtype="float32")
        lp = ph[bid]
        flat = (bid > 0) & (lp != 4) & (lp != 3)
        img[flat] = site_rgb[lp[flat]]
        img[(bid > 0) & (lp == 3)] = site_rgb[2]  # the footprint of a rising frame
        # buildings with height: shadows, facades and leaning roofs, drawn low to high
        b = self.world.buildings
        ids = b["building_id"].to_numpy()
        up = (ph[ids] == 3) | (ph[ids] == 4)
        geoms = b.geometry.values[up]
        ids_up, hh = ids[up], h[ids[up]]
        if ids_up.size:
            sa, se = np.radians(geo["sun_azimuth"]), np.radians(max(geo["sun_elevation"], 5.0))
            sl = hh / np.tan(se)  # shadow toward the anti-sun azimuth
            sdx, sdy = -np.sin(sa) * sl, -np.cos(sa) * sl
            va = np.radians(geo["view_azimuth"])
            ll = hh * np.tan(np.radians(geo["off_nadir"]))  # roofs lean away from the satellite
            ldx, ldy = -np.sin(va) * ll, -np.cos(va) * ll
            shadows = shapely.convex_hull(shapely.union(
                geoms, _translate(geoms, sdx, sdy)))
            sh = features.rasterize(zip(shadows, ids_up, strict=True), out_shape=gb.shape.yx,
                                    transform=gb.transform, fill=0, dtype="int32")
            order = np.argsort(hh, kind="stable")
            roofs = _translate(geoms, ldx, ldy)
            facades = shapely.convex_hull(shapely.union(geoms, roofs))
            shapes = []
            for j in order:
                shapes += [(facades[j], -int(ids_up[j])), (roofs[j], int(ids_up[j]))]
            drawn = features.rasterize(shapes, out_shape=gb.shape.yx, transform=gb.transform,
                                       fill=0, dtype="int32")
            mats = self._by_id("roof_material", "concrete")
            roof_rgb = {"concrete": [178, 176, 170], "metal": [150, 160, 172],
                        "tile": [150, 80, 60]}
            col = np.zeros((self._n_ids, 3), dtype="float32")
            for mname, c in roof_rgb.items():
                col[mats[act] == mname] = c
            col[ph == 3] = [120, 120, 118]
            col *= rng.uniform(0.75, 1.2, (self._n_ids, 1)) * rng.uniform(
                0.92, 1.08, (self._n_ids, 3))
            r = drawn > 0
            img[r] = col[drawn[r]]
            fcd = drawn < 0
            img[fcd] = col[-drawn[fcd]] * 0.7
            dark = (sh > 0) & (np.abs(drawn) != sh)
            img[dark] *= VHR_SHADOW
        trees = getattr(self.world, "trees", None)
        if trees is not None and len(trees):
            crowns = features.rasterize(
                ((g, 1) for g in trees.geometry.values), out_shape=gb.shape.yx,
                transform=gb.transform, fill=0, dtype="uint8") > 0
            img[crowns] = palette[PARK] * rng.uniform(0.7, 1.2, (int(crowns.sum()), 1))
        img += rng.normal(0, 6, img.shape).astype("float32")
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

        Light comes from residents and commercial floor area of buildings standing at
        ``month_end``, from lit roads (arterials brighter) and from industrial sites lit
        independently of anyone living there; it blooms (a ~300 m core and a ~1.2 km halo)
        before it is averaged onto the 15″ grid, saturates softly near ``NTL_SATURATION``,
        follows a season and carries month-to-month noise city-wide and per pixel.
        """
        b = self.world.buildings
        up = standing(b, month_end)
        comm = np.where(b["function"].isin(["commercial", "mixed", "public"]),
                        b["floors"] * b["area"], 0.0)
        rng_site = _rng(self.world, "ntl", 100_000)
        industry = np.where(b["function"] == "industrial",
                            NTL_INDUSTRY_PER_M2 * b["area"].to_numpy()
                            * rng_site.lognormal(0.0, 1.0, len(b)), 0.0)
        em = self._emission_100m(0.004 * b["occupants"].to_numpy() + 0.0015 * comm + industry,
                                 mask=up)
        road = self._road_density_100m * NTL_ROAD
        bins, (ny, nx, pad) = self._ntl_bins
        big = np.zeros((ny, nx))
        big[pad:-pad, pad:-pad] = em + road
        big = ((1 - NTL_HALO_SHARE) * ndi.gaussian_filter(big, sigma=NTL_CORE_M / 100.0)
               + NTL_HALO_SHARE * ndi.gaussian_filter(big, sigma=NTL_HALO_M / 100.0))
        ng = self.ntl_geobox
        ok = bins >= 0
        s = np.bincount(bins[ok], weights=big.ravel()[ok], minlength=ng.shape.y * ng.shape.x)
        n = np.bincount(bins[ok], minlength=ng.shape.y * ng.shape.x)
        rad = (s / np.maximum(n, 1)).reshape(ng.shape.yx)
        rng = _rng(self.world, "ntl", index)
        month = pd.Timestamp(month_end).month
        season = 1.0 + NTL_SEASON * np.cos(2 * np.pi * (month - 0.5) / 12.0)  # peak in winter
        rad = rad * season * rng.lognormal(0, NTL_MONTH_SD)
        rad = NTL_SATURATION * np.tanh(rad / NTL_SATURATION)
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
