"""The first screen's one-paragraph verdict (``verdict``) and the whole ``summary.md``
(``summary_markdown``), built from the sentences of analysis.summary."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import formatting as fmt
from .association import DEFAULT_MEASURE
from .compute import Analysis
from .leaks import leak_warning
from .rankings import TAU_TOL
from .scoring import protocol_name
from .summary import (FAMILY_NAMES, _ci_pts, _pts, agreement_sentences, association_sentences,
                      data_sentence, effect_sentences, gaming_sentences, interval_sentence, key_sentences,
                      label_leak_sentences, lead_protocol, leakage_sentences, ranking_sentences, sanity_sentences)


def lead_group(a: Analysis, lead: str):
    """(dataset, setup) the first screen is about: the one with the most scored rows of the lead protocol.
    The verdict speaks of that one only (setups are never pooled); the others are in the sections below."""
    res = a.table("protocol_results")
    part = res[res["protocol"] == lead] if not res.empty else res
    if part.empty:
        return None, 0
    sizes = part.groupby(["dataset", "setup"], dropna=False)["n_seeds"].sum().sort_values(ascending=False,
                                                                                         kind="stable")
    return sizes.index[0], len(sizes) - 1


def _in(table: pd.DataFrame, group, protocol: str | None = None) -> pd.DataFrame:
    if table.empty:
        return table
    keep = (table["dataset"] == group[0]) if "dataset" in table else pd.Series(True, index=table.index)
    keep &= table["setup"] == group[1]
    if protocol is not None and "protocol" in table:
        keep &= table["protocol"] == protocol
    return table[keep]


def _headline_effect(a: Analysis, lead: str, group) -> str:
    share, overall = a.table("improvement_share"), a.table("overall_change")
    if share.empty:
        return ""
    keys = ["dataset", "setup", "protocol", "family"]
    m = _in(share.merge(overall, on=keys, how="left", suffixes=("", "_mean")), group, lead)
    parts = []
    for r in m.itertuples():
        name = FAMILY_NAMES.get(r.family, f"post-processing '{r.family}'")
        n = int(r.n_seeds_mean)
        cells = f"{r.n_improved} of {r.n_cells} method × fraction × level cells"
        score = f"the {protocol_name(lead)} score"
        if not np.isfinite(r.ci_low_mean):
            verb = "raised" if r.mean_diff > 0 else "lowered"
            parts.append(f"{name} {verb} {score} by {_pts(abs(r.mean_diff)).lstrip('+')} points on average (one "
                         f"value per seed, {n} seed{'s' if n != 1 else ''}: no interval) and improved it in {cells}")
        elif r.ci_low_mean > 0 or r.ci_high_mean < 0:
            verb = "raised" if r.mean_diff > 0 else "lowered"
            parts.append(f"{name} {verb} {score} by {_pts(abs(r.mean_diff)).lstrip('+')} points on average "
                         f"({_ci_pts(r.ci_low_mean, r.ci_high_mean)} across {n} seeds) and improved it in {cells}")
        else:
            parts.append(f"{name} did not detectably change {score}: mean change {_pts(r.mean_diff)} points "
                         f"({_ci_pts(r.ci_low_mean, r.ci_high_mean)} across {n} seeds); it raised the score in {cells}")
    return "; ".join(parts) + "." if parts else ""


def verdict(a: Analysis) -> str:
    """The first screen's one paragraph: does post-processing move the lead protocol's score, by how much
    (with its interval, or the reason there is none), does blurriness predict it, do rankings move, do
    masks leak; for one (dataset, setup), named when there are several. How every interval was computed
    is analysis.summary.interval_sentence."""
    if a.results.ok.empty:
        return data_sentence(a)
    lead = lead_protocol(a)
    group, rest = lead_group(a, lead) if lead else (None, 0)
    if group is None:
        return data_sentence(a)
    df = a.results.ok
    where = ([f"{group[0]}"] if df["dataset"].nunique() > 1 else []) + \
        ([f"setup {group[1]}"] if df["setup"].nunique() > 1 else [])
    out = [f"For {', '.join(where)}:" if where else "", _headline_effect(a, lead, group)]
    ols = a.table("ols")
    o = ols[(ols["protocol"] == lead) & (ols["setup"] == group[1]) & np.isfinite(ols["slope"].astype(float))] \
        if not ols.empty else ols
    if not o.empty:
        r = o.iloc[0]
        ci = f", {_ci_pts(r.ci_low_per_sd, r.ci_high_per_sd)}" if np.isfinite(r.ci_low_per_sd) else ""
        out.append(f"One standard deviation more blurriness goes with {_pts(r.slope_per_sd)} points of "
                   f"{protocol_name(lead)} score (within method{ci}).")
    t = _in(a.table("tau_levels"), group, lead)
    t = t[np.isfinite(t["tau"].astype(float))] if not t.empty else t
    if not t.empty:
        out.append(f"Post-processing reordered the methods in {int((t['tau'] < 1 - TAU_TOL).sum())} of {len(t)} "
                   f"fraction × level settings.")
    leak = _in(a.table("leakage"), group)
    if not leak.empty:
        out.append(f"The mask alone predicted the label well above chance in {int(leak['leaks'].sum())} of "
                   f"{len(leak)} cells.")
    ll = _in(a.table("label_leaks"), group)
    if not ll.empty and ll["flagged"].any():
        out.append(f"In {int(ll['flagged'].sum())} retrain cells the masks carry the test label (leak check).")
    if rest:
        out.append(f"{rest} other dataset/setup combination{'s are' if rest > 1 else ' is'} in the sections below.")
    return " ".join(s for s in out if s)


def markdown_table(df: pd.DataFrame, max_rows: int = 40, name: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency), numbers formatted for people;
    ``name`` (the table's key) picks its column kinds (analysis.formatting.TABLE_KINDS)."""
    if df.empty:
        return "_(no rows)_"
    shown = fmt.display_frame(df.head(max_rows), fmt.TABLE_KINDS.get(name))
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(str(c)) for c in shown.columns) + " |",
             "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(esc(str(v)) for v in row) + " |" for row in shown.itertuples(index=False)]
    if len(df) > max_rows:
        lines.append(f"\n_{len(df) - max_rows} more rows in the CSV._")
    return "\n".join(lines)


def summary_markdown(a: Analysis) -> str:
    """The whole summary as Markdown: the verdict, headline sentences, then one paragraph per topic."""
    measure = a.measure or DEFAULT_MEASURE
    parts = ["# Removal-benchmark audit: summary", ""]
    warning = leak_warning(a.results.ok, a.table("label_leaks")) if not a.results.ok.empty else ""
    if warning:
        parts += [f"> **Warning.** {warning}", ""]
    parts += [verdict(a), "", "## Key findings", ""]   # key_sentences carry the interval sentence
    parts += [f"- {s}" for s in key_sentences(a) if not s.startswith("WARNING")]
    topics = [("Effect of post-processing", effect_sentences(a)),
              (f"Blurriness and score (measure: {measure})", association_sentences(a) if not a.results.ok.empty else []),
              ("Rankings", ranking_sentences(a)), ("Agreement between protocols", agreement_sentences(a)),
              ("Leak check of retrained models", label_leak_sentences(a)),
              ("Mask leakage", leakage_sentences(a)), ("Sanity checks", sanity_sentences(a)),
              ("Gaming the benchmark (Optuna search)", gaming_sentences(a))]
    for title, sentences in topics:
        if sentences:
            parts += ["", f"## {title}", ""] + [f"- {s}" for s in sentences]
    tables = [("Rows per dataset and protocol", "row_counts"),
              ("How often post-processing raised the score", "improvement_share"),
              ("Mean change per protocol and transform", "overall_change"),
              ("OLS of score on blurriness (per seed, interval across seeds)", "ols")]
    for title, name in tables:
        if a.has(name):
            t = a.table(name).drop(columns=["formula"], errors="ignore")
            parts += ["", f"## {title}", "", markdown_table(t, name=name)]
    parts += ["", "## Conventions", "",
              "- score: higher = better method under each protocol (ROAR, ROAD MoRF, MIF: accuracy drop; KAR, "
              "ROAD LeRF, LIF: minus the accuracy drop). Scores and changes are in percentage points of accuracy "
              "(pts); accuracies in %. The CSV tables keep fractions.",
              "- blurriness: a blur measure turned so that higher = blurrier (e.g. minus the spectral centroid).",
              f"- {interval_sentence(a) or 'Uncertainty: no rows.'}"]
    return "\n".join(parts) + "\n"


