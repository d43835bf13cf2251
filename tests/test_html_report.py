"""``report --format html``: one self-contained page, rendered in a real headless Chromium (Debian's ``chromium``,
installed by .ci/run): no console error, no request to any other origin, a page that is not blank, and the figures
the views give."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from matplotlib.image import imread

from tests.support import Fake, ForwardProxy, cli, query

QUIET_BROWSER = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-field-trial-config",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("these tests need Debian's chromium (apt-get install chromium; .ci/run installs it)")
    return found


def browse(page: Path, proxy: ForwardProxy, *args: str) -> subprocess.CompletedProcess[str]:
    """Open ``page`` in headless Chromium with every network request sent through ``proxy``, which records it."""
    command = [chromium(), *QUIET_BROWSER, f"--proxy-server={proxy.url}", "--proxy-bypass-list=<-loopback>", *args]
    return subprocess.run([*command, page.as_uri()], capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_the_harness_sees_console_errors_and_foreign_requests(tmp_path: Path) -> None:
    """The checks below mean something: a page that logs an error and asks another origin is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<p>x</p><img src="http://example.invalid/pixel.png"><script>console.error("broken")</script>')
    with ForwardProxy() as proxy:
        done = browse(bad, proxy, "--dump-dom")
    assert any("broken" in line for line in console_messages(done.stderr)), done.stderr[-2000:]
    assert any("example.invalid" in url for url in proxy.urls)


def test_the_html_report_renders_offline_with_the_views_figures(fake: Fake, workdir: Path) -> None:
    assert cli("run").exit_code == 0
    page = workdir / "report.html"
    result = cli("report", "--format", "html", "--output", str(page))
    assert result.exit_code == 0, result.stderr
    text = page.read_text()
    assert page.stat().st_size < 5 * 1024 * 1024
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', text), "a reference to another origin"
    with ForwardProxy() as proxy:
        shot = browse(page, proxy, "--window-size=1280,3000", f"--screenshot={workdir / 'shot.png'}")
        dom = browse(page, proxy, "--dump-dom")
    assert shot.returncode == 0 and dom.returncode == 0, shot.stderr[-2000:]
    assert console_messages(shot.stderr + dom.stderr) == []
    assert proxy.urls == [], f"requests to other origins: {proxy.urls}"

    pixels = imread(workdir / "shot.png")
    assert pixels.std() > 0.05 and (pixels[..., :3] < 0.5).mean() > 0.01, "a blank page"

    ((rate,),) = query("select failure_rate from cohere_finetuning.failure_rates")
    shown = re.search(r'id="overall-failure-rate">([^<]+)<', dom.stdout)
    assert shown and shown.group(1) == f"{100 * rate:.1f}%"
    stale = [row[0] for row in query("select finetuned_model_id from cohere_finetuning.stale_models")]
    assert stale, "the simulated world should hold stale models"
    assert all(model_id in dom.stdout for model_id in stale)
    assert dom.stdout.count("<svg") >= 3 and dom.stdout.count('role="img"') >= 3
    assert "Data as of" in dom.stdout


def test_html_to_stdout_and_a_failed_write_leaves_the_old_page(fake: Fake, workdir: Path) -> None:
    assert cli("run").exit_code == 0
    to_stdout = cli("report", "--format", "html")
    assert to_stdout.exit_code == 0 and to_stdout.stdout.lstrip().startswith("<!doctype html>")
    folder = workdir / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(folder)], check=False).returncode:
        pytest.fail(f"this test needs to mount a tmpfs (run as root, or with CAP_SYS_ADMIN): {folder}")
    try:
        page = folder / "report.html"
        page.write_text("the old page")
        result = cli("report", "--format", "html", "--output", str(page))
        assert result.exit_code == 1 and "No space left on device" in result.stderr
        assert page.read_text() == "the old page"
        assert [path.name for path in folder.iterdir()] == ["report.html"], "a temporary file was left behind"
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
    assert cli("report", "--output", "x.html").exit_code == 2


MEASURE = """<script>
const width = document.documentElement.clientWidth;
const outside = [];
for (const element of document.body.querySelectorAll("*")) {
  const box = element.getBoundingClientRect();
  if (box.width && (box.right > width + 0.5 || box.left < -0.5)) {
    outside.push(element.tagName + " " + element.textContent.slice(0, 40));
  }
}
const frames = [...document.querySelectorAll(".scroll")];
const hidden = frames.filter(frame => frame.scrollWidth > frame.clientWidth + 1).length;
let smallest = 1000, small = "";
for (const text of document.querySelectorAll("figure svg text")) {
  const matrix = text.getScreenCTM();
  const scale = Math.sqrt(Math.abs(matrix.a * matrix.d - matrix.b * matrix.c));
  const size = parseFloat(getComputedStyle(text).fontSize) * scale;
  if (size < smallest) { smallest = size; small = text.textContent; }
}
parent.document.body.dataset.layout = JSON.stringify(
  {width, outside, hidden, smallest, small, page: document.documentElement.scrollWidth});
</script>"""


def test_the_html_report_fits_a_phone_and_a_desktop(workdir: Path) -> None:
    """At 390 and 1,280 CSS px: nothing wider than the page, no table scrolled out of sight, chart text >= 9 px."""
    import html
    import json

    for provider in ("cohere", "together", "openai"):
        assert cli("demo", "--provider", provider).exit_code == 0
    page = workdir / "report.html"
    assert cli("report", "--format", "html", "--output", str(page)).exit_code == 0
    inner = html.escape(page.read_text().replace("</body>", MEASURE + "</body>"))
    measured = workdir / "measured.html"
    for width in (390, 1280):  # headless Chromium's window is at least 500 px wide: a phone is an iframe in it
        frame = f'<iframe style="border:0;width:{width}px;height:3000px" srcdoc="{inner}"></iframe>'
        measured.write_text(f'<!doctype html><body style="margin:0">{frame}</body>')
        with ForwardProxy() as proxy:
            dom = browse(measured, proxy, "--window-size=1400,3000", "--dump-dom")
        found = re.search(r'data-layout="([^"]*)"', dom.stdout)
        assert found, dom.stderr[-2000:]
        layout = json.loads(html.unescape(found.group(1)))
        assert layout["width"] == width and layout["page"] <= layout["width"], layout
        assert layout["outside"] == [], f"at {width} px: {layout['outside'][:5]}"
        assert layout["hidden"] == 0, f"at {width} px, {layout['hidden']} tables need scrolling"
        assert 9 <= layout["smallest"] < 1000, (
            f"at {width} px the smallest chart text is {layout['smallest']:.1f} px: {layout['small']!r}"
        )
