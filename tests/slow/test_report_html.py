"""report.html in a real browser: headless Chromium renders every plot (skipped when Debian's chromium is absent)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekd.benchmarks.report import write

pytestmark = pytest.mark.slow
BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (apt-get install chromium)")
def test_every_plot_renders(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "sst2-bench" / "report.json"
    if not sample.is_file():
        pytest.skip(f"{sample} is absent: run benchmarks/results/bench_all.sh")
    paths = write(json.loads(sample.read_text()), tmp_path / "report")
    script = (
        "JSON.stringify([...document.querySelectorAll('figure img')].map(i => [i.parentElement.id, i.complete && i.naturalWidth]))"
    )
    # --dump-dom prints the DOM after load; a script element appends each image's state for us to read back.
    probe = tmp_path / "report" / "probe.html"
    probe.write_text(paths["html"].read_text().replace("</body>", f"<pre id='probe'></pre><script>document.getElementById('probe')"
                                                                  f".textContent = {script};</script></body>"))
    out = subprocess.run([str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    start = out.stdout.index("<pre id=\"probe\">") + len("<pre id=\"probe\">")
    states = json.loads(out.stdout[start : out.stdout.index("</pre>", start)].replace("&quot;", '"'))
    assert {name for name, _ in states} == {"plot-accuracy_latency", "plot-latency_distribution", "plot-size"}
    assert all(width and width > 100 for _, width in states), states
