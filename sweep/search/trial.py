"""What one search trial gets and gives back, for both backends (plain Optuna and Ray Tune) and both
kinds of search (sweep.search.gaming, sweep.search.recipe).

A search trial is an ordinary trial of the sweep: a TrialSpec, one result row in
``STORE/rows/<trial_id>.parquet`` with the ``study`` and ``search_trial`` columns set. Its TrialSpec
carries the study name in ``options['search_study']``, so its trial_id never collides with a grid
sweep's trial in the same store (a sweep's analysis leaves search rows out), while two trials of one
study that draw the same point share one row: the second reuses the stored result instead of
retraining (the trial is deterministic given its TrialSpec).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from roar.spec import TrialSpec
from roar.storage import Store

from ..rows import read_row_file, row_file_ok, row_key, write_row

STUDY_OPTION = "search_study"
OBJECTIVE = "objective"   # the metric name both backends maximise

# report(epoch, value): an intermediate objective value after an epoch (1-based). The local backend
# raises optuna.TrialPruned from it when the pruner says so; Ray Tune's ASHA stops the trial instead.
Reporter = Callable[[int, float], None]


@dataclass
class TrialEnv:
    """Everything a trial needs besides its cell and parameters."""

    store: Store
    sweep_name: str
    device: str = "cpu"
    settings: dict = field(default_factory=dict)
    space: list = field(default_factory=list)
    report: Reporter | None = None


@dataclass
class TrialOutcome:
    value: float | None           # objective (higher = better); None when the trial failed
    trial_id: str
    error: str | None = None
    reused: bool = False          # the row was already in the store (same point drawn before)


class TrialFailed(RuntimeError):
    """The trial ran but its row says status='failed'; Optuna records the trial as FAIL."""


def with_study(cell: TrialSpec, study: str, **options) -> dict:
    """The cell's options plus the study name and any extra options, as a TrialSpec options tuple."""
    merged = {**dict(cell.options), STUDY_OPTION: study, **options}
    return {"options": tuple(sorted(merged.items()))}


def stored_row(store: Store, spec: TrialSpec) -> dict | None:
    """The stored row of this trial as a dict, or None when it is not in the store."""
    key = row_key(spec.trial_id)
    if not row_file_ok(store, key):
        return None
    return read_row_file(store, key).to_pylist()[0]


def save_row(store: Store, row: dict) -> None:
    write_row(store, row)


def search_columns(study: str, number: int) -> dict:
    return {"study": study, "search_trial": int(number)}
