"""CCDC speed and agreement: eocube's CCDC against lcmap-pyccd, per pixel, on one CPU core.

Both run on the same 20-year, 8-day, 7-band Landsat-like series (30 % cloud, half the pixels
with a step change), in the same process. pyccd is timed on a few hundred pixels, eocube's
default CPU path (numba) on a few thousand; the ratio of pixels per second is printed, with
the agreement of their first break dates. The batched numpy reference is timed on a subset
and checked against the numba results. On a machine with CUDA, the torch backend is also
timed on a 1024×1024 tile.

    .venv/bin/python benchmarks/change.py [--quick] [--pixels N] [--pyccd-pixels M]

``--real`` instead compares the two on real Landsat pixel series from public repositories'
test resources (tests/change/data, sources in its README): break / no-break agreement and
break dates matched within one revisit (16 days). pyccd runs live when installed, else its
recorded results (tests/change/data/pyccd_results.json) are used; ``--record`` rewrites them.

    .venv/bin/python benchmarks/change.py --real [--record]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"  # one core: set before numpy loads its BLAS

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from eocube.change import ccdc_numpy  # noqa: E402
from eocube.change.pyccd import PYCCD_DETECTION, PYCCD_TMASK, from_pyccd  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "change" / "data"
RECORDED = DATA / "pyccd_results.json"
REVISIT = 16  # days: one Landsat revisit
#: pyccd's parameters for CFMask QA (its test resources predate the bit-packed ARD QA)
CFMASK_PARAMS = {"QA_BITPACKED": False, "QA_FILL": 255, "QA_CLEAR": 0, "QA_WATER": 1,
                 "QA_SHADOW": 2, "QA_SNOW": 3, "QA_CLOUD": 4}

BASE = np.array([400, 700, 600, 3000, 2000, 1200, 2900.0])  # Landsat SR × 10 000, + thermal
AMP = np.array([100, 150, 200, 800, 300, 200, 300.0])
STEP = np.array([600, 600, 800, -1500, 1000, 800, 200.0])
QA_CLEAR, QA_CLOUD = 1 << 1, 1 << 5  # pyccd's bit-packed ARD QA


def series(n_pix: int, *, seed: int = 0):
    """Ordinal dates, (pixel, band, time) int values, (pixel, time) QA, change day or -1."""
    rng = np.random.default_rng(seed)
    d0 = 730120  # 2000-01-01 as a proleptic Gregorian ordinal (pyccd's date convention)
    ordinal = d0 + np.arange(0, 20 * 365, 8)
    t = ordinal.size
    w = 2 * np.pi / 365.25
    y = (BASE[None, :, None] + AMP[None, :, None] * np.cos(w * ordinal)[None, None, :]
         + rng.normal(0, 80, (n_pix, 7, t)))
    change = np.where(rng.random(n_pix) < 0.5, d0 + rng.integers(2 * 365, 18 * 365, n_pix), -1)
    y += np.where((change[:, None] >= 0) & (ordinal[None] >= change[:, None]), 1, 0)[:, None] \
        * STEP[None, :, None]
    cloud = rng.random((n_pix, t)) < 0.3
    qa = np.where(cloud, QA_CLOUD, QA_CLEAR)
    y = np.where(cloud[:, None], 8000, y)
    return ordinal, np.round(y).astype(np.int64), qa, change


def eocube_input(ordinal, y, qa):
    dates = (np.datetime64("0001-01-01") + (ordinal - 1).astype("timedelta64[D]"))
    v = (y / 10_000.0).transpose(0, 2, 1).copy()
    v[qa != QA_CLEAR] = np.nan
    return v, dates


def first_break_ordinal(res, dates) -> np.ndarray:
    bd = np.where(res["is_break"], res["break_day"], np.inf).min(1)
    epoch = np.datetime64("1970-01-01").astype("datetime64[D]")
    return np.where(np.isfinite(bd), bd + (epoch - np.datetime64("0001-01-01")).astype(int) + 1,
                    np.nan)


def run_pyccd(ordinal, y, qa):
    import ccd
    import ccd.math_utils
    import scipy.stats

    # pyccd (2021) indexes scipy.stats.mode's result, which needs keepdims=True since 1.11
    ccd.math_utils.mode = lambda a: scipy.stats.mode(a, keepdims=True)
    out = []
    t0 = time.perf_counter()
    for p in range(y.shape[0]):
        r = ccd.detect(ordinal, *y[p], qa[p])
        brk = [m["break_day"] for m in r["change_models"] if m["change_probability"] == 1]
        out.append(brk[0] if brk else np.nan)
    return time.perf_counter() - t0, np.array(out, dtype=float)


def real_series() -> dict[str, np.ndarray]:
    """The shipped real pixel series: name -> (time, 9+) rows of date, 7 bands, CFMask QA."""
    return {p.stem: np.loadtxt(p, delimiter=",", ndmin=2) for p in sorted(DATA.glob("*.csv"))}


def pyccd_on(rows: np.ndarray) -> list[dict]:
    """pyccd 2021.7 on one pixel (CFMask QA): its change models, dates as ISO strings."""
    import ccd
    import ccd.math_utils
    import scipy.stats

    # pyccd (2021) uses np.bool and indexes scipy.stats.mode's result: both gone since
    np.bool = bool  # type: ignore[attr-defined]
    ccd.math_utils.mode = lambda a: scipy.stats.mode(a, keepdims=True)
    r = ccd.detect(rows[:, 0].astype(int), *rows[:, 1:8].T, rows[:, 8].astype(int),
                   params=dict(CFMASK_PARAMS))
    iso = lambda o: datetime.date.fromordinal(int(o)).isoformat()  # noqa: E731
    return [{"start_day": iso(m["start_day"]), "end_day": iso(m["end_day"]),
             "break_day": iso(m["break_day"]), "observation_count": int(m["observation_count"]),
             "change_probability": float(m["change_probability"]),
             "curve_qa": int(m["curve_qa"])} for m in r["change_models"]]


def eocube_on(rows: np.ndarray, backend: str = "numba") -> dict[str, np.ndarray]:
    """eocube's ccdc_numpy on one pixel, through the same filters pyccd applies."""
    s = from_pyccd(rows[:, 0], rows[:, 1:8].T, rows[:, 8].astype(int))
    return ccdc_numpy(s.values, s.dates, qa=s.qa, detection_bands=list(PYCCD_DETECTION),
                      tmask_bands=list(PYCCD_TMASK), backend=backend)


def compare(eo: dict[str, np.ndarray], models: list[dict]) -> dict:
    """Break / no break and break dates of one pixel: eocube against pyccd's models."""
    to_day = lambda iso: float(np.datetime64(iso, "D").astype("int64"))  # noqa: E731
    py = [to_day(m["break_day"]) for m in models if m["change_probability"] == 1]
    ours = sorted(eo["break_day"][0][eo["is_break"][0]].tolist())
    matched = sum(any(abs(b - o) <= REVISIT for o in ours) for b in py)
    found = sum(any(abs(b - o) <= REVISIT for b in py) for o in ours)
    return {"pyccd_breaks": len(py), "eocube_breaks": len(ours), "agree": bool(py) == bool(ours),
            "pyccd_matched": matched, "eocube_matched": found,
            "status": int(eo["status"][0])}


def run_real(record: bool) -> dict:
    """Compare on every shipped series; print a table and the totals; return the totals."""
    series = real_series()
    try:
        live = {name: pyccd_on(rows) for name, rows in series.items()}
        from importlib.metadata import version

        source = f"lcmap-pyccd {version('lcmap-pyccd')} (run now)"
    except ImportError:
        live = None
    if record:
        if live is None:
            raise SystemExit("--record needs lcmap-pyccd: pip install --no-deps "
                             "lcmap-pyccd==2021.7.19 scikit-learn")
        from importlib.metadata import version

        RECORDED.write_text(json.dumps({
            "produced_by": "benchmarks/change.py --record: ccd.detect(dates, blue, green, red, "
                           "nir, swir1, swir2, thermal, qa, params=CFMASK_PARAMS) on each CSV",
            "pyccd": version("lcmap-pyccd"), "scikit-learn": version("scikit-learn"),
            "numpy": np.__version__, "params": CFMASK_PARAMS, "pixels": live}, indent=1) + "\n")
        print(f"recorded pyccd results in {RECORDED}")
    if live is None:
        rec = json.loads(RECORDED.read_text())
        live, source = rec["pixels"], f"lcmap-pyccd {rec['pyccd']} (recorded in {RECORDED.name})"
    print(f"real Landsat pixel series: {len(series)} from {DATA}; reference: {source}")
    tot = {"pixels": 0, "agree": 0, "pyccd_breaks": 0, "pyccd_matched": 0,
           "eocube_breaks": 0, "eocube_matched": 0}
    for name, rows in series.items():
        c = compare(eocube_on(rows), live[name])
        print(f"  {name:58s} pyccd {c['pyccd_breaks']} breaks, eocube {c['eocube_breaks']} "
              f"(status {c['status']}), matched {c['pyccd_matched']}/{c['pyccd_breaks']}"
              f"{'' if c['agree'] else '  DISAGREE'}")
        tot["pixels"] += 1
        for k in ("agree", "pyccd_breaks", "pyccd_matched", "eocube_breaks", "eocube_matched"):
            tot[k] += int(c[k])
    print(f"break / no break agreement: {tot['agree']}/{tot['pixels']} pixels "
          f"({tot['agree'] / tot['pixels']:.0%}); pyccd breaks matched by eocube within "
          f"{REVISIT} d: {tot['pyccd_matched']}/{tot['pyccd_breaks']}; eocube breaks matched by "
          f"pyccd: {tot['eocube_matched']}/{tot['eocube_breaks']}")
    return tot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--pixels", type=int, default=None, help="eocube pixels (default 8192)")
    ap.add_argument("--pyccd-pixels", type=int, default=None, help="pyccd pixels (default 200)")
    ap.add_argument("--gpu-side", type=int, default=1024, help="GPU tile side (pixels)")
    ap.add_argument("--real", action="store_true",
                    help="agreement with pyccd on the shipped real Landsat series")
    ap.add_argument("--record", action="store_true",
                    help="with --real: rewrite the recorded pyccd results (needs pyccd)")
    args = ap.parse_args()
    if args.real:
        run_real(args.record)
        return
    n_eo = args.pixels or (1024 if args.quick else 8192)
    n_py = args.pyccd_pixels or (10 if args.quick else 200)

    ordinal, y, qa, change = series(n_eo, seed=0)
    v, dates = eocube_input(ordinal, y, qa)
    print(f"series: {ordinal.size} dates (20 years, 8-day), 7 bands, 30 % cloud")
    ccdc_numpy(v[:64], dates)  # warm-up (numba compilation, or loading its cache)
    t0 = time.perf_counter()
    res = ccdc_numpy(v, dates)
    t_eo = time.perf_counter() - t0
    eo_rate = n_eo / t_eo
    print(f"eocube numba, 1 core : {n_eo:6d} px in {t_eo:8.2f} s = {eo_rate:10.1f} px/s")
    n_ref = n_eo // 8
    ccdc_numpy(v[:64], dates, backend="numpy")
    t0 = time.perf_counter()
    ref = ccdc_numpy(v[:n_ref], dates, backend="numpy")
    t_ref = time.perf_counter() - t0
    same = all(np.array_equal(res[k][:n_ref], ref[k], equal_nan=True) for k in ref
               if k not in ("coefficients", "rmse", "magnitude"))
    coef_diff = np.nanmax(np.abs(res["coefficients"][:n_ref] - ref["coefficients"]),
                          initial=0.0)
    print(f"eocube numpy (batched reference): {n_ref} px in {t_ref:.2f} s = "
          f"{n_ref / t_ref:.1f} px/s; numba gives the same breaks and segments: {same}, "
          f"coefficients within {coef_diff:.1e}")

    try:
        t_py, py_break = run_pyccd(ordinal, y[:n_py], qa[:n_py])
    except ImportError:
        print("pyccd (lcmap-pyccd) is not installed: pip install --no-deps lcmap-pyccd")
        py_rate = None
    else:
        py_rate = n_py / t_py
        print(f"pyccd 2021.7, 1 core : {n_py:6d} px in {t_py:8.2f} s = {py_rate:10.2f} px/s")
        print(f"speed-up             : {eo_rate / py_rate:10.0f} x")
        eo_break = first_break_ordinal(res, dates)[:n_py]
        both = np.isfinite(eo_break) & np.isfinite(py_break)
        same = np.isfinite(eo_break) == np.isfinite(py_break)
        close = np.abs(eo_break[both] - py_break[both]) <= 8
        print(f"agreement with pyccd : break / no break on {same.mean():.1%} of pixels; "
              f"first break within one revisit on {close.mean() if both.any() else 0:.1%} "
              "of pixels where both break")
    truth = np.where(change >= 0, change, np.nan)
    eo_break = first_break_ordinal(res, dates)
    clear = (qa == QA_CLEAR)
    first_clear = np.array([ordinal[(ordinal >= c) & m][0] if c >= 0 else np.nan
                            for c, m in zip(change, clear, strict=True)])
    hit = np.abs(eo_break - first_clear) <= 8
    print(f"eocube vs truth      : {hit[np.isfinite(truth)].mean():.1%} of changed pixels at "
          f"the first clear observation (±8 d), false breaks on "
          f"{np.isfinite(eo_break[~np.isfinite(truth)]).mean():.2%} of stable pixels")

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        side = args.gpu_side
        n_gpu = side * side
        batch = 131_072
        ordinal_g, yg, qag, _ = series(batch, seed=1)
        vg, _ = eocube_input(ordinal_g, yg, qag)
        ccdc_numpy(vg[:1024], dates, backend="torch", device="cuda")  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        done = 0
        while done < n_gpu:  # the tile in batches that fit the GPU, like dask chunks would
            n = min(batch, n_gpu - done)
            ccdc_numpy(vg[:n], dates, backend="torch", device="cuda")
            done += n
        torch.cuda.synchronize()
        t_gpu = time.perf_counter() - t0
        print(f"eocube torch on {torch.cuda.get_device_name()}: {side}x{side} tile in "
              f"{t_gpu:.1f} s = {n_gpu / t_gpu:,.0f} px/s")
    else:
        print("GPU: no CUDA device here; the torch path is not timed")


if __name__ == "__main__":
    main()
