"""Every table of the report, computed once from loaded Results: ``analyze(results) -> Analysis``.

Tables are keyed by name (the CSV file name under ``tables/``); a table whose input rows are absent
is empty, and the report leaves its section out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from . import association, diagnostics, effects, gaming, leaks, rankings
from .io import Results, as_results
from .scoring import level_order
from .stats import SEED_INTERVALS


@dataclass
class Analysis:
    results: Results
    measure: str | None                       # blur measure of the pooled fits; None without blur data
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    levels: list[str] = field(default_factory=list)   # post-processing levels in display order
    interval: str = "t"                       # key of analysis.stats.SEED_INTERVALS used for every interval
    level: float = 0.95                       # confidence level of the intervals

    def table(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())

    def has(self, name: str) -> bool:
        return not self.table(name).empty


def _failed_table(results: Results) -> pd.DataFrame:
    f = results.failed
    cols = ["trial_id", "dataset", "protocol", "attribution", "postprocess", "sigma", "filter_size", "fraction",
            "seed", "error"]
    if f.empty:
        return pd.DataFrame(columns=cols)
    out = f[cols].copy()
    out["error"] = out["error"].fillna("").astype(str).str.split("\n").str[0].str.slice(0, 200)
    return out


def analyze(results_or_path, measure: str | None = None, n_boot: int = 1000, test: str = "wilcoxon",
            interval: str = "t", level: float = 0.95, seed: int = 0, filters: dict | None = None) -> Analysis:
    """Compute every table.

    measure: blur column for the OLS and mixed model (default: spectral centroid when present, else the
        first blur column with data). n_boot: bootstrap resamples of the Spearman CIs.
    test: paired test across seeds ('wilcoxon' or 'sign'). interval: how intervals across seeds are
        computed, a key of analysis.stats.SEED_INTERVALS ('t' or 'bootstrap'); none below 3 seeds.
    """
    if interval not in SEED_INTERVALS:
        raise KeyError(f"interval={interval!r} unknown; valid: {sorted(SEED_INTERVALS)}")
    results = as_results(results_or_path, filters=filters)
    df = results.ok
    measures = association.available_measures(df) if not df.empty else []
    if measure is None:
        measure = association.DEFAULT_MEASURE if association.DEFAULT_MEASURE in measures else \
            (measures[0] if measures else None)
    elif measure not in association.BLUR_COLUMNS:
        raise KeyError(f"measure={measure!r} unknown; valid: {association.BLUR_COLUMNS}")
    t: dict[str, pd.DataFrame] = {}
    t["row_counts"] = diagnostics.row_counts(df, results.failed)
    t["protocol_results"] = diagnostics.protocol_results(df, level, interval)
    t["label_leaks"] = leaks.label_leak_table(df)
    t["curves"] = diagnostics.curve_table(df, level, interval)
    diffs = effects.paired_differences(df)
    t["paired_differences"] = diffs
    t["effects"] = effects.effect_table(diffs, test=test, level=level, interval=interval)
    t["improvement_share"] = effects.improvement_share(t["effects"], diffs, level=level, interval=interval)
    t["overall_change"] = effects.overall_change(diffs, level=level, interval=interval)
    t["spearman"] = association.spearman_table(df, measures, n_boot=n_boot, level=level, seed=seed) \
        if measures else pd.DataFrame()
    t["ols"] = association.ols_association(df, measure, level, interval) if measure else pd.DataFrame()
    t["mixed"] = association.mixed_association(df, measure) if measure else pd.DataFrame()
    ranks = rankings.method_ranks(df)
    t["ranks"] = ranks
    t["tau_levels"] = rankings.tau_between_levels(ranks)
    t["w_fractions"] = rankings.kendall_w_fractions(ranks)
    t["tau_protocols"] = rankings.tau_between_protocols(ranks)
    t["leakage"] = diagnostics.leakage_table(df, t["protocol_results"], level)
    t["sanity"] = diagnostics.sanity_table(df)
    t["fidelity"] = diagnostics.fidelity_table(df, level, interval)
    t["gaming"] = gaming.gaming_table(df)
    t["gaming_rankings"] = gaming.gaming_rankings(t["gaming"])
    t["failed"] = _failed_table(results)
    t["skipped_files"] = pd.DataFrame(results.skipped, columns=["path", "reason"])
    return Analysis(results=results, measure=measure, tables=t, levels=level_order(df), interval=interval,
                    level=level)
