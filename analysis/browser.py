"""Check a report as a person sees it: render it in headless Chromium and take a screenshot.

``check_page(html_path)`` loads a copy of the page with a small probe script added (the report itself has
no JavaScript) and returns what a reader would hit: console errors, images that did not load, elements
wider than the viewport (with every collapsed table opened too), and whether the three first-screen
figures are visible without scrolling. ``screenshot(html_path, png_path)`` saves the first screen.

    python -m analysis.browser results/demo-report/report.html --screenshot docs/report-first-screen.png
    python -m analysis.browser --store results/demo --screenshot docs/report-first-screen.png

Needs a Chromium binary (Debian package ``chromium``); ``find_chromium()`` is None without one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

VIEWPORT = (1280, 900)      # px: the first screen of a laptop browser window
FIRST_SCREEN_IDS = ("fig-effect", "fig-leakage", "fig-ranking")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
          "--no-first-run", "--disable-extensions", "--virtual-time-budget=5000"]

_PROBE = """<script>
window.__probe = {errors: []};
addEventListener('error', e => __probe.errors.push(e.message ? 'error: ' + e.message
  : 'failed to load: ' + ((e.target && (e.target.src || e.target.href)) || '?').slice(0, 120)), true);
for (const k of ['error', 'warn']) { const o = console[k];
  console[k] = function (...a) { __probe.errors.push(k + ': ' + a.join(' ')); o.apply(console, a); }; }
function __name(el) { return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
  (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : '') +
  ' "' + (el.textContent || el.alt || '').trim().slice(0, 40) + '"'; }
function __wide() { const W = document.documentElement.clientWidth, out = [];
  for (const el of document.body.querySelectorAll('*')) { if (el.id === '__probe_result') continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > W + 1 || r.left < -1)) out.push(__name(el) + ' spans ' + Math.round(r.left) +
      '..' + Math.round(r.right) + ' px'); }
  return out; }
addEventListener('load', () => {
  const H = innerHeight, W = document.documentElement.clientWidth;
  const first = {};
  for (const id of FIRST_IDS) { const e = document.getElementById(id), img = e && e.querySelector('img');
    const r = img && img.getBoundingClientRect();
    first[id] = !!(img && img.complete && img.naturalWidth > 0 && r.top >= 0 && r.bottom <= H && r.width >= 200); }
  const result = {viewport: [W, H], errors: __probe.errors, first_screen: first,
    broken_images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(__name),
    images: document.images.length, too_wide: __wide(), scroll_width: document.documentElement.scrollWidth};
  document.querySelectorAll('details').forEach(d => d.open = true);
  result.too_wide_open = __wide();
  result.scroll_width_open = document.documentElement.scrollWidth;
  result.details = document.querySelectorAll('details').length;
  const p = document.createElement('pre'); p.id = '__probe_result'; p.textContent = JSON.stringify(result);
  document.body.appendChild(p);
});
</script>"""


def find_chromium() -> str | None:
    """Path of a Chromium binary ($ROAR_CHROMIUM first), or None."""
    env = os.environ.get("ROAR_CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    return next((shutil.which(c) for c in CANDIDATES if shutil.which(c)), None)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium binary found (tried $ROAR_CHROMIUM, " + ", ".join(CANDIDATES) +
                                "); on Debian/Ubuntu: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="roar-chromium-") as profile:
        return subprocess.run([chromium, *_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)


def check_page(html_path: str, viewport=VIEWPORT, timeout: float = 120) -> dict:
    """Render html_path at `viewport` (width, height in px) and return the probe's findings: ``errors``,
    ``broken_images``, ``too_wide`` / ``too_wide_open`` (elements beyond the viewport, tables closed /
    opened), ``scroll_width``, ``first_screen`` ({figure id: visible without scrolling})."""
    with open(html_path, encoding="utf-8") as f:
        page = f.read()
    probe = _PROBE.replace("FIRST_IDS", json.dumps(list(FIRST_SCREEN_IDS)))
    at = page.find("<head>")
    page = page[:at + 6] + probe + page[at + 6:] if at >= 0 else probe + page
    # next to the original, so relative links resolve the same way
    fd, copy = tempfile.mkstemp(prefix=".probe-", suffix=".html", dir=os.path.dirname(os.path.abspath(html_path)))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        proc = _run([f"--window-size={viewport[0]},{viewport[1]}", "--dump-dom", "file://" + copy], timeout)
    finally:
        os.remove(copy)
    start = proc.stdout.find('<pre id="__probe_result">')
    if start < 0:
        raise RuntimeError(f"the page did not finish loading in Chromium (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    end = proc.stdout.find("</pre>", start)
    text = proc.stdout[start + len('<pre id="__probe_result">'):end]
    return json.loads(text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&"))


def problems(result: dict) -> list[str]:
    """What a reader would see wrong, as sentences; [] for a clean page."""
    out = [f"console: {e}" for e in result["errors"]]
    out += [f"image did not load: {i}" for i in result["broken_images"]]
    width = result["viewport"][0]
    out += [f"wider than the {width} px viewport: {e}" for e in result["too_wide"]]
    out += [f"wider than the viewport once tables are opened: {e}" for e in result["too_wide_open"]
            if e not in result["too_wide"]]
    if max(result["scroll_width"], result["scroll_width_open"]) > width:
        out.append(f"the page scrolls sideways: {max(result['scroll_width'], result['scroll_width_open'])} px")
    out += [f"first-screen figure {k} not visible without scrolling" for k, v in result["first_screen"].items()
            if not v]
    return out


def screenshot(html_path: str, png_path: str, viewport=VIEWPORT, timeout: float = 120) -> str:
    """Save the first screen of html_path (viewport width x height px) as a PNG; returns png_path."""
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    proc = _run([f"--window-size={viewport[0]},{viewport[1]}", f"--screenshot={os.path.abspath(png_path)}",
                 "file://" + os.path.abspath(html_path)], timeout)
    if not os.path.isfile(png_path):
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return png_path


def demo_rows():
    """Synthetic rows shaped like `make demo` (8 methods, blur and max filter, 5 fractions, 3 seeds,
    ROAR, KAR and the leakage probe), for a screenshot when no real store is at hand."""
    from .testing import fake_results

    return fake_results(seed=0, effect=0.5, n_seeds=3, noise=0.02, leakage=True, protocols=("roar", "kar"),
                        methods=("saliency", "integrated_gradients", "smoothgrad", "guided_backprop", "deeplift",
                                 "gradcam", "sobel", "random"), sigmas=(0.0, 1.0, 2.0), max_filter_sizes=(3,),
                        fractions=(0.1, 0.3, 0.5, 0.7, 0.9))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.browser", description=__doc__.split("\n\n")[0])
    p.add_argument("report", nargs="?", help="report.html to check (default: write one from --store)")
    p.add_argument("--store", help="results store to report on first (default: synthetic demo-like rows)")
    p.add_argument("--screenshot", help="save the first screen as this PNG")
    args = p.parse_args(argv)
    if find_chromium() is None:
        print("analysis.browser: no Chromium binary found; on Debian/Ubuntu: apt-get install chromium",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="roar-report-") as tmp:
        report = args.report
        if report is None:
            from .compute import analyze
            from .report import write_report
            a = analyze(args.store or demo_rows(), n_boot=200)
            if not args.store:
                a.results.source = "synthetic demo-like rows (analysis.browser.demo_rows)"
            report = write_report(a, tmp)["html"]
        found = problems(check_page(report))
        for line in found:
            print(f"problem: {line}")
        if args.screenshot:
            print(f"screenshot: {screenshot(report, args.screenshot)}")
    print("report checked in Chromium: " + ("no problems" if not found else f"{len(found)} problem(s)"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
