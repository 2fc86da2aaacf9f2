"""Change detection on the synthetic city: break dates against the construction truth.

The city is the "tiny" preset run for 4 years (S2 every 10 days, 128×128 pixels at 10 m),
simulated in memory through the public `eocube.synth` scene, cloud-masked with SCL.
Figures printed (run with ``-s``) and asserted:

- changed pixels: truth ``change_date`` ≥ 0; "detectable" ones have at least ``consecutive``
  clear observations after the construction (CCDC cannot see a change nobody observed);
- a break is on time when it is within one revisit of the first clear observation on or
  after the completion date (a cloudy acquisition cannot show the change); the stricter
  "within one revisit of the completion date itself" is printed too; a break is "in process"
  when it falls between site clearing (``construction_start_date``, less one revisit) and the
  first clear look at the finished building: world v2 builds over months, and the surface
  changes first at clearing;
- stable pixels: no lot built, cleared or demolished during the series touches them (pixels
  partly covered by a new roof, below the truth's 50 % rule, are neither).

The probability-series method runs the shipped S2 built-up model (``urban_s2``) on every
acquisition through ``eocube.infer.predict`` (clouded pixels stay NaN, i.e. unobserved) and
takes the first date after which a pixel stays built-up for ``k = 3`` observations.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from eocube.change import ccdc, time_of_change

synth = pytest.importorskip("eocube.synth")
sensors = pytest.importorskip("eocube.synth.sensors")
archive = pytest.importorskip("eocube.synth.build")

REVISIT = 10


@pytest.fixture(scope="module")
def city():
    spec = synth.resolve_spec("tiny", years=4)
    scene = sensors.Scene(synth.make_world(spec, seed=0))
    times = archive.s2_dates(spec)
    shape = scene.geobox.shape.yx
    planes = []
    for i, t in enumerate(times):
        sc = scene.s2_scene(i, t)
        scl = np.repeat(np.repeat(sc["SCL"], 2, 0), 2, 1)
        cloudy = np.isin(scl, sensors.SCL_CLOUD_AND_SHADOW)
        bands = []
        for b in sensors.S2_BANDS:
            dn = sc[b].astype("float64")
            if dn.shape != shape:  # 20 m bands onto the 10 m grid
                dn = np.repeat(np.repeat(dn, 2, 0), 2, 1)
            refl = (dn + sensors.S2_BOA_ADD_OFFSET) / sensors.S2_QUANTIFICATION
            bands.append(np.where(cloudy, np.nan, refl))
        planes.append(bands)
    v = np.asarray(planes)  # (time, band, y, x)
    dates = times.tz_localize(None).to_numpy().astype("datetime64[ns]")
    from odc.geo.xr import xr_coords

    coords = {"time": dates, **xr_coords(scene.geobox)}
    cube = xr.Dataset({b: (("time", "y", "x"), v[:, i]) for i, b in enumerate(sensors.S2_BANDS)},
                      coords=coords)
    truth = scene.change_date.astype(float)
    start = scene.construction_start_date.astype(float)
    stable = (scene.new_built_fraction(times[-1]) == 0) & (scene.demolition_date < 0)
    lots = scene._lot_matrix.tocoo()
    touched = np.zeros(lots.shape[0], dtype=bool)  # any lot built, cleared or demolished here
    b = scene.world.buildings
    active = b["built_in_series"].to_numpy() | b["demolished_date"].notna().to_numpy()
    ids = np.zeros(lots.shape[1], dtype=bool)
    ids[b["building_id"].to_numpy()[active]] = True
    touched[lots.row[ids[lots.col]]] = True
    stable &= ~touched.reshape(stable.shape)
    return cube, (truth, start), stable


def _days(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.where(np.isnat(a), np.nan, a.astype("datetime64[s]").astype("int64") / 86400.0)


def _score(cube, detected_day, truth_and_start, stable, label):
    truth, start = truth_and_start
    days = _days(cube["time"].values)
    clear = np.isfinite(cube.to_dataarray().values).all(0)  # (time, y, x)
    changed = truth >= 0
    after = (days[:, None, None] >= truth[None]) & clear
    first_clear = np.where(after.any(0), days[np.argmax(after, axis=0)], np.nan)
    detectable = changed & (after.sum(0) >= 6)
    on_time = np.abs(detected_day - first_clear) <= REVISIT
    strict = np.abs(detected_day - truth) <= REVISIT
    # the construction process: from site clearing (the surface changes first there) to the
    # first clear look at the finished building
    in_process = (detected_day >= start - REVISIT) & (detected_day <= first_clear + REVISIT)
    figures = {
        "changed": int(changed.sum()), "detectable": int(detectable.sum()),
        "stable": int(stable.sum()),
        "on_time": float(on_time[detectable].mean()),
        "in_process": float(in_process[detectable].mean()),
        "strict_all_changed": float(strict[changed].mean()),
        "false_on_stable": float(np.isfinite(detected_day[stable]).mean()),
    }
    print(f"\n{label}: {figures}")
    return figures


def test_ccdc_on_the_synthetic_city(city):
    cube, truth, stable = city
    out = ccdc(cube.chunk({"y": 64, "x": 64})).compute()
    breaks = np.where(out["is_break"].values, _days(out["break"].values), np.inf)
    first_break = breaks.min(axis=0)  # segment is the first dim
    first_break[np.isinf(first_break)] = np.nan
    f = _score(cube, first_break, truth, stable, "CCDC")
    assert f["detectable"] >= 0.95 * f["changed"] > 100
    # world v2 builds over months (clearing → soil → foundation → structure): CCDC's first break
    # is the clearing, not the completion the truth dates. Measured on world v2: 75 % of the
    # detectable changes break within the construction process, 8 % within a revisit of the
    # completion, 0.4 % false breaks on stable pixels (world v1, instant construction: 97 % on
    # time at completion)
    assert f["in_process"] >= 0.70
    assert f["false_on_stable"] <= 0.02
    assert (out["status"] == 0).mean() > 0.99


def test_probability_series_on_the_synthetic_city(city):
    pytest.importorskip("torch")
    from eocube.infer import predict

    cube, truth, stable = city
    prob = predict(cube.chunk({"time": 1, "y": 128, "x": 128}), "urban_s2", tile=64, overlap=16,
                   device="cpu", threads=1)
    toc = time_of_change(prob.chunk({"time": -1, "y": 64, "x": 64}), threshold=0.5,
                         k=3).compute()
    f = _score(cube, _days(toc["change_date"].values), truth, stable, "probability series")
    # world v2, measured with the shipped urban_s2 (retrained on v2): 43 % of the detectable
    # changes are dated within the construction process, 3 % within a revisit of the first clear
    # look at the finished building, 29 % never stay built-up for k = 3 looks, 3.7 % false
    # breaks on stable pixels (per-acquisition maps flicker: 11 % of stable pixel-looks score
    # > 0.5 under haze, missed clouds and misregistration). CCDC on the same cube: 75 % in
    # process, 0.4 % false. World v1 (instant construction, clean scenes): 95 % on time, 0.7 %.
    assert f["in_process"] >= 0.38
    assert f["false_on_stable"] <= 0.05
