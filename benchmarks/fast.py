"""The roar-sweep path for one retrain: exactly what a sweep worker runs, ``roar.pipeline.run_trial``,
against a warm store (stage A base model and stage B maps already cached, loaded once per process).

Within the trial that means: maps read once (float16, memory-mapped), one batched top-k mask and
fill for the whole split, and the tensor-resident trainer (``roar.train``): no Dataset, no DataLoader,
no attribution.
"""
from __future__ import annotations

import time

from roar import pipeline
from roar.spec import TrialSpec
from roar.storage import Store


def warm_store(spec: TrialSpec, store: Store, device="cpu") -> dict:
    """Run stage A and stage B for `spec` unless cached; returns their wall seconds (one-time costs
    a sweep shares between all trials of a base model / map set)."""
    start = time.perf_counter()
    pipeline.ensure_base_model(spec, store, device)
    stage_a = time.perf_counter()
    pipeline.ensure_maps(spec, store, device)
    end = time.perf_counter()
    return {"seconds_stage_a": stage_a - start, "seconds_stage_b": end - stage_a}


def fast_trial(spec: TrialSpec, store: Store, device="cpu") -> dict:
    """One trial through roar.pipeline.run_trial; returns its row. A failed trial raises, since a
    benchmark of a failing path would measure nothing."""
    row = pipeline.run_trial(spec, store, device, sweep_name="bench")
    if row["status"] != "ok":
        raise RuntimeError(f"fast path trial {spec.trial_id} failed: {row.get('error')}")
    return row
