"""Counting a grid without expanding it: the dry run of a huge grid, and the cost estimate that goes
with a size warning.

Each field is set in exactly one place of a spec (sweep.spec checks it), so the distinct combinations
of any set of fields are the product over groups of the distinct projections of each group's
choices: exact, in time linear in the spec, whatever the grid's size. Costs are the mean of
roar.pipeline.estimate_seconds over a seeded random sample of grid points, times the counts.
"""
from __future__ import annotations

import math
import random

from roar.spec import TrialSpec

from .fields import hashable
from .grid import grid_points, trial_of
from .spec import ClusterInfo, SweepSpec

LARGE_GRID = 200_000   # above this many points the dry run counts instead of expanding
SAMPLE = 200           # grid points whose estimated cost stands for the rest


def distinct_count(spec: SweepSpec, fields: tuple[str, ...]) -> int:
    """How many distinct combinations of `fields` the grid's points have."""
    n = 1
    for _, choices in spec.groups:
        n *= len({tuple((k, hashable(c[k])) for k in fields if k in c) for c in choices})
    return n


def sample_trials(spec: SweepSpec, n: int = SAMPLE, seed: int = 0) -> list[TrialSpec]:
    """Up to n grid points drawn uniformly (with replacement), in O(n x groups)."""
    rng = random.Random(seed)
    out = []
    for _ in range(min(n, grid_points(spec))):
        fields = dict(spec.fixed)
        for _, choices in spec.groups:
            fields.update(choices[rng.randrange(len(choices))])
        out.append(trial_of(fields))
    return out


def quick_estimate(spec: SweepSpec, cluster: ClusterInfo) -> dict:
    """Compute seconds of stage A, stage B and the trials of the whole grid (none assumed done), and a
    wall-time guess on `cluster`; see sweep.runner.estimate for the per-trial rates."""
    from roar.pipeline import estimate_seconds

    sample = sample_trials(spec)
    mean = {k: sum(estimate_seconds(t)[k] for t in sample) / max(len(sample), 1)
            for k in ("stage_a", "stage_b", "trial")}
    res = spec.resources
    speedup = 20.0 if res.gpus_per_trial > 0 and cluster.gpus > 0 else 1.0
    n_models = distinct_count(spec, TrialSpec.MODEL_FIELDS)
    n_maps = distinct_count(spec, TrialSpec.MAPS_FIELDS)
    a, b = mean["stage_a"] * n_models / speedup, mean["stage_b"] * n_maps / speedup
    c = mean["trial"] * grid_points(spec) / speedup
    slots = max(1, min(math.floor(cluster.cpus / res.cpus_per_trial) if res.cpus_per_trial else 1,
                       res.max_concurrent_trials or 10 ** 9))
    return {"stage_a_seconds": a, "stage_b_seconds": b, "trial_seconds": c, "models": n_models, "map_sets": n_maps,
            "wall_seconds": (a + b + c) / slots, "parallel_trials": slots}


def human_seconds(seconds: float) -> str:
    """'2.5 h', '3.1 days', '4.2e+09 years': readable at any scale."""
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.3g} {unit}" if value < 1e6 else f"{value:.2g} {unit}"
    return f"{seconds:.0f} s"


def describe_counts(spec: SweepSpec, cluster: ClusterInfo) -> str:
    """The dry-run report of a grid too large to expand: counts and a sampled estimate."""
    est = quick_estimate(spec, cluster)
    return "\n".join([
        f"sweep {spec.name!r} -> {spec.store}",
        f"  grid points:        {grid_points(spec):,} (counted, not expanded: over {LARGE_GRID:,}; the store "
        f"is not read, so finished trials are not subtracted)",
        f"  stage A (models):   {est['models']:,} needed",
        f"  stage B (maps):     {est['map_sets']:,} needed",
        f"  estimate:           stage A {human_seconds(est['stage_a_seconds'])}, stage B "
        f"{human_seconds(est['stage_b_seconds'])}, trials {human_seconds(est['trial_seconds'])} (compute time, "
        f"mean of {SAMPLE} sampled points), {est['parallel_trials']} trials at once on {cluster.where} -> about "
        f"{human_seconds(est['wall_seconds'])} wall",
    ])


def warning_lines(spec: SweepSpec, cluster: ClusterInfo) -> list[str]:
    """spec.warnings with the cost estimate they put in question."""
    if not spec.warnings:
        return []
    wall = human_seconds(quick_estimate(spec, cluster)["wall_seconds"])
    return [f"warning: {w}" for w in spec.warnings] + \
           [f"warning: estimated cost of this sweep: about {wall} wall on {cluster.where}"]
