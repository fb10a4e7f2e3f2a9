"""report.html as a browser shows it: headless Chromium loads a copy with a checker script appended.

Static checks (test_report.py) prove the page *contains* base64 PNGs and tables; only a browser proves the
images decode and the tables parse. The checker writes what the browser saw into the DOM as JSON, and
Chromium's --dump-dom hands it back. Locally the test skips without /usr/bin/chromium; under CI (the CI
environment variable set) a missing browser fails, so CI cannot pass by silently skipping it.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from test_report import RUNS, make_runs
from tunelab.comparison.report import write_report
from tunelab.comparison.results import FailedRun, collect

CHROMIUM = Path("/usr/bin/chromium")

CHECKER = """<script>
window.addEventListener("load", () => {
  const summary = {
    tables: [...document.querySelectorAll("table")].map(t => ({
      id: t.id,
      header: t.tHead ? [...t.tHead.rows[0].cells].map(c => c.textContent) : [],
      rows: t.tBodies.length ? t.tBodies[0].rows.length : 0,
      classes: t.tBodies.length ? [...t.tBodies[0].rows].map(r => r.className) : [],
      width: t.getBoundingClientRect().width,
      first_cells: t.tBodies.length ? [...t.tBodies[0].rows].map(r => r.cells[0].textContent) : [],
      height: t.getBoundingClientRect().height,
    })),
    images: [...document.images].map(i => ({complete: i.complete, naturalWidth: i.naturalWidth,
                                             naturalHeight: i.naturalHeight, scheme: i.src.split(":")[0]})),
    warnings: [...document.querySelectorAll("p.warn")].map(p => ({text: p.textContent,
                                                                 height: p.getBoundingClientRect().height})),
    resources: performance.getEntriesByType("resource").map(e => e.name.slice(0, 60)),
  };
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify(summary);
  document.body.appendChild(out);
});
</script>
"""
"""Appended to a copy of the page: on load, records tables, rows, image decode state and any fetched resources."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_chromium() -> None:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    message = f"{CHROMIUM} is missing; install it with `apt-get update && apt-get install -y chromium` (as root)"
    if _in_ci():
        pytest.fail(f"CI must run the browser check: {message}")
    pytest.skip(message)


def render(page: Path, tmp_path: Path) -> dict:
    """Load `page` plus the checker in headless Chromium; return the checker's JSON summary."""
    checked = tmp_path / "checked.html"
    text = page.read_text(encoding="utf-8")
    checked.write_text(text.replace("</body>", CHECKER + "</body>", 1), encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        checked.as_uri(),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=90, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("headless Chromium did not finish within 90 s")
    dom = done.stdout.decode("utf-8", errors="replace")
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.DOTALL)
    assert found, (
        f"no checker output (exit code {done.returncode}); stderr:\n{done.stderr.decode(errors='replace')[-2000:]}"
    )
    return json.loads(html.unescape(found.group(1)))


def test_the_report_renders_in_a_browser_with_every_table_and_image(tmp_path):
    _require_chromium()
    root = make_runs(tmp_path / "cmp" / "runs", {k: v for k, v in RUNS.items() if k != (1.0, "full", 1)})
    failed = [FailedRun(root / "fraction-1" / "full" / "s1", "full", 1, None, 1.0, "exit status -9 (killed)")]
    page = write_report(collect([root]), tmp_path / "cmp", "tiny-cnn on flowers", failed)
    seen = render(page, tmp_path)

    tables = {t["id"]: t for t in seen["tables"]}
    results = tables["results"]
    # one row per strategy at each of the two fractions, and the failed run right after its strategy's row
    assert results["rows"] == 3 * 2 + 1 and results["height"] > 0 and results["width"] > 0
    names = [cell.split(" ")[0] for cell in results["first_cells"]]
    assert names == ["none", "full", "scratch", "none", "full", "full", "scratch"]
    assert results["classes"][5] == "failed" and "✗" in results["first_cells"][5]
    for column in ("n", "vs best (paired 95% CI)", "Eval n", "Scored on", "Augment", "Cached blocks", "Flags"):
        assert column in results["header"], column
    assert tables["benefits"]["rows"] == 3
    texts = [w["text"] for w in seen["warnings"]]
    assert any("optimistic" in t for t in texts) and any("1 run failed" in t for t in texts)
    assert all(w["height"] > 0 for w in seen["warnings"])

    assert len(seen["images"]) == 3  # learning curves, cost vs metric, data fractions
    for image in seen["images"]:
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image
        assert image["scheme"] == "data"
    assert seen["resources"] == []  # nothing fetched: the page is self-contained
