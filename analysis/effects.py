"""Effect of post-processing: paired score(level) - score(raw map), matched on seed.

A difference is formed only between two rows that agree on every identity field except the
post-processing (dataset, setup, protocol, method, fraction, seed): both come from the same base model
and the same raw maps, so the seed-to-seed variation of the base model cancels. Positive = the
post-processing made the method look better under that protocol.

Inference is across seeds only: the cells of one seed share a base model and its maps, so they are one
replicate, never independent observations. Intervals need MIN_SEEDS_FOR_INTERVAL seeds (analysis.stats);
summaries are per (dataset, setup): different setups are never pooled.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .scoring import level_order, scored, sort_protocols
from .stats import PAIRED_TESTS, holm, seed_ci, seed_ci_groups

PAIR_KEYS = ["dataset", "setup", "protocol", "attribution", "fraction", "seed"]
CELL_KEYS = ["dataset", "setup", "protocol", "attribution", "fraction", "level"]
SUMMARY_KEYS = ("dataset", "setup", "protocol", "family")   # never pool datasets or setups
DIFF_BOUNDS = (-1.0, 1.0)    # a change of an accuracy-like score (fraction units)


def paired_differences(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, seed): score of a post-processed map minus the raw map's score.

    Rows from Optuna searches (``study`` set) are left out: they are analysed in analysis.gaming.
    """
    s = scored(df)
    cols = PAIR_KEYS + ["level", "family", "sigma", "filter_size", "score"]
    out_cols = PAIR_KEYS + ["level", "family", "sigma", "filter_size", "score", "score_ref", "diff"]
    if s.empty:
        return pd.DataFrame(columns=out_cols)
    # repeated rows for one key (e.g. several sweeps) are averaged so each seed counts once
    ref = (s[s["is_reference"]].groupby(PAIR_KEYS, dropna=False, as_index=False)["score"].mean()
           .rename(columns={"score": "score_ref"}))
    other = (s[~s["is_reference"]][cols]
             .groupby(PAIR_KEYS + ["level", "family"], dropna=False, as_index=False)
             .agg(sigma=("sigma", "first"), filter_size=("filter_size", "first"), score=("score", "mean")))
    pairs = other.merge(ref, on=PAIR_KEYS, how="inner")
    pairs["diff"] = pairs["score"] - pairs["score_ref"]
    return pairs[out_cols].reset_index(drop=True)


def effect_table(diffs: pd.DataFrame, test: str = "wilcoxon", level: float = 0.95,
                 alpha: float = 0.05, interval: str = "t") -> pd.DataFrame:
    """Per (dataset, setup, protocol, method, fraction, level): mean paired difference with an interval
    across seeds (analysis.stats.seed_ci; none below 3 seeds), a paired test across seeds, and
    Holm-adjusted p within each (dataset, setup, protocol).

    test: 'wilcoxon' (signed-rank, exact for small n) or 'sign'. With 3 seeds the smallest two-sided p
    either test can give is 0.25, so nothing is significant: the CI and the share of improved cells are
    then the evidence.
    """
    if test not in PAIRED_TESTS:
        raise KeyError(f"test={test!r} unknown; valid: {sorted(PAIRED_TESTS)}")
    cols = CELL_KEYS + ["family", "n_pairs", "mean_diff", "ci_low", "ci_high", "median_diff", "p", "p_holm",
                        "improved", "significant"]
    if diffs.empty:
        return pd.DataFrame(columns=cols)
    groups = diffs.groupby(CELL_KEYS, dropna=False, sort=True)
    codes = groups.ngroup().to_numpy()
    values = diffs["diff"].to_numpy(float)
    table = groups.size().rename("n_pairs").reset_index()
    table["family"] = groups["family"].first().to_numpy()
    table["mean_diff"], table["ci_low"], table["ci_high"], _ = seed_ci_groups(values, codes, level, interval,
                                                                              DIFF_BOUNDS)
    table["median_diff"] = groups["diff"].median().to_numpy()
    table["p"] = _paired_p(values, codes, len(table), test)
    table["p_holm"] = np.nan
    for _, idx in table.groupby(["dataset", "setup", "protocol"], dropna=False).groups.items():
        table.loc[idx, "p_holm"] = holm(table.loc[idx, "p"].to_numpy(float))
    table["improved"] = table["mean_diff"] > 0
    table["significant"] = table["p_holm"] < alpha
    order = {lv: i for i, lv in enumerate(level_order(diffs.assign(is_reference=False)))}
    table = table.assign(_o=table["level"].map(order)).sort_values(
        ["dataset", "setup", "protocol", "attribution", "_o", "fraction"], kind="stable").drop(columns="_o")
    return table[cols].reset_index(drop=True)


def _paired_p(values: np.ndarray, codes: np.ndarray, n_groups: int, test: str) -> np.ndarray:
    """The paired test across seeds per cell. An exact test of a few seeds depends only on the signs of
    the differences in the order of their sizes, so cells that share that pattern share one p."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(1, n_groups))
    cache: dict = {}
    out = np.full(n_groups, np.nan)
    for i, d in enumerate(np.split(values[order], bounds)):
        d = d[np.isfinite(d) & (d != 0)]
        size = np.abs(d)
        key = tuple(np.sign(d[np.argsort(size)])) if np.unique(size).size == size.size else tuple(d)
        if key not in cache:
            cache[key] = PAIRED_TESTS[test](d)
        out[i] = cache[key]
    return out


def improvement_share(effects: pd.DataFrame, diffs: pd.DataFrame | None = None, by=SUMMARY_KEYS,
                      level: float = 0.95, interval: str = "t") -> pd.DataFrame:
    """How often post-processing raised the score: the share of (method, fraction, level) cells whose
    mean change over seeds is positive, and the cells significant after Holm either way.

    The interval is across seeds: each seed's share of improved cells (from ``diffs``), then
    analysis.stats.seed_ci over seeds. The cells of one seed share a base model, so an interval over
    cells (Wilson) would count one replicate as many; with fewer than 3 seeds there is none."""
    by = list(by)
    cols = by + ["n_cells", "n_improved", "share_improved", "n_seeds", "ci_low", "ci_high", "n_sig_better",
                 "n_sig_worse"]
    if effects.empty:
        return pd.DataFrame(columns=cols)
    g = effects.groupby(by, dropna=False, sort=True)
    out = g.agg(n_cells=("mean_diff", "size"), n_improved=("improved", "sum")).reset_index()
    sig = effects.assign(_b=effects["significant"] & effects["improved"],
                         _w=effects["significant"] & ~effects["improved"])
    sig = sig.groupby(by, dropna=False, sort=True).agg(n_sig_better=("_b", "sum"), n_sig_worse=("_w", "sum"))
    out = out.merge(sig.reset_index(), on=by, how="left")
    out["share_improved"] = out["n_improved"] / out["n_cells"]
    if diffs is not None and not diffs.empty:
        per_seed = diffs.assign(_up=diffs["diff"] > 0).groupby(by + ["seed"], dropna=False)["_up"].mean()
        rows = [{**dict(zip(by, k if isinstance(k, tuple) else (k,))),
                 **dict(zip(("_m", "ci_low", "ci_high"), seed_ci(v.to_numpy(float), level, interval, (0.0, 1.0)))),
                 "n_seeds": v.size} for k, v in per_seed.groupby(level=list(range(len(by))), dropna=False)]
        out = out.merge(pd.DataFrame(rows).drop(columns="_m"), on=by, how="left")
    else:
        out = out.assign(n_seeds=0, ci_low=np.nan, ci_high=np.nan)
    out["n_seeds"] = out["n_seeds"].fillna(0)
    out["n_seeds"] = out["n_seeds"].astype(int)
    return sort_protocols(out[cols], by)


def overall_change(diffs: pd.DataFrame, by=SUMMARY_KEYS, level: float = 0.95,
                   interval: str = "t") -> pd.DataFrame:
    """Mean paired change per dataset, setup, protocol and post-processing family, with an interval that
    treats seeds as the unit: each seed's mean difference over all cells, then analysis.stats.seed_ci
    across seeds (the seeds are the independent replicates; none below 3 seeds)."""
    by = list(by)
    cols = by + ["mean_diff", "ci_low", "ci_high", "n_seeds", "n_pairs", "n_cells"]
    if diffs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for keys, part in diffs.groupby(by, dropna=False, sort=True):
        per_seed = part.groupby(["dataset", "setup", "seed"], dropna=False)["diff"].mean().to_numpy(float)
        mean, low, high = seed_ci(per_seed, level, interval, DIFF_BOUNDS)
        n_cells = part.groupby(["dataset", "setup", "attribution", "fraction", "level"], dropna=False).ngroups
        rows.append({**dict(zip(by, keys if isinstance(keys, tuple) else (keys,))), "mean_diff": mean,
                     "ci_low": low, "ci_high": high, "n_seeds": int(per_seed.size), "n_pairs": int(len(part)),
                     "n_cells": int(n_cells)})
    return sort_protocols(pd.DataFrame(rows, columns=cols), by)
