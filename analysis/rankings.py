"""Does the benchmark rank methods coherently? Rankings and their agreement.

A ranking orders the methods (``attribution``) by their mean score over seeds within one
(dataset, setup, protocol, fraction, level); rank 1 = best (highest score, see
analysis.contract.PROTOCOL_SCORES for each protocol's direction). Agreement between two rankings is
Kendall tau-b over the methods both contain; agreement across fractions is Kendall's W.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from .scoring import REFERENCE_LEVEL, level_order, protocol_order, scored
from .stats import average_ranks, kendall_tau, kendall_w

RANK_KEYS = ["dataset", "setup", "protocol", "fraction", "level"]
ALL_FRACTIONS = "all"   # the fraction label of rankings by the mean score over every fraction
TAU_TOL = 1e-9          # tau within this of 1 is "the same order" (tau-b is computed in floating point)


def method_ranks(df: pd.DataFrame) -> pd.DataFrame:
    """Mean score, seeds and rank of each method per (dataset, setup, protocol, fraction, level).

    Optuna search rows (``study`` set) are excluded; see analysis.gaming.
    """
    s = scored(df)
    cols = RANK_KEYS + ["attribution", "mean_score", "n_seeds", "rank", "level_pos"]
    if s.empty:
        return pd.DataFrame(columns=cols)
    m = (s.groupby(RANK_KEYS + ["attribution"], dropna=False, as_index=False)
         .agg(mean_score=("score", "mean"), n_seeds=("seed", "nunique")))
    # display position of the level (reference first), so later tables keep the natural order
    m["level_pos"] = m["level"].map({lv: i for i, lv in enumerate(level_order(s))})
    m["rank"] = m.groupby(RANK_KEYS, dropna=False)["mean_score"].transform(
        lambda v: pd.Series(average_ranks(v.to_numpy(float)), index=v.index))
    return m[cols]


def _pivot(ranks: pd.DataFrame, column: str) -> pd.DataFrame:
    """methods as columns, one row per value of `column` within fixed `keys`."""
    # groupby + unstack: the same table as pivot_table(aggfunc='mean'), several times faster per group
    return ranks.groupby([column, "attribution"], dropna=False)["mean_score"].mean().unstack("attribution")


def tau_between_levels(ranks: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau between the ranking under each post-processing level and under the raw maps,
    per (dataset, setup, protocol, fraction). tau = 1: the post-processing did not change the order."""
    cols = ["dataset", "setup", "protocol", "fraction", "level", "tau", "n_methods", "same_order"]
    out = []
    keys = ["dataset", "setup", "protocol", "fraction"]
    for k, part in ranks.groupby(keys, dropna=False, sort=True):
        wide = _pivot(part, "level")
        if REFERENCE_LEVEL not in wide.index:
            continue
        ref = wide.loc[REFERENCE_LEVEL]
        for lv in part.sort_values("level_pos")["level"].unique():
            if lv == REFERENCE_LEVEL or lv not in wide.index:
                continue
            both = ref.notna() & wide.loc[lv].notna()
            tau = kendall_tau(ref[both].to_numpy(float), wide.loc[lv][both].to_numpy(float))
            out.append({**dict(zip(keys, k)), "level": lv, "tau": tau, "n_methods": int(both.sum()),
                        "same_order": bool(tau >= 1.0 - TAU_TOL) if np.isfinite(tau) else np.nan})
    return pd.DataFrame(out, columns=cols)


def _with_all_fractions(ranks: pd.DataFrame) -> pd.DataFrame:
    """Add rankings by the mean score over fractions (fraction = 'all')."""
    if ranks.empty:
        return ranks
    agg = (ranks.groupby(["dataset", "setup", "protocol", "level", "attribution"], dropna=False, as_index=False)
           .agg(mean_score=("mean_score", "mean"), n_seeds=("n_seeds", "min")))
    agg["fraction"] = ALL_FRACTIONS
    return pd.concat([ranks.assign(fraction=ranks["fraction"].astype(object)), agg], ignore_index=True)


def tau_between_protocols(ranks: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau between the rankings of every pair of protocols, per (dataset, setup, level,
    fraction) where both protocols were run, plus fraction='all' (mean score over each protocol's
    fractions). tau = 1: the protocols agree on the order of the methods."""
    cols = ["dataset", "setup", "level", "fraction", "protocol_a", "protocol_b", "tau", "n_methods"]
    out = []
    keys = ["dataset", "setup", "level", "fraction"]
    full = _with_all_fractions(ranks)
    for k, part in full.groupby(keys, dropna=False, sort=False):
        wide = _pivot(part, "protocol")
        for a, b in combinations(protocol_order(wide.index), 2):
            both = wide.loc[a].notna() & wide.loc[b].notna()
            if both.sum() < 2:
                continue
            out.append({**dict(zip(keys, k)), "protocol_a": a, "protocol_b": b,
                        "tau": kendall_tau(wide.loc[a][both].to_numpy(float), wide.loc[b][both].to_numpy(float)),
                        "n_methods": int(both.sum())})
    return pd.DataFrame(out, columns=cols)


def kendall_w_fractions(ranks: pd.DataFrame) -> pd.DataFrame:
    """Kendall's W of the method rankings across fractions (raters = fractions), per (dataset, setup,
    protocol, level). W = 1: every fraction orders the methods the same way."""
    cols = ["dataset", "setup", "protocol", "level", "W", "n_fractions", "n_methods"]
    out = []
    keys = ["dataset", "setup", "protocol", "level"]
    for k, part in ranks.groupby(keys, dropna=False, sort=True):
        wide = _pivot(part, "fraction").dropna(axis=1, how="any")
        if wide.shape[0] < 2 or wide.shape[1] < 2:
            continue
        out.append({**dict(zip(keys, k)), "W": kendall_w(wide.to_numpy(float)), "n_fractions": int(wide.shape[0]),
                    "n_methods": int(wide.shape[1])})
    return pd.DataFrame(out, columns=cols)
