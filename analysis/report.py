"""``write_report(results_or_path, out_dir)``: one self-contained HTML report (PNG figures embedded as
base64), every table as CSV under ``tables/``, the figures under ``plots/``, and ``summary.md``.

The first screen answers the question: a warning box when any row leaked the test label, a one-paragraph
verdict, and the three figures of analysis.figures with one-line captions. Below it, one section per
topic. Sections whose rows are absent (no ROAD rows, no leakage or sanity runs, no Optuna search) are
left out rather than shown empty. Tables show numbers formatted for people (analysis.formatting), fit
the page width, and long ones are collapsed with a link to the full CSV; the HTML stays a few MB even
for 100,000 rows (rows and figures per kind are capped; the CSVs hold everything).
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import os
import re
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from . import figures, plots
from . import formatting as fmt
from .compute import Analysis, analyze
from .leaks import LABEL_LEAK_MARGIN, leak_warning
from .scoring import PROTOCOL_SCORES, protocol_name, protocol_order, score_meaning, scored
from . import summary as sm
from .verdict import summary_markdown, verdict

MAX_HTML_ROWS = 50         # rows of one table shown in the HTML; the CSV always has every row
INLINE_ROWS = 12           # longer tables are collapsed (details/summary) under their title
MAX_FIGURES_PER_KIND = 8   # figures of one kind (one per dataset x setup x protocol) embedded at most
SECTION_DPI = 90           # the first-screen figures use plots.png_bytes' default
# Columns left out of the HTML tables (kept in the CSVs): bookkeeping a reader does not need.
HIDDEN_COLUMNS = ("formula", "level_pos", "family", "interval", "measure")


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    present: Callable[[Analysis], bool]     # whether the analysis has rows for it
    intro: str


SECTIONS: list[Section] = [
    Section("data", "Data", lambda a: True, "What was read: result rows per dataset and protocol."),
    Section("protocols", "Results per protocol", lambda a: a.has("protocol_results"),
            "Mean score and accuracy per method, post-processing level and fraction over seeds, with intervals "
            "across seeds (from 3 seeds). Score = higher is better under that protocol, in points of accuracy. "
            "Beside it, for retrain protocols: the retrained model's accuracy on the test images the base model "
            "got wrong, and its agreement with the base model."),
    Section("leakcheck", "Leak check of retrained models", lambda a: a.has("label_leaks"),
            "Could the retrained model read the test label from the holes? Accuracy on the test images the base "
            "model misclassified, against the random maps' accuracy on the same images (same fraction, level and "
            f"seed). Flagged = at least {100 * LABEL_LEAK_MARGIN:.0f} points above it and the two 95% Wilson "
            "intervals apart in every seed."),
    Section("effects", "Effect of post-processing", lambda a: a.has("effects"),
            "Paired change score(post-processed map) − score(raw map), matched on seed, per method and fraction; "
            "positive = the information-free transform made the method look better. Intervals and tests across "
            "seeds only (the cells of one seed share its base model), Holm correction within each protocol."),
    Section("association", "Blurriness and score", lambda a: a.has("ols") or a.has("spearman"),
            "Does the blurriness of a map predict its score? Blurriness = a blur measure turned so that higher = "
            "blurrier. OLS score ~ blurriness + fraction + C(method) + C(dataset) per setup and protocol, fitted "
            "in each seed, with the interval across the seeds' slopes; Spearman rho per cell with a bootstrap over "
            "seeds; a mixed model (random intercept per method × dataset) as a point estimate."),
    Section("rankings", "Rankings", lambda a: a.has("ranks"),
            "Method rankings (1 = best) per protocol, fraction and post-processing level; Kendall tau of each "
            "level's ranking against the raw maps', and Kendall W of the rankings across fractions."),
    Section("agreement", "Agreement between protocols", lambda a: a.has("tau_protocols"),
            "Kendall tau between the method rankings of every pair of protocols, per level and fraction; "
            "fraction 'all' ranks by the mean score over fractions."),
    Section("leakage", "Mask leakage", lambda a: a.has("leakage"),
            "Accuracy of a classifier trained on the binary mask alone, next to each protocol's score; flagged when "
            "at least 5 points above chance with every seed's Wilson lower bound above chance. "
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
def _html_table(df: pd.DataFrame, name: str, title: str = "") -> str:
    """A table formatted for people; long tables collapsed under their title with the CSV linked."""
    if df.empty:
        return "<p><em>No rows.</em></p>"
    hidden = [c for c in HIDDEN_COLUMNS if c in df and (c != "family" or "level" in df)]
    empty = [c for c in df.columns if df[c].isna().all() or (df[c].dtype == object and (df[c].fillna("") == "").all())]
    shown = df.drop(columns=hidden + [c for c in empty if c not in hidden])
    # a column with one value says nothing row by row: name it once above the table instead
    constant = [c for c in ("dataset", "setup") if c in shown and shown[c].nunique(dropna=False) == 1 and len(shown) > 1]
    note = "; ".join(f"{fmt.header(c)}: {html.escape(fmt.text(shown[c].iloc[0]))}" for c in constant)
    shown = fmt.display_frame(shown.drop(columns=constant).head(MAX_HTML_ROWS), fmt.TABLE_KINDS.get(name))
    body = shown.to_html(index=False, border=0, classes="t", escape=True)
    csv = f"<a href='tables/{html.escape(name)}.csv'>tables/{html.escape(name)}.csv</a>"
    count = (f"first {MAX_HTML_ROWS} of {len(df):,} rows; all in {csv}" if len(df) > MAX_HTML_ROWS
             else f"{len(df):,} rows; CSV: {csv}")
    meta = f"<p class='note'>{note + '. ' if note else ''}{count}</p>"
    label = html.escape(title) if title else html.escape(name.replace("_", " "))
    if len(df) > INLINE_ROWS:
        return f"<details><summary>{label} ({len(df):,} rows)</summary>{meta}{body}</details>"
    return (f"<h3>{label}</h3>" if title else "") + meta + body


def _img(png: bytes, alt: str, cls: str = "") -> str:
    c = f" class='{cls}'" if cls else ""
    return f"<img{c} alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"


def _slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(str(p) for p in parts)).strip("-")[:120]


_CSS = """*{box-sizing:border-box}body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.2em auto;padding:0 1em;
color:#222;line-height:1.45}h1{font-size:1.5em;margin:.2em 0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}h3{font-size:1.02em;margin:1.2em 0 .3em}
table.t{border-collapse:collapse;font-size:12px;max-width:100%;margin:.3em 0 1em}
table.t td,table.t th{padding:2px 5px;border-bottom:1px solid #eee;text-align:right;overflow-wrap:anywhere;
vertical-align:top}table.t th{background:#f4f4f4;font-weight:600}table.t td:first-child,table.t th:first-child{text-align:left}
.note{color:#666;font-size:12px;margin:.2em 0}.verdict{font-size:15px;margin:.6em 0 .8em}
.warn{border:2px solid #b00020;background:#fdecee;padding:.6em .9em;margin:.6em 0;border-radius:4px}
.warn b{color:#b00020}.first{display:grid;grid-template-columns:1.75fr 1fr 1.05fr;gap:12px;align-items:start}
.first figure{margin:0;min-width:0}.first img{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#444;margin-top:.2em}img{max-width:100%;height:auto;margin:.4em 0}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600;font-size:.98em}nav{margin:1em 0;font-size:14px}
nav a{margin-right:1em;white-space:nowrap;display:inline-block}ul.key li{margin:.3em 0}code{font-size:12px}"""


def _first_screen(a: Analysis) -> tuple[str, dict[str, bytes]]:
    """Warning box, verdict paragraph and the three figures with captions; returns (html, pngs)."""
    out, pngs = [], {}
    warning = leak_warning(a.results.ok, a.table("label_leaks")) if not a.results.ok.empty else ""
    if warning:
        out.append(f"<div class='warn' role='alert'><b>Warning: test labels leaked into the test inputs.</b> "
                   f"{html.escape(warning)}</div>")
    out.append(f"<p class='verdict'>{html.escape(verdict(a))}</p>")
    uncertainty = sm.interval_sentence(a) if not a.results.ok.empty else ""
    if uncertainty:
        out.append(f"<p class='note'>{html.escape(uncertainty)}</p>")
    if a.results.ok.empty:
        return "".join(out), pngs
    items = []
    for name, draw in figures.FIRST_SCREEN.items():
        fig, caption = draw(a)
        png = plots.png_bytes(fig, dpi=100)
        pngs[f"first_screen_{name}"] = png
        items.append(f"<figure id='fig-{name}'>{_img(png, caption, 'fs')}<figcaption>{html.escape(caption)}"
                     f"</figcaption></figure>")
    out.append(f"<div class='first'>{''.join(items)}</div>")
    return "".join(out), pngs


# --- sections ------------------------------------------------------------------------------------
class _Writer:
    """Collects the HTML of each section and writes figures to plots/."""

    def __init__(self, a: Analysis, out_dir: str):
        self.a, self.out_dir = a, out_dir
        self.paths: dict[str, str] = {}

    def save(self, png: bytes, name: str) -> None:
        path = os.path.join(self.out_dir, "plots", f"{_slug(name)}.png")
        with open(path, "wb") as f:
            f.write(png)
        self.paths[f"plot/{_slug(name)}"] = path

    def figure(self, fig, name: str, alt: str) -> str:
        png = plots.png_bytes(fig, dpi=SECTION_DPI)
        self.save(png, name)
        return _img(png, alt)

    def table(self, name: str, title: str | None = None, df: pd.DataFrame | None = None) -> str:
        df = self.a.table(name) if df is None else df
        return _html_table(df, name, title or "")

    def groups(self, table: str):
        t = self.a.table(table)
        if t.empty:
            return []
        keys = t[["dataset", "setup", "protocol"]].drop_duplicates()
        keys = keys.assign(_p=keys["protocol"].map({p: i for i, p in enumerate(protocol_order(keys["protocol"]))}))
        return list(keys.sort_values(["dataset", "setup", "_p"]).drop(columns="_p").itertuples(index=False))[
            :MAX_FIGURES_PER_KIND]


def _bullets(sentences: list[str]) -> str:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
    return f"<ul class='key'>{items}</ul>" if items else ""


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
    return "".join(out) + w.table("protocol_results", "Mean score and accuracy per cell")


def _effects_html(w: _Writer) -> str:
    return (_bullets(sm.effect_sentences(w.a))
            + w.table("improvement_share", "How often post-processing raised the score")
            + w.table("overall_change", "Mean change per protocol and transform (interval across seeds)")
            + w.table("effects", "Per method, fraction and level"))


def _association_html(w: _Writer) -> str:
    a = w.a
    out = [_bullets(sm.association_sentences(a))]
    ols = a.table("ols")
    for r in ols.head(MAX_FIGURES_PER_KIND).itertuples():
        s = scored(a.results.ok)
        fig = plots.blur_vs_score(s[s["setup"] == r.setup], r.protocol, r.measure, r.slope)
        out.append(w.figure(fig, f"blur_vs_score_{r.protocol}_{r.setup}", f"blurriness vs score, {r.protocol}"))
    out.append(w.table("ols", "OLS per seed, interval across the seeds' slopes"))
    out.append(w.table("mixed", "Mixed model (random intercept per method × dataset; point estimate)"))
    out.append(w.table("spearman", "Spearman rho per (dataset, setup, protocol, fraction), bootstrap over seeds"))
    return "".join(out)


def _rankings_html(w: _Writer) -> str:
    out = [_bullets(sm.ranking_sentences(w.a))]
    for g in w.groups("ranks"):
        fig = plots.rank_heatmap(w.a.table("ranks"), g.dataset, g.setup, g.protocol)
        out.append(w.figure(fig, f"ranks_{g.protocol}_{g.dataset}_{g.setup}", f"ranking heat map, {g.protocol}"))
    return "".join(out) + w.table("tau_levels", "Kendall tau: each level vs the raw maps") + \
        w.table("w_fractions", "Kendall W across fractions") + \
        w.table("ranks", "Ranks", w.a.table("ranks").drop(columns="level_pos", errors="ignore"))


def _sentences_then(w: _Writer, sentences: list[str], *tables: tuple[str, str]) -> str:
    return _bullets(sentences) + "".join(w.table(n, t) for n, t in tables)


def _data_html(w: _Writer) -> str:
    uncertainty = sm.interval_sentence(w.a)
    return (f"<p>{html.escape(w.a.results.describe())}. Source: {html.escape(w.a.results.source or 'memory')}.</p>"
            + (f"<p>{html.escape(uncertainty)}</p>" if uncertainty else "")
            + "<p class='note'>Scores and changes are in percentage points of accuracy (pts), accuracies in %; "
              "the CSV tables keep fractions.</p>" + w.table("row_counts", "Rows per dataset and protocol"))


_RENDER: dict[str, Callable[[_Writer], str]] = {
    "data": _data_html,
    "protocols": _protocols_html,
    "leakcheck": lambda w: _sentences_then(w, sm.label_leak_sentences(w.a), ("label_leaks", "Leak check per cell")),
    "effects": _effects_html,
    "association": _association_html,
    "rankings": _rankings_html,
    "agreement": lambda w: _sentences_then(w, sm.agreement_sentences(w.a), ("tau_protocols", "Kendall tau per pair")),
    "leakage": lambda w: _sentences_then(w, sm.leakage_sentences(w.a), ("leakage", "Mask-only accuracy per cell")),
    "sanity": lambda w: _sentences_then(w, sm.sanity_sentences(w.a), ("sanity", "Per method")),
    "fidelity": lambda w: _sentences_then(w, [], ("fidelity", "Per method and level")),
    "gaming": lambda w: _sentences_then(w, sm.gaming_sentences(w.a), ("gaming", "Best transform per method"),
                                        ("gaming_rankings", "Does gaming change the ranking?")),
    "failures": lambda w: _sentences_then(w, [], ("failed", "Failed trials"), ("skipped_files", "Skipped files")),
}
assert set(_RENDER) == {s.id for s in SECTIONS}, "every section needs a renderer"


def render_html(a: Analysis, out_dir: str) -> tuple[str, dict[str, str]]:
    """The report's HTML and the figure paths written under out_dir/plots."""
    w = _Writer(a, out_dir)
    first, pngs = _first_screen(a)
    for name, png in pngs.items():
        w.save(png, name)
    present = [s for s in SECTIONS if s.present(a)]
    nav = "".join(f"<a href='#{s.id}'>{html.escape(s.title)}</a>" for s in present)
    body = []
    for s in present:
        intro = f"<p>{html.escape(s.intro)}</p>" if s.intro else ""
        body.append(f"<section id='{s.id}'><h2>{html.escape(s.title)}</h2>{intro}{_RENDER[s.id](w)}</section>")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>Removal-benchmark audit</title>"
           f"<style>{_CSS}</style></head><body><header><h1>Removal-benchmark audit</h1>"
           f"<p class='note'>Generated {stamp} from {html.escape(a.results.source or 'memory')}; full text in "
           f"<a href='summary.md'>summary.md</a>, every table in <a href='tables/'>tables/</a>.</p></header>"
           f"<section id='summary'>{first}</section><nav>{nav}</nav>{''.join(body)}</body></html>")
    return doc, w.paths


def write_report(results_or_path, out_dir: str, **analyze_kwargs) -> dict[str, str]:
    """Analyse and write the report; returns {'html': …, 'summary': …, 'table/<name>': …, 'plot/<name>': …}.

    results_or_path: Results, a store path/URI, a folder or file of Parquet rows, or a DataFrame of
    contract rows. analyze_kwargs go to analysis.compute.analyze (measure, n_boot, test, interval,
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
        f.write(summary_markdown(a))
    doc, figure_paths = render_html(a, out_dir)
    html_path = os.path.join(out_dir, "report.html")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(doc)
    paths.update(figure_paths)
    return {"html": html_path, "summary": summary_path, **paths}
