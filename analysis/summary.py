"""The findings in plain words: sentences built from an Analysis, for summary.md, the HTML report and
the CLI. Scores are fractions; sentences give changes in percentage points (1 point = 0.01).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .compute import Analysis
from .association import DEFAULT_MEASURE
from .rankings import TAU_TOL
from .scoring import PROTOCOL_SCORES, protocol_name, protocol_order

LEAKAGE_SENTENCE = ("Where a classifier given only the mask predicts the label well above chance, a ROAR "
                    "score measures the mask's shape rather than the information removed.")
MEASURE_UNITS = {"blur_spectral_centroid": "cycles/pixel", "blur_total_variation": "normalised map units",
                 "blur_hf_energy": "share of spectral energy"}
# Smallest number of seeds whose exact two-sided Wilcoxon/sign test can give p < 0.05 (2 / 2**6).
MIN_SEEDS_FOR_TEST = 6
FAMILY_NAMES = {"gaussian": "Gaussian blur", "max_filter": "Max filtering", "mean_filter": "Mean filtering",
                "average_filter": "Average filtering", "median_filter": "Median filtering",
                "gamma": "Gamma correction", "quantize": "Quantisation",
                "blur_matched_random": "Replacing maps by blur-matched random maps"}


def _pts(v: float) -> str:
    return f"{100 * v:+.1f}" if np.isfinite(v) else "n/a"


def _ci_pts(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "CI not available"
    return f"95% CI {_pts(low)} to {_pts(high)} points"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%" if np.isfinite(v) else "n/a"


def _verdict(low: float, high: float, up: str, down: str, none: str) -> str:
    if np.isfinite(low) and low > 0:
        return up
    if np.isfinite(high) and high < 0:
        return down
    return none


def data_sentence(a: Analysis) -> str:
    r, df = a.results, a.results.ok
    if df.empty:
        return (f"No successful result rows were found in {r.source or 'the input'} "
                f"({len(r.failed)} failed rows, {len(r.skipped)} unreadable files skipped).")
    protocols = ", ".join(protocol_name(p) for p in protocol_order(df["protocol"].unique()))
    return (f"Analysed {len(df)} successful result rows ({len(r.failed)} failed trials, {len(r.skipped)} unreadable "
            f"files skipped, {r.n_duplicates} duplicates dropped) from {r.source or 'memory'}: "
            f"{df['dataset'].nunique()} dataset(s), {df['attribution'].nunique()} methods, protocols {protocols}, "
            f"{df['level'].nunique()} post-processing levels, {df['seed'].nunique()} seeds.")


def effect_sentences(a: Analysis, only: str | None = None) -> list[str]:
    """One sentence per (protocol, post-processing family); `only` keeps one protocol."""
    share, overall = a.table("improvement_share"), a.table("overall_change")
    if share.empty:
        return []
    out = []
    merged = share.merge(overall, on=["protocol", "family"], how="left", suffixes=("", "_mean"))
    for protocol in protocol_order(merged["protocol"].unique()):
        if only is not None and protocol != only:
            continue
        for r in merged[merged["protocol"] == protocol].itertuples():
            name = FAMILY_NAMES.get(r.family, f"Post-processing '{r.family}'")
            if np.isfinite(r.ci_low_mean) and np.isfinite(r.ci_high_mean):
                verb = _verdict(r.ci_low_mean, r.ci_high_mean, "improved", "worsened", "did not detectably change")
            else:  # one seed: no CI of the mean change, so the share of improved cells (vs. 50%) decides
                verb = _verdict(r.ci_low - 0.5, r.ci_high - 0.5, "improved", "worsened", "did not detectably change")
            out.append(
                f"{name} {verb} the {protocol_name(protocol)} score: it raised the score in {r.n_improved} of "
                f"{r.n_cells} (method, fraction, level) cells ({_pct(r.share_improved)}, 95% CI "
                f"{_pct(r.ci_low)}–{_pct(r.ci_high)}); the mean change was {_pts(r.mean_diff)} points "
                f"({_ci_pts(r.ci_low_mean, r.ci_high_mean)}, across {r.n_seeds} seeds, {r.n_pairs} paired rows); "
                f"{r.n_sig_better} cells were significantly better and {r.n_sig_worse} significantly worse after "
                f"Holm correction" + (f" (with {r.n_seeds} seeds no single cell can reach p < 0.05 in a paired "
                                      f"test across seeds; the CI and the share are the evidence)."
                                      if r.n_seeds < MIN_SEEDS_FOR_TEST else "."))
    return out


def association_sentences(a: Analysis, only: str | None = None) -> list[str]:
    ols, spear, mixed = a.table("ols"), a.table("spearman"), a.table("mixed")
    if ols.empty:
        return ["No blurriness measures were recorded, so the association of blurriness and score was not fitted."]
    out = []
    unit = MEASURE_UNITS.get(a.measure, "units")
    for r in ols.itertuples():
        if only is not None and r.protocol != only:
            continue
        name = protocol_name(r.protocol)
        if not np.isfinite(r.slope):
            out.append(f"The {name} association could not be fitted: {r.error}.")
            continue
        verb = _verdict(r.ci_low, r.ci_high, "Blurrier maps score higher under",
                        "Blurrier maps score lower under", "Blurriness does not detectably predict the score under")
        text = (f"{verb} {name}: one standard deviation more blurriness ({r.measure}, 1 SD = {r.sd_blurriness:.3g} "
                f"{unit}) goes with {_pts(r.slope_per_sd)} points of score "
                f"({_ci_pts(r.ci_low_per_sd, r.ci_high_per_sd)}; pooled OLS adjusted for method, fraction and "
                f"dataset, cluster-robust over {r.n_clusters} clusters, n = {r.n_rows} rows, R² = {r.r2:.2f}).")
        m = mixed[mixed["protocol"] == r.protocol] if not mixed.empty else mixed
        if not m.empty and np.isfinite(m["slope"].iloc[0]):
            mm = m.iloc[0]
            text += (f" A mixed model with a random intercept per method × dataset gives "
                     f"{_pts(mm.slope * r.sd_blurriness)} points per SD "
                     f"({_ci_pts(mm.ci_low * r.sd_blurriness, mm.ci_high * r.sd_blurriness)}).")
        s = spear[(spear["protocol"] == r.protocol) & (spear["measure"] == r.measure)] if not spear.empty else spear
        s = s[np.isfinite(s["rho"].astype(float))] if not s.empty else s
        if not s.empty:
            text += (f" Within (dataset, fraction) cells, Spearman rho between blurriness and score has median "
                     f"{s['rho'].median():.2f} (range {s['rho'].min():.2f} to {s['rho'].max():.2f} over {len(s)} "
                     f"cells; {int((s['p_holm'] < 0.05).sum())} significant after Holm; rho pools the methods, so "
                     f"differences between methods enter it, while the regression slope is within method).")
        out.append(text)
    return out


def ranking_sentences(a: Analysis, only: str | None = None) -> list[str]:
    out = []
    tau = a.table("tau_levels")
    if not tau.empty:
        for protocol in protocol_order(tau["protocol"].unique()):
            if only is not None and protocol != only:
                continue
            t = tau[(tau["protocol"] == protocol) & np.isfinite(tau["tau"].astype(float))]
            if t.empty:
                continue
            changed = int((t["tau"] < 1 - TAU_TOL).sum())
            out.append(f"Post-processing changed the {protocol_name(protocol)} method ranking in {changed} of {len(t)} "
                       f"(fraction, level) settings (Kendall tau vs. the raw maps: median {t['tau'].median():.2f}, "
                       f"minimum {t['tau'].min():.2f}).")
    w = a.table("w_fractions")
    if not w.empty:
        raw = w[w["level"] == "identity"]
        for protocol in protocol_order(raw["protocol"].unique()):
            if only is not None and protocol != only:
                continue
            v = raw[raw["protocol"] == protocol]["W"].astype(float)
            if np.isfinite(v).any():
                out.append(f"Across removal fractions the raw-map {protocol_name(protocol)} rankings agree with "
                           f"Kendall W = {v.median():.2f} (1 = the same order at every fraction).")
    return out


def agreement_sentences(a: Analysis) -> list[str]:
    t = a.table("tau_protocols")
    if t.empty:
        return []
    raw = t[(t["level"] == "identity") & (t["fraction"] == "all")]
    raw = raw if not raw.empty else t[t["fraction"] == "all"]
    out = []
    for (pa_, pb), part in raw.groupby(["protocol_a", "protocol_b"], sort=False):
        v = part["tau"].astype(float)
        if np.isfinite(v).any():
            out.append(f"On the raw maps, {protocol_name(pa_)} and {protocol_name(pb)} order the methods with Kendall "
                       f"tau = {v.median():.2f} (mean score over fractions, {int(part['n_methods'].max())} methods).")
    return out


def leakage_sentences(a: Analysis) -> list[str]:
    t = a.table("leakage")
    if t.empty:
        return []
    leaking = t[t["leaks"].astype(bool)]
    if leaking.empty:
        tail = (f"No mask predicted the label well above chance (highest leakage accuracy "
                f"{t['leakage_accuracy'].max():.2f} vs chance {t['chance_accuracy'].mean():.2f}).")
    else:
        methods = ", ".join(sorted(leaking["attribution"].unique()))
        tail = (f"That was the case in {len(leaking)} of {len(t)} (method, post-processing, fraction) cells "
                f"(leakage accuracy up to {leaking['leakage_accuracy'].max():.2f} vs chance "
                f"{leaking['chance_accuracy'].mean():.2f}; methods: {methods}); their scores should not be read as "
                f"information removed.")
    return [LEAKAGE_SENTENCE + " " + tail]


def sanity_sentences(a: Analysis) -> list[str]:
    t = a.table("sanity")
    if t.empty:
        return []
    failing = sorted(t.loc[t["verdict"] == "FAIL", "attribution"].unique())
    if not failing:
        return [f"All {t['attribution'].nunique()} methods pass the model-randomisation sanity check."]
    return [f"Sanity check: {len(failing)} of {t['attribution'].nunique()} methods fail the model-randomisation check "
            f"({', '.join(failing)}): their maps barely change when the model's weights are randomised, so their "
            f"benchmark scores say nothing about the model."]


def gaming_sentences(a: Analysis) -> list[str]:
    g, gr = a.table("gaming"), a.table("gaming_rankings")
    if g.empty:
        return []
    out = []
    for r in g.itertuples():
        if not np.isfinite(r.raw_score):
            out.append(f"Search on {r.attribution} ({protocol_name(r.protocol)}, fraction {r.fraction:g}): best "
                       f"transform '{r.best_level}' scores {r.best_score:.3f}; no raw-map score to compare with.")
            continue
        out.append(f"The best information-free transform for {r.attribution} ({protocol_name(r.protocol)}, fraction "
                   f"{r.fraction:g}, {r.dataset}) is '{r.best_level}': score {r.best_score:.3f} vs {r.raw_score:.3f} for "
                   f"the raw map ({_pts(r.gain)} points, best of {r.n_transforms} transforms).")
    for r in gr.itertuples():
        verb = "changes" if r.ranking_changed else "does not change"
        out.append(f"Gaming {verb} the {protocol_name(r.protocol)} ranking at fraction {r.fraction:g} on {r.dataset} "
                   f"(Kendall tau raw vs gamed = {r.tau:.2f}): raw {r.raw_order}; gamed {r.gamed_order}.")
    return out


def key_sentences(a: Analysis) -> list[str]:
    """The sentences the CLI prints: data, the effect on ROAR (or the first scored protocol), the
    association, ranking stability, leakage and gaming headlines."""
    out = [data_sentence(a)]
    if a.results.ok.empty:
        return out
    scored_protocols = [p for p in protocol_order(a.results.ok["protocol"].unique()) if p in PROTOCOL_SCORES]
    lead = "roar" if "roar" in scored_protocols else (scored_protocols[0] if scored_protocols else None)
    if lead is not None:
        out += effect_sentences(a, lead) + association_sentences(a, lead) + ranking_sentences(a, lead)[:1]
    out += leakage_sentences(a) + sanity_sentences(a)
    gr = gaming_sentences(a)
    out += [s for s in gr if s.startswith("Gaming")] or gr[:1]
    return out


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{v:.4g}"
    return "" if v is None or v is pd.NA else str(v)


def markdown_table(df: pd.DataFrame, max_rows: int = 40) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""
    if df.empty:
        return "_(no rows)_"
    shown = df.head(max_rows)
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(str(c)) for c in shown.columns) + " |",
             "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(esc(_fmt(v)) for v in row) + " |" for row in shown.itertuples(index=False)]
    if len(df) > max_rows:
        lines.append(f"\n_{len(df) - max_rows} more rows in the CSV._")
    return "\n".join(lines)


def summary_markdown(a: Analysis) -> str:
    """The whole summary as Markdown: headline sentences, then one paragraph per topic."""
    measure = a.measure or DEFAULT_MEASURE
    parts = ["# Removal-benchmark audit: summary", "", "## Key findings", ""]
    parts += [f"- {s}" for s in key_sentences(a)]
    topics = [("Effect of post-processing", effect_sentences(a)),
              (f"Blurriness and score (measure: {measure})", association_sentences(a) if not a.results.ok.empty else []),
              ("Rankings", ranking_sentences(a)), ("Agreement between protocols", agreement_sentences(a)),
              ("Mask leakage", leakage_sentences(a)), ("Sanity checks", sanity_sentences(a)),
              ("Gaming the benchmark (Optuna search)", gaming_sentences(a))]
    for title, sentences in topics:
        if sentences:
            parts += ["", f"## {title}", ""] + [f"- {s}" for s in sentences]
    tables = [("Rows per dataset and protocol", "row_counts"),
              ("How often post-processing raised the score", "improvement_share"),
              ("Mean change per protocol and transform", "overall_change"),
              ("Pooled OLS of score on blurriness", "ols")]
    for title, name in tables:
        if a.has(name):
            parts += ["", f"## {title}", "", markdown_table(a.table(name))]
    parts += ["", "## Conventions", "",
              "- score: higher = better method under each protocol (ROAR, ROAD MoRF, MIF: accuracy drop; KAR, "
              "ROAD LeRF, LIF: minus the accuracy drop). Changes are in percentage points of accuracy.",
              "- blurriness: a blur measure turned so that higher = blurrier (e.g. minus the spectral centroid).",
              "- CIs are 95%; across seeds unless stated otherwise."]
    return "\n".join(parts) + "\n"


def sentence_table(sentences: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"finding": sentences})
