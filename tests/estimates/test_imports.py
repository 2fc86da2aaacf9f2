"""eocube.estimates stays free of torch (STYLE: torch stays in its room)."""

from __future__ import annotations


def test_estimates_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, eocube.estimates, eocube.estimates.population, eocube.estimates.stock, "
            "eocube.estimates.greening, eocube.estimates.sdg; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('eocube.models', "
            "'eocube.infer'))]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
