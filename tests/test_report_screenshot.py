"""Render the EDA and report pages in headless Chromium: every figure decodes and the page is not blank."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toprec import Dataset, models
from toprec.report import write_eda, write_report

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)  # fmt: skip
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")

# written into a copy of the page: after load, each image's decoded size goes into the DOM
PROBE = """<script>
window.addEventListener('load', () => {
  const out = [];
  document.querySelectorAll('img').forEach(i => out.push(i.dataset.figure + ':' + i.naturalWidth + 'x' + i.naturalHeight
    + ':' + (i.complete ? 'ok' : 'pending')));
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = out.join(';');
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _check_page(html_path: Path, n_figures: int, tmp_path: Path) -> None:
    probe = tmp_path / f"probe_{html_path.name}"
    probe.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()).stdout
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    entries = [e.split(":") for e in m.group(1).split(";") if e]
    assert len(entries) == n_figures
    for fid, size, state in entries:
        w, h = (int(v) for v in size.split("x"))
        assert state == "ok" and w > 200 and h > 100, (fid, size, state)

    shot = tmp_path / f"{html_path.stem}.png"
    proc = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", "--hide-scrollbars",
                     html_path.as_uri())  # fmt: skip
    assert shot.exists(), proc.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    not_white = (img < 0.95).any(axis=2)
    assert not_white.mean() > 0.02  # text, tables and plots, not a blank page (a blank one is 0)
    # the figures' bar / line colour (matplotlib's first palette colour) is on screen
    blue = np.abs(img - np.array([0x1F, 0x77, 0xB4]) / 255.0).max(axis=2) < 0.06
    assert blue.sum() > 2000


def test_eda_page_renders(competition_dir, tmp_path):
    ds = Dataset.load(competition_dir, cache=False)
    html_path, _, page = write_eda(ds, tmp_path / "eda", competition_dir)
    _check_page(html_path, len(page.figures()), tmp_path)


def test_report_page_renders(competition_dir, tmp_path):
    ds = Dataset.load(competition_dir, cache=False)
    ms = [models.get("popularity"), models.get("itemknn")]
    html_path, _, page, _ = write_report(ds, ms, tmp_path / "rep", competition_dir, random=4, map_items=60)
    _check_page(html_path, len(page.figures()), tmp_path)
