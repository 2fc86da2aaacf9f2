"""The HTML report opens in a real browser and every figure renders (not blank)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    for b in BROWSERS:
        path = shutil.which(b)
        if path:
            return path
    # no skip: the set-up installs Debian's chromium; a missing browser is a failure
    pytest.fail("no headless Chromium found (scripts/setup.sh installs Debian's `chromium`)")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=180)


def test_every_figure_of_the_report_renders_in_chromium(tiny_run, tmp_path):
    report = tiny_run / "report" / "report.html"
    html = report.read_text()
    n_fig = html.count("<img ")
    assert n_fig >= 7  # built-up per year, time of change, population, stock, greening, SDG
    assert "src='data:image/png;base64," in html and "http" not in re.sub(
        r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # self-contained
    # the browser decodes every image: a probe counts those with pixels and their size
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 50 && i.naturalHeight > 50);
  document.body.setAttribute('data-rendered', ok.length + '/' + imgs.length);
});</script></body>"""))
    dom = _chromium("--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'data-rendered="(\d+)/(\d+)"', dom.stdout)
    assert m, dom.stdout[:500]
    assert int(m.group(1)) == int(m.group(2)) == n_fig
    # and the page, screenshotted, is not blank where the figures are
    shot = tmp_path / "report.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri())
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    a = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert a.std() > 20  # figures and tables, not a white page
    rows = a[400:2000]
    assert (rows < 200).mean() > 0.05  # dark ink of maps and text over much of the page
    # each embedded figure itself has content
    for b64 in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html):
        import base64
        import io

        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("L"))
        assert img.std() > 5
