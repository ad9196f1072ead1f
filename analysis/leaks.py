"""Does a retrained model read the test label from the holes? The label-leak check of retrain rows.

Every ROAR/KAR row records ``accuracy_base_wrong``: the retrained model's accuracy on the test images the
base model misclassified. When no test input depends on a test label, the masks carry at most what the
base model knew, so a method cannot beat random maps there by much. Maps of the test split computed from
the true labels (target 'label_leaky') put the label into the holes, and accuracy_base_wrong jumps.

Rule ("far above"), per (dataset, setup, protocol, method, level, fraction): the mean excess over the
random-map row at the same (dataset, setup, protocol, level, fraction, seed) is at least
LABEL_LEAK_MARGIN, and in every seed the two 95% Wilson intervals over that seed's n_base_wrong images do
not overlap. The random maps' row at the same post-processing level is the reference; where random maps
were not run at that level, their raw-map row. Random maps ignore the model and the target, so they set
the floor that an honest mask can reach on those images.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .scoring import REFERENCE_LEVEL, scored
from .stats import wilson_ci

LABEL_LEAK_MARGIN = 0.10               # accuracy fraction (10 points) above the random maps
RETRAIN_PROTOCOLS = ("roar", "kar")    # protocols whose rows carry the leak diagnostics
REFERENCE_METHODS = ("random",)        # maps that use neither the model nor the target
KEYS = ["dataset", "setup", "protocol", "attribution", "level", "fraction"]
MATCH = ["dataset", "setup", "protocol", "fraction", "seed"]
COLUMNS = KEYS + ["n_seeds", "score", "accuracy_base_wrong", "agreement_base", "n_base_wrong",
                  "random_accuracy_base_wrong", "excess", "separated_seeds", "flagged"]


def _with_wilson(rows: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    n = rows[prefix + "n_base_wrong"].astype(float).where(rows[prefix + "n_base_wrong"] > 0).to_numpy(float)
    k = np.round(rows[prefix + "accuracy_base_wrong"].to_numpy(float) * n)
    low, high = wilson_ci(k, n)
    return rows.assign(**{prefix + "low": low, prefix + "high": high})


def label_leak_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per retrain cell with accuracy_base_wrong, agreement_base, the random maps' accuracy on the
    same images, the excess over it and ``flagged`` (see the module docstring for the rule). Empty when
    no row carries the diagnostics."""
    s = scored(df)
    if s.empty or "accuracy_base_wrong" not in s:
        return pd.DataFrame(columns=COLUMNS)
    s = s[s["protocol"].isin(RETRAIN_PROTOCOLS) & np.isfinite(s["accuracy_base_wrong"].astype(float))]
    if s.empty:
        return pd.DataFrame(columns=COLUMNS)
    s = _with_wilson(s)
    ref = s[s["attribution"].isin(REFERENCE_METHODS)]
    ref = ref.groupby(MATCH + ["level"], dropna=False, as_index=False).agg(
        r_accuracy_base_wrong=("accuracy_base_wrong", "mean"), r_n_base_wrong=("n_base_wrong", "min"))
    same_level = s.merge(ref, on=MATCH + ["level"], how="left")
    raw = ref[ref["level"] == REFERENCE_LEVEL].drop(columns="level")
    fallback = s[MATCH].merge(raw, on=MATCH, how="left")
    for c in ("r_accuracy_base_wrong", "r_n_base_wrong"):   # no random row at this level: its raw-map row
        same_level[c] = same_level[c].where(same_level[c].notna(), fallback[c].to_numpy())
    m = _with_wilson(same_level, "r_")
    m["excess"] = m["accuracy_base_wrong"] - m["r_accuracy_base_wrong"]
    m["separated"] = m["low"] > m["r_high"]
    m["has_ref"] = m["r_accuracy_base_wrong"].notna()
    t = (m.groupby(KEYS, dropna=False, sort=False)
         .agg(n_seeds=("seed", "nunique"), score=("score", "mean"), accuracy_base_wrong=("accuracy_base_wrong", "mean"),
              agreement_base=("agreement_base", "mean"), n_base_wrong=("n_base_wrong", "mean"),
              random_accuracy_base_wrong=("r_accuracy_base_wrong", "mean"), excess=("excess", "mean"),
              separated_seeds=("separated", "sum"), _all=("separated", "all"), _ref=("has_ref", "all"))
         .reset_index())
    t["flagged"] = (t["_ref"] & t["_all"] & (t["excess"] >= LABEL_LEAK_MARGIN)
                    & ~t["attribution"].isin(REFERENCE_METHODS))
    return t[COLUMNS]


def leaky_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose test-split inputs depended on the test labels (target_test 'label' or target
    'label_leaky'): their scores can measure the leaked label, not the removed information."""
    if df.empty:
        return df
    hit = pd.Series(False, index=df.index)
    if "target_test" in df:
        hit |= df["target_test"].astype(object).eq("label")
    if "target" in df:
        hit |= df["target"].astype(object).eq("label_leaky")
    return df[hit]


def legacy_label_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of a store written before the per-split targets were recorded (no row has target_test) that
    asked for target 'label': the code of that time computed the test split's maps from the test labels."""
    if df.empty or "target" not in df or ("target_test" in df and df["target_test"].notna().any()):
        return df.iloc[0:0]
    return df[df["target"].astype(object).eq("label")]


def leak_warning(df: pd.DataFrame, table: pd.DataFrame | None = None) -> str:
    """The report's opening warning when any row used the leaky target, else ''."""
    rows = leaky_rows(df)
    if rows.empty:
        legacy = legacy_label_rows(df)
        if legacy.empty:
            return ""
        return (f"{len(legacy)} of {len(df)} rows used target 'label' and were written before the target of each "
                f"split was recorded; the code of that time computed the test split's maps from the test labels "
                f"(now target 'label_leaky'), so their scores can measure the leaked label rather than the "
                f"information removed. Rerun them with target 'predicted'.")
    table = label_leak_table(df) if table is None else table
    flagged = int(table["flagged"].sum()) if not table.empty else 0
    setups = sorted(rows["setup"].astype(str).unique()) if "setup" in rows else []
    where = f" (setup {', '.join(setups)})" if setups and setups != ["all"] else ""
    return (f"{len(rows)} of {len(df)} rows{where} used target 'label_leaky': the test split's maps were computed "
            f"from the test labels, so the masks can carry the label and a retrained model can read it from the "
            f"holes. Their scores measure that leak, not the information removed; do not rank methods by them. "
            f"{flagged} retrain cells have an accuracy on the base model's errors far above the random maps'.")
