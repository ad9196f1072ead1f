"""The findings in plain words: sentences built from an Analysis, for summary.md, the HTML report and
the CLI. Scores are fractions; sentences give changes in percentage points (1 point = 0.01).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import formatting as fmt
from .compute import Analysis
from .contract import POSTPROCESS_FACTS
from .rankings import TAU_TOL
from .scoring import PROTOCOL_SCORES, protocol_name, protocol_order, scored
from .leaks import LABEL_LEAK_MARGIN, leak_warning
from .stats import INTERVAL_DESCRIPTIONS, MIN_SEEDS_FOR_INTERVAL

LEAKAGE_SENTENCE = ("Where a classifier given only the mask predicts the label well above chance, a ROAR "
                    "score measures the mask's shape rather than the information removed.")
MEASURE_UNITS = {"blur_spectral_centroid": "cycles/pixel", "blur_total_variation": "normalised map units",
                 "blur_hf_energy": "share of spectral energy"}
# Smallest number of seeds whose exact two-sided Wilcoxon/sign test can give p < 0.05 (2 / 2**6).
MIN_SEEDS_FOR_TEST = 6
FAMILY_NAMES = {name: f.title for name, f in POSTPROCESS_FACTS.items() if f.title}


def _pts(v: float) -> str:
    return fmt.points(v)


def _ci_pts(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no interval"
    return f"95% CI {_pts(low)} to {_pts(high)} points"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%" if np.isfinite(v) else "n/a"


def _verdict(low: float, high: float, up: str, down: str, none: str) -> str:
    if np.isfinite(low) and low > 0:
        return up
    if np.isfinite(high) and high < 0:
        return down
    return none


def _where(a: Analysis, dataset, setup) -> str:
    """' on <dataset> (<setup>)' when the rows hold more than one dataset or setup, else ''."""
    df = a.results.ok
    parts = []
    if not df.empty and df["dataset"].nunique() > 1:
        parts.append(f" on {dataset}")
    if not df.empty and df["setup"].nunique() > 1:
        parts.append(f" ({setup})")
    return "".join(parts)


def data_sentence(a: Analysis) -> str:
    r, df = a.results, a.results.ok
    if df.empty:
        return (f"No successful result rows were found in {r.source or 'the input'} "
                f"({len(r.failed)} failed rows, {len(r.skipped)} unreadable files skipped).")
    protocols = ", ".join(protocol_name(p) for p in protocol_order(df["protocol"].unique()))
    return (f"Analysed {len(df)} successful result rows ({len(r.failed)} failed trials, {len(r.skipped)} unreadable "
            f"files skipped, {r.n_duplicates} duplicates dropped) from {r.source or 'memory'}: "
            f"{df['dataset'].nunique()} dataset(s), {df['attribution'].nunique()} methods, protocols {protocols}, "
            f"{df['level'].nunique()} post-processing levels, {df['seed'].nunique()} seed"
            f"{'s' if df['seed'].nunique() != 1 else ''}.")


def seed_counts(a: Analysis) -> tuple[int, int]:
    """(fewest, most) seeds of any (dataset, setup, protocol) among the scored rows."""
    s = scored(a.results.ok)
    if s.empty:
        return 0, 0
    n = s.groupby(["dataset", "setup", "protocol"], dropna=False)["seed"].nunique()
    return int(n.min()), int(n.max())


def no_interval_reason(n_seeds: int) -> str:
    return (f"with {n_seeds} seed{'s' if n_seeds != 1 else ''} no interval across seeds exists: the rows of one "
            f"seed share its base models and maps, so they are one replicate, and an interval needs at least "
            f"{MIN_SEEDS_FOR_INTERVAL} seeds")


def interval_sentence(a: Analysis) -> str:
    """How the intervals were computed, or why there are none."""
    low, high = seed_counts(a)
    if high == 0:
        return ""
    method = INTERVAL_DESCRIPTIONS[a.interval]
    if high < MIN_SEEDS_FOR_INTERVAL:
        return (f"Uncertainty: {no_interval_reason(high)}. The numbers are effect sizes of {high} replicate"
                f"{'s' if high != 1 else ''}, not estimates with an interval; run more seeds for one.")
    few = (f" Settings with fewer than {MIN_SEEDS_FOR_INTERVAL} seeds (here as few as {low}) show no interval."
           if low < MIN_SEEDS_FOR_INTERVAL else "")
    return (f"Uncertainty: intervals are {100 * a.level:.0f}% {method}, over {low if low == high else f'{low}–{high}'}"
            f" seeds, clipped to the range of the quantity (accuracies 0–100%).{few}")


def effect_sentences(a: Analysis, only: str | None = None) -> list[str]:
    """One sentence per (dataset, setup, protocol, post-processing family); `only` keeps one protocol."""
    share, overall = a.table("improvement_share"), a.table("overall_change")
    if share.empty:
        return []
    out = []
    keys = ["dataset", "setup", "protocol", "family"]
    merged = share.merge(overall, on=keys, how="left", suffixes=("", "_mean"))
    for protocol in protocol_order(merged["protocol"].unique()):
        if only is not None and protocol != only:
            continue
        for r in merged[merged["protocol"] == protocol].itertuples():
            name = FAMILY_NAMES.get(r.family, f"Post-processing '{r.family}'")
            where = _where(a, r.dataset, r.setup)
            n = int(r.n_seeds_mean) if np.isfinite(r.n_seeds_mean) else int(r.n_seeds)
            cells = f"{r.n_improved} of {r.n_cells} (method, fraction, level) cells ({_pct(r.share_improved)}"
            if n < MIN_SEEDS_FOR_INTERVAL:
                out.append(f"{name} changed the {protocol_name(protocol)} score{where} by {_pts(r.mean_diff)} points "
                           f"on average and raised it in {cells}), in {n} seed{'s' if n != 1 else ''} "
                           f"({r.n_pairs} paired rows). This is an effect size, not evidence of an effect: "
                           f"{no_interval_reason(n)}.")
                continue
            verb = _verdict(r.ci_low_mean, r.ci_high_mean, "improved", "worsened", "did not detectably change")
            share_ci = (f"; 95% CI of the per-seed share {_pct(r.ci_low)}–{_pct(r.ci_high)}"
                        if np.isfinite(r.ci_low) else "")
            out.append(
                f"{name} {verb} the {protocol_name(protocol)} score{where}: it raised the score in {cells}"
                f"{share_ci}); the mean change was {_pts(r.mean_diff)} points ({_ci_pts(r.ci_low_mean, r.ci_high_mean)}"
                f" across {n} seeds, {r.n_pairs} paired rows); {r.n_sig_better} cells were significantly better and "
                f"{r.n_sig_worse} significantly worse after Holm correction"
                + (f" (with {n} seeds no single cell can reach p < 0.05 in a paired test across seeds; the "
                   f"interval of the mean change is the evidence)." if n < MIN_SEEDS_FOR_TEST else "."))
    return out


def association_sentences(a: Analysis, only: str | None = None) -> list[str]:
    ols, spear, mixed = a.table("ols"), a.table("spearman"), a.table("mixed")
    if ols.empty:
        return ["No blurriness measures were recorded, so the association of blurriness and score was not fitted."]
    out = []
    unit = MEASURE_UNITS.get(a.measure, "units")
    many_setups = ols["setup"].nunique() > 1
    for r in ols.itertuples():
        if only is not None and r.protocol != only:
            continue
        name = protocol_name(r.protocol) + (f" ({r.setup})" if many_setups else "")
        if not np.isfinite(r.slope):
            out.append(f"The {name} association could not be fitted: {r.error}.")
            continue
        sd = f"one standard deviation more blurriness ({r.measure}, 1 SD = {r.sd_blurriness:.3g} {unit})"
        fit = (f"OLS adjusted for method, fraction and dataset, fitted per seed; n = {r.n_rows} rows, "
               f"mean R² = {r.r2:.2f}")
        if np.isfinite(r.ci_low):
            verb = _verdict(r.ci_low, r.ci_high, "Blurrier maps score higher under",
                            "Blurrier maps score lower under", "Blurriness does not detectably predict the score under")
            text = (f"{verb} {name}: {sd} goes with {_pts(r.slope_per_sd)} points of score "
                    f"({_ci_pts(r.ci_low_per_sd, r.ci_high_per_sd)} across {r.n_seeds} seeds' slopes; {fit}).")
        else:
            text = (f"Under {name}, {sd} goes with {_pts(r.slope_per_sd)} points of score ({fit}); "
                    f"{no_interval_reason(int(r.n_seeds))}.")
        m = mixed[(mixed["protocol"] == r.protocol) & (mixed["setup"] == r.setup)] if not mixed.empty else mixed
        if not m.empty and np.isfinite(m["slope"].iloc[0]):
            text += (f" A mixed model with a random intercept per method × dataset gives "
                     f"{_pts(m['slope'].iloc[0] * r.sd_blurriness)} points per SD (a point estimate).")
        sp = spear[(spear["protocol"] == r.protocol) & (spear["measure"] == r.measure) & (spear["setup"] == r.setup)] \
            if not spear.empty else spear
        sp = sp[np.isfinite(sp["rho"].astype(float))] if not sp.empty else sp
        if not sp.empty:
            with_ci = sp[np.isfinite(sp["ci_low"].astype(float))]
            excl = (f"; its seed-bootstrap CI excludes 0 in {int(((with_ci['ci_low'] > 0) | (with_ci['ci_high'] < 0)).sum())}"
                    f" of {len(with_ci)} cells" if not with_ci.empty else "")
            text += (f" Within (dataset, fraction) cells, Spearman rho between blurriness and score has median "
                     f"{sp['rho'].median():.2f} (range {sp['rho'].min():.2f} to {sp['rho'].max():.2f} over {len(sp)} "
                     f"cells{excl}; rho pools the methods, so differences between methods enter it, while the "
                     f"regression slope is within method).")
        out.append(text)
    return out


def _groups(t: pd.DataFrame, a: Analysis):
    """(where-suffix, rows) per (dataset, setup) of a table: sentences never pool setups."""
    for (dataset, setup), part in t.groupby(["dataset", "setup"], dropna=False, sort=True):
        yield _where(a, dataset, setup), part


def ranking_sentences(a: Analysis, only: str | None = None) -> list[str]:
    out = []
    tau = a.table("tau_levels")
    for where, part in (_groups(tau, a) if not tau.empty else []):
        for protocol in protocol_order(part["protocol"].unique()):
            if only is not None and protocol != only:
                continue
            t = part[(part["protocol"] == protocol) & np.isfinite(part["tau"].astype(float))]
            if t.empty:
                continue
            changed = int((t["tau"] < 1 - TAU_TOL).sum())
            out.append(f"Post-processing changed the {protocol_name(protocol)} method ranking{where} in {changed} of "
                       f"{len(t)} (fraction, level) settings (Kendall tau vs. the raw maps: median "
                       f"{t['tau'].median():.2f}, minimum {t['tau'].min():.2f}).")
    w = a.table("w_fractions")
    for where, part in (_groups(w, a) if not w.empty else []):
        raw = part[part["level"] == "identity"]
        for protocol in protocol_order(raw["protocol"].unique()):
            if only is not None and protocol != only:
                continue
            v = raw[raw["protocol"] == protocol]["W"].astype(float)
            if np.isfinite(v).any():
                out.append(f"Across removal fractions the raw-map {protocol_name(protocol)} rankings{where} agree "
                           f"with Kendall W = {v.median():.2f} (1 = the same order at every fraction).")
    return out


def agreement_sentences(a: Analysis) -> list[str]:
    t = a.table("tau_protocols")
    if t.empty:
        return []
    out = []
    for where, part in _groups(t, a):
        raw = part[(part["level"] == "identity") & (part["fraction"] == "all")]
        raw = raw if not raw.empty else part[part["fraction"] == "all"]
        for (pa_, pb), pair in raw.groupby(["protocol_a", "protocol_b"], sort=False):
            v = pair["tau"].astype(float)
            if np.isfinite(v).any():
                out.append(f"On the raw maps{where}, {protocol_name(pa_)} and {protocol_name(pb)} order the methods "
                           f"with Kendall tau = {v.median():.2f} (mean score over fractions, "
                           f"{int(pair['n_methods'].max())} methods).")
    return out


def label_leak_sentences(a: Analysis) -> list[str]:
    """The retrain leak check (analysis.leaks): cells whose accuracy on the base model's errors is far
    above the random maps'."""
    t = a.table("label_leaks")
    if t.empty:
        return []
    rule = (f"at least {100 * LABEL_LEAK_MARGIN:.0f} points above the random maps' on the same images and "
            f"their 95% Wilson intervals apart in every seed")
    flagged = t[t["flagged"].astype(bool)]
    if flagged.empty:
        top = t.loc[t["excess"].astype(float).idxmax()] if t["excess"].notna().any() else None
        tail = (f" (largest excess {_pts(top['excess'])} points, {top['attribution']})" if top is not None else "")
        return [f"Leak check: in no retrain cell was the retrained model's accuracy on the test images the base model "
                f"got wrong far above the random maps' ({rule}){tail}: no sign that the masks carry the test label."]
    methods = ", ".join(sorted(flagged["attribution"].unique()))
    return [f"Leak check: in {len(flagged)} of {len(t)} retrain cells the retrained model's accuracy on the test "
            f"images the base model got wrong is far above the random maps' ({rule}; up to "
            f"{fmt.percent(flagged['accuracy_base_wrong'].max())} vs {fmt.percent(flagged['random_accuracy_base_wrong'].min())}"
            f"; methods: {methods}). There the masks carry the test label, and the score measures that leak."]


def leakage_sentences(a: Analysis) -> list[str]:
    t = a.table("leakage")
    if t.empty:
        return []
    leaking = t[t["leaks"].astype(bool)]
    if leaking.empty:
        tail = (f"No mask predicted the label well above chance (highest mask-only accuracy "
                f"{fmt.percent(t['leakage_accuracy'].max())} vs chance {fmt.percent(t['chance_accuracy'].mean())}).")
    else:
        methods = ", ".join(sorted(leaking["attribution"].unique()))
        tail = (f"That was the case in {len(leaking)} of {len(t)} (method, post-processing, fraction) cells "
                f"(mask-only accuracy up to {fmt.percent(leaking['leakage_accuracy'].max())} vs chance "
                f"{fmt.percent(leaking['chance_accuracy'].mean())}; methods: {methods}); their scores should not be "
                f"read as information removed.")
    return [LEAKAGE_SENTENCE + " " + tail]


def sanity_sentences(a: Analysis) -> list[str]:
    t = a.table("sanity")
    if t.empty:
        return []
    failing = sorted(t.loc[t["verdict"] == "FAIL", "attribution"].unique())
    if not failing:
        return [f"All {t['attribution'].nunique()} methods pass the model-randomisation sanity check."]
    return [f"Sanity check: {len(failing)} of {t['attribution'].nunique()} methods fail the model-randomisation check "
            f"({', '.join(failing)}): their maps barely change when the model's weights are randomised, so their "
            f"benchmark scores say nothing about the model."]


def gaming_sentences(a: Analysis) -> list[str]:
    g, gr = a.table("gaming"), a.table("gaming_rankings")
    if g.empty:
        return []
    out = []
    for r in g.itertuples():
        if not np.isfinite(r.raw_score):
            out.append(f"Search on {r.attribution} ({protocol_name(r.protocol)}, fraction {r.fraction:g}): best "
                       f"transform '{r.best_level}' scores {_pts(r.best_score)} points; no raw-map score to compare "
                       f"with.")
            continue
        out.append(f"The best information-free transform for {r.attribution} ({protocol_name(r.protocol)}, fraction "
                   f"{r.fraction:g}, {r.dataset}) is '{r.best_level}': score {_pts(r.best_score)} vs {_pts(r.raw_score)} "
                   f"points for the raw map ({_pts(r.gain)} points, best of {r.n_transforms} transforms).")
    for r in gr.itertuples():
        verb = "changes" if r.ranking_changed else "does not change"
        out.append(f"Gaming {verb} the {protocol_name(r.protocol)} ranking at fraction {r.fraction:g} on {r.dataset} "
                   f"(Kendall tau raw vs gamed = {r.tau:.2f}): raw {r.raw_order}; gamed {r.gamed_order}.")
    return out


def lead_protocol(a: Analysis) -> str | None:
    """ROAR when present, else the first scored protocol: the one the headline is about."""
    df = a.results.ok
    scored_protocols = [p for p in protocol_order(df["protocol"].unique()) if p in PROTOCOL_SCORES] \
        if not df.empty else []
    return "roar" if "roar" in scored_protocols else (scored_protocols[0] if scored_protocols else None)


def key_sentences(a: Analysis) -> list[str]:
    """The sentences the CLI prints: the leaky-target warning, data, how sure we are, the effect on ROAR
    (or the first scored protocol), the association, ranking stability, leak check, leakage and gaming
    headlines."""
    warning = leak_warning(a.results.ok, a.table("label_leaks")) if not a.results.ok.empty else ""
    out = ([f"WARNING: {warning}"] if warning else []) + [data_sentence(a)]
    if a.results.ok.empty:
        return out
    out.append(interval_sentence(a))
    lead = lead_protocol(a)
    if lead is not None:
        out += effect_sentences(a, lead) + association_sentences(a, lead) + ranking_sentences(a, lead)[:1]
    out += label_leak_sentences(a) + leakage_sentences(a) + sanity_sentences(a)
    gr = gaming_sentences(a)
    out += [s for s in gr if s.startswith("Gaming")] or gr[:1]
    return out


def sentence_table(sentences: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"finding": sentences})
