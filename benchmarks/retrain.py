"""Item 1: retrains per hour, naive baseline vs the roar-sweep path, measured side by side.

Both paths retrain the same network on the same masked data with the same base model; runs are
interleaved (naive, fast, then fast, naive, ...) so background load on a shared machine hits both
alike. Stage A/B (base model, cached maps) are one-time costs of the fast path, reported apart.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

from roar import pipeline
from roar.storage import Store

from .fast import fast_trial, warm_store
from .naive import naive_trial
from .report import Metric
from .settings import BenchSettings

RETRAIN_GOAL = 10.0          # fast / naive retrains per hour

FAST_PHASES = ("seconds_train", "seconds_mask", "seconds_attribution", "seconds_io")
NAIVE_PHASES = ("seconds_attribution", "seconds_train", "seconds_test")


def _timed(fn: Callable[[], dict]) -> dict:
    """fn's result plus its wall seconds and this process's CPU seconds (the latter barely moves with
    other jobs' load on a shared machine, so it backs up the wall-clock ratio)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return {**out, "seconds_wall": time.perf_counter() - start, "seconds_cpu": time.process_time() - cpu}


def compare_method(settings: BenchSettings, method: str, repeats: int, store: Store, device="cpu",
                   log: Callable[[str], None] = print) -> dict:
    """Naive and fast retrains of one attribution method, `repeats` of each, interleaved."""
    spec = settings.retrain_spec(method)
    stages = warm_store(spec, store, device)
    data = pipeline.load_data(spec)
    base_model, _ = pipeline.load_base_model(spec, store, device)
    runs = {"naive": [], "fast": []}
    run = {"naive": lambda: naive_trial(spec, data, base_model, device),
           "fast": lambda: fast_trial(spec, store, device)}
    for rep in range(repeats):
        for path in ("naive", "fast") if rep % 2 == 0 else ("fast", "naive"):
            result = _timed(run[path])
            runs[path].append(result)
            log(f"  {method}: {path} retrain {rep + 1}/{repeats}: {result['seconds_wall']:.1f} s, "
                f"accuracy {result['accuracy']:.3f}")
    summary = {}
    for path, phases in (("naive", NAIVE_PHASES), ("fast", FAST_PHASES)):
        rs = runs[path]
        summary[path] = {
            "seconds_per_retrain": statistics.mean(r["seconds_wall"] for r in rs),
            "cpu_seconds_per_retrain": statistics.mean(r["seconds_cpu"] for r in rs),
            "accuracy": statistics.mean(r["accuracy"] for r in rs),
            "phases": {p: statistics.mean(r[p] for r in rs) for p in phases},
            "runs": [{k: r[k] for k in ("seconds_wall", "seconds_cpu", "accuracy", *phases)} for r in rs],
        }
    return {"method": method, "spec": spec.to_dict(), "one_time": stages, **summary,
            "flops": _flops(spec, data, summary)}


def _flops(spec, data, summary: dict) -> dict:
    """Achieved FLOP/s of each path's training phase, against the CPU's fp32 peak (benchmarks.flops)."""
    import torch

    from .flops import cpu_peak, matmul_flops, retrain_flops

    model = pipeline._new_model(spec, data, seed=0)
    work = retrain_flops(model, torch.zeros((1, *data.train_x.shape[1:])), data.train_x.shape[0], spec.epochs)
    peak = cpu_peak(torch.get_num_threads())
    out = {"retrain_flops": work, "peak": peak, "matmul_flops": matmul_flops("cpu")}
    for path in ("naive", "fast"):
        achieved = work / summary[path]["phases"]["seconds_train"]
        out[path] = {"flops_per_second": achieved, "share_of_peak": achieved / peak["peak"] if peak["peak"] else None}
    return out


def retrain_section(settings: BenchSettings, store: Store, device="cpu",
                    log: Callable[[str], None] = print) -> tuple[list[Metric], dict]:
    metrics, details = [], {}
    for method, repeats in settings.methods:
        log(f"[retrain] {method}: naive vs fast, {repeats} each")
        d = compare_method(settings, method, repeats, store, device, log)
        details[method] = d
        naive_rate = 3600.0 / d["naive"]["seconds_per_retrain"]
        fast_rate = 3600.0 / d["fast"]["seconds_per_retrain"]
        cpu_ratio = d["naive"]["cpu_seconds_per_retrain"] / d["fast"]["cpu_seconds_per_retrain"]
        metrics.append(Metric("retrain", f"retrains/hour, {method}", "1/h", naive_rate, fast_rate,
                              ratio=fast_rate / naive_rate, goal_on="ratio", goal=RETRAIN_GOAL,
                              note=f"{settings.threads} torch thread(s) each; CPU-time ratio {cpu_ratio:.2f}×; "
                                   f"attribution recomputed per naive trial: "
                                   f"{d['naive']['phases']['seconds_attribution']:.1f} s"))
        f = d["flops"]
        p = f["peak"]
        metrics.append(Metric("retrain", f"training GFLOP/s, {method}", "GFLOP/s", f["naive"]["flops_per_second"] / 1e9,
                              f["fast"]["flops_per_second"] / 1e9,
                              ratio=f["fast"]["flops_per_second"] / f["naive"]["flops_per_second"],
                              note=f"fast = {100 * (f['fast']['share_of_peak'] or 0):.1f}% of the fp32 peak of "
                                   f"{p['threads']} core(s), {p['peak'] / 1e9:.0f} GFLOP/s ({p['clock_ghz']:.2f} GHz x "
                                   f"{p['flops_per_cycle']} FLOP/cycle, {p['simd']}, {2} FMA units assumed); "
                                   f"{100 * f['fast']['flops_per_second'] / f['matmul_flops']:.0f}% of a measured "
                                   f"1024^2 fp32 matmul ({f['matmul_flops'] / 1e9:.0f} GFLOP/s); "
                                   f"{f['retrain_flops'] / 1e9:.1f} GFLOP per retrain (3 x forward)"))
        metrics.append(Metric("retrain", f"test accuracy, {method} (fairness check)", "", d["naive"]["accuracy"],
                              d["fast"]["accuracy"], goal_on="abs_diff", goal_op="le",
                              goal=settings.accuracy_tolerance,
                              note="same network, data, epochs, batch size and base model"))
    return metrics, details
