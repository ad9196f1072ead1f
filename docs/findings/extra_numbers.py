"""Numbers in docs/findings-fashion-mnist.md that `roar report` does not print for a one-seed run.

    .venv/bin/python docs/findings/extra_numbers.py results/paper-fmnist-cpu > docs/findings/extra_numbers.md

Reads the sweep's rows (and, for section 4, its stored attribution maps) and prints Markdown:
1. mean change of the score per protocol and post-processing with a 95% CI from a bootstrap over the 8
   methods (the 5 fractions of one method share a base model and a map set, so they are not independent;
   `roar report` gives CIs across seeds, and this run has one seed);
2. the same change for the random baseline alone, and the methods' ROAR ranks;
3. leakage: the mask-only probe's accuracy per post-processing, and how the change in leakage goes with
   the change in ROAR accuracy;
4. how many pixels threshold ('percentile') selection would remove on these maps, against top-k.
Accuracies and scores are fractions; the text shows percentage points (1 point = 0.01).
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import torch

from roar import pipeline
from roar.postprocess import postprocess_maps
from roar.protocols.context import split_index
from roar.removal import removal_mask, removed_fraction
from roar.spec import TrialSpec
from roar.storage import Store
from sweep import rows

LEVELS = {("identity", 0.0, 0): "none", ("max_filter", 0.0, 3): "max filter 3", ("gaussian", 1.0, 0): "gaussian 1"}
BOOTSTRAP_DRAWS = 10_000


def load(store: Store) -> pd.DataFrame:
    df = rows.read_all(store).to_pandas()
    df = df[df.status == "ok"].copy()
    df["level"] = [LEVELS[(p, s, f)] for p, s, f in zip(df.postprocess, df.sigma, df.filter_size)]
    return df


def paired(df: pd.DataFrame, protocol: str, column: str) -> pd.DataFrame:
    """One row per (method, fraction): `column` at each level, and the change of every level vs none."""
    wide = df[df.protocol == protocol].pivot_table(index=["attribution", "fraction"], columns="level",
                                                   values=column)
    for level in ("max filter 3", "gaussian 1"):
        wide[f"d {level}"] = wide[level] - wide["none"]
    return wide.reset_index()


def method_bootstrap(wide: pd.DataFrame, col: str, seed: int = 0) -> tuple[float, float, float]:
    """Mean of `col` over cells and a 95% percentile CI resampling whole methods (all their fractions)."""
    per_method = wide.groupby("attribution")[col].agg(["sum", "count"])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_method), size=(BOOTSTRAP_DRAWS, len(per_method)))
    sums, counts = per_method["sum"].to_numpy()[draws].sum(1), per_method["count"].to_numpy()[draws].sum(1)
    low, high = np.percentile(sums / counts, [2.5, 97.5])
    return float(wide[col].mean()), float(low), float(high)


def pts(v: float) -> str:
    return f"{100 * v:+.1f}"


def section_changes(df: pd.DataFrame) -> list[str]:
    out = ["## 1. Mean score change per post-processing (95% CI: bootstrap over the 8 methods)", "",
           "| protocol | post-processing | mean change (points) | 95% CI | cells improved |", "|---|---|---|---|---|"]
    for protocol in ("roar", "road_morf"):
        # score = accuracy drop = base accuracy - accuracy; the base model is shared, so a change of the
        # score is minus the change of the accuracy
        wide = paired(df, protocol, "accuracy")
        for level in ("gaussian 1", "max filter 3"):
            wide["score change"] = -wide[f"d {level}"]
            mean, low, high = method_bootstrap(wide, "score change")
            improved = int((wide["score change"] > 0).sum())
            out.append(f"| {protocol} | {level} | {pts(mean)} | {pts(low)} to {pts(high)} | {improved} of {len(wide)} |")
    return out + [""]


def section_random(df: pd.DataFrame) -> list[str]:
    out = ["## 2. The random baseline under ROAR", "",
           "ROAR accuracy of random maps (lower = 'better' under ROAR) and its rank among the 8 methods "
           "(1 = lowest accuracy = best ROAR score):", "",
           "| fraction | none | rank | max filter 3 | rank | gaussian 1 | rank |", "|---|---|---|---|---|---|---|"]
    roar = df[df.protocol == "roar"]
    for fraction, cell in roar.groupby("fraction"):
        parts = [f"{fraction:g}"]
        for level in ("none", "max filter 3", "gaussian 1"):
            acc = cell[cell.level == level].set_index("attribution")["accuracy"]
            parts += [f"{acc['random']:.3f}", str(int(acc.rank(method='min')['random']))]
        out.append("| " + " | ".join(parts) + " |")
    wide = paired(df, "roar", "accuracy")
    rnd = wide[wide.attribution == "random"]
    rest = wide[wide.attribution != "random"]
    for level in ("gaussian 1", "max filter 3"):
        out.append("")
        out.append(f"- {level}: ROAR score change of random maps {pts(-rnd[f'd {level}'].mean())} points "
                   f"(mean over 5 fractions), of the 7 attribution methods {pts(-rest[f'd {level}'].mean())} points.")
    return out + [""]


def section_leakage(df: pd.DataFrame) -> list[str]:
    out = ["## 3. Mask leakage", "",
           "Accuracy of a classifier trained on the binary ROAR mask alone (chance 0.11; base model "
           f"{df.base_accuracy.iloc[0]:.3f}), mean over the 7 attribution methods (random maps: mean "
           f"{df[(df.protocol == 'leakage') & (df.attribution == 'random')].leakage_accuracy.mean():.3f}):", "",
           "| fraction | none | max filter 3 | gaussian 1 |", "|---|---|---|---|"]
    leak = df[(df.protocol == "leakage") & (df.attribution != "random")]
    table = leak.pivot_table(index="fraction", columns="level", values="leakage_accuracy")
    for fraction, r in table.iterrows():
        out.append(f"| {fraction:g} | {r['none']:.3f} | {r['max filter 3']:.3f} | {r['gaussian 1']:.3f} |")
    roar = paired(df[df.attribution != "random"], "roar", "accuracy")
    leaks = paired(df[df.attribution != "random"], "leakage", "leakage_accuracy")
    both = roar.merge(leaks, on=["attribution", "fraction"], suffixes=("_roar", "_leak"))
    d_roar = np.concatenate([both[f"d {lv}_roar"] for lv in ("gaussian 1", "max filter 3")])
    d_leak = np.concatenate([both[f"d {lv}_leak"] for lv in ("gaussian 1", "max filter 3")])
    rho = pd.Series(d_roar).corr(pd.Series(d_leak), method="spearman")
    slope = np.polyfit(d_leak, d_roar, 1)[0]
    level_roar = df[(df.protocol == "roar") & (df.attribution != "random")].set_index(
        ["attribution", "fraction", "level"])["accuracy"]
    level_leak = df[(df.protocol == "leakage") & (df.attribution != "random")].set_index(
        ["attribution", "fraction", "level"])["leakage_accuracy"]
    r_levels = level_roar.corr(level_leak.reindex(level_roar.index))
    out += ["", f"- Across the 105 (method, fraction, post-processing) cells of the 7 attribution methods, ROAR "
                f"accuracy and leakage accuracy correlate with Pearson r = {r_levels:.2f}.",
            f"- Change caused by post-processing (70 cells: 7 methods x 5 fractions x 2 post-processings): "
            f"Spearman rho between the change of leakage accuracy and the change of ROAR accuracy = {rho:.2f}; "
            f"least-squares slope {slope:.2f} points of ROAR accuracy per point of leakage.", ""]
    return out


def section_selection(df: pd.DataFrame, store: Store) -> list[str]:
    out = ["## 4. Threshold ('percentile') selection on these maps", "",
           "Mean fraction of test pixels removed if the masks were chosen by a percentile threshold "
           "(the study's selection) instead of exact top-k (this run; top-k removes exactly the fraction):", "",
           "| method | post-processing | 0.1 | 0.3 | 0.5 | 0.7 | 0.9 |", "|---|---|---|---|---|---|---|"]
    config = json.loads(df.config_json.iloc[0])   # every field but the method is shared by the maps
    fractions = sorted(df.fraction.unique())
    for method in sorted(df.attribution.unique()):
        spec = TrialSpec.from_dict({**config, "attribution": method})
        raw = torch.from_numpy(np.asarray(pipeline.get_maps(spec, store)["test"], dtype=np.float32))
        index = split_index("test", raw.shape[0], "cpu")
        for (name, sigma, size), level in LEVELS.items():
            maps = postprocess_maps(raw, name, sigma=sigma, filter_size=size, seed=spec.seed, index=index)
            removed = [float(removed_fraction(removal_mask(maps, f, selection="percentile", index=index)).mean())
                       for f in fractions]
            out.append(f"| {method} | {level} | " + " | ".join(f"{r:.3f}" for r in removed) + " |")
    return out + [""]


def main(uri: str) -> None:
    store = Store(uri)
    df = load(store)
    lines = [f"# Extra numbers for {uri} ({len(df)} ok rows, code_version "
             f"{', '.join(sorted(df.code_version.unique()))})", "",
             "Generated by `docs/findings/extra_numbers.py`; see that file's docstring.", ""]
    lines += section_changes(df) + section_random(df) + section_leakage(df) + section_selection(df, store)
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/paper-fmnist-cpu")
