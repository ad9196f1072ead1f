"""Numbers for people, one rule per kind of quantity, used by the sentences, the HTML tables and the
figures alike: scores and changes in percentage points with one decimal (1 point = 0.01 of accuracy),
accuracies as percentages with one decimal, p-values with two significant figures, correlations with
two decimals. CSV files keep the raw fractions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _finite(v) -> bool:
    try:
        return bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False


def points(v, sign: bool = True) -> str:
    """A score or a change of a score (fraction units) in percentage points: 0.0123 -> '+1.2'."""
    return (f"{100 * float(v):+.1f}" if sign else f"{100 * float(v):.1f}") if _finite(v) else "n/a"


def percent(v) -> str:
    """An accuracy or a share (fraction) as a percentage: 0.7149 -> '71.5%'."""
    return f"{100 * float(v):.1f}%" if _finite(v) else "n/a"


def p_value(v) -> str:
    """Two significant figures; tiny values in scientific notation: 0.2307 -> '0.23', 3.1e-7 -> '3.1e-07'."""
    if not _finite(v):
        return "n/a"
    v = float(v)
    return f"{v:.2g}" if v >= 1e-3 else f"{v:.1e}"


def corr(v) -> str:
    """A correlation, tau or W: two decimals."""
    return f"{float(v):.2f}" if _finite(v) else "n/a"


def number(v) -> str:
    """Any other measurement: three significant figures."""
    return f"{float(v):.3g}" if _finite(v) else "n/a"


def count(v) -> str:
    return f"{int(v):,}" if _finite(v) else ""


def interval_points(low, high) -> str:
    """'95% CI -0.4 to +3.3 points' or the reason there is none."""
    if not (_finite(low) and _finite(high)):
        return "no interval"
    return f"{points(low)} to {points(high)} points"


def text(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    return str(v)


# Table columns by kind: the formatter of each kind, then the column names (exact) that have it. The
# header of a formatted column says its unit.
KINDS = {
    "points": points,
    "points_plain": lambda v: points(v, sign=False),
    "percent": lambda v: f"{100 * float(v):.1f}",   # the header carries the % sign
    "p": p_value,
    "corr": corr,
    "count": count,
    "number": number,
    "text": text,
}
COLUMN_KIND = {
    **dict.fromkeys(["mean_diff", "median_diff", "gain", "excess", "margin", "slope_per_sd",
                     "ci_low_per_sd", "ci_high_per_sd", "diff"], "points"),
    **dict.fromkeys(["score", "score_ci_low", "score_ci_high", "mean_score", "raw_score", "best_score",
                     "fidelity", "score_roar", "score_kar", "score_road_morf", "score_road_lerf", "score_mif",
                     "score_lif", "score_ref", "randomised_accuracy_drop"], "points"),
    **dict.fromkeys(["accuracy", "acc_ci_low", "acc_ci_high", "base_accuracy", "accuracy_base_wrong",
                     "random_accuracy_base_wrong", "agreement_base", "leakage_accuracy", "chance_accuracy",
                     "wilson_low", "share_improved", "share_passed"], "percent"),
    **dict.fromkeys(["p", "p_holm"], "p"),
    **dict.fromkeys(["rho", "tau", "W", "rank_corr", "ssim", "r2"], "corr"),
    **dict.fromkeys(["n", "n_seeds", "n_pairs", "n_cells", "n_improved", "n_sig_better", "n_sig_worse", "n_rows",
                     "n_groups", "n_methods", "n_fractions", "n_transforms", "ok", "failed", "methods", "levels",
                     "fractions", "seeds", "n_base_wrong", "separated_seeds"], "count"),
    **dict.fromkeys(["slope", "se", "sd_blurriness", "group_var", "rank"], "number"),
}
# Per-table overrides: columns whose kind depends on the table (keys are analysis.compute table names).
_CI = ("ci_low", "ci_high")
TABLE_KINDS = {
    "effects": dict.fromkeys(_CI, "points"),
    "overall_change": dict.fromkeys(_CI, "points"),
    "fidelity": dict.fromkeys(_CI, "points"),
    "improvement_share": dict.fromkeys(_CI, "percent"),
    "spearman": dict.fromkeys(_CI, "corr"),
    "ols": dict.fromkeys(_CI, "number"),
}
# Readable headers; a kind's unit is added to headers of points and percent columns.
HEADERS = {
    "attribution": "method", "level": "post-processing", "fraction": "fraction removed", "n_seeds": "seeds",
    "mean_diff": "mean change", "median_diff": "median change", "p_holm": "p (Holm)", "n_pairs": "pairs",
    "n_cells": "cells", "n_improved": "improved", "share_improved": "share improved", "n_sig_better": "sig. better",
    "n_sig_worse": "sig. worse", "score_ci_low": "score low", "score_ci_high": "score high",
    "acc_ci_low": "accuracy low", "acc_ci_high": "accuracy high", "base_accuracy": "base accuracy",
    "accuracy_base_wrong": "acc. on base errors", "random_accuracy_base_wrong": "random maps' acc. on base errors",
    "agreement_base": "agreement with base", "n_base_wrong": "base errors", "separated_seeds": "seeds separated",
    "leakage_accuracy": "mask-only accuracy", "chance_accuracy": "chance", "wilson_low": "lowest Wilson bound",
    "ci_low": "low", "ci_high": "high", "slope_per_sd": "per SD", "ci_low_per_sd": "low per SD",
    "ci_high_per_sd": "high per SD", "sd_blurriness": "SD of blurriness", "r2": "R²", "n_rows": "rows",
    "mean_score": "mean score", "protocol_a": "protocol A", "protocol_b": "protocol B", "n_methods": "methods",
    "n_fractions": "fractions", "raw_score": "raw-map score", "best_score": "best score", "best_level": "best transform",
    "n_transforms": "transforms", "raw_order": "raw order", "gamed_order": "gamed order",
    "ranking_changed": "order changed", "same_order": "same order", "rank_corr": "rank corr.", "share_passed": "passed",
    "randomised_accuracy_drop": "randomised-model score", "group_var": "group variance",
}
UNITS = {"points": " (pts)", "percent": " (%)"}


def header(column: str, kind: str | None = None) -> str:
    base = HEADERS.get(column, column.replace("_", " "))
    if column.startswith("score_") and column[6:] and column not in HEADERS:
        base = f"score {column[6:].replace('_', ' ')}"
    unit = UNITS.get(kind or COLUMN_KIND.get(column, ""), "")
    return base + ("" if unit.strip(" ()") in base else unit)


def display_frame(df: pd.DataFrame, kinds: dict | None = None) -> pd.DataFrame:
    """A copy of df with every value formatted as text and readable headers, for HTML and Markdown.
    ``kinds`` overrides COLUMN_KIND for this table (ci_low is points in one table, a share in another)."""
    kinds = {**COLUMN_KIND, **(kinds or {})}
    out = {}
    for c in df.columns:
        kind = kinds.get(c)
        if kind is None:
            kind = "number" if pd.api.types.is_float_dtype(df[c]) else "text"
        fmt = KINDS[kind]
        out[header(c, kind)] = [fmt(v) if (kind == "text" or _finite(v)) else "" for v in df[c]]
    return pd.DataFrame(out, index=df.index)
