"""MIF / LIF perturbation curves and fidelity (Brocki & Chung), without retraining.

The base model is evaluated on the whole test split with the trial's fill at each removed fraction of
a grid, removing pixels most-important-first (MIF, MoRF masks) or least-important-first (LIF, LeRF
masks). A faithful map makes accuracy fall fast under MIF and slowly under LIF, so

    fidelity = AUC(LIF) - AUC(MIF)     (trapezoid rule over the fraction of pixels removed)

is large for a faithful map and ~0 for a random one. Both curves are cheap (no training), so every
mif and every lif row computes both and carries the same fidelity; `auc` and `curve_json` are the
row's own order, `accuracy`/`loss` its point at the trial's fraction. Masks come from the same
removal_mask call (seed, selection, index) as every other protocol, so the point at the trial's
fraction is the ROAR/KAR mask.

Option curve_fractions: the grid of removed fractions (default 0, 0.1, ..., 1.0; a list or a
comma-separated string). AUC is over the grid's span, so with the default it is in units of fraction x accuracy on [0, 1].
"""
from __future__ import annotations

import json

import numpy as np

from analysis.contract import PROTOCOL_FACTS

from ..fills import apply_fill
from ..removal import removal_mask
from ..spec import TrialSpec
from .context import TrialContext
from .options import number_list

DEFAULT_FRACTIONS = tuple(round(0.1 * i, 10) for i in range(11))
ORDER_OF = {name: PROTOCOL_FACTS[name].order for name in ("mif", "lif")}   # the contract says which


def curve_fractions(spec: TrialSpec) -> list[float]:
    """The validated grid of option curve_fractions: sorted distinct fractions in [0, 1], at least two."""
    grid = sorted(set(number_list(spec, "curve_fractions", DEFAULT_FRACTIONS, 0.0, 1.0, "fractions")))
    if len(grid) < 2:
        raise ValueError(f"option curve_fractions={spec.option('curve_fractions')!r}: needs at least two distinct "
                         "fractions to span a curve")
    return grid


def trapezoid_auc(fractions, accuracies) -> float:
    """Area under the piecewise-linear curve through (fraction, accuracy) points (fractions ascending)."""
    f, a = np.asarray(fractions, dtype=np.float64), np.asarray(accuracies, dtype=np.float64)
    return float(np.sum(np.diff(f) * (a[1:] + a[:-1]) / 2))


def accuracy_curve(ctx: TrialContext, order: str, fractions: list[float], fill: str) -> list[tuple[float, float, float]]:
    """[(fraction, accuracy, loss)] of the base model on the whole test split, `order` masks at each
    fraction. Each filled split is built, evaluated and dropped: caching ~11 copies of the test split
    per order (as ctx.removed_images would) costs gigabytes on CIFAR-sized data."""
    s = ctx.spec
    maps, x, y, index = ctx.maps("test"), ctx.images("test"), ctx.labels("test"), ctx.index("test")
    points = []
    for fraction in fractions:
        with ctx.timed("mask"):
            mask = removal_mask(maps, fraction, order=order, seed=s.seed, selection=s.selection, index=index)
            filled = apply_fill(x, mask, fill, ctx.data.mean, seed=s.seed)
        accuracy, loss = ctx.evaluate(ctx.base_model, filled, y)
        points.append((fraction, accuracy, loss))
        del mask, filled
    return points


def curves_protocol(name: str):
    own = ORDER_OF[name]

    def run(ctx: TrialContext) -> dict:
        s = ctx.spec
        grid = curve_fractions(s)
        curves = {order: accuracy_curve(ctx, order, grid, s.fill) for order in ("morf", "lerf")}
        auc = {order: trapezoid_auc([p[0] for p in pts], [p[1] for p in pts]) for order, pts in curves.items()}
        at = [p for p in curves[own] if abs(p[0] - s.fraction) < 1e-12]
        if at:
            accuracy, loss = at[0][1], at[0][2]
        else:  # the trial's fraction is off the grid: one more evaluation, on the shared cached mask
            accuracy, loss = ctx.evaluate(ctx.base_model, ctx.removed_images("test", own), ctx.labels("test"))
        detail = {"fill": s.fill, "auc_mif": auc["morf"], "auc_lif": auc["lerf"],
                  "curve_mif": [[f, a] for f, a, _ in curves["morf"]],
                  "curve_lif": [[f, a] for f, a, _ in curves["lerf"]]}
        return {"accuracy": accuracy, "loss": loss, "n_test": int(ctx.images("test").shape[0]),
                "auc": auc[own], "fidelity": auc["lerf"] - auc["morf"],
                "curve_json": json.dumps([[f, a] for f, a, _ in curves[own]]), "detail_json": json.dumps(detail)}
    run.__doc__ = (f"{name.upper()} curve: base-model accuracy as the {'most' if own == 'morf' else 'least'} "
                   "important pixels are removed over a grid of fractions; fidelity = AUC(LIF) - AUC(MIF).")
    return run
