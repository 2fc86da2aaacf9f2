"""How hard the synthetic world is for trivial built-up baselines (issue #15).

Two cities of one spec, seed 0 for fitting and seed 1 held out; on the last year's yearly
median of S2 (B02 … B12, SCL-masked) and S1 (VV, VH, both orbits, in dB), simulated straight
from ``eocube.synth.sensors.Scene`` (the same values the archive's COGs hold):

- a per-pixel logistic regression on all bands (scikit-learn, standardised inputs), with its
  default cut (0.5) and with the cut that maximises F1 on the fitting city;
- one VV threshold (dB) chosen for the best F1 on the fitting city, applied to the other.

Built-up truth: roof fraction of standing buildings ≥ 0.5 on 1 July of that year. Prints F1
on the held-out city for each.
Run: ``python benchmarks/world_difficulty.py [--preset tiny|models]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _features(scene, year):
    """Yearly medians (S2 clear pixels by SCL; S1 VV/VH in dB, both orbits) and built-up truth
    on 1 July, straight from the simulator (no archive written)."""
    import pandas as pd

    from eocube.synth.build import s1_dates, s1_orbit, s2_dates
    from eocube.synth.sensors import (
        S1_NODATA,
        S2_BANDS,
        S2_BOA_ADD_OFFSET,
        S2_QUANTIFICATION,
        SCL_CLOUD_AND_SHADOW,
    )

    spec = scene.world.spec
    d2 = s2_dates(spec)
    bands: dict[str, list[np.ndarray]] = {b: [] for b in S2_BANDS}
    for i in np.flatnonzero(d2.year == year):
        sc = scene.s2_scene(int(i), d2[i])
        bad = np.repeat(np.repeat(np.isin(sc["SCL"], (0, *SCL_CLOUD_AND_SHADOW)), 2, 0), 2, 1)
        for b in S2_BANDS:
            dn = sc[b] if sc[b].shape == bad.shape else np.repeat(np.repeat(sc[b], 2, 0), 2, 1)
            r = (dn.astype("float32") + S2_BOA_ADD_OFFSET) / S2_QUANTIFICATION
            bands[b].append(np.where(bad, np.nan, r))
    d1 = s1_dates(spec)
    pols: dict[str, list[np.ndarray]] = {"vv": [], "vh": []}
    for i in np.flatnonzero(d1.year == year):
        sc = scene.s1_scene(int(i), d1[i], orbit=s1_orbit(int(i)))
        for p in pols:
            pols[p].append(np.where(sc[p] == S1_NODATA, np.nan, sc[p]))
    names = [*S2_BANDS, "vv", "vh"]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cols = [np.nanmedian(np.stack(bands[b]), axis=0).ravel() for b in S2_BANDS]
            cols += [10 * np.log10(np.nanmedian(np.stack(pols[p]), axis=0)).ravel()
                     for p in pols]
    x = np.stack(cols, axis=1).astype("float64")
    y = (scene.builtup_fraction(pd.Timestamp(f"{year}-07-01")) >= 0.5).ravel().astype(int)
    ok = np.isfinite(x).all(axis=1)
    return x[ok], y[ok], names


def _f1(pred: np.ndarray, y: np.ndarray) -> float:
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    return 2 * tp / max(2 * tp + fp + fn, 1.0)


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from eocube.models.data import city_spec
    from eocube.synth import make_world, resolve_spec
    from eocube.synth.sensors import Scene

    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=("tiny", "models"))
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--test-seed", type=int, default=1)
    a = ap.parse_args()
    spec = resolve_spec("tiny") if a.preset == "tiny" else city_spec()
    year = spec.end.year
    t0 = time.perf_counter()
    xa, ya, names = _features(Scene(make_world(spec, seed=a.train_seed)), year)
    xb, yb, _ = _features(Scene(make_world(spec, seed=a.test_seed)), year)
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    lr.fit(xa, ya)
    f1_lr = _f1(lr.predict(xb).astype(bool), yb)
    # the same regression with its probability cut chosen for the best F1 on the fitting city
    pa, pb = lr.predict_proba(xa)[:, 1], lr.predict_proba(xb)[:, 1]
    cut = max(np.linspace(0.02, 0.98, 49), key=lambda c: _f1(pa > c, ya))
    f1_lr_cut = _f1(pb > cut, yb)
    vv = names.index("vv")
    cands = np.quantile(xa[:, vv], np.linspace(0.01, 0.99, 197))
    best = max(cands, key=lambda c: _f1(xa[:, vv] > c, ya))
    f1_vv = _f1(xb[:, vv] > best, yb)
    print(f"world_difficulty preset={spec.name} size={spec.size_m}m year={year} "
          f"train_seed={a.train_seed} test_seed={a.test_seed} built-up share "
          f"{ya.mean():.3f}/{yb.mean():.3f}")
    print(f"logistic regression S1+S2 held-out F1 = {f1_lr:.3f} "
          f"(train F1 {_f1(lr.predict(xa).astype(bool), ya):.3f})")
    print(f"logistic regression, cut {cut:.2f} fitted for F1, held-out F1 = {f1_lr_cut:.3f} "
          f"(train F1 {_f1(pa > cut, ya):.3f})")
    print(f"VV threshold {best:.2f} dB held-out F1 = {f1_vv:.3f} "
          f"(train F1 {_f1(xa[:, vv] > best, ya):.3f})")
    print(f"elapsed {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
