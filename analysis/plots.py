"""Figures of the report, drawn on Agg canvases (``matplotlib.figure.Figure``, no pyplot): importing this
module never changes the backend of a notebook that imports it.

Each function takes an already aggregated table and returns a Figure; ``png_bytes`` renders one.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .scoring import REFERENCE_LEVEL, blurriness, protocol_name

MAX_PANELS = 12   # methods per accuracy figure; more would make unreadable panels


def png_bytes(fig: Figure, dpi: int = 110, palette: bool = True) -> bytes:
    """The figure as PNG bytes. palette=True stores it with 256 colours (indexed PNG): a third of the
    size of full colour and indistinguishable for line and scatter plots, so a report of many figures
    stays small."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    if not palette:
        return buf.getvalue()
    from PIL import Image   # pillow: a dependency of matplotlib

    buf.seek(0)
    out = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        out, format="PNG", optimize=True)
    return out.getvalue()


def _colors(n: int):
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(1, n - 1)) for i in range(n)]


def accuracy_vs_fraction(results: pd.DataFrame, dataset, setup, protocol, levels: list[str]) -> Figure:
    """Accuracy (y, fraction of test images) vs fraction of pixels (x), one panel per method, one line
    per post-processing level (raw map in black), with the 95% CI across seeds as a band.

    results: the table of analysis.diagnostics.protocol_results; levels: display order.
    """
    part = results[(results["dataset"] == dataset) & (results["setup"] == setup) & (results["protocol"] == protocol)]
    methods = sorted(part["attribution"].unique())[:MAX_PANELS]
    ncols = min(4, max(1, len(methods)))
    nrows = max(1, math.ceil(len(methods) / ncols))
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows + 0.4))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    present = [lv for lv in levels if lv in set(part["level"])]
    colors = dict(zip([lv for lv in present if lv != REFERENCE_LEVEL], _colors(len(present))))
    colors[REFERENCE_LEVEL] = "black"
    for ax, method in zip(axes.flat, methods):
        m = part[part["attribution"] == method]
        for lv in present:
            line = m[m["level"] == lv].sort_values("fraction")
            if line.empty:
                continue
            x = line["fraction"].to_numpy(float)
            ax.plot(x, line["accuracy"], marker="o", ms=3, lw=1.8 if lv == REFERENCE_LEVEL else 1.2,
                    color=colors[lv], label=lv)
            # accuracy is bounded: a t interval over two seeds may not be
            low = np.clip(line["acc_ci_low"].to_numpy(float), 0.0, 1.0)
            high = np.clip(line["acc_ci_high"].to_numpy(float), 0.0, 1.0)
            if np.isfinite(low).any():
                ax.fill_between(x, low, high, color=colors[lv], alpha=0.15, lw=0)
        ax.set_title(method, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("fraction of pixels")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(6, len(labels)), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{protocol_name(protocol)} on {dataset}" + ("" if setup == "all" else f" ({setup})"),
                 fontsize=11, y=1.03)
    return fig


def blur_vs_score(df: pd.DataFrame, protocol, measure: str, slope: float | None = None) -> Figure:
    """Score (y) against blurriness (x, higher = blurrier) of every row of one protocol, coloured by
    method; the line has the pooled OLS slope (adjusted for method, fraction, dataset) drawn through
    the mean of the points."""
    part = df[(df["protocol"] == protocol) & np.isfinite(df["score"].astype(float))]
    x_all = blurriness(part, measure)
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    methods = sorted(part["attribution"].unique())
    for method, color in zip(methods, _colors(len(methods))):
        rows = part["attribution"] == method
        ax.scatter(x_all[rows], part.loc[rows, "score"], s=10, alpha=0.6, color=color, label=method)
    finite = np.isfinite(x_all)
    if slope is not None and np.isfinite(slope) and finite.sum() >= 2:
        xs = np.linspace(x_all[finite].min(), x_all[finite].max(), 2)
        x0, y0 = x_all[finite].mean(), part.loc[finite, "score"].mean()
        ax.plot(xs, y0 + slope * (xs - x0), color="crimson", lw=2, label=f"OLS slope {slope:.3g}")
    ax.set_xlabel(f"blurriness = -{measure}")
    ax.set_ylabel("score (higher = better method)")
    ax.set_title(f"{protocol_name(protocol)}: blurriness vs score", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def rank_heatmap(ranks: pd.DataFrame, dataset, setup, protocol) -> Figure:
    """Rank of each method (rows; 1 = best) under each (level, fraction) (columns)."""
    part = ranks[(ranks["dataset"] == dataset) & (ranks["setup"] == setup) & (ranks["protocol"] == protocol)]
    part = part.sort_values(["level_pos", "fraction"])
    cols = list(dict.fromkeys(zip(part["level"], part["fraction"])))
    methods = sorted(part["attribution"].unique())
    grid = np.full((len(methods), len(cols)), np.nan)
    index = {c: j for j, c in enumerate(cols)}
    mrow = {m: i for i, m in enumerate(methods)}
    for r in part.itertuples():
        grid[mrow[r.attribution], index[(r.level, r.fraction)]] = r.rank
    fig = Figure(figsize=(max(4.0, 0.45 * len(cols) + 2.5), max(2.2, 0.4 * len(methods) + 1.2)))
    ax = fig.subplots()
    im = ax.imshow(grid, cmap="viridis_r", aspect="auto", vmin=1, vmax=max(1, len(methods)))
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_xticks(range(len(cols)), [f"{lv} @{f:g}" if isinstance(f, float) else f"{lv} @{f}" for lv, f in cols],
                  rotation=70, ha="right", fontsize=7)
    if grid.size <= 400:
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=7,
                        color="white" if v > (len(methods) + 1) / 2 else "black")
    fig.colorbar(im, ax=ax, label="rank (1 = best)")
    ax.set_title(f"{protocol_name(protocol)} ranking on {dataset}" + ("" if setup == "all" else f" ({setup})"),
                 fontsize=10)
    return fig
