"""Grid expansion: a validated SweepSpec -> the TrialSpecs of the sweep, and the shared stage jobs.

The order is deterministic (axes in the order the spec lists them, the last one varying fastest), and
duplicates (two grid points with the same trial_id) are dropped, keeping the first.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from roar.spec import TrialSpec

from .spec import SweepSpec
from .spec_checks import POSTPROCESS_PARAMS


def grid_points(spec: SweepSpec) -> int:
    """Grid size before de-duplication (product of the group sizes)."""
    size = 1
    for _, choices in spec.groups:
        size *= len(choices)
    return size


def expand(spec: SweepSpec) -> list[TrialSpec]:
    """Every trial of the sweep, de-duplicated by trial_id, in grid order."""
    trials: dict[str, TrialSpec] = {}
    for combo in itertools.product(*(choices for _, choices in spec.groups)):
        fields = dict(spec.fixed)
        for choice in combo:
            fields.update(choice)
        trial = trial_of(fields)
        trials.setdefault(trial.trial_id, trial)
    return list(trials.values())


def trial_of(fields: dict) -> TrialSpec:
    """The TrialSpec of one grid point's fields. A postprocess entry's parameters (gamma, levels, steps)
    go to options['postprocess_params'] as a dict, where `roar search` puts them and the trial reads them."""
    params = fields.get(POSTPROCESS_PARAMS)
    if not params:
        return TrialSpec(**{k: v for k, v in fields.items() if k != POSTPROCESS_PARAMS})
    fields = {k: v for k, v in fields.items() if k != POSTPROCESS_PARAMS}
    options = {**dict(fields.get("options", ())), POSTPROCESS_PARAMS: dict(params)}
    return TrialSpec(**{**fields, "options": tuple(sorted(options.items()))})


@dataclass(frozen=True)
class StageJobs:
    """The shared work the trials need: one stage-A job per base model, one stage-B job per map set.

    Each maps a content key to a representative TrialSpec (the first trial that needs it);
    ``maps_base`` gives the base-model key every map set depends on.
    """

    base_models: dict[str, TrialSpec]
    maps: dict[str, TrialSpec]
    maps_base: dict[str, str]
    trials_of_maps: dict[str, list[str]]


def stage_jobs(trials: list[TrialSpec]) -> StageJobs:
    base_models: dict[str, TrialSpec] = {}
    maps: dict[str, TrialSpec] = {}
    maps_base: dict[str, str] = {}
    trials_of_maps: dict[str, list[str]] = {}
    for t in trials:
        b, m = t.base_model_key(), t.maps_key()
        base_models.setdefault(b, t)
        maps.setdefault(m, t)
        maps_base[m] = b
        trials_of_maps.setdefault(m, []).append(t.trial_id)
    return StageJobs(base_models, maps, maps_base, trials_of_maps)
