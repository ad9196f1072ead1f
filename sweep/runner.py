"""Run a validated sweep on Ray: stage A (base models) and stage B (maps) as Ray tasks, then one Tune
trial per missing grid point.

Store layout: ``rows/<trial_id>.parquet`` (one row per trial, see sweep.rows), ``compacted/`` (after
``roar compact``), ``artifacts/{models,maps}/`` (stage caches, roar.artifacts) and, for a local store,
``_tune/`` (Ray Tune's bookkeeping of a run, removed when the run ends without Tune errors).

Resume is by construction: every run computes the grid, skips trial_ids whose row is in the store, and
starts a fresh Tuner over the rest (Tuner.restore is not used: after a driver crash it re-ran finished
trials, see RAY_NOTES). Stage results are cached in the store by content key, so a second sweep, or a
resumed one, reuses them.
"""
from __future__ import annotations

import logging
import os
import shlex
import time
from dataclasses import dataclass, field
from typing import Callable

from roar.spec import TrialSpec
from roar.storage import Store

from . import rows
from .failures import failure_line, group_errors
from .progress import Progress, StoreFaultStopper, TuneProgress, format_seconds
from .plan import Plan, describe_plan, estimate, make_plan  # noqa: F401  (the CLI and tests use runner.*)
from .spec import ClusterInfo, SweepSpec
from .tune_adapter import make_tuner, remove_tune_folder

Out = Callable[[str], None]


# --- Ray -------------------------------------------------------------------------------------------
def connect(address: str | None = None, verbose: bool = False) -> bool:
    """Connect to a cluster (address, or RAY_ADDRESS as `ray job submit` sets it) or start a local one.

    Returns True when this call started Ray (the caller shuts it down). A local cluster started here
    runs without token authentication: it is private to this process tree.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.WARNING,
              # trials keep the driver's working directory, so relative data roots mean what they say
              "runtime_env": {"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}}}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, **kwargs)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(include_dashboard=False, **kwargs)
    return True


def ray_cluster_info(where: str = "the Ray cluster") -> ClusterInfo:
    import ray

    res = ray.cluster_resources()
    return ClusterInfo(cpus=float(res.get("CPU", 0)), gpus=float(res.get("GPU", 0)), where=where)


def _stage_task(stage: str, spec: TrialSpec, store: Store, device: str) -> str:
    from roar import pipeline

    from .trainable import pin_torch_threads
    pin_torch_threads()

    ensure = pipeline.ensure_base_model if stage == "A" else pipeline.ensure_maps
    return ensure(spec, store, pipeline.pick_device(device))


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError wraps the worker's exception
    return f"{type(cause).__name__}: {cause}"


@dataclass
class StageOutcome:
    """Map sets whose stage failed. ``failed``: the code raised (deterministic: the trials get failed
    rows). ``lost``: Ray lost the task after its retries (a crashed worker or node: the trials stay
    missing, so the next run tries again)."""

    failed: dict[str, str] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)


def run_stages(plan: Plan, out: Out) -> StageOutcome:
    """Stage A then B as Ray tasks; each map set starts as soon as its base model is ready."""
    import ray

    res, j = plan.spec.resources, plan.jobs
    task = ray.remote(_stage_task).options(num_cpus=res.stage_cpus, num_gpus=res.stage_gpus,
                                           max_retries=res.max_failures)
    device, store = res.device, plan.store
    maps_of: dict[str, list[str]] = {b: [] for b in j.base_models}
    for m, b in j.maps_base.items():
        if m not in plan.cached_maps:
            maps_of[b].append(m)
    pending: dict = {}
    outcome = StageOutcome()

    def submit_maps(base_key: str) -> None:
        for m in maps_of[base_key]:
            pending[task.remote("B", j.maps[m], store, device)] = ("B", m)

    for b in j.base_models:  # a missing base model is trained even when its maps are cached: trials load it
        if b in plan.cached_models:
            submit_maps(b)
        else:
            pending[task.remote("A", j.base_models[b], store, device)] = ("A", b)
    n_a = sum(1 for s, _ in pending.values() if s == "A")
    n_b = sum(len(v) for v in maps_of.values())
    if not pending:
        return outcome
    out(f"[{plan.spec.name}] stage A: {n_a} base model(s) to train, stage B: {n_b} map set(s) to compute")
    done_a = done_b = 0
    start = time.monotonic()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        stage, key = pending.pop(ready[0])
        error, target = None, None
        try:
            ray.get(ready[0])
        except ray.exceptions.RayTaskError as exc:  # the stage's own code raised
            error, target = _error_text(exc), outcome.failed
        except ray.exceptions.RayError as exc:      # worker/node lost beyond max_retries
            error, target = _error_text(exc), outcome.lost
        if stage == "A":
            done_a += 1
            if error:
                target.update({m: f"stage A (base model {key}) failed: {error}"
                               for m, b in j.maps_base.items() if b == key})
            else:
                submit_maps(key)
        else:
            done_b += 1
            if error:
                target[key] = f"stage B (maps {key}) failed: {error}"
        out(f"[{plan.spec.name}] stage A {done_a}/{n_a}, stage B {done_b}/{n_b} "
            f"({format_seconds(time.monotonic() - start)})" + (f": {stage} {key} failed: {error}" if error else ""))
    return outcome


@dataclass
class SweepResult:
    total: int
    ok: int
    failed: int
    missing: int
    ran: int
    seconds: float
    interrupted: bool = False
    store_error: str | None = None
    tune_errors: int = 0
    nodes: int = 0                 # Ray nodes that ran trials in this run
    recovered: int = 0             # trials restarted after their worker or node died
    stage_lost: int = 0            # trials skipped because Ray lost their stage task
    errors: dict[str, int] = field(default_factory=dict)   # first line of a failed row's error -> trials

    @property
    def exit_code(self) -> int:
        if self.store_error:
            return 3
        if self.interrupted:
            return 130
        if self.failed and not self.ok:  # nothing succeeded: a sweep that produced no result failed
            return 1
        return 0 if self.missing == 0 else 1


def run(spec: SweepSpec, *, address: str | None = None, retry_failed: bool = False, verbose: bool = False,
        out: Out = print, resume_command: str | None = None, progress_interval: float = 5.0) -> SweepResult:
    """Run every missing trial of the spec; returns the counts after the run."""
    start = time.monotonic()
    resume = resume_command or f"roar run {shlex.quote(spec.source)}"
    plan = make_plan(spec, retry_failed=retry_failed)
    if plan.pruned:
        out(f"[{spec.name}] {len(plan.pruned)} invalid row file(s) moved to quarantine/; their trials run again:\n"
            + "\n".join(f"  {line}" for line in plan.quarantine_lines))
    if not plan.todo:
        out(f"[{spec.name}] all {len(plan.trials)} trials already done in {spec.store}; nothing to run")
        return _summary(plan, start, ran=0)
    out(f"[{spec.name}] {len(plan.trials)} trials, {len(plan.done)} already done, {len(plan.todo)} to run")
    started_ray = connect(address, verbose)
    try:
        stages = run_stages(plan, out)
        todo = _record_stage_failures(plan, stages, out)
        store_error, tune_errors, callback = None, 0, None
        if todo:
            store_error, tune_errors, callback = _run_trials(plan, todo, out, progress_interval, verbose)
        result = _summary(plan, start, ran=len(plan.todo), store_error=store_error, tune_errors=tune_errors)
        result.stage_lost = sum(1 for t in plan.todo if t.maps_key() in stages.lost)
        if callback is not None:
            result.nodes, result.recovered = len(callback.nodes), callback.recovered
    except StoreFault as exc:
        result = _summary(plan, start, ran=0, store_error=str(exc))
    except KeyboardInterrupt:
        result = _summary(plan, start, ran=0)
        result.interrupted = True
    finally:
        if started_ray:
            import ray
            ray.shutdown()
    if result.missing and not (result.store_error or result.tune_errors or result.stage_lost):
        result.interrupted = True
    if not (result.store_error or result.interrupted):
        _compact_at_end(plan, out)
    _print_outcome(spec, result, resume, out)  # last: the final line says what happened
    return result


def _compact_at_end(plan: Plan, out: Out) -> None:
    """Fold this run's row files into compacted/ (incremental, kill-safe); a failure loses nothing."""
    from .compact import CompactBusy, CompactError, compact

    try:
        report = compact(plan.store, wait_seconds=300)  # another sweep on this store may be compacting
    except (CompactBusy, CompactError, OSError) as exc:
        out(f"[{plan.spec.name}] compaction skipped ({exc}); every row is safe in rows/: "
            f"run `roar compact {plan.spec.store}` later")
        return
    out(f"[{plan.spec.name}] " + report.text(plan.spec.store).splitlines()[0])


class StoreFault(RuntimeError):
    """The results store refused a write: the sweep stops (its results would be lost)."""


def _record_stage_failures(plan: Plan, stages: StageOutcome, out: Out) -> list[TrialSpec]:
    """Failed rows for the trials whose maps could not be made; returns the trials left to run."""
    if not stages.failed and not stages.lost:
        return list(plan.todo)
    left = []
    for t in plan.todo:
        if t.maps_key() in stages.lost:
            continue  # stays missing: the next run retries the stage
        error = stages.failed.get(t.maps_key())
        if error is None:
            left.append(t)
            continue
        try:
            rows.write_row(plan.store, rows.failed_row(t, plan.spec.name, error))
        except OSError as exc:  # the stage most likely failed for the same reason
            raise StoreFault(f"writing {rows.row_key(t.trial_id)} failed: {type(exc).__name__}: {exc}") from exc
    n_lost = sum(1 for t in plan.todo if t.maps_key() in stages.lost)
    if len(plan.todo) - len(left) - n_lost:
        out(f"[{plan.spec.name}] {len(plan.todo) - len(left) - n_lost} trial(s) recorded as failed because a "
            f"stage failed")
    if n_lost:
        out(f"[{plan.spec.name}] {n_lost} trial(s) skipped this run because Ray lost their stage task; "
            f"rerun to retry them")
    return left


def _run_trials(plan: Plan, todo: list[TrialSpec], out: Out, interval: float, verbose: bool):
    from ray import tune

    from .row_indexer import RowIndexer
    from .trainable import run_one

    spec, res = plan.spec, plan.spec.resources
    specs = {t.trial_id: t for t in todo}
    progress = Progress(total=len(plan.trials), already_done=len(plan.done) + len(plan.todo) - len(todo),
                        name=spec.name, out=out, interval=interval)
    stopper = StoreFaultStopper()
    callback = TuneProgress(progress, out)
    indexer = RowIndexer(plan.store, out=out)
    tuner = make_tuner(
        run_one, dict(specs=specs, store=plan.store, sweep_name=spec.name, device=res.device),
        resources=res, name=spec.name, store=plan.store, verbose=verbose, max_failures=res.max_failures,
        callbacks=[callback, indexer], stop=stopper, param_space={"trial_id": tune.grid_search(list(specs))},
        tune_config=dict(num_samples=1, max_concurrent_trials=res.max_concurrent_trials,
                         trial_dirname_creator=lambda trial: trial.config["trial_id"]))
    results = tuner.fit()
    progress.show(force=True)
    if results.num_errors == 0 and stopper.error is None:
        # Tune's folder only matters for debugging errors (error.txt per trial); the rows are the record
        remove_tune_folder(results.experiment_path)
    return stopper.error, results.num_errors, callback


def _summary(plan: Plan, start: float, ran: int, store_error: str | None = None, tune_errors: int = 0):
    ids = {t.trial_id for t in plan.trials}
    try:
        table = rows.read_all(plan.store, ["trial_id", "status", "error"])
        status, errors = {}, {}
        for t, s, e in zip(*(table.column(c).to_pylist() for c in ("trial_id", "status", "error"))):
            if t in ids:
                status[t], errors[t] = s, e
    except OSError as exc:  # the store itself failed; report what is known
        store_error = store_error or f"reading the store failed: {exc}"
        status, errors = {}, {}
    ok = sum(1 for s in status.values() if s == "ok")
    return SweepResult(total=len(ids), ok=ok, failed=len(status) - ok, missing=len(ids) - len(status), ran=ran,
                       seconds=time.monotonic() - start, store_error=store_error, tune_errors=tune_errors,
                       errors=group_errors(errors[t] for t, s in status.items() if s != "ok"))


def _print_outcome(spec: SweepSpec, r: SweepResult, resume: str, out: Out) -> None:
    out(f"[{spec.name}] {r.ok} ok, {r.failed} failed, {r.missing} missing of {r.total} trials "
        f"in {format_seconds(r.seconds)}; rows in {spec.store}")
    if r.nodes > 1 or r.recovered:
        out(f"[{spec.name}] trials ran on {r.nodes} node(s); {r.recovered} restarted after a lost worker/node")
    if r.failed:
        out(f"[{spec.name}] failed trials keep a row with the error: `roar status {spec.store}` lists them; "
            f"`{resume} --retry-failed` runs them again")
    if r.store_error:
        out(f"[{spec.name}] STOPPED: the results store failed: {r.store_error}\n"
            f"  rows written before the fault are intact; fix the store, then rerun `{resume}` to finish")
    elif r.interrupted:
        out(f"[{spec.name}] interrupted with {r.missing} trial(s) missing; finished rows are kept. "
            f"Resume with the same command: {resume}")
    elif r.missing:
        out(f"[{spec.name}] {r.missing} trial(s) ended without a row ({r.tune_errors} Tune error(s), "
            f"{r.stage_lost} lost stage task(s): a worker or node crashed more than max_failures times); "
            f"rerun `{resume}` to retry them")
    if r.failed:  # last, so the final line says how many failed and why
        out(failure_line(spec.name, r.failed, r.total, r.errors))

