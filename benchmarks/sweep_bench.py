"""Items 2, 3 and 5 through the real sweep (``sweep.runner.run`` on Ray Tune), read back from the rows.

- Overhead shares (item 2): one cold sweep (stage A and B run inside it) with 2 trials at once. Its
  slot-seconds (concurrent trials × wall seconds) are split into training (trials + stage A),
  attribution + masking (stage B + the trials' map loading, post-processing, masks, fills and map/mask
  metrics), I/O (the trials' data/model loading) and orchestration (everything else: Ray and Tune,
  row writing, idle slots).
- Scaling (item 3): the same grid again with 1 trial at once on a store whose stage artifacts are
  already made; trials/hour over the trial phase (first trial start to last trial end), so stage
  time, the same in both runs, does not blur the comparison. On a GPU machine: 1, 2, 4, 8 trials
  packed on one GPU with fractional GPUs, with GPU utilisation sampled meanwhile.
- Memory (item 5): many tiny trials in reused actors; RSS of the trial workers and the driver after
  each trial; the growth over the second half of the trials must stay under a bound (the growth from
  trial `memory_reference_trial`, which includes the actors' warm-up, is reported beside it).
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable

from roar.artifacts import maps_meta_key, model_meta_key
from roar.storage import Store
from sweep.local_ray import private_local_cluster

from .report import Metric
from .rss import RssSampler, cores_used, driver_growth, rss_by_trial, worker_growth
from .settings import TINY_TRIAL, BenchSettings

ATTRIBUTION_SHARE_GOAL = 5.0       # % of slot-seconds
ORCHESTRATION_SHARE_GOAL = 2.0     # % of slot-seconds
SCALING_GOAL = 1.6                 # trials/hour with 2 at once over 1 at once
TRIALS_PER_GPU_SLOT = 4            # GPU packing runs: trials per concurrent slot
ROW_COLUMNS = ["trial_id", "status", "error", "seconds_train", "seconds_attribution", "seconds_mask",
               "seconds_io", "seconds_total", "started_at", "finished_at"]

Log = Callable[[str], None]


def ray_cluster(num_cpus: int | None = None, num_gpus: int | None = None):
    """A private local Ray cluster for the benchmark (or the one this process is already connected to,
    left running). RAY_ADDRESS is ignored: the figures are about this machine."""
    return private_local_cluster(num_cpus, num_gpus, prefix="rb-")


# --- one sweep --------------------------------------------------------------------------------------
@dataclass
class SweepRun:
    name: str
    concurrency: int
    seconds: float             # wall seconds of sweep.runner.run (Ray already running)
    rows: list[dict]
    stage_a_seconds: float     # sum over the base models this run trained
    stage_b_seconds: float     # sum over the map sets this run computed
    ok: int
    failed: int
    samples: list = field(default_factory=list)   # rss.Sample series taken during the run
    worker_peaks: dict = field(default_factory=dict)  # trial worker pid -> peak RSS (VmHWM), MiB

    @property
    def trial_phase(self) -> tuple[float, float]:
        """(first trial start, last trial end), epoch seconds."""
        return (min(r["started_at"] for r in self.rows).timestamp(),
                max(r["finished_at"] for r in self.rows).timestamp())

    @property
    def trial_phase_seconds(self) -> float:
        start = min(r["started_at"] for r in self.rows)
        end = max(r["finished_at"] for r in self.rows)
        return (end - start).total_seconds()

    @property
    def trials_per_hour(self) -> float:
        return 3600.0 * len(self.rows) / self.trial_phase_seconds


def grid_spec(name: str, store: str, fixed: dict, axes: dict, sigmas, concurrency: int,
              gpus_per_trial: float = 0.0, cpus_per_trial: float = 1.0, device: str = "cpu") -> dict:
    """A sweep spec mapping (the YAML format of sweep.spec) for a benchmark grid."""
    return {"name": name, "store": store,
            "resources": {"cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial,
                          "max_concurrent_trials": concurrency, "device": device, "max_failures": 0},
            "fixed": {**fixed, "postprocess": "gaussian"},
            "axes": {**{k: list(v) for k, v in axes.items()}, "sigma": list(sigmas)}}


def _stage_seconds(store: Store, keys: set[str], meta_key: Callable[[str], str]) -> float:
    total = 0.0
    for key in keys:
        if store.exists(meta_key(key)):
            total += float(json.loads(store.read_bytes(meta_key(key))).get("seconds", 0.0))
    return total


def run_sweep(spec_data: dict, log: Log, sample_interval: float = 0.5) -> SweepRun:
    """Validate and run one sweep with sweep.runner.run, sampling memory and CPU of its trial workers
    every `sample_interval` seconds; read its rows back from the store."""
    from sweep import rows as sweep_rows
    from sweep.grid import expand
    from sweep.runner import run
    from sweep.spec import parse_spec

    spec = parse_spec(spec_data, source=f"benchmark sweep {spec_data['name']}")
    store = Store(spec.store)
    trials = expand(spec)
    before_models = {t.base_model_key() for t in trials if store.exists(model_meta_key(t.base_model_key()))}
    before_maps = {t.maps_key() for t in trials if store.exists(maps_meta_key(t.maps_key()))}
    with RssSampler(interval=sample_interval) as sampler:
        result = run(spec, out=lambda line: log(f"    {line}"), progress_interval=60.0)
    table = sweep_rows.read_all(store, ROW_COLUMNS).to_pylist()
    failed = [r for r in table if r["status"] != "ok"]
    if failed or result.missing:
        raise RuntimeError(f"benchmark sweep {spec.name}: {len(failed)} failed, {result.missing} missing trials; "
                           f"first error: {failed[0]['error'] if failed else 'none recorded'}")
    return SweepRun(
        name=spec.name, concurrency=int(spec.resources.max_concurrent_trials or 1), seconds=result.seconds,
        rows=table,
        stage_a_seconds=_stage_seconds(store, {t.base_model_key() for t in trials} - before_models, model_meta_key),
        stage_b_seconds=_stage_seconds(store, {t.maps_key() for t in trials} - before_maps, maps_meta_key),
        ok=result.ok, failed=result.failed, samples=sampler.samples,
        worker_peaks=dict(sampler.peak_workers_mib))


def overhead_shares(run: SweepRun) -> dict:
    """Split the run's slot-seconds (concurrency × wall seconds) into what they were spent on, in %.

    'orchestration' is what the timing columns do not cover: Ray and Tune start-up and scheduling,
    worker start-up, row writing, idle slots. 'trial_phase' repeats the split over the trial phase
    only (first trial start to last trial end), i.e. without the sweep's fixed start-up cost.
    """
    rows = run.rows
    total = lambda key: sum(r[key] or 0.0 for r in rows)  # noqa: E731
    timed = ("seconds_train", "seconds_attribution", "seconds_mask", "seconds_io")
    untimed_in_trials = total("seconds_total") - sum(total(k) for k in timed)
    slot = run.concurrency * run.seconds
    parts = {
        "training": total("seconds_train") + run.stage_a_seconds,
        "attribution_stage_b": run.stage_b_seconds,
        "attribution_in_trials": total("seconds_attribution"),
        "masking": total("seconds_mask"),
        "io": total("seconds_io"),
    }
    parts["orchestration"] = slot - sum(parts.values())
    shares = {k: 100.0 * v / slot for k, v in parts.items()}
    shares["attribution_and_masking"] = sum(shares[k] for k in
                                            ("attribution_stage_b", "attribution_in_trials", "masking"))
    shares["orchestration_and_io"] = shares["orchestration"] + shares["io"]
    trial_slot = run.concurrency * run.trial_phase_seconds
    trial_phase = {
        "training": 100.0 * total("seconds_train") / trial_slot,
        "attribution_and_masking": 100.0 * (total("seconds_attribution") + total("seconds_mask")) / trial_slot,
        "orchestration_and_io": 100.0 * (trial_slot - total("seconds_total") + total("seconds_io")
                                         + untimed_in_trials) / trial_slot,
    }
    return {"slot_seconds": slot, "trial_phase_slot_seconds": trial_slot, "seconds": parts, "percent": shares,
            "trial_phase_percent": trial_phase,
            "fixed_seconds": run.seconds - run.trial_phase_seconds}


def sweep_store(workdir: str, name: str) -> str:
    """A fresh results store for one benchmark sweep whose stage artifacts (base models, maps) live in
    one folder shared by every benchmark sweep: a later sweep of the same base models skips stages A/B,
    as a real re-run would. Rows stay per store, so the same grid can run twice."""
    shared = os.path.join(workdir, "shared-artifacts")
    os.makedirs(shared, exist_ok=True)
    store = os.path.join(workdir, name)
    os.makedirs(store)
    os.symlink(shared, os.path.join(store, "artifacts"))
    return store


# --- items 2 and 3 on CPU ---------------------------------------------------------------------------
def _bench_grid(settings: BenchSettings, name: str, store: str, concurrency: int, **resources) -> dict:
    fixed = {**settings.sweep_trial, "attribution": "saliency"}
    axes = {"seed": settings.sweep_seeds, "fraction": settings.sweep_fractions}
    return grid_spec(name, store, fixed, axes, settings.sweep_sigmas, concurrency, **resources)


def sweep_section(settings: BenchSettings, workdir: str, log: Log) -> tuple[list[Metric], dict]:
    log("[sweep] cold sweep, 2 trials at once (stage A and B inside)")
    two = run_sweep(_bench_grid(settings, "bench-2", sweep_store(workdir, "sweep-2"), 2), log)
    if two.stage_a_seconds == 0:
        raise RuntimeError("the overhead sweep found its base models already made; its shares need a cold start")
    # the 1-at-a-time run reuses the stage artifacts: only its trial phase is compared
    log("[sweep] same grid, 1 trial at once (stage artifacts reused)")
    one = run_sweep(_bench_grid(settings, "bench-1", sweep_store(workdir, "sweep-1"), 1), log)
    shares = overhead_shares(two)
    pct = shares["percent"]
    n = len(two.rows)
    tp = shares["trial_phase_percent"]
    metrics = [
        Metric("sweep", f"attribution+masking share of sweep ({n} trials)", "%", fast=pct["attribution_and_masking"],
               goal_on="fast", goal_op="le", goal=ATTRIBUTION_SHARE_GOAL,
               note=f"stage B {pct['attribution_stage_b']:.1f}%, in-trial masks/metrics {pct['masking']:.1f}%"),
        Metric("sweep", f"orchestration+I/O share of sweep ({n} trials)", "%", fast=pct["orchestration_and_io"],
               goal_on="fast", goal_op="le", goal=ORCHESTRATION_SHARE_GOAL,
               note=f"Ray/Tune/rows/idle {pct['orchestration']:.1f}%, in-trial I/O {pct['io']:.1f}%; the first "
                    f"trial started {shares['fixed_seconds']:.0f} s into the sweep (stages A/B included)"),
        Metric("sweep", "  same, trial phase only (no fixed start-up)", "%", fast=tp["orchestration_and_io"],
               goal_on="fast", goal_op="le", goal=ORCHESTRATION_SHARE_GOAL,
               note="first trial start to last trial end"),
        Metric("scaling", "trials/hour, 1 → 2 concurrent trials (CPU)", "1/h", naive=one.trials_per_hour,
               fast=two.trials_per_hour, ratio=two.trials_per_hour / one.trials_per_hour, goal_on="ratio",
               goal=SCALING_GOAL, note="naive column: 1 trial at once; fast column: 2 at once; "
                                       + _cores_note(one) + " → " + _cores_note(two)),
    ]
    details = {"two_at_once": _run_details(two), "one_at_once": _run_details(one), "shares": shares}
    return metrics, details


def _cores(run: SweepRun) -> dict:
    return cores_used(run.samples, *run.trial_phase)


def _cores_note(run: SweepRun) -> str:
    c = _cores(run)
    if c["trial_workers"] is None or c["machine"] is None:
        return "cores used: unknown"
    return f"trials used {c['trial_workers']:.2f} cores, machine {c['machine']:.2f}"


def _run_details(run: SweepRun) -> dict:
    return {"name": run.name, "concurrency": run.concurrency, "trials": len(run.rows), "wall_seconds": run.seconds,
            "cores_used_in_trial_phase": _cores(run),
            "trial_phase_seconds": run.trial_phase_seconds, "trials_per_hour": run.trials_per_hour,
            "stage_a_seconds": run.stage_a_seconds, "stage_b_seconds": run.stage_b_seconds,
            "mean_trial_seconds": sum(r["seconds_total"] for r in run.rows) / len(run.rows)}


# --- item 5 -----------------------------------------------------------------------------------------

def _tiny_grid_axes(n: int) -> tuple[list[float], list[float]]:
    """fractions x sigmas with exactly n trials: up to 10 sigma values, the rest in fractions."""
    n_sigma = max(d for d in range(1, 11) if n % d == 0)
    n_frac = n // n_sigma
    fractions = [round((i + 1) / (n_frac + 1), 6) for i in range(n_frac)]
    sigmas = [0.25 * j for j in range(n_sigma)]
    return fractions, sigmas


def memory_section(settings: BenchSettings, workdir: str, log: Log) -> tuple[list[Metric], dict]:
    n = settings.memory_trials
    fractions, sigmas = _tiny_grid_axes(n)
    spec = grid_spec("bench-memory", sweep_store(workdir, "memory"), TINY_TRIAL, {"fraction": fractions},
                     sigmas, concurrency=2)
    log(f"[memory] {n} tiny trials, 2 at once, RSS sampled every 0.2 s")
    run = run_sweep(spec, log, sample_interval=0.2)
    finished = [r["finished_at"].timestamp() for r in run.rows]
    series = rss_by_trial(run.samples, finished)
    window = max(1, n // 20)
    ref, half = settings.memory_reference_trial, n // 2
    # Flatness is judged on the second half: the first few dozen trials of a fresh actor fill the
    # allocator's and oneDNN's caches (a saturating rise); a leak keeps rising to the end.
    workers, driver = worker_growth(series, half, window), driver_growth(series, half, window)
    workers_ref, driver_ref = worker_growth(series, ref, window), driver_growth(series, ref, window)
    peaks = run.worker_peaks
    peak_workers = max(peaks.values(), default=None)
    driver_peak = max((s.driver_mib for s in run.samples), default=None)
    goal = settings.rss_growth_goal_mib

    def since_ref(g: dict) -> str:
        return "n/a" if g["growth_mib"] is None else f"{g['growth_mib']:+.0f} MiB"

    columns = f"naive column: at trial {half}, fast column: at trial {n} (max over {window}-trial windows)"
    metrics = [
        Metric("memory", f"trial worker RSS growth, trial {half} → {n}", "MiB", naive=workers["from_mib"],
               fast=workers["to_mib"], goal_on="growth", goal_op="le", goal=goal,
               note=f"{columns}; from trial {ref}: {since_ref(workers_ref)}; worker peak (VmHWM) "
                    f"{peak_workers or 0:.0f} MiB"),
        Metric("memory", f"driver RSS growth, trial {half} → {n}", "MiB", naive=driver["from_mib"],
               fast=driver["to_mib"], goal_on="growth", goal_op="le", goal=goal,
               note=f"from trial {ref}: {since_ref(driver_ref)}; driver peak {driver_peak or 0:.0f} MiB"),
    ]
    details = {"trials": n, "wall_seconds": run.seconds, "workers": workers, "driver": driver,
               "workers_from_reference": workers_ref, "driver_from_reference": driver_ref,
               "worker_peak_mib": peak_workers, "driver_peak_mib": driver_peak,
               "worker_pids": sorted(peaks), "rss_by_trial": series}
    return metrics, details


# --- item 3 on a GPU --------------------------------------------------------------------------------
class GpuUtilisation:
    """Mean GPU utilisation (%) over a block, sampled every `interval` seconds with nvidia-smi."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.values = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "--id=0"], capture_output=True, text=True, timeout=5).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    def _run(self):
        while not self._stop.wait(self.interval):
            value = self._read()
            if value is not None:
                self.values.append(value)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None


def packing_spec(settings: BenchSettings, k: int, store: str, cpus: int) -> dict:
    """The sweep of `k` trials packed on one GPU: gpus_per_trial 1/k, the CPUs split k ways, and
    TRIALS_PER_GPU_SLOT trials per slot so the first trial of each actor (CUDA context, cuDNN
    autotuning) weighs little."""
    n = TRIALS_PER_GPU_SLOT * k
    axes = {"seed": (0,), "fraction": tuple(round(0.05 + 0.9 * i / (n - 1), 4) for i in range(n))}
    return grid_spec(f"bench-gpu-{k}", store, {**settings.sweep_trial, "attribution": "saliency"}, axes, (0.0,),
                     concurrency=k, gpus_per_trial=1.0 / k, cpus_per_trial=max(1.0, float(cpus // k)), device="cuda")


def gpu_packing_section(settings: BenchSettings, workdir: str, log: Log, cuda: str | None) -> tuple[list[Metric], dict]:
    """1, 2, 4, 8 trials packed on one GPU (fractional GPUs); skipped rows without CUDA."""
    if cuda is None:
        return [Metric("scaling", f"trials/hour, 1 → {k} trials packed on one GPU", "1/h", skipped="no CUDA device",
                       goal_on="ratio", goal=None) for k in settings.gpu_packing[1:]], {"skipped": "no CUDA device"}
    import torch

    card = torch.cuda.get_device_name(torch.device(cuda))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    runs, metrics = {}, []
    # the stage artifacts of the first run serve all later ones: only trial phases are compared
    for k in settings.gpu_packing:
        spec = packing_spec(settings, k, sweep_store(workdir, f"gpu-{k}"), cpus)
        log(f"[gpu] {TRIALS_PER_GPU_SLOT * k} trials, {k} packed on {card}")
        with GpuUtilisation() as util:
            run = run_sweep(spec, log)
        runs[k] = {**_run_details(run), "gpu_utilisation_percent": util.mean}
    first = settings.gpu_packing[0]
    base = runs[first]
    for k in settings.gpu_packing[1:]:
        r = runs[k]
        metrics.append(Metric("scaling", f"trials/hour, {first} → {k} trials packed on {card}", "1/h",
                              naive=base["trials_per_hour"], fast=r["trials_per_hour"],
                              ratio=r["trials_per_hour"] / base["trials_per_hour"],
                              note=f"GPU utilisation {base['gpu_utilisation_percent'] or float('nan'):.0f}% → "
                                   f"{r['gpu_utilisation_percent'] or float('nan'):.0f}%"))
    return metrics, {"card": card, "device": cuda, "runs": runs}
