"""``write_report(results_or_path, out_dir)``: one self-contained HTML report (PNG figures embedded as
base64), every table as CSV under ``tables/``, the figures under ``plots/``, and ``summary.md``.

Sections whose rows are absent (no ROAD rows, no leakage or sanity runs, no Optuna search) are left out
of the report rather than shown empty.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import os
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from . import plots
from .compute import Analysis, analyze
from .scoring import PROTOCOL_SCORES, protocol_name, protocol_order, score_meaning
from . import summary as sm

MAX_HTML_ROWS = 150        # longer tables are cut in the HTML; the CSV always has every row
MAX_FIGURES_PER_KIND = 24  # figures of one kind (one per dataset x setup x protocol) embedded at most


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    present: Callable[[Analysis], bool]     # whether the analysis has rows for it
    intro: str


SECTIONS: list[Section] = [
    Section("summary", "Summary", lambda a: True, ""),
    Section("data", "Data", lambda a: True, "What was read: result rows per dataset and protocol."),
    Section("protocols", "Results per protocol", lambda a: a.has("protocol_results"),
            "Mean score and accuracy per method, post-processing level and fraction, with 95% CIs across seeds. "
            "Score = higher is better under that protocol."),
    Section("effects", "Effect of post-processing", lambda a: a.has("effects"),
            "Paired change score(post-processed map) − score(raw map), matched on seed, per method and fraction; "
            "positive = the information-free transform made the method look better. Tests across seeds, Holm "
            "correction within each protocol."),
    Section("association", "Blurriness and score", lambda a: a.has("ols") or a.has("spearman"),
            "Does the blurriness of a map predict its score? Blurriness = a blur measure turned so that higher = "
            "blurrier. Spearman rho per cell with bootstrap CIs over seeds; pooled OLS score ~ blurriness + fraction "
            "+ C(method) + C(dataset) with errors clustered on the maps artifact (dataset × method × seed); mixed "
            "model with a random intercept per method × dataset."),
    Section("rankings", "Rankings", lambda a: a.has("ranks"),
            "Method rankings (1 = best) per protocol, fraction and post-processing level; Kendall tau of each "
            "level's ranking against the raw maps', and Kendall W of the rankings across fractions."),
    Section("agreement", "Agreement between protocols", lambda a: a.has("tau_protocols"),
            "Kendall tau between the method rankings of every pair of protocols, per level and fraction; "
            "fraction 'all' ranks by the mean score over fractions."),
    Section("leakage", "Mask leakage", lambda a: a.has("leakage"),
            "Accuracy of a classifier trained on the binary mask alone, next to each protocol's score. "
            + sm.LEAKAGE_SENTENCE),
    Section("sanity", "Sanity checks", lambda a: a.has("sanity"),
            "Model randomisation: maps of a method that explains the model must change when the model's weights "
            "are randomised. Rank correlation and SSIM between original and randomised maps; verdict FAIL when "
            "most checks did not see a change."),
    Section("fidelity", "Fidelity (MIF/LIF)", lambda a: a.has("fidelity"),
            "Fidelity = AUC(LIF) − AUC(MIF) of the base model's accuracy curves; higher = better."),
    Section("gaming", "Gaming the benchmark (Optuna search)", lambda a: a.has("gaming"),
            "Best information-free post-processing found by the search per method, its score against the raw map's, "
            "and whether using each method's best transform reorders the methods."),
    Section("failures", "Failed trials and skipped files", lambda a: a.has("failed") or a.has("skipped_files"),
            "Trials that ended with status 'failed' (first line of the error) and result files that could not be "
            "read."),
]
SECTION_TITLES = [s.title for s in SECTIONS]


# --- rendering helpers ---------------------------------------------------------------------------
def _html_table(df: pd.DataFrame, name: str) -> str:
    if df.empty:
        return "<p><em>No rows.</em></p>"
    shown = df.head(MAX_HTML_ROWS)
    body = shown.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0, classes="t")
    note = (f"<p class='note'>Showing {MAX_HTML_ROWS} of {len(df)} rows; all rows in tables/{name}.csv.</p>"
            if len(df) > MAX_HTML_ROWS else f"<p class='note'>tables/{name}.csv</p>")
    return f"<div class='scroll'>{body}</div>{note}"


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"


def _slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(str(p) for p in parts)).strip("-")[:120]


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
table.t{border-collapse:collapse;font-size:12px}table.t td,table.t th{padding:2px 6px;border-bottom:1px solid #eee;
text-align:right}table.t th{background:#f4f4f4}.scroll{overflow-x:auto;max-height:420px;overflow-y:auto}
.note{color:#777;font-size:11px}.key li{margin:.4em 0}img{max-width:100%;margin:.5em 0}nav a{margin-right:1em}"""


# --- sections ------------------------------------------------------------------------------------
class _Writer:
    """Collects the HTML of each section and writes figures to plots/."""

    def __init__(self, a: Analysis, out_dir: str):
        self.a, self.out_dir = a, out_dir
        self.paths: dict[str, str] = {}

    def figure(self, fig, name: str, alt: str) -> str:
        png = plots.png_bytes(fig)
        path = os.path.join(self.out_dir, "plots", f"{_slug(name)}.png")
        with open(path, "wb") as f:
            f.write(png)
        self.paths[f"plot/{_slug(name)}"] = path
        return _img(png, alt)

    def table(self, name: str, title: str | None = None, df: pd.DataFrame | None = None) -> str:
        df = self.a.table(name) if df is None else df
        head = f"<h3>{html.escape(title)}</h3>" if title else ""
        return head + _html_table(df, name)

    def groups(self, table: str):
        t = self.a.table(table)
        if t.empty:
            return []
        keys = t[["dataset", "setup", "protocol"]].drop_duplicates()
        keys = keys.assign(_p=keys["protocol"].map({p: i for i, p in enumerate(protocol_order(keys["protocol"]))}))
        return list(keys.sort_values(["dataset", "setup", "_p"]).drop(columns="_p").itertuples(index=False))[
            :MAX_FIGURES_PER_KIND]


def _summary_html(w: _Writer) -> str:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sm.key_sentences(w.a))
    return f"<ul class='key'>{items}</ul><p class='note'>Full text in summary.md.</p>"


def _protocols_html(w: _Writer) -> str:
    a = w.a
    res = a.table("protocol_results")
    defs = "".join(f"<li><b>{protocol_name(p)}</b>: {html.escape(score_meaning(p))}"
                   f"{'' if PROTOCOL_SCORES[p].direction > 0 else ' (sign flipped: higher = better)'}</li>"
                   for p in protocol_order(res["protocol"].unique()) if p in PROTOCOL_SCORES)
    out = [f"<ul>{defs}</ul>"]
    curves = a.table("curves")
    for g in w.groups("protocol_results"):
        # curve protocols carry their whole grid: plot it rather than the sweep's few fractions
        has_curve = not curves.empty and ((curves["protocol"] == g.protocol) & (curves["dataset"] == g.dataset)
                                          & (curves["setup"] == g.setup)).any()
        fig = plots.accuracy_vs_fraction(curves if has_curve else res, g.dataset, g.setup, g.protocol, a.levels)
        out.append(w.figure(fig, f"accuracy_{g.protocol}_{g.dataset}_{g.setup}",
                            f"accuracy vs fraction, {g.protocol}, {g.dataset}"))
    return "".join(out) + w.table("protocol_results")


def _effects_html(w: _Writer) -> str:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sm.effect_sentences(w.a))
    return (f"<ul>{items}</ul>" + w.table("improvement_share", "How often post-processing raised the score")
            + w.table("overall_change", "Mean change per protocol and transform (CI across seeds)")
            + w.table("effects", "Per method, fraction and level"))


def _association_html(w: _Writer) -> str:
    a = w.a
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sm.association_sentences(a))
    out = [f"<ul>{items}</ul>"]
    ols = a.table("ols")
    for r in ols.itertuples():
        fig = plots.blur_vs_score(a.results.ok, r.protocol, r.measure, r.slope)
        out.append(w.figure(fig, f"blur_vs_score_{r.protocol}", f"blurriness vs score, {r.protocol}"))
    out.append(w.table("ols", "Pooled OLS (cluster-robust)"))
    out.append(w.table("mixed", "Mixed model (random intercept per method × dataset)"))
    out.append(w.table("spearman", "Spearman rho per (dataset, protocol, fraction), bootstrap CI over seeds"))
    return "".join(out)


def _rankings_html(w: _Writer) -> str:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sm.ranking_sentences(w.a))
    out = [f"<ul>{items}</ul>"]
    for g in w.groups("ranks"):
        fig = plots.rank_heatmap(w.a.table("ranks"), g.dataset, g.setup, g.protocol)
        out.append(w.figure(fig, f"ranks_{g.protocol}_{g.dataset}_{g.setup}", f"ranking heat map, {g.protocol}"))
    return "".join(out) + w.table("tau_levels", "Kendall tau: each level vs the raw maps") + \
        w.table("w_fractions", "Kendall W across fractions") + \
        w.table("ranks", "Ranks", w.a.table("ranks").drop(columns="level_pos", errors="ignore"))


def _sentences_then(w: _Writer, sentences: list[str], *tables: tuple[str, str]) -> str:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
    return (f"<ul>{items}</ul>" if items else "") + "".join(w.table(n, t) for n, t in tables)


_RENDER: dict[str, Callable[[_Writer], str]] = {
    "summary": _summary_html,
    "data": lambda w: (f"<p>{html.escape(w.a.results.describe())}. Source: {html.escape(w.a.results.source)}.</p>"
                       + w.table("row_counts")),
    "protocols": _protocols_html,
    "effects": _effects_html,
    "association": _association_html,
    "rankings": _rankings_html,
    "agreement": lambda w: _sentences_then(w, sm.agreement_sentences(w.a), ("tau_protocols", "")),
    "leakage": lambda w: _sentences_then(w, sm.leakage_sentences(w.a), ("leakage", "")),
    "sanity": lambda w: _sentences_then(w, sm.sanity_sentences(w.a), ("sanity", "")),
    "fidelity": lambda w: _sentences_then(w, [], ("fidelity", "")),
    "gaming": lambda w: _sentences_then(w, sm.gaming_sentences(w.a), ("gaming", "Best transform per method"),
                                        ("gaming_rankings", "Does gaming change the ranking?")),
    "failures": lambda w: _sentences_then(w, [], ("failed", "Failed trials"), ("skipped_files", "Skipped files")),
}
assert set(_RENDER) == {s.id for s in SECTIONS}, "every section needs a renderer"


def render_html(a: Analysis, out_dir: str) -> tuple[str, dict[str, str]]:
    """The report's HTML and the figure paths written under out_dir/plots."""
    w = _Writer(a, out_dir)
    present = [s for s in SECTIONS if s.present(a)]
    nav = "".join(f"<a href='#{s.id}'>{html.escape(s.title)}</a>" for s in present)
    body = []
    for s in present:
        intro = f"<p>{html.escape(s.intro)}</p>" if s.intro else ""
        body.append(f"<section id='{s.id}'><h2>{html.escape(s.title)}</h2>{intro}{_RENDER[s.id](w)}</section>")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Removal-benchmark audit</title>"
           f"<style>{_CSS}</style></head><body><h1>Removal-benchmark audit</h1>"
           f"<p class='note'>Generated {stamp} from {html.escape(a.results.source or 'memory')}.</p>"
           f"<nav>{nav}</nav>{''.join(body)}</body></html>")
    return doc, w.paths


def write_report(results_or_path, out_dir: str, **analyze_kwargs) -> dict[str, str]:
    """Analyse and write the report; returns {'html': …, 'summary': …, 'table/<name>': …, 'plot/<name>': …}.

    results_or_path: Results, a store path/URI, a folder or file of Parquet rows, or a DataFrame of
    contract rows. analyze_kwargs go to analysis.compute.analyze (measure, n_boot, test, cluster,
    level, seed, filters).
    """
    a = results_or_path if isinstance(results_or_path, Analysis) else analyze(results_or_path, **analyze_kwargs)
    os.makedirs(os.path.join(out_dir, "tables"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "plots"), exist_ok=True)
    paths: dict[str, str] = {}
    for name, table in a.tables.items():
        if table.empty:
            continue
        path = os.path.join(out_dir, "tables", f"{name}.csv")
        table.to_csv(path, index=False)
        paths[f"table/{name}"] = path
    summary_path = os.path.join(out_dir, "summary.md")
    with open(summary_path, "w", encoding="utf-8") as f:
        f.write(sm.summary_markdown(a))
    doc, figure_paths = render_html(a, out_dir)
    html_path = os.path.join(out_dir, "report.html")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(doc)
    paths.update(figure_paths)
    return {"html": html_path, "summary": summary_path, **paths}
