"""Gaming the benchmark: how far information-free post-processing found by an Optuna search moves a
method's score, and whether it reorders the methods.

Search rows are ordinary result rows with ``study`` set. Per (dataset, setup, protocol, fraction,
method) the best transform is the post-processing level with the highest mean score among the search
rows; the raw map's score comes from the search's own identity trials when it ran one, else from the
sweep rows (``study`` empty) of the same cell.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .scoring import scored, sort_protocols
from .stats import kendall_tau

KEYS = ["dataset", "setup", "protocol", "fraction", "attribution"]
COLUMNS = KEYS + ["studies", "n_transforms", "raw_score", "raw_source", "best_level", "best_score", "gain"]


def search_rows(df: pd.DataFrame) -> pd.DataFrame:
    s = scored(df, search=True)
    return s[s["study"].notna()] if not s.empty else s


def gaming_table(df: pd.DataFrame) -> pd.DataFrame:
    """Best information-free transform per method vs the raw map (score units: higher = better)."""
    search = search_rows(df)
    if search.empty:
        return pd.DataFrame(columns=COLUMNS)
    sweep = scored(df)
    sweep_raw = sweep[sweep["is_reference"]].groupby(KEYS, dropna=False)["score"].mean()
    out = []
    for k, cell in search.groupby(KEYS, dropna=False, sort=True):
        if cell["is_reference"].all():  # e.g. a retrain-recipe study: no transform was searched
            continue
        per_level = cell.groupby("level")["score"].mean().sort_values(ascending=False, kind="stable")
        if cell["is_reference"].any():
            raw, source = float(cell.loc[cell["is_reference"], "score"].mean()), "search"
        elif k in sweep_raw.index:
            raw, source = float(sweep_raw.loc[k]), "sweep"
        else:
            raw, source = np.nan, "none"
        best_level, best = per_level.index[0], float(per_level.iloc[0])
        out.append({**dict(zip(KEYS, k)), "studies": ", ".join(sorted(cell["study"].astype(str).unique())),
                    "n_transforms": int(per_level.size), "raw_score": raw, "raw_source": source,
                    "best_level": best_level, "best_score": best, "gain": best - raw})
    return sort_protocols(pd.DataFrame(out, columns=COLUMNS), ["dataset", "setup", "protocol", "fraction", "attribution"])


def gaming_rankings(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, setup, protocol, fraction): the method order by raw score and by best-transform
    score, their Kendall tau, and whether the order changed."""
    keys = KEYS[:-1]
    cols = keys + ["n_methods", "raw_order", "gamed_order", "tau", "ranking_changed"]
    out = []
    for k, part in table.dropna(subset=["raw_score", "best_score"]).groupby(keys, dropna=False, sort=False):
        if len(part) < 2:
            continue
        raw = part.sort_values("raw_score", ascending=False, kind="stable")["attribution"].tolist()
        gamed = part.sort_values("best_score", ascending=False, kind="stable")["attribution"].tolist()
        tau = kendall_tau(part["raw_score"].to_numpy(float), part["best_score"].to_numpy(float))
        out.append({**dict(zip(keys, k)), "n_methods": len(part), "raw_order": " > ".join(raw),
                    "gamed_order": " > ".join(gamed), "tau": tau, "ranking_changed": raw != gamed})
    return pd.DataFrame(out, columns=cols)
