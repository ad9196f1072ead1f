"""The Tune trainable, kept thin: config -> TrialSpec -> roar.pipeline.run_trial -> row file -> report.

The only module that calls Ray Tune's reporting API. The config holds just the trial_id; the TrialSpecs
arrive once per worker through ``tune.with_parameters`` and data, models and maps are loaded from the
store by roar.pipeline (with its per-process caches, which survive between trials because actors are
reused).
"""
from __future__ import annotations

import math

import ray
from ray import tune

from roar.spec import TrialSpec
from roar.storage import Store

from .progress import SKIPPED, STORE_ERROR
from .rows import row_key, trial_done, write_row


def pin_torch_threads() -> int:
    """One torch thread per CPU Ray reserved for this task or trial (at least one), so trials packed on a
    node do not oversubscribe it and a result does not depend on how many cores the worker happens to
    see (reductions split over threads round differently)."""
    import torch

    threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def run_one(config: dict, specs: dict[str, TrialSpec], store: Store, sweep_name: str, device: str) -> None:
    from roar import pipeline  # imported in the worker; the driver never needs torch for this

    pin_torch_threads()
    trial_id = config["trial_id"]
    spec = specs[trial_id]
    node = ray.get_runtime_context().get_node_id()  # reported so the driver can say how the sweep spread
    # A concurrent sweep on the same store, or this trial's earlier attempt on a node that then died,
    # may already have written the row: never run a trial twice.
    if trial_done(store, spec):
        tune.report({"status": SKIPPED, "accuracy": math.nan, "node_id": node})
        return
    row = pipeline.run_trial(spec, store, pipeline.pick_device(device), sweep_name)
    try:
        write_row(store, row)
    except Exception as exc:  # noqa: BLE001 - any write failure means the store is unusable
        tune.report({"status": STORE_ERROR, "accuracy": math.nan, "node_id": node,
                     "error": f"writing {row_key(trial_id)} failed: {type(exc).__name__}: {exc}"})
        return
    accuracy = row.get("accuracy")
    tune.report({"status": row["status"], "accuracy": math.nan if accuracy is None else float(accuracy),
                 "node_id": node})
