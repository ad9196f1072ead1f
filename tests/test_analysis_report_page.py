"""The report page for a reader (issue 16): the answer and three captioned figures first, a warning box
for leaky rows, numbers formatted for people, intervals only where the seed count supports them and
never outside the quantity's range, long tables collapsed with their CSV linked, and a size that stays
small for big stores."""
import os
import re

import numpy as np
import pandas as pd
import pytest

from analysis import formatting as fmt
from analysis.diagnostics import protocol_results
from analysis.io import from_table
from analysis.report import INLINE_ROWS, MAX_HTML_ROWS, write_report
from analysis.testing import fake_results, make_rows

SMALL = dict(sigmas=(0.0, 2.0), fractions=(0.2, 0.5, 0.8), methods=("saliency", "gradcam", "sobel", "random"))


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("page")
    paths = write_report(fake_results(seed=0, effect=1.0, n_seeds=3, leakage=True, protocols=("roar", "kar"), **SMALL),
                         str(out), n_boot=50)
    return paths, _read(paths["html"]), out


def test_first_screen_is_the_verdict_then_three_captioned_figures(report):
    _, html, _ = report
    verdict = html.index("<p class='verdict'>")
    nav = html.index("<nav>")
    for fig_id in ("fig-effect", "fig-leakage", "fig-ranking"):
        at = html.index(f"<figure id='{fig_id}'>")
        assert verdict < at < nav
        figure = html[at:html.index("</figure>", at)]
        assert "data:image/png;base64," in figure and "<figcaption>" in figure
    assert "Gaussian blur raised the ROAR score by" in html[verdict:nav]
    assert "Student-t interval of the mean across seeds" in html[verdict:nav]
    assert "class='warn'" not in html


def test_leaky_rows_open_the_report_with_a_warning_box(tmp_path):
    df = fake_results(seed=1, n_seeds=3, target="label_leaky", **SMALL)
    html = _read(write_report(df, str(tmp_path), n_boot=20)["html"])
    warn = html.index("<div class='warn' role='alert'>")
    assert warn < html.index("<p class='verdict'>")
    assert "used target &#x27;label_leaky&#x27;" in html[warn:warn + 2000]
    assert "retrain cells have an accuracy on the base model&#x27;s errors far above the random maps" in html


@pytest.mark.parametrize("fn,value,text", [
    (fmt.points, 0.009613, "+1.0"), (fmt.points, -0.01215, "-1.2"), (fmt.percent, 0.7149, "71.5%"),
    (fmt.p_value, 0.2307, "0.23"), (fmt.p_value, 0.00312, "0.0031"), (fmt.p_value, 3.1e-7, "3.1e-07"),
    (fmt.corr, 0.71234, "0.71"), (fmt.points, float("nan"), "n/a"),
])
def test_numbers_for_people(fn, value, text):
    assert fn(value) == text


def test_tables_show_formatted_numbers_with_units_in_the_headers(report):
    _, html, _ = report
    cells = re.findall(r"<td>([^<]*)</td>", html)

    def raw(c):   # a decimal with more than one decimal place and more than 3 significant digits: 0.009613
        m = re.fullmatch(r"[-+]?(\d+)\.(\d+)", c)
        return bool(m) and len(m.group(2)) > 1 and len(re.sub(r"^0*", "", m.group(1) + m.group(2))) > 3
    assert cells and not [c for c in cells if raw(c)]
    assert "<th>mean change (pts)</th>" in html and "<th>accuracy (%)</th>" in html
    assert "<th>method</th>" in html and "<th>attribution</th>" not in html


def test_long_tables_are_collapsed_capped_and_link_their_csv(report):
    paths, html, out = report
    details = re.findall(r"<details><summary>(.*?) \(([\d,]+) rows\)</summary>(.*?)</details>", html, re.S)
    assert details
    for _, n, body in details:
        assert int(n.replace(",", "")) > INLINE_ROWS
        link = re.search(r"href='(tables/[^']+\.csv)'", body).group(1)
        assert os.path.isfile(out / link)
        assert body.count("<tr>") <= MAX_HTML_ROWS + 1      # header row + shown rows


def test_below_three_seeds_no_interval_is_shown_and_the_report_says_why(tmp_path):
    paths = write_report(fake_results(seed=2, n_seeds=2, **SMALL), str(tmp_path), n_boot=20)
    res = pd.read_csv(paths["table/protocol_results"])
    assert res[["score_ci_low", "score_ci_high", "acc_ci_low", "acc_ci_high"]].isna().all().all()
    html = _read(paths["html"])
    assert "with 2 seeds no interval across seeds exists" in html
    assert "no whiskers: 2 seeds, an interval needs 3" in html


def test_intervals_are_clipped_to_the_range_of_the_quantity():
    rows = [{"attribution": "a", "seed": s, "accuracy": acc, "base_accuracy": 0.99}
            for s, acc in enumerate((0.95, 0.99, 1.0))]
    res = protocol_results(from_table(make_rows(rows)).ok).iloc[0]
    sd = np.std([0.95, 0.99, 1.0], ddof=1)
    assert res.accuracy + 4.30 * sd / np.sqrt(3) > 1.0          # an unclipped t interval would pass 100%
    assert res.acc_ci_high == 1.0 and 0.0 < res.acc_ci_low < res.accuracy


@pytest.mark.slow
def test_a_100k_row_store_gives_a_self_contained_report_under_5_mb(tmp_path):
    df = fake_results(seed=0, effect=0.5, n_seeds=10, datasets=("d1", "d2", "d3", "d4", "d5"),
                      protocols=("roar", "kar", "road_morf", "road_lerf"),
                      methods=tuple(f"m{i}" for i in range(9)) + ("random",),
                      sigmas=(0, 1, 2, 3, 4, 6), max_filter_sizes=(3, 5), fractions=(0.1, 0.3, 0.5, 0.7, 0.9),
                      leakage=True)
    assert len(df) >= 100_000
    paths = write_report(df, str(tmp_path), n_boot=200)
    size = os.path.getsize(paths["html"])
    html = _read(paths["html"])
    assert size < 5e6, size
    assert "src='plots/" not in html and html.count("data:image/png;base64,") >= 3


def test_findings_figures_come_from_the_report_code(tmp_path):
    from analysis.compute import analyze
    from analysis.figures import write_figures
    a = analyze(fake_results(seed=4, n_seeds=3, leakage=True, **SMALL), n_boot=20)
    out = write_figures(a, str(tmp_path), dpi=80, formats=("png", "svg"))
    assert list(out) == ["effect", "leakage", "ranking"]
    for (path, caption), letter in zip(out.values(), "abc"):
        assert caption.startswith(f"({letter}) ") and path.endswith(".png") and os.path.getsize(path) > 1000
        assert os.path.isfile(path[:-4] + ".svg")


def test_the_verdict_speaks_of_one_setup_and_says_when_nothing_is_detectable():
    from analysis.compute import analyze
    from analysis.verdict import verdict
    s = dict(SMALL, n_seeds=3)
    a = analyze(pd.concat([fake_results(seed=0, effect=0.0, noise=0.02, **s),
                           fake_results(seed=1, effect=3.0, config={"lr": 0.05}, **{**s, "n_seeds": 2})]), n_boot=20)
    text = verdict(a)
    # the setup with more rows leads (3 seeds); the other is only pointed to, never pooled into the numbers
    assert text.startswith("For setup lr=0.1: Gaussian blur did not detectably change the ROAR score: mean change")
    assert text.endswith("1 other dataset/setup combination is in the sections below.")
