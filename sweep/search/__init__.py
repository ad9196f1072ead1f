"""``roar search SPEC``: Optuna searches stored in the results store, run through Ray Tune's OptunaSearch
(trials spread over the cluster, a concurrency limit, ASHA pruning) or with plain Optuna in this
process (``--local``).

    roar search SPEC [--local] [--trials N] [--store URI] [--address ADDR] [--dry-run] [--verbose]

Two kinds (the spec's ``search.kind``; see sweep.search.spec for the format):
- ``gaming``: per attribution method, information-free post-processing that maximises the ROAR score
  (sweep.search.gaming). The raw map is always trial 0 of a study.
- ``recipe``: the cheapest training recipe that reaches a target clean accuracy, written to
  ``STORE/search/<study>/recipe.yaml`` (sweep.search.recipe).

Every trial writes an ordinary result row (``study`` and ``search_trial`` set). Studies live in the
store (sweep.search.storage); rerunning the same command continues them: a study is topped up to
``search.trials`` finished trials (``--trials`` raises the budget), never started over. With a fixed
``search.seed`` a ``--local`` search repeats exactly; under Ray Tune, trials that run concurrently
finish in an order that depends on timing, so the sampled points may differ between runs.

Exit codes: 0 done, 1 some study could not run (its stage failed) or has no finished trial,
2 a bad spec or arguments, 3 a study exists with another setup, 130 interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from roar.storage import Store

from ..spec import SpecError
from ..tune_adapter import make_tuner
from .gaming import gaming_summary, run_gaming_trial, stored_gaming_value
from .recipe import recipe_summary, run_recipe_trial, stored_recipe_value_fn
from .space import Dim, baseline_params, space_bounds, suggest
from .spec import Cell, SearchSpec, load_search_spec
from .storage import (StudySetupError, StudyStore, counted_trials, enqueue_baseline, open_study,
                             resolve_orphans, sampler_for)
from .trial import OBJECTIVE, TrialEnv, TrialFailed

Out = Callable[[str], None]


@dataclass(frozen=True)
class SearchKind:
    """What differs between the kinds of search: the trial, resuming from rows, stages, pruning, summary."""

    run: Callable            # (cell spec, params, study, number, TrialEnv) -> TrialOutcome
    stored_value: Callable   # (cell spec, study, TrialEnv) -> (params -> stored objective or None)
    needs_maps: bool         # trials need stage A/B artifacts (base model, attribution maps)
    summary: Callable        # (SearchSpec, Cell, study, Store) -> lines


KINDS: dict[str, SearchKind] = {
    "gaming": SearchKind(run_gaming_trial, stored_gaming_value, True,
                         lambda spec, cell, study, store: gaming_summary(study, cell.spec)),
    "recipe": SearchKind(run_recipe_trial, stored_recipe_value_fn, False,
                         lambda spec, cell, study, store: recipe_summary(
                             store, cell.study, [d.name for d in spec.space], spec.source)),
}


@dataclass
class DefineByRun:
    """The space as Optuna's define-by-run function (a picklable object: Tune saves its searcher).
    The constant ``search_trial`` tells a Tune trial its Optuna trial number."""

    space: list[Dim]
    kind: str

    def __call__(self, trial) -> dict:
        suggest(self.space, self.kind, trial)
        return {"search_trial": trial.number}


@dataclass
class SearchResult:
    lines: list[str] = field(default_factory=list)
    studies: int = 0
    skipped: int = 0              # studies whose stage A/B failed
    empty: int = 0                # studies without a completed trial
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.skipped or self.empty else 0


# --- preparing a study ---------------------------------------------------------------------------------
def prepare_study(spec: SearchSpec, cell: Cell, study_store: StudyStore, env: TrialEnv, out: Out):
    """Open (or resume) the study of a cell; returns (study, trials still to run)."""
    kind = KINDS[spec.kind]
    study = open_study(study_store, cell.study, spec.setup(cell))
    completed, failed = resolve_orphans(study, kind.stored_value(cell.spec, cell.study, env))
    if completed or failed:
        out(f"[{cell.study}] resumed: {completed} interrupted trial(s) completed from their rows, {failed} "
            f"marked failed")
    if spec.kind == "gaming":
        enqueue_baseline(study, baseline_params())
    study.sampler = sampler_for(study, spec.seed, spec.startup_trials)
    return study, max(0, spec.trials - counted_trials(study))


def _stages_local(spec: SearchSpec, cells: list[Cell], store: Store, out: Out) -> dict[str, str]:
    """Stage A/B for every cell in this process; returns {study: error} for cells that failed."""
    from roar import pipeline

    errors = {}
    for cell in cells:
        try:
            pipeline.ensure_maps(cell.spec, store, pipeline.pick_device(spec.sweep.resources.device))
        except Exception as exc:  # noqa: BLE001 - one failed cell does not stop the others
            errors[cell.study] = f"{type(exc).__name__}: {exc}"
    return errors


def _stages_ray(spec: SearchSpec, cells: list[Cell], store: Store, out: Out) -> dict[str, str]:
    """Stage A/B as Ray tasks through the sweep runner; returns {study: error}."""
    from roar.artifacts import maps_meta_key, model_meta_key

    from ..grid import stage_jobs
    from ..runner import Plan, run_stages

    trials = [c.spec for c in cells]
    jobs = stage_jobs(trials)
    plan = Plan(spec.sweep, store, len(trials), trials, set(), trials, jobs,
                {k for k in jobs.base_models if store.exists(model_meta_key(k))},
                {k for k in jobs.maps if store.exists(maps_meta_key(k))})
    outcome = run_stages(plan, out)
    errors = {**outcome.failed, **outcome.lost}
    return {c.study: errors[c.spec.maps_key()] for c in cells if c.spec.maps_key() in errors}


# --- the two backends -----------------------------------------------------------------------------------
def _pruning(spec: SearchSpec):
    pruning = spec.settings.get("pruning")
    return pruning if spec.kind == "recipe" and pruning else None


def optimize_local(spec: SearchSpec, cell: Cell, study, n_new: int, env: TrialEnv, sync: Callable[[], None],
                   out: Out) -> None:
    """Plain Optuna in this process, one trial at a time."""
    import optuna

    kind = KINDS[spec.kind]
    pruning = _pruning(spec)
    study.pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=pruning["grace_epochs"],
                                                           reduction_factor=pruning["reduction_factor"])
                    if pruning else optuna.pruners.NopPruner())

    def objective(trial):
        params = suggest(spec.space, spec.kind, trial)

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        outcome = kind.run(cell.spec, params, cell.study, trial.number, dataclasses.replace(env, report=report))
        trial.set_user_attr("trial_id", outcome.trial_id)
        if outcome.value is None:
            raise TrialFailed(outcome.error)
        return outcome.value

    def after_trial(study_, frozen) -> None:
        sync()
        value = "failed" if frozen.value is None else f"{frozen.value:+.4f}"
        out(f"[{cell.study}] trial {frozen.number} {frozen.state.name.lower()} {value} {frozen.params}")

    study.optimize(objective, n_trials=n_new, catch=(TrialFailed,), callbacks=[after_trial])


def _tune_trial(config: dict, kind_name: str, cell: Cell, env: TrialEnv) -> None:
    """The Tune trainable: the same trial function as --local, reporting through ray.tune."""
    from ray import tune

    number = config["search_trial"]
    params = {k: v for k, v in config.items() if k != "search_trial"}

    def report(epoch: int, value: float) -> None:
        tune.report({OBJECTIVE: value, "epoch": epoch})

    outcome = KINDS[kind_name].run(cell.spec, params, cell.study, number, dataclasses.replace(env, report=report))
    if outcome.value is None:
        raise TrialFailed(f"trial {number} of {cell.study} failed: {outcome.error}")
    tune.report({OBJECTIVE: outcome.value, "trial_id": outcome.trial_id})


def _concurrency(spec: SearchSpec) -> int:
    """Trials at once: the spec's limit, else as many as the cluster's CPUs (or GPUs) fit."""
    import ray

    res = spec.sweep.resources
    if res.max_concurrent_trials:
        return res.max_concurrent_trials
    total = ray.cluster_resources()
    fit = math.floor(total.get("CPU", 1) / res.cpus_per_trial)
    if res.gpus_per_trial > 0:
        fit = min(fit, math.floor(total.get("GPU", 0) / res.gpus_per_trial))
    return max(1, fit)


def optimize_tune(spec: SearchSpec, cell: Cell, study, n_new: int, env: TrialEnv, study_store: StudyStore,
                  out: Out, verbose: bool = False) -> None:
    """Ray Tune with OptunaSearch on the same study (same storage), at most _concurrency trials at once."""
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(space=DefineByRun(spec.space, spec.kind), metric=OBJECTIVE, mode="max",
                            sampler=study.sampler, study_name=cell.study, storage=study_store.storage())
    scheduler = None
    pruning = _pruning(spec)
    if pruning:
        from ray.tune.schedulers import ASHAScheduler
        scheduler = ASHAScheduler(time_attr="training_iteration", metric=OBJECTIVE, mode="max",
                                  max_t=int(space_bounds(spec.space, "epochs") or cell.spec.epochs),
                                  grace_period=pruning["grace_epochs"], reduction_factor=pruning["reduction_factor"])
    tuner = make_tuner(
        _tune_trial, dict(kind_name=spec.kind, cell=cell, env=env), resources=spec.sweep.resources,
        name=cell.study, store=env.store, verbose=verbose, max_failures=0,
        callbacks=[_sync_callback(study_store, cell.study, out)],
        tune_config=dict(search_alg=searcher, scheduler=scheduler, num_samples=n_new,
                         max_concurrent_trials=_concurrency(spec)))
    tuner.fit()


def _sync_callback(study_store: StudyStore, study: str, out: Out):
    """A Tune callback that uploads the journal (object stores) and prints a line per finished trial."""
    from ray.tune import Callback

    class SyncCallback(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            study_store.sync()
            value = (trial.last_result or {}).get(OBJECTIVE)
            shown = f"{value:+.4f}" if isinstance(value, float) else "?"
            params = {k: v for k, v in trial.config.items() if k != "search_trial"}
            out(f"[{study}] trial {trial.config.get('search_trial')} done {shown} {params}")

        def on_trial_error(self, iteration, trials, trial, **info):
            study_store.sync()
            out(f"[{study}] trial {trial.config.get('search_trial')} failed")

    return SyncCallback()


# --- the whole search -----------------------------------------------------------------------------------
def run_search(spec: SearchSpec, local: bool = False, address: str | None = None, verbose: bool = False,
               out: Out = print) -> SearchResult:
    """Run (or continue) every study of the spec; returns the summary lines and counts."""
    store = Store(spec.sweep.store, spec.sweep.endpoint_url)
    if store.is_local:  # Tune runs each trial in its own working folder: a relative path would land there
        store = Store(store.root, spec.sweep.endpoint_url)
    study_store = StudyStore(store, spec.name)
    kind = KINDS[spec.kind]
    env = TrialEnv(store=store, sweep_name=spec.name, device=spec.sweep.resources.device,
                   settings=spec.settings, space=spec.space)
    cells = spec.cells()
    result = SearchResult(studies=len(cells))
    from optuna.trial import TrialState

    started_ray = False
    if not local:
        from ..runner import connect
        started_ray = connect(address, verbose)
    try:
        errors = {}
        if kind.needs_maps:
            out(f"[{spec.name}] stage A/B for {len(cells)} stud{'y' if len(cells) == 1 else 'ies'}")
            errors = (_stages_local if local else _stages_ray)(spec, cells, store, out)
        for cell in cells:
            if cell.study in errors:
                result.skipped += 1
                result.lines.append(f"  {cell.study}: not run, its stage failed: {errors[cell.study]}")
                continue
            study, n_new = prepare_study(spec, cell, study_store, env, out)
            out(f"[{cell.study}] {counted_trials(study)} trial(s) done, {n_new} to run "
                f"({'plain Optuna' if local else 'Ray Tune'}) -> {study_store.where}")
            if n_new:
                if local:
                    optimize_local(spec, cell, study, n_new, env, study_store.sync, out)
                else:
                    optimize_tune(spec, cell, study, n_new, env, study_store, out, verbose)
            study_store.sync()
            if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                result.empty += 1
            result.lines += kind.summary(spec, cell, study, store)
    except KeyboardInterrupt:
        result.interrupted = True
        study_store.sync()
    finally:
        if started_ray:
            import ray
            ray.shutdown()
    return result


# --- command line ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roar search", description="Optuna search over a spec's space: a retrain "
                                "recipe, or information-free post-processing that games ROAR.")
    p.add_argument("spec", help="search spec YAML, e.g. specs/search-gaming.yaml")
    p.add_argument("--local", action="store_true", help="plain Optuna in this process, no Ray")
    p.add_argument("--trials", type=int, help="trials per study in total (overrides search.trials)")
    p.add_argument("--store", help="results store overriding the spec's `store`")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local cluster)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the studies; run nothing")
    p.add_argument("--verbose", action="store_true", help="show Ray's logs and Tune's trial table")
    return p


def describe(spec: SearchSpec) -> str:
    lines = [f"search {spec.name!r} ({spec.kind}) -> {spec.sweep.store}",
             "  space: " + "; ".join(f"{d.name} {d.values}" for d in spec.space),
             f"  {spec.trials} trials per study, sampler seed {spec.seed}, "
             f"{spec.startup_trials} random start-up trials"]
    lines += [f"  study {c.study}" for c in spec.cells()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.trials is not None and args.trials < 1:
        print(f"--trials must be >= 1, got {args.trials}", file=sys.stderr)
        return 2
    try:
        spec = load_search_spec(args.spec, store=args.store)
    except SpecError as exc:
        print(str(exc).replace("in the sweep spec", "in the search spec"), file=sys.stderr)
        return 2
    if args.trials is not None:
        spec.trials = args.trials
    if args.dry_run:
        print(describe(spec))
        return 0
    start = time.monotonic()
    try:
        result = run_search(spec, local=args.local, address=args.address, verbose=args.verbose)
    except StudySetupError as exc:
        print(exc, file=sys.stderr)
        return 3
    print(f"[{spec.name}] {'interrupted' if result.interrupted else 'finished'} after "
          f"{time.monotonic() - start:.0f} s; rows in {spec.sweep.store}")
    print("\n".join(result.lines))
    if result.interrupted:
        print(f"[{spec.name}] rerun the same command to continue the same studies", file=sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
