"""The three figures of the report's first screen, also used by docs/findings (``write_figures``):

(a) ``effect_forest``: the paired effect of each post-processing on the score, per method and fraction,
    with intervals across seeds, a zero line and the random maps marked;
(b) ``leakage_vs_score``: how well the mask alone predicts the label, against the score, per cell;
(c) ``ranking_moves``: how the method ranking moves across post-processing levels and protocols.

Each ``*_figure(a)`` takes an analysis.compute.Analysis and returns (Figure, caption); the caption is one
line saying what the figure shows and how to read it. Figures are drawn on Agg canvases (no pyplot).
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .leaks import REFERENCE_METHODS
from .plots import png_bytes
from .scoring import REFERENCE_LEVEL, protocol_name, protocol_order
from .summary import lead_protocol, seed_counts
from .stats import MIN_SEEDS_FOR_INTERVAL

HEIGHT = 3.4            # inches; the three figures share one row of the first screen
RANDOM_COLOR = "#444444"


def _palette(n: int):
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _lead_group(table: pd.DataFrame, protocol: str):
    """(dataset, setup) of the lead protocol with the most rows: the first screen shows one setup."""
    part = table[table["protocol"] == protocol] if "protocol" in table else table
    if part.empty:
        return None
    sizes = part.groupby(["dataset", "setup"], dropna=False).size().sort_values(ascending=False, kind="stable")
    return sizes.index[0]


def _methods_random_last(methods) -> list[str]:
    return sorted(m for m in methods if m not in REFERENCE_METHODS) + sorted(m for m in methods if m in REFERENCE_METHODS)


def _message(text: str, width: float = 3.6) -> Figure:
    fig = Figure(figsize=(width, HEIGHT))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10, color="#555555")
    return fig


def _title(fig: Figure, text: str, a, dataset, setup):
    where = []
    if a.results.ok["dataset"].nunique() > 1:
        where.append(str(dataset))
    if a.results.ok["setup"].nunique() > 1:
        where.append(str(setup))
    fig.suptitle(text + (f" ({', '.join(where)})" if where else ""), fontsize=10, x=0.02, ha="left")


def effect_forest_figure(a) -> tuple[Figure, str]:
    """(a) Paired change of the lead protocol's score per method (groups) and fraction (left to right
    inside a group), one colour per post-processing level, whiskers = interval across seeds."""
    lead = lead_protocol(a)
    eff = a.table("effects")
    group = _lead_group(eff, lead) if lead and not eff.empty else None
    if group is None:
        return _message("No post-processed maps to compare with the raw maps.", 6.4), \
            "(a) No paired effect: the sweep has no post-processing level besides the raw maps."
    dataset, setup = group
    part = eff[(eff["protocol"] == lead) & (eff["dataset"] == dataset) & (eff["setup"] == setup)]
    methods = _methods_random_last(part["attribution"].unique())
    fractions = sorted(part["fraction"].unique())
    levels = [lv for lv in a.levels if lv in set(part["level"])]
    fig = Figure(figsize=(6.4, HEIGHT))
    ax = fig.subplots()
    width = 0.8
    step = width / max(1, len(fractions) * len(levels))
    colors = dict(zip(levels, _palette(len(levels))))
    cells = {(r.attribution, r.fraction, r.level): r for r in part.itertuples()}
    for i, method in enumerate(methods):
        if method in REFERENCE_METHODS:
            ax.axvspan(i - 0.5, i + 0.5, color="#eeeeee", zorder=0)
        for j, f in enumerate(fractions):
            for k, lv in enumerate(levels):
                r = cells.get((method, f, lv))
                if r is None:
                    continue
                x = i - width / 2 + step * (j * len(levels) + k + 0.5)
                y = 100 * r.mean_diff
                if np.isfinite(r.ci_low):
                    ax.errorbar(x, y, yerr=[[y - 100 * r.ci_low], [100 * r.ci_high - y]], fmt="none",
                                ecolor=colors[lv], elinewidth=1, alpha=0.8)
                ax.plot(x, y, "o", ms=3.5, color=colors[lv], label=lv if (i, j) == (0, 0) else None)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(methods)), [m + ("\n(no information)" if m in REFERENCE_METHODS else "") for m in methods],
                  rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(methods) - 0.5)
    ax.set_ylabel(f"change of {protocol_name(lead)} score (points)", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    if levels:
        ax.legend(fontsize=7, loc="best", frameon=False, title="vs. raw maps", title_fontsize=7)
    _title(fig, f"(a) Effect of post-processing on {protocol_name(lead)}", a, dataset, setup)
    n = seed_counts(a)[1]
    whiskers = (f"whiskers: {100 * a.level:.0f}% interval across seeds" if n >= MIN_SEEDS_FOR_INTERVAL else
                f"no whiskers: {n} seed{'s' if n != 1 else ''}, an interval needs {MIN_SEEDS_FOR_INTERVAL}")
    caption = (f"(a) Score with the post-processed map minus score with the raw map, same seed; above 0 = the "
               f"information-free transform made the method look better. Within each method fractions "
               f"{', '.join(f'{f:g}' for f in fractions)} run left to right; grey = random maps; {whiskers}.")
    return fig, caption


def leakage_vs_score_figure(a) -> tuple[Figure, str]:
    """(b) Mask-only probe accuracy (x) against the lead protocol's score (y), one point per cell; falls
    back to the retrain leak check (accuracy on the base model's errors) when no leakage probe ran."""
    lead = lead_protocol(a)
    leak, ll = a.table("leakage"), a.table("label_leaks")
    col = f"score_{lead}"
    if not leak.empty and col in leak and leak[col].notna().any():
        x_col, ref_col, xlabel, data = "leakage_accuracy", "chance_accuracy", "mask-only accuracy (%)", leak
        reference, what = "chance", "a classifier given only the binary mask"
        y_col = col
    elif not ll.empty and (ll["protocol"] == lead).any():
        data = ll[ll["protocol"] == lead]
        x_col, ref_col, xlabel = "accuracy_base_wrong", "random_accuracy_base_wrong", "accuracy on base-model errors (%)"
        reference, what, y_col = "random maps", "the retrained model on the test images the base model got wrong", "score"
    else:
        return _message("No leakage probe and no leak diagnostics in these rows\n(add the 'leakage' protocol).", 3.4), \
            "(b) No leakage measure: the sweep ran neither the 'leakage' protocol nor a retrain protocol with leak columns."
    group = _lead_group(data, lead)
    dataset, setup = group
    part = data[(data["dataset"] == dataset) & (data["setup"] == setup) & data[y_col].notna()]
    fig = Figure(figsize=(3.4, HEIGHT))
    ax = fig.subplots()
    methods = _methods_random_last(part["attribution"].unique())
    for method, color in zip(methods, _palette(len(methods))):
        rows = part[part["attribution"] == method]
        random = method in REFERENCE_METHODS
        ax.scatter(100 * rows[x_col], 100 * rows[y_col], s=18 if random else 12, marker="x" if random else "o",
                   color=RANDOM_COLOR if random else color, alpha=0.8, label=method, lw=1)
    ref = 100 * float(part[ref_col].mean())
    ax.axvline(ref, color="black", ls="--", lw=0.8)
    ax.annotate(reference, (ref, 1), xycoords=("data", "axes fraction"), fontsize=7, ha="left", va="top",
                xytext=(2, -2), textcoords="offset points")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(f"{protocol_name(lead)} score (points)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best", frameon=False, markerscale=0.8)
    _title(fig, "(b) Leakage vs score", a, dataset, setup)
    caption = (f"(b) Each point is one method × post-processing × fraction cell: accuracy of {what} (x) against "
               f"its {protocol_name(lead)} score (y). Right of the dashed {reference} line the mask carries the "
               f"label, and the score measures that rather than the information removed.")
    return fig, caption


def _mean_ranks(ranks: pd.DataFrame, dataset, setup) -> pd.DataFrame:
    """Rank of each method per (protocol, level) by its mean score over fractions (1 = best)."""
    part = ranks[(ranks["dataset"] == dataset) & (ranks["setup"] == setup)]
    m = part.groupby(["protocol", "level", "attribution"], as_index=False)["mean_score"].mean()
    m["rank"] = m.groupby(["protocol", "level"])["mean_score"].rank(ascending=False, method="average")
    return m


def ranking_moves_figure(a) -> tuple[Figure, str]:
    """(c) Bump chart: rank of each method (y, 1 at the top) under each post-processing level of the lead
    protocol and under the raw maps of every other protocol (x)."""
    lead = lead_protocol(a)
    ranks = a.table("ranks")
    group = _lead_group(ranks, lead) if lead and not ranks.empty else None
    if group is None:
        return _message("No rankings: no scored protocol.", 3.6), "(c) No rankings: no scored protocol in these rows."
    dataset, setup = group
    m = _mean_ranks(ranks, dataset, setup)
    columns = [(lead, lv) for lv in a.levels if ((m["protocol"] == lead) & (m["level"] == lv)).any()]
    columns += [(p, REFERENCE_LEVEL) for p in protocol_order(m["protocol"].unique())
                if p != lead and ((m["protocol"] == p) & (m["level"] == REFERENCE_LEVEL)).any()]
    methods = _methods_random_last(m["attribution"].unique())
    fig = Figure(figsize=(3.8, HEIGHT))
    ax = fig.subplots()
    for method, color in zip(methods, _palette(len(methods))):
        y = [m[(m["protocol"] == p) & (m["level"] == lv) & (m["attribution"] == method)]["rank"] for p, lv in columns]
        y = [float(v.iloc[0]) if len(v) else np.nan for v in y]
        random = method in REFERENCE_METHODS
        ax.plot(range(len(columns)), y, marker="o", ms=3, lw=2 if random else 1.3, ls="--" if random else "-",
                color=RANDOM_COLOR if random else color)
        last = next((i for i in range(len(y) - 1, -1, -1) if np.isfinite(y[i])), None)
        if last is not None:
            ax.annotate(method, (last, y[last]), xytext=(4, 0), textcoords="offset points", fontsize=7,
                        va="center", color=RANDOM_COLOR if random else color)
    labels = [(("raw map" if lv == REFERENCE_LEVEL else lv) if p == lead else f"{protocol_name(p)}\nraw map")
              for p, lv in columns]
    ax.set_xticks(range(len(columns)), labels, rotation=35, ha="right", fontsize=7)
    ax.set_xlim(-0.3, len(columns) - 1 + 1.6)   # room for the method names at the right
    ax.set_ylim(len(methods) + 0.5, 0.5)
    ax.set_yticks(range(1, len(methods) + 1))
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylabel("rank (1 = best)", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _title(fig, "(c) Ranking moves", a, dataset, setup)
    others = " and the raw maps under each other protocol" if len(columns) > sum(p == lead for p, _ in columns) else ""
    caption = (f"(c) Rank of each method by its mean score over fractions under each post-processing of "
               f"{protocol_name(lead)}{others}; crossing lines = the ranking changed; dashed = random maps.")
    return fig, caption


FIRST_SCREEN = {"effect": effect_forest_figure, "leakage": leakage_vs_score_figure, "ranking": ranking_moves_figure}


def write_figures(a, out_dir: str, dpi: int = 150, formats=("png",)) -> dict[str, tuple[str, str]]:
    """Write the first-screen figures under out_dir (e.g. docs/findings/plots) for documents and papers
    that embed them: full-colour PNG at `dpi`, and 'pdf' / 'svg' (vector, for a paper) when asked in
    `formats`. Returns {name: (path of the first format, caption)}. Same drawing code as the report."""
    os.makedirs(out_dir, exist_ok=True)
    out = {}
    for name, draw in FIRST_SCREEN.items():
        fig, caption = draw(a)
        paths = []
        for ext in formats:
            path = os.path.join(out_dir, f"first_screen_{name}.{ext}")
            if ext == "png":
                with open(path, "wb") as f:
                    f.write(png_bytes(fig, dpi=dpi, palette=False))
            else:
                fig.savefig(path, format=ext, bbox_inches="tight")
            paths.append(path)
        out[name] = (paths[0], caption)
    return out
