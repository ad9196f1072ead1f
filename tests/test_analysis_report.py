"""The report end to end: sections present exactly when their rows are, files written, CLI output,
and the no-torch/no-Ray import guarantee."""
import os
import subprocess
import sys

import pytest

from analysis.cli import main
from analysis.io import SkippedFileWarning
from analysis.report import SECTION_TITLES, write_report
from analysis.summary import LEAKAGE_SENTENCE
from analysis.testing import fake_results, write_rows

FAST = dict(n_seeds=3, sigmas=(0.0, 2.0), fractions=(0.2, 0.8), methods=("saliency", "gradcam", "random"))


def _read(path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _headings(html: str) -> set:
    return {t for t in SECTION_TITLES if f"<h2>{t.replace('&', '&amp;')}</h2>" in html}


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    df = fake_results(seed=0, effect=1.0, protocols=("roar", "road_morf", "mif", "lif"), leakage=True, sanity=True,
                      search=True, n_failed=1, **FAST)
    write_rows(df, str(store))
    (store / "rows" / "corrupt.parquet").write_bytes(b"\x00garbage" * 20)
    out = tmp_path_factory.mktemp("report")
    with pytest.warns(SkippedFileWarning, match="corrupt.parquet"):
        paths = write_report(str(store), str(out), n_boot=100)
    return paths, out


def test_full_report_has_every_section(full_report):
    paths, out = full_report
    html = _read(paths["html"])
    assert _headings(html) == set(SECTION_TITLES)
    assert html.count("data:image/png;base64,") >= 3 * 4          # accuracy, heat map, scatter per protocol
    assert "src='plots/" not in html and "src=\"plots/" not in html   # self-contained
    assert "corrupt.parquet" in html


def test_full_report_writes_tables_plots_and_summary(full_report):
    paths, out = full_report
    for name in ("effects", "ols", "mixed", "spearman", "tau_levels", "tau_protocols", "w_fractions", "leakage",
                 "sanity", "fidelity", "gaming", "gaming_rankings", "failed", "skipped_files", "row_counts"):
        assert os.path.isfile(out / "tables" / f"{name}.csv"), name
    assert any(k.startswith("plot/") for k in paths) and all(os.path.isfile(p) for p in paths.values())
    summary = _read(paths["summary"])
    assert LEAKAGE_SENTENCE in summary
    assert "Gaussian blur improved the ROAR score" in summary
    assert "Blurrier maps score higher under ROAR" in summary
    assert "1 failed trials, 1 unreadable files skipped" in summary
    assert "fail the model-randomisation check (random)" in summary
    assert "The best information-free transform for gradcam" in summary


def test_roar_only_report_leaves_optional_sections_out(tmp_path):
    df = fake_results(seed=1, effect=0.0, **FAST)
    paths = write_report(df, str(tmp_path), n_boot=50)
    html = _read(paths["html"])
    assert _headings(html) == {"Data", "Results per protocol", "Leak check of retrained models",
                               "Effect of post-processing", "Blurriness and score", "Rankings"}
    summary = _read(paths["summary"])
    assert LEAKAGE_SENTENCE not in summary and "ROAD MoRF score" not in summary
    assert "Gaussian blur did not detectably change the ROAR score" in summary


def test_report_without_blur_measures_skips_the_association(tmp_path):
    df = fake_results(seed=2, effect=1.0, **FAST)
    df[["blur_spectral_centroid", "blur_total_variation", "blur_hf_energy"]] = None
    paths = write_report(df, str(tmp_path), n_boot=50)
    html = _read(paths["html"])
    assert "Blurriness and score" not in _headings(html) and "Effect of post-processing" in _headings(html)
    assert "No blurriness measures were recorded" in _read(paths["summary"])


def test_report_of_a_store_without_good_rows(tmp_path, capsys):
    (tmp_path / "store" / "rows").mkdir(parents=True)
    (tmp_path / "store" / "rows" / "x.parquet").write_bytes(b"")
    code = main(["report", str(tmp_path / "store"), "-o", str(tmp_path / "out")])
    assert code == 1
    html = _read(tmp_path / "out" / "report.html")
    assert _headings(html) == {"Data", "Failed trials and skipped files"}
    err = capsys.readouterr().err
    assert "no successful result rows" in err and "skipped unreadable result file" in err and "x.parquet" in err


def test_cli_prints_the_report_path_and_key_sentences(tmp_path, capsys):
    write_rows(fake_results(seed=3, effect=1.0, leakage=True, **FAST), str(tmp_path / "store"))
    code = main(["report", str(tmp_path / "store"), "-o", str(tmp_path / "out"), "--n-boot", "50"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"Report: {tmp_path / 'out' / 'report.html'}" in out
    assert "Gaussian blur improved the ROAR score" in out and LEAKAGE_SENTENCE in out
    assert main([str(tmp_path / "store"), "--filter", "fraction=0.2", "-o", str(tmp_path / "o2"), "-q"]) == 0
    assert main([str(tmp_path / "store"), "--filter", "fraction"]) == 2
    assert "expected COLUMN=VALUE" in capsys.readouterr().err


def test_analysis_never_imports_torch_or_ray():
    code = ("import sys, analysis, analysis.io, analysis.stats, analysis.association, analysis.effects, "
            "analysis.rankings, analysis.diagnostics, analysis.gaming, analysis.plots, analysis.summary, "
            "analysis.report, analysis.cli, analysis.testing, analysis.compute, analysis.figures, analysis.verdict, "
            "analysis.leaks, analysis.formatting, analysis.browser; "
            "analysis.analyze(analysis.fake_results(n_seeds=2), n_boot=10); "
            "bad = [m for m in ('torch', 'ray', 'roar', 'sweep') if m in sys.modules]; "
            "assert not bad, bad")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_summary_sentences_carry_the_exact_numbers():
    from analysis.compute import analyze
    from analysis.summary import effect_sentences
    from analysis.testing import make_rows
    rows = []
    for seed, (a0, a2, b0, b2) in enumerate([(0.10, 0.15, 0.20, 0.18), (0.12, 0.18, 0.20, 0.19),
                                              (0.14, 0.20, 0.20, 0.17)]):
        for method, pp, sigma, drop in (("a", "identity", 0.0, a0), ("a", "gaussian", 2.0, a2),
                                        ("b", "identity", 0.0, b0), ("b", "gaussian", 2.0, b2)):
            rows.append({"attribution": method, "postprocess": pp, "sigma": sigma, "seed": seed,
                         "accuracy_drop": drop, "base_accuracy": 0.9, "accuracy": 0.9 - drop})
    (sentence,) = effect_sentences(analyze(make_rows(rows), n_boot=20))
    # per-seed mean changes 0.015, 0.025, 0.015 -> +1.8 points; 1 of 2 cells improved
    # seed-level t interval: 0.0183 +- 4.303 * 0.00577 / sqrt(3) = [0.0040, 0.0327] > 0 -> "improved"
    assert sentence.startswith("Gaussian blur improved the ROAR score: it raised the score in 1 of 2")
    assert "95% CI +0.4 to +3.3 points" in sentence
    # every seed improved one of the two cells: the per-seed share is 50% in each seed
    assert "(50%; 95% CI of the per-seed share 50%–50%)" in sentence and "the mean change was +1.8 points" in sentence
    assert "across 3 seeds, 6 paired rows" in sentence


def test_accuracy_tables_are_means_over_seeds_per_method_level_and_fraction():
    from analysis.cli import accuracy_tables
    from analysis.testing import fake_results

    df = fake_results(seed=1, n_seeds=3, protocols=("roar",))
    tables = accuracy_tables(df)
    assert list(tables) == ["roar"]
    table = tables["roar"]
    raw = df[(df.attribution == table.index[0][0]) & (df.sigma == 0) & (df.fraction == table.columns[0])]
    assert table.loc[(table.index[0][0], "identity"), table.columns[0]] == pytest.approx(raw.accuracy.mean())
    assert table.shape == (df.attribution.nunique() * df.sigma.nunique(), df.fraction.nunique())


def test_protocols_with_their_own_fill_are_still_compared():
    from analysis.compute import analyze
    from analysis.testing import fake_results

    df = fake_results(seed=2, n_seeds=2, protocols=("roar", "road_morf"))
    df.loc[df.protocol == "road_morf", "fill"] = "road"   # ROAD always imputes
    pairs = analyze(df, n_boot=20).table("tau_protocols")[["protocol_a", "protocol_b"]].drop_duplicates()
    assert ("roar", "road_morf") in set(map(tuple, pairs.to_numpy()))
