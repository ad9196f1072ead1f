"""The report as a person sees it, in headless Chromium at 1280 px: no console errors, every image loaded,
nothing wider than the viewport (also with every collapsed table opened), the three first-screen figures
visible without scrolling. Skipped where no Chromium binary is installed (Debian: apt-get install
chromium; .ci/run and `make screenshot` install it where apt-get can)."""
import struct

import pandas as pd
import pytest

from analysis.browser import FIRST_SCREEN_IDS, VIEWPORT, check_page, find_chromium, problems, screenshot
from analysis.report import write_report
from analysis.testing import fake_results

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not installed (Debian package "
                                "'chromium': apt-get install chromium; .ci/run installs it where apt-get is available)")


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    # demo-shaped (every protocol of the demo, leakage, three seeds) but small: the page's layout, not
    # the numbers, is under test, and long method names and many levels are what could overflow
    df = fake_results(seed=0, effect=0.5, n_seeds=3, leakage=True, protocols=("roar", "kar"),
                      methods=("integrated_gradients", "guided_backprop", "saliency", "random"),
                      sigmas=(0.0, 1.0, 2.0), max_filter_sizes=(3,), fractions=(0.1, 0.5, 0.9))
    return write_report(df, str(tmp_path_factory.mktemp("report")), n_boot=50)["html"]


def test_the_demo_report_reads_cleanly_at_1280_px(demo_report):
    result = check_page(demo_report)
    assert problems(result) == []
    assert result["viewport"][0] == VIEWPORT[0] and result["images"] >= 3 and result["details"] >= 3
    assert result["first_screen"] == {k: True for k in FIRST_SCREEN_IDS}


def test_a_leaky_report_with_several_setups_also_reads_cleanly(tmp_path):
    small = dict(n_seeds=2, sigmas=(0.0, 2.0), fractions=(0.2, 0.8), methods=("saliency", "random"))
    df = pd.concat([fake_results(seed=0, leakage=True, **small),
                    fake_results(seed=1, target="label_leaky", config={"lr": 0.05}, **small)])
    html = write_report(df, str(tmp_path), n_boot=50)["html"]
    assert "class='warn'" in open(html, encoding="utf-8").read()
    assert problems(check_page(html)) == []


def test_the_checker_sees_what_a_reader_would(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head></head><body><div style='width:2000px'>wide</div>"
                    "<img alt='gone' src='missing.png'><details><table style='width:1900px'><tr><td>x</td></tr>"
                    "</table></details><script>console.error('boom')</script></body></html>")
    found = problems(check_page(str(page)))
    assert any(p.startswith("console: error: boom") for p in found)
    assert any("image did not load" in p and "gone" in p for p in found)
    assert any("wider than the 1280 px viewport: div" in p for p in found)
    assert any("viewport" in p and ': table "x"' in p for p in found)      # also inside a collapsed table
    assert sum("not visible without scrolling" in p for p in found) == 3


def test_screenshot_of_the_first_screen(demo_report, tmp_path):
    png = screenshot(demo_report, str(tmp_path / "first.png"))
    with open(png, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == VIEWPORT
