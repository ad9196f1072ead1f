"""Planning a sweep, without Ray: which trials are done, which run, the stage jobs they need, and what
it will cost (sweep.runner runs the plan; `roar run --dry-run` prints it)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from roar.spec import TrialSpec
from roar.storage import Store

from . import rows
from .grid import StageJobs, expand, grid_points, stage_jobs
from .progress import format_seconds
from .spec import ClusterInfo, SweepSpec, local_cluster_info


@dataclass
class Plan:
    """What a run of the spec would do now."""

    spec: SweepSpec
    store: Store
    points: int                                  # grid points before de-duplication
    trials: list[TrialSpec]                      # unique trials of the grid
    done: set[str]                               # their trial_ids with a stored row
    todo: list[TrialSpec]                        # trials to run
    jobs: StageJobs                              # stage jobs the todo trials need
    cached_models: set[str] = field(default_factory=set)
    cached_maps: set[str] = field(default_factory=set)
    pruned: list[str] = field(default_factory=list)  # invalid row files moved to quarantine/
    quarantine_lines: list[str] = field(default_factory=list)  # "key -> quarantine key: why", one per file
    retry: list[str] = field(default_factory=list)   # failed trials selected for a rerun


def make_plan(spec: SweepSpec, retry_failed: bool = False, prune_bad: bool = True) -> Plan:
    from roar.artifacts import maps_meta_key, model_meta_key

    store = Store(spec.store, spec.endpoint_url)
    trials = expand(spec)
    ids = {t.trial_id for t in trials}
    stored = rows.scan(store, prune_bad=prune_bad)
    done = stored.done & ids
    retry: list[str] = []
    if retry_failed and done:
        table = rows.read_all(store, ["trial_id", "status"])
        retry = sorted(t for t, s in zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist())
                       if s == "failed" and t in ids)
        for trial_id in retry:
            if trial_id in stored.row_keys:
                store.delete(stored.row_keys[trial_id])  # a compacted failed row loses to the new one (rows.dedupe)
        done -= set(retry)
    todo = [t for t in trials if t.trial_id not in done]
    jobs = stage_jobs(todo)
    cached_models = {k for k in jobs.base_models if store.exists(model_meta_key(k))}
    cached_maps = {k for k in jobs.maps if store.exists(maps_meta_key(k))}
    moved = [f"{k} -> {d}: {stored.reasons[k]}" for k, d in sorted(stored.quarantined.items())]
    return Plan(spec, store, grid_points(spec), trials, done, todo, jobs, cached_models, cached_maps,
                pruned=sorted(stored.quarantined), quarantine_lines=moved, retry=retry)


def estimate(plan: Plan, cluster: ClusterInfo) -> dict:
    """Rough cost of the remaining work: compute seconds per stage and a wall-time guess.

    A trial's cost is the mean seconds_total of finished trials in the store with the same dataset,
    model, epochs and protocol when there are any (a resumed or repeated sweep), else
    roar.pipeline.estimate_seconds (per-image CPU rates; a GPU is assumed 20x faster). Parallelism is
    how many trials fit the cluster at once.
    """
    from roar.pipeline import estimate_seconds

    res = plan.spec.resources
    speedup = 20.0 if res.gpus_per_trial > 0 and cluster.gpus > 0 else 1.0
    measured = _measured_trial_seconds(plan)
    a = sum(estimate_seconds(s)["stage_a"] for k, s in plan.jobs.base_models.items() if k not in plan.cached_models)
    b = sum(estimate_seconds(s)["stage_b"] for k, s in plan.jobs.maps.items() if k not in plan.cached_maps)
    c, n_measured = 0.0, 0
    for t in plan.todo:
        seconds = measured.get(_cost_group(t))
        if seconds is None:
            c += estimate_seconds(t)["trial"] / speedup
        else:
            c += seconds
            n_measured += 1
    a, b = a / speedup, b / speedup
    slots = _slots(res.cpus_per_trial, res.gpus_per_trial, cluster, res.max_concurrent_trials)
    stage_slots = _slots(res.stage_cpus, res.stage_gpus, cluster, None)
    return {"stage_a_seconds": a, "stage_b_seconds": b, "trial_seconds": c, "measured_trials": n_measured,
            "parallel_trials": slots, "wall_seconds": (a + b) / stage_slots + c / slots}


def _cost_group(t) -> tuple:
    return (t["dataset"], t["model"], t["epochs"], t["protocol"]) if isinstance(t, dict) else \
        (t.dataset, t.model, t.epochs, t.protocol)


def _measured_trial_seconds(plan: Plan) -> dict[tuple, float]:
    """Mean seconds_total of the store's ok rows per (dataset, model, epochs, protocol)."""
    if not plan.done:
        return {}
    table = rows.read_all(plan.store, ["dataset", "model", "epochs", "protocol", "seconds_total", "status"])
    groups: dict[tuple, list[float]] = {}
    for r in table.to_pylist():
        if r["status"] == "ok" and r["seconds_total"] is not None:
            groups.setdefault(_cost_group(r), []).append(r["seconds_total"])
    return {k: sum(v) / len(v) for k, v in groups.items()}


def _slots(cpus: float, gpus: float, cluster: ClusterInfo, cap: int | None) -> int:
    fit = math.floor(cluster.cpus / cpus) if cpus else 1
    if gpus > 0 and cluster.gpus > 0:
        fit = min(fit, math.floor(cluster.gpus / gpus))
    return max(1, min(fit, cap or fit))


def describe_plan(plan: Plan, cluster: ClusterInfo | None = None) -> str:
    """The dry-run report."""
    cluster = cluster or local_cluster_info()
    j = plan.jobs
    est = estimate(plan, cluster)
    lines = [
        f"sweep {plan.spec.name!r} -> {plan.spec.store}",
        f"  grid points:        {plan.points} ({len(plan.trials)} unique trials)",
        f"  already done:       {len(plan.done)}" + (f" (plus {len(plan.retry)} failed to retry)" if plan.retry else ""),
        f"  to run:             {len(plan.todo)}",
        f"  stage A (models):   {len(j.base_models)} needed, {len(j.base_models) - len(plan.cached_models)} to train",
        f"  stage B (maps):     {len(j.maps)} needed, {len(j.maps) - len(plan.cached_maps)} to compute",
        f"  estimate:           stage A {format_seconds(est['stage_a_seconds'])}, "
        f"stage B {format_seconds(est['stage_b_seconds'])}, trials {format_seconds(est['trial_seconds'])} "
        f"(compute time), {est['parallel_trials']} trials at once on {cluster.where} "
        f"-> about {format_seconds(est['wall_seconds'])} wall",
    ]
    if est["measured_trials"]:
        lines.append(f"                      ({est['measured_trials']} trial cost(s) from the seconds of finished "
                     f"trials in the store; the rest from roar.pipeline.estimate_seconds)")
    return "\n".join(lines)
