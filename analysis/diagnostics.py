"""Per-protocol results and the diagnostics that qualify them: mask leakage, sanity checks, fidelity.

Each function returns an empty DataFrame (with its columns) when the rows it needs are absent, so the
report can leave the section out.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .scoring import level_order, protocol_order, scored
from .stats import seed_ci, seed_ci_groups, wilson_ci

# "Well above chance": the mask-only classifier beats always-the-majority-class by at least this much
# (accuracy fraction) and its Wilson 95% lower bound lies above chance.
LEAKAGE_MARGIN = 0.05
RESULT_KEYS = ["dataset", "setup", "protocol", "attribution", "level", "fraction"]
SCORE_BOUNDS = (-1.0, 1.0)   # every score is an accuracy, an accuracy drop or a precision (fractions)



def _sorted_by_level(table: pd.DataFrame, df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sort by keys, with levels in display order (raw map first) and protocols in registry order."""
    helpers = {"level": {lv: i for i, lv in enumerate(level_order(df))},
               "protocol": {p: i for i, p in enumerate(protocol_order(table.get("protocol", pd.Series()).dropna()
                                                                       .unique()))}}
    t = table.copy()
    by = []
    for k in keys:
        if k in helpers:
            t[f"_{k}"] = t[k].map(helpers[k])
            by.append(f"_{k}")
        else:
            by.append(k)
    return t.sort_values(by, kind="stable").drop(columns=[b for b in by if b.startswith("_")]).reset_index(drop=True)


def protocol_results(df: pd.DataFrame, level: float = 0.95, interval: str = "t") -> pd.DataFrame:
    """Mean score and accuracy per (dataset, setup, protocol, method, level, fraction) over seeds, with
    intervals across seeds (analysis.stats.seed_ci, clipped to the quantity's range; none below 3
    seeds), and the retrain leak diagnostics (accuracy on the base model's errors, agreement with the
    base model) beside them."""
    s = scored(df)   # one row per seed: the raw map counts once
    cols = RESULT_KEYS + ["n_seeds", "score", "score_ci_low", "score_ci_high", "accuracy", "acc_ci_low",
                          "acc_ci_high", "base_accuracy", "accuracy_base_wrong", "agreement_base"]
    if s.empty:
        return pd.DataFrame(columns=cols)
    groups = s.groupby(RESULT_KEYS, dropna=False, sort=False)
    codes = groups.ngroup().to_numpy()
    table = groups.size().reset_index()[RESULT_KEYS]   # sort=False: rows in the order of the codes
    table["n_seeds"] = groups["seed"].nunique().to_numpy()
    for name, column, bounds in (("score", "score", SCORE_BOUNDS), ("acc", "accuracy", (0.0, 1.0))):
        mean, low, high, _ = seed_ci_groups(s[column].to_numpy(float), codes, level, interval, bounds)
        table["score" if name == "score" else "accuracy"] = mean
        table[f"{name}_ci_low"], table[f"{name}_ci_high"] = low, high
    for column in ("base_accuracy", "accuracy_base_wrong", "agreement_base"):
        table[column] = groups[column].mean().to_numpy() if column in s else np.nan
    return _sorted_by_level(table[cols], s, ["dataset", "setup", "protocol", "attribution", "level", "fraction"])


def _curve_points(text) -> list:
    try:
        points = json.loads(text) if isinstance(text, str) else []
        return [(float(f), float(a)) for f, a in points]
    except (ValueError, TypeError):
        return []


def curve_table(df: pd.DataFrame, level: float = 0.95, interval: str = "t") -> pd.DataFrame:
    """Full accuracy curves of curve protocols (mif/lif ``curve_json``), averaged over seeds: the same
    columns as protocol_results, with ``fraction`` the curve's grid point. Every row of one map set
    carries the same curve, so each (cell, seed) counts once."""
    s = scored(df)
    cols = RESULT_KEYS + ["n_seeds", "accuracy", "acc_ci_low", "acc_ci_high"]
    if s.empty or not s["curve_json"].notna().any():
        return pd.DataFrame(columns=cols)
    keys = [k for k in RESULT_KEYS if k != "fraction"]
    one = s[s["curve_json"].notna()].drop_duplicates(keys + ["seed"])
    points = [{**{k: getattr(r, k) for k in keys}, "seed": r.seed, "fraction": f, "accuracy": a}
              for r in one.itertuples() for f, a in _curve_points(r.curve_json)]
    if not points:
        return pd.DataFrame(columns=cols)
    rows = []
    for k, cell in pd.DataFrame(points).groupby(keys + ["fraction"], dropna=False, sort=False):
        acc, low, high = seed_ci(cell["accuracy"], level, interval, (0.0, 1.0))
        rows.append({**dict(zip(keys + ["fraction"], k)), "n_seeds": int(cell["seed"].nunique()), "accuracy": acc,
                     "acc_ci_low": low, "acc_ci_high": high})
    return _sorted_by_level(pd.DataFrame(rows, columns=cols), s, ["dataset", "setup", "protocol", "attribution",
                                                                  "level", "fraction"])


def leakage_table(df: pd.DataFrame, results: pd.DataFrame | None = None, level: float = 0.95) -> pd.DataFrame:
    """Accuracy of a classifier given only the binary mask, per (dataset, setup, method, level,
    fraction), next to the mean score of every scored protocol for the same cell (``score_<protocol>``).

    ``leaks`` is true where the mask alone predicts the label well above chance: the mean margin over
    chance is at least LEAKAGE_MARGIN and, in every seed, the Wilson lower bound of that seed's probe
    accuracy (over its n_test test images) lies above chance (``wilson_low`` is the smallest of them).
    Seeds are never summed into one interval: their probes are tested on the same images. There a
    removal score measures the mask's shape rather than the information removed.
    """
    keys = ["dataset", "setup", "attribution", "level", "fraction"]
    cols = keys + ["n_seeds", "leakage_accuracy", "chance_accuracy", "margin", "wilson_low", "leaks"]
    if df.empty or not np.isfinite(df["leakage_accuracy"].astype(float)).any():
        return pd.DataFrame(columns=cols)
    rows = df[np.isfinite(df["leakage_accuracy"].astype(float))]
    # one value per seed: identity and gaussian sigma=0 of the same maps are one probe
    per_seed = (rows.groupby(keys + ["seed"], dropna=False, as_index=False)
                .agg(leakage_accuracy=("leakage_accuracy", "mean"), chance_accuracy=("chance_accuracy", "mean"),
                     n_test=("n_test", "min")))
    n_test = per_seed["n_test"].where(per_seed["n_test"] > 0).to_numpy(float)
    per_seed["wilson_low"], _ = wilson_ci(np.round(per_seed["leakage_accuracy"].to_numpy(float) * n_test), n_test,
                                          level)
    # without a test-set size the interval is unknown; the margin alone decides
    per_seed["_above"] = np.where(np.isfinite(per_seed["wilson_low"]),
                                  per_seed["wilson_low"] > per_seed["chance_accuracy"], True)
    t = (per_seed.groupby(keys, dropna=False, as_index=False)
         .agg(n_seeds=("seed", "nunique"), leakage_accuracy=("leakage_accuracy", "mean"),
              chance_accuracy=("chance_accuracy", "mean"), wilson_low=("wilson_low", "min"),
              _above=("_above", "all")))
    t["margin"] = t["leakage_accuracy"] - t["chance_accuracy"]
    t["leaks"] = (t["margin"] >= LEAKAGE_MARGIN) & t["_above"]
    t = t[cols]
    results = protocol_results(df) if results is None else results
    if not results.empty:
        scores = results.pivot_table(index=keys, columns="protocol", values="score", aggfunc="mean", dropna=False)
        scores = scores[[p for p in protocol_order(scores.columns)]]
        scores.columns = [f"score_{p}" for p in scores.columns]
        t = t.merge(scores.reset_index(), on=keys, how="left")
    return _sorted_by_level(t, df, keys)


def sanity_table(df: pd.DataFrame) -> pd.DataFrame:
    """Model-randomisation check per (dataset, method): mean rank correlation and SSIM between maps of
    the trained and the randomised model, share of passing rows, and a verdict. A method whose maps do
    not change when the model's weights are randomised does not explain the model: 'FAIL'.
    ``randomised_score`` is the mean score of rows of the sanity protocol that carry an accuracy drop
    (the ROAR score of maps from the randomised model), when recorded."""
    keys = ["dataset", "setup", "attribution"]
    cols = keys + ["n", "rank_corr", "ssim", "share_passed", "verdict", "randomised_accuracy_drop"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    has = df["sanity_passed"].notna() | np.isfinite(df["sanity_rank_corr"].astype(float))
    rows = df[has]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    passed = rows["sanity_passed"].map(lambda v: np.nan if v is None or v is pd.NA or v != v else float(bool(v)))
    t = (rows.assign(_passed=passed.astype(float))
         .groupby(keys, dropna=False, as_index=False)
         .agg(n=("sanity_rank_corr", "size"), rank_corr=("sanity_rank_corr", "mean"), ssim=("sanity_ssim", "mean"),
              share_passed=("_passed", "mean"), randomised_accuracy_drop=("accuracy_drop", "mean")))
    t["verdict"] = np.where(t["share_passed"].isna(), "unknown", np.where(t["share_passed"] >= 0.5, "pass", "FAIL"))
    return t[cols].sort_values(keys).reset_index(drop=True)


def fidelity_table(df: pd.DataFrame, level: float = 0.95, interval: str = "t") -> pd.DataFrame:
    """Fidelity = AUC(LIF) - AUC(MIF) (higher = better) per (dataset, setup, method, level) over seeds."""
    keys = ["dataset", "setup", "attribution", "level"]
    cols = keys + ["n_seeds", "fidelity", "ci_low", "ci_high"]
    if df.empty or not np.isfinite(df["fidelity"].astype(float)).any():
        return pd.DataFrame(columns=cols)
    rows = df[np.isfinite(df["fidelity"].astype(float))]
    out = []
    for k, cell in rows.groupby(keys, dropna=False, sort=True):
        # mif and lif rows of one seed carry the same fidelity: one value per seed
        per_seed = cell.groupby("seed")["fidelity"].mean()
        mean, low, high = seed_ci(per_seed, level, interval, SCORE_BOUNDS)
        out.append({**dict(zip(keys, k)), "n_seeds": int(per_seed.size), "fidelity": mean, "ci_low": low,
                    "ci_high": high})
    return _sorted_by_level(pd.DataFrame(out, columns=cols), df, keys)


def row_counts(df: pd.DataFrame, failed: pd.DataFrame) -> pd.DataFrame:
    """Rows per (dataset, protocol): successful, failed, methods, levels, fractions, seeds."""
    cols = ["dataset", "protocol", "ok", "failed", "methods", "levels", "fractions", "seeds"]
    if df.empty and failed.empty:
        return pd.DataFrame(columns=cols)
    ok = (df.groupby(["dataset", "protocol"], dropna=False)
          .agg(ok=("trial_id", "size"), methods=("attribution", "nunique"), levels=("level", "nunique"),
               fractions=("fraction", "nunique"), seeds=("seed", "nunique"))) if not df.empty else None
    bad = failed.groupby(["dataset", "protocol"], dropna=False).agg(failed=("trial_id", "size")) \
        if not failed.empty else None
    if ok is None:
        t = bad.assign(ok=0, methods=0, levels=0, fractions=0, seeds=0)
    elif bad is None:
        t = ok.assign(failed=0)
    else:
        t = ok.join(bad, how="outer").fillna(0)
    t = t.reset_index()
    for c in cols[2:]:
        t[c] = t[c].astype(int)
    t["_p"] = t["protocol"].map({p: i for i, p in enumerate(protocol_order(t["protocol"].dropna().unique()))})
    return t.sort_values(["dataset", "_p"]).drop(columns="_p")[cols].reset_index(drop=True)
