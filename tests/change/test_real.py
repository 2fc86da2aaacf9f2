"""CCDC against lcmap-pyccd on real Landsat pixel series (tests/change/data, sources in its
README): the same breaks, within one revisit, through the same observation filters.

pyccd's results are recorded next to the data (``pyccd_results.json``, produced by
``benchmarks/change.py --real --record``), so this runs without pyccd.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eocube.change import STATUS_MEANINGS, ccdc_numpy
from eocube.change.pyccd import PYCCD_DETECTION, PYCCD_TMASK, from_pyccd

DATA = Path(__file__).parent / "data"
RECORDED = json.loads((DATA / "pyccd_results.json").read_text())
SERIES = {p.stem: np.loadtxt(p, delimiter=",", ndmin=2) for p in sorted(DATA.glob("*.csv"))}
REVISIT = 16.0  # days: one Landsat revisit


def run(rows: np.ndarray, backend: str = "numba") -> dict[str, np.ndarray]:
    s = from_pyccd(rows[:, 0], rows[:, 1:8].T, rows[:, 8].astype(int))
    return ccdc_numpy(s.values, s.dates, qa=s.qa, detection_bands=list(PYCCD_DETECTION),
                      tmask_bands=list(PYCCD_TMASK), backend=backend)


def pyccd_breaks(name: str) -> list[float]:
    return [float(np.datetime64(m["break_day"], "D").astype("int64"))
            for m in RECORDED["pixels"][name] if m["change_probability"] == 1]


def eocube_breaks(res: dict) -> list[float]:
    return sorted(res["break_day"][0][res["is_break"][0]].tolist())


def test_the_recorded_results_cover_every_shipped_series():
    assert set(RECORDED["pixels"]) == set(SERIES) and len(SERIES) >= 5
    assert RECORDED["pyccd"] == "2021.7.19"


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    return {name: run(rows) for name, rows in SERIES.items()}


def test_break_or_no_break_agrees_with_pyccd(results):
    agree = [bool(pyccd_breaks(n)) == bool(eocube_breaks(r)) for n, r in results.items()]
    print(f"\nbreak / no break agreement with pyccd: {sum(agree)}/{len(agree)}")
    assert np.mean(agree) >= 0.9
    assert all(agree)


def test_break_dates_match_pyccd_within_one_revisit(results):
    matched = found = n_py = n_eo = 0
    for name, res in results.items():
        py, eo = pyccd_breaks(name), eocube_breaks(res)
        matched += sum(any(abs(b - o) <= REVISIT for o in eo) for b in py)
        found += sum(any(abs(b - o) <= REVISIT for b in py) for o in eo)
        n_py, n_eo = n_py + len(py), n_eo + len(eo)
    print(f"\npyccd breaks matched: {matched}/{n_py}; eocube breaks matched: {found}/{n_eo}")
    assert n_py >= 5  # the series do hold breaks
    assert matched == n_py and found == n_eo


def test_snow_dominated_pixels_get_the_persistent_snow_procedure(results):
    snowy = [n for n in SERIES if "snow" in n or "fmask_fail" in n]
    assert snowy
    for name in snowy:
        curve_qa = {m["curve_qa"] for m in RECORDED["pixels"][name]}
        assert curve_qa == {54}  # pyccd's PERSIST_SNOW
        res = results[name]
        assert STATUS_MEANINGS[res["status"][0]] == "persistent_snow"
        assert res["n_breaks"][0] == 0 and res["n_coefs"][0, 0] == 4


def test_numba_equals_numpy_on_real_series(results):
    for name, rows in SERIES.items():
        ref = run(rows, backend="numpy")
        for k, want in ref.items():
            if k in ("coefficients", "rmse", "magnitude"):
                np.testing.assert_allclose(results[name][k], want, rtol=1e-9, atol=1e-9,
                                           err_msg=f"{name} {k}")
            else:
                np.testing.assert_array_equal(results[name][k], want, err_msg=f"{name} {k}")
