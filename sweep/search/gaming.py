"""ROAR gaming: for a fixed attribution method, how far information-free post-processing of its maps
moves the benchmark score. One trial = one ordinary sweep trial (stage A and B are cached, only the
protocol runs) with the drawn post-processing; its objective is the protocol's score, oriented so
that higher = "better method" (analysis.contract.PROTOCOL_SCORES: the accuracy drop for ROAR).
"""
from __future__ import annotations

import math

from roar.spec import TrialSpec

from .space import baseline_params, gaming_fields
from .trial import TrialEnv, TrialOutcome, save_row, search_columns, stored_row, with_study


def gaming_spec(cell: TrialSpec, params: dict, study: str) -> TrialSpec:
    """The trial of one drawn point: the cell with the post-processing of `params`."""
    fields, extra = gaming_fields(params)
    options = {"postprocess_params": extra} if extra else {}
    return cell.replace(**fields, **with_study(cell, study, **options))


def score_of(row: dict) -> float | None:
    """The row's benchmark score (higher = better method), None for a failed row or a missing value."""
    from analysis.contract import PROTOCOL_SCORES

    if row.get("status") != "ok":
        return None
    rule = PROTOCOL_SCORES[row["protocol"]]
    value = row.get(rule.column)
    if value is None and rule.column == "accuracy_drop" and row.get("accuracy") is not None:
        value = row["base_accuracy"] - row["accuracy"]
    return None if value is None or not math.isfinite(value) else rule.direction * float(value)


def run_gaming_trial(cell: TrialSpec, params: dict, study: str, number: int, env: TrialEnv) -> TrialOutcome:
    from roar import pipeline

    spec = gaming_spec(cell, params, study)
    row = stored_row(env.store, spec)
    reused = row is not None
    if row is None:
        row = pipeline.run_trial(spec, env.store, pipeline.pick_device(env.device), env.sweep_name,
                                 extra=search_columns(study, number))
        save_row(env.store, row)
    value = score_of(row)
    error = None if value is not None else (row.get("error") or "the row has no score")
    return TrialOutcome(value, spec.trial_id, error, reused)


def stored_gaming_value(cell: TrialSpec, study: str, env: TrialEnv):
    """params -> the stored score of that point, or None (for resuming trials a dead process left)."""
    def value(params: dict):
        row = stored_row(env.store, gaming_spec(cell, params, study))
        return None if row is None else score_of(row)
    return value


def gaming_summary(study, cell: TrialSpec) -> list[str]:
    """Best transform vs the raw map, in score units (accuracy points for ROAR)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return [f"  {study.study_name}: no completed trial"]
    best = max(done, key=lambda t: t.value)
    raw = [t.value for t in done if t.params == baseline_params()]
    lines = [f"  {study.study_name} ({cell.attribution}, {cell.protocol} at fraction {cell.fraction:g}): "
             f"{len(done)} trials; best {describe(best.params)} score {best.value:+.4f}"]
    if raw:
        lines[-1] += f" vs raw map {raw[0]:+.4f} (change {best.value - raw[0]:+.4f})"
    return lines


def describe(params: dict) -> str:
    rest = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items() if k != "transform")
    return params["transform"] + (f" ({rest})" if rest else "")


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
