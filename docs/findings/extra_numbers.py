"""Numbers in docs/findings-fashion-mnist.md that `roar report` does not print.

    .venv/bin/python docs/findings/extra_numbers.py results/paper-fmnist-cpu results/paper-fmnist-cpu-leaky \
        > docs/findings/extra_numbers.md

Reads the sweeps' rows (and, for section 4, the stored attribution maps of seed 0) and prints Markdown:
1. the base model of every seed (the findings need >= 85%);
2. the random baseline under ROAR: its accuracy and rank per fraction and post-processing, and its score
   change from post-processing against the 7 attribution methods';
3. the label leak: ROAR at fraction 0.5 with `target: label_leaky` (test-split maps from the test labels)
   beside the same cells with `target: predicted`, with the leak columns of every row;
4. how many pixels threshold ('percentile') selection would remove on these maps, against top-k.
Every interval is a 95% Student-t interval of the mean across seeds (base model, maps and retrain are
redrawn per seed); a mean over cells is taken within each seed first. With fewer than 3 seeds no
interval is printed. Accuracies are fractions; changes are percentage points (1 point = 0.01).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import torch

from analysis.stats import seed_ci
from roar import pipeline
from roar.attribution import ATTRIBUTIONS
from roar.postprocess import postprocess_maps
from roar.protocols.context import split_index
from roar.removal import removal_mask, removed_fraction
from roar.spec import TrialSpec
from roar.storage import Store
from sweep import rows

LEVELS = {("identity", 0.0, 0): "none", ("max_filter", 0.0, 3): "max filter 3", ("gaussian", 1.0, 0): "gaussian 1"}
POST = ("max filter 3", "gaussian 1")


def load(store: Store) -> pd.DataFrame:
    df = rows.read_all(store).to_pandas()
    df = df[df.status == "ok"].copy()
    df["level"] = [LEVELS[(p, s, f)] for p, s, f in zip(df.postprocess, df.sigma, df.filter_size)]
    return df


def pts(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{100 * v:+.1f}"


def across_seeds(per_seed: pd.Series, scale: float = 100.0, signed: bool = True) -> str:
    """'mean (95% CI low to high)' of one value per seed, or the mean and why there is no interval."""
    mean, low, high = seed_ci(per_seed.to_numpy())
    fmt = (lambda v: f"{scale * v:+.1f}") if signed else (lambda v: f"{scale * v:.1f}")
    if not np.isfinite(low):
        return f"{fmt(mean)} (no interval: {per_seed.notna().sum()} seed(s))"
    return f"{fmt(mean)} (95% CI {fmt(low)} to {fmt(high)})"


def paired(df: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """One row per (seed, method, fraction): accuracy at each level and each level's change vs none."""
    wide = df[df.protocol == protocol].pivot_table(index=["seed", "attribution", "fraction"], columns="level",
                                                   values="accuracy")
    for level in POST:
        wide[f"d {level}"] = wide[level] - wide["none"]
    return wide.reset_index()


def section_base(df: pd.DataFrame) -> list[str]:
    base = df.groupby("seed")["base_accuracy"].agg(["min", "max"])
    out = ["## 1. The base model of each seed", "", "| seed | base-model test accuracy |", "|---|---|"]
    out += [f"| {seed} | {r['min']:.3f} |" for seed, r in base.iterrows()]
    assert (base["min"] == base["max"]).all(), "one base model per seed"
    return out + [""]


def section_random(df: pd.DataFrame) -> list[str]:
    out = ["## 2. The random baseline under ROAR", "",
           "ROAR accuracy of random maps, mean over seeds (lower = 'better' under ROAR), and its mean rank "
           f"among the {df.attribution.nunique()} methods (1 = lowest accuracy = best ROAR score; ranks within "
           "each seed):", "",
           "| fraction | none | rank | max filter 3 | rank | gaussian 1 | rank |", "|---|---|---|---|---|---|---|"]
    roar = df[df.protocol == "roar"].copy()
    roar["rank"] = roar.groupby(["seed", "fraction", "level"])["accuracy"].rank(method="min")
    rnd = roar[roar.attribution == "random"].groupby(["fraction", "level"])[["accuracy", "rank"]].mean()
    for fraction in sorted(roar.fraction.unique()):
        parts = [f"{fraction:g}"]
        for level in ("none", "max filter 3", "gaussian 1"):
            r = rnd.loc[(fraction, level)]
            parts += [f"{r['accuracy']:.3f}", f"{r['rank']:.1f}"]
        out.append("| " + " | ".join(parts) + " |")
    wide = paired(df, "roar")
    out.append("")
    for level in POST:
        # score = base accuracy - accuracy: a score change is minus the accuracy change
        change = -wide.assign(is_random=wide.attribution == "random").groupby(["is_random", "seed"])[f"d {level}"].mean()
        out.append(f"- {level}: ROAR score change of random maps {across_seeds(change.loc[True])} points, "
                   f"of the other methods {across_seeds(change.loc[False])} points "
                   f"(mean over fractions within a seed).")
    return out + [""]


def section_leak(df: pd.DataFrame, leaky: pd.DataFrame | None) -> list[str]:
    out = ["## 3. The label leak: `target: label_leaky` against `target: predicted`", ""]
    if leaky is None or leaky.empty:
        return out + ["No rows of the leak study (specs/paper-fmnist-cpu-leaky.yaml) were given.", ""]
    fraction = float(leaky.fraction.iloc[0])
    seeds = sorted(leaky.seed.unique())
    cols = ["accuracy", "accuracy_base_wrong", "agreement_base"]
    key = ["seed", "attribution", "level"]
    fair = df[(df.protocol == "roar") & (df.fraction == fraction) & df.seed.isin(seeds)].set_index(key)[cols]
    bad = leaky[leaky.protocol == "roar"].set_index(key)[cols]
    both = bad.add_suffix("_leaky").join(fair.add_suffix("_predicted"), how="inner")
    cell = both.groupby(["attribution", "level"]).mean()
    n_wrong = leaky[leaky.protocol == "roar"].groupby("seed")["n_base_wrong"].first()
    out += [f"ROAR at fraction {fraction:g}, the same {len(seeds)} seed(s) (base models and retrain seeds) in both "
            f"runs; the table shows means over seeds. `target_test` of the leak rows: "
            f"{', '.join(sorted(leaky.target_test.unique()))}; of the others: "
            f"{', '.join(sorted(df.target_test.unique()))}. `accuracy_base_wrong` is the retrained model's accuracy "
            f"on the test images the base model gets wrong ({', '.join(str(int(n)) for n in n_wrong)} images per "
            f"seed): without a leak a retrained model rarely fixes the base model's errors; reading the label "
            f"from the mask, it does.", "",
            "| method | post-processing | accuracy, predicted | accuracy, label_leaky | on base-model errors, "
            "predicted | on base-model errors, label_leaky | agreement with base, predicted | label_leaky |",
            "|---|---|---|---|---|---|---|---|"]
    for (method, level), r in cell.iterrows():
        out.append(f"| {method} | {level} | {r['accuracy_predicted']:.3f} | {r['accuracy_leaky']:.3f} | "
                   f"{r['accuracy_base_wrong_predicted']:.3f} | {r['accuracy_base_wrong_leaky']:.3f} | "
                   f"{r['agreement_base_predicted']:.3f} | {r['agreement_base_leaky']:.3f} |")
    gap = (both["accuracy_leaky"] - both["accuracy_predicted"]).rename("gap").to_frame()
    gap["gap_wrong"] = both["accuracy_base_wrong_leaky"] - both["accuracy_base_wrong_predicted"]
    # model-free maps (random, sobel) do not depend on any target: the control
    gap["random"] = [not ATTRIBUTIONS[m].uses_model for m in gap.index.get_level_values("attribution")]
    real, rnd = gap[~gap.random], gap[gap.random]
    n_real = real.groupby(["attribution", "level"]).ngroups
    cell_gap = real.groupby(["attribution", "level"])["gap"].mean()
    base = leaky.groupby("seed")["base_accuracy"].first()
    above = both[~gap.random].groupby(["attribution", "level"]).mean()
    mean_base = float(base.mean())
    out += ["", f"- The leak raises ROAR accuracy by {across_seeds(real.groupby('seed')['gap'].mean())} points "
                f"(mean over the {n_real} cells of the model-based methods within a seed; per cell "
                f"{pts(cell_gap.min())} to {pts(cell_gap.max())}), and accuracy on the base model's errors by "
                f"{across_seeds(real.groupby('seed')['gap_wrong'].mean())} points.",
            f"- With the leak, {int((above['accuracy_leaky'] > mean_base).sum())} of {n_real} cells score above the "
            f"base model (mean {mean_base:.3f}) after removing half of every image's pixels; without it, "
            f"{int((above['accuracy_predicted'] > mean_base).sum())}.",
            f"- Model-free maps ({', '.join(sorted(set(rnd.index.get_level_values('attribution'))))}) do not "
            f"depend on the target: their ROAR accuracy changes by {across_seeds(rnd.groupby('seed')['gap'].mean())}"
            f" points between the runs, so the gap above is in the maps, not the pipeline.", ""]
    return out


def section_selection(df: pd.DataFrame, store: Store) -> list[str]:
    out = ["## 4. Threshold ('percentile') selection on these maps (seed 0)", "",
           "Mean fraction of test pixels removed if the masks were chosen by a percentile threshold "
           "(the study's selection) instead of exact top-k (this run; top-k removes exactly the fraction):", "",
           "| method | post-processing | 0.1 | 0.3 | 0.5 | 0.7 | 0.9 |", "|---|---|---|---|---|---|---|"]
    first = df[df.seed == df.seed.min()]
    config = json.loads(first.config_json.iloc[0])   # every field but the method is shared by the maps
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


def main(uri: str, leaky_uri: str | None = None) -> None:
    store = Store(uri)
    df = load(store)
    leaky = load(Store(leaky_uri)) if leaky_uri and os.path.exists(leaky_uri) else None
    versions = sorted(set(df.code_version) | (set(leaky.code_version) if leaky is not None else set()))
    lines = [f"# Extra numbers for {uri}" + (f" and {leaky_uri}" if leaky is not None else "")
             + f" ({len(df)}" + (f" + {len(leaky)}" if leaky is not None else "")
             + f" ok rows, code_version {', '.join(versions)})", "",
             "Generated by `docs/findings/extra_numbers.py`; see that file's docstring.", ""]
    lines += section_base(df) + section_random(df) + section_leak(df, leaky) + section_selection(df, store)
    print("\n".join(lines))


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) > 1 else ["results/paper-fmnist-cpu"]))
