"""Retrain recipe: the cheapest training recipe (lr, epochs, width, weight decay, ...) with which the clean
model of a dataset reaches a target accuracy, so that ROAR retrains are neither under-trained (which
inflates accuracy drops) nor wasteful.

One trial trains a fresh model with the drawn recipe on the train subset minus a held-out validation
share and reports the validation accuracy after every epoch (pruned by ASHA in Ray Tune, by successive
halving in plain Optuna). The objective is ``min(val_acc, target) - cost_weight * relative_cost``:
above the target only the cost counts. Relative cost = epochs x forward multiply-accumulates per image,
over its largest value in the space (so 1.0 = the most expensive recipe the search allows).

The recipe is then chosen from the rows, not from the objective: among finished trials that reached the
target, the cheapest (ties: higher validation accuracy); if none reached it, the most accurate. It is
written to ``STORE/search/<study>/recipe.yaml``; its ``fixed:`` mapping holds TrialSpec fields that a
sweep spec can take over (see ``read_recipe``).

Each finished trial writes a row with protocol ``clean`` (no removal): ``accuracy`` and
``base_accuracy`` are the clean model's accuracy on the whole test split; ``detail_json`` holds the
validation curve and the cost. The removal columns (attribution, post-processing, fraction) keep the
TrialSpec defaults and mean nothing for such a row; the analysis gives protocol ``clean`` no score.
"""
from __future__ import annotations

import inspect
import json
import math
import posixpath
import time

import numpy as np
import yaml

from roar.spec import TrialSpec
from roar.storage import Store

from .space import recipe_fields, space_bounds
from .storage import SEARCH_DIR
from .trial import TrialEnv, TrialOutcome, save_row, search_columns, stored_row, with_study

CLEAN_PROTOCOL = "clean"     # protocol column of recipe rows: the clean model, nothing removed
RECIPE_FILE = "recipe.yaml"


def recipe_spec(cell: TrialSpec, params: dict, study: str) -> TrialSpec:
    return cell.replace(**recipe_fields(params), protocol=CLEAN_PROTOCOL, **with_study(cell, study))


def objective_value(val_accuracy: float, relative_cost: float, settings: dict) -> float:
    """min(val_acc, target) - cost_weight * relative_cost: reaching the target, then cheapness."""
    return min(val_accuracy, settings["target_accuracy"]) - settings["cost_weight"] * relative_cost


# --- cost ---------------------------------------------------------------------------------------------
def forward_macs(model, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of one image (conv and linear layers), counted by hooks."""
    import torch
    from torch import nn

    total = 0

    def conv(m, _inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear(m, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.modules.conv._ConvNd) else linear)
             for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return int(total)


def _macs(spec: TrialSpec, data, width: int) -> int:
    from roar.models import build_model

    model = build_model(spec.model, data.channels, data.num_classes, data.mean, data.std, width=width, seed=0)
    return forward_macs(model, tuple(data.train_x.shape[1:]))


def relative_cost(spec: TrialSpec, data, space) -> tuple[float, int]:
    """(epochs x MACs / the largest epochs x MACs of the space, MACs per image)."""
    macs = _macs(spec, data, spec.width)
    top_width = space_bounds(space, "width") or spec.width
    top_epochs = space_bounds(space, "epochs") or spec.epochs
    top = top_epochs * (macs if top_width == spec.width else _macs(spec, data, top_width))
    return spec.epochs * macs / top, macs


# --- one trial ------------------------------------------------------------------------------------------
def _validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train index, validation index): a seeded permutation, the first round(fraction*n) held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(fraction * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _supports_epoch_callback() -> bool:
    from roar.train import train_model
    return "on_epoch" in inspect.signature(train_model).parameters


def run_recipe_trial(cell: TrialSpec, params: dict, study: str, number: int, env: TrialEnv) -> TrialOutcome:
    """Train, report per epoch, write the row (before the final report, so a stopped trial that
    finished still has its row), return the final objective."""
    spec = recipe_spec(cell, params, study)
    row = stored_row(env.store, spec)
    if row is not None:
        value = stored_recipe_value(row)
        return TrialOutcome(value, spec.trial_id, None if value is not None else row.get("error"), reused=True)
    reporting = {"now": False}
    try:
        row, value = _train_and_row(spec, study, number, env, reporting)
    except Exception as exc:  # noqa: BLE001 - a failed recipe is a failed trial, the search goes on
        if reporting["now"]:  # raised by the reporter: pruned / stopped by the scheduler, not a failure
            raise
        from ..rows import failed_row
        row = failed_row(spec, env.sweep_name, f"{type(exc).__name__}: {exc}")
        row.update(search_columns(study, number))
        save_row(env.store, row)
        return TrialOutcome(None, spec.trial_id, row["error"])
    save_row(env.store, row)
    return TrialOutcome(value, spec.trial_id)


def _train_and_row(spec: TrialSpec, study: str, number: int, env: TrialEnv, reporting: dict) -> tuple[dict, float]:
    import datetime as dt

    import torch

    from roar import pipeline
    from roar.models import build_model
    from roar.train import TrainConfig, evaluate, train_model

    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    device = pipeline.pick_device(env.device)
    data = pipeline.load_data(spec)
    settings = env.settings
    cost, macs = relative_cost(spec, data, env.space)
    train_idx, val_idx = _validation_split(data.train_x.shape[0], settings["validation_fraction"], spec.seed)
    x = data.train_x.to(device).float().div_(255)
    x_train, y_train = x[torch.from_numpy(train_idx)], data.train_y[torch.from_numpy(train_idx)]
    x_val, y_val = x[torch.from_numpy(val_idx)], data.train_y[torch.from_numpy(val_idx)]
    model = build_model(spec.model, data.channels, data.num_classes, data.mean, data.std, width=spec.width,
                        seed=spec.seed)
    curve: list[float] = []

    def on_epoch(epoch: int, trained) -> None:
        accuracy, _ = evaluate(trained, x_val, y_val, device)
        curve.append(accuracy)
        if epoch < spec.epochs and env.report is not None:  # the last epoch is reported after the row
            reporting["now"] = True
            env.report(epoch, objective_value(accuracy, cost, settings))
            reporting["now"] = False

    kwargs = {"on_epoch": on_epoch} if _supports_epoch_callback() else {}
    t_train = time.perf_counter()
    train_model(model, x_train, y_train, TrainConfig.from_spec(spec), device, seed=spec.seed,
                fill=torch.tensor(data.mean), **kwargs)
    if not kwargs:  # trainer without the per-epoch hook: one report at the end, no pruning
        on_epoch(spec.epochs, model)
    seconds_train = time.perf_counter() - t_train
    val_accuracy = curve[-1]
    test_accuracy, test_loss = evaluate(model, data.test_x.to(device).float().div_(255), data.test_y, device)
    n_test = int(data.test_x.shape[0])
    low, high = pipeline.accuracy_interval(test_accuracy, n_test)
    value = objective_value(val_accuracy, cost, settings)
    row = pipeline.identity_columns(spec, env.sweep_name)
    row.update(search_columns(study, number))
    row.update(pipeline._provenance(), device=pipeline.device_label(device), started_at=started,
               accuracy=test_accuracy, loss=test_loss, base_accuracy=test_accuracy,
               n_test=n_test, ci_low=low, ci_high=high, status="ok", seconds_train=seconds_train,
               seconds_total=time.perf_counter() - t0, finished_at=dt.datetime.now(dt.timezone.utc),
               detail_json=json.dumps({
                   "validation_accuracy": val_accuracy, "validation_curve": curve,
                   "target_accuracy": settings["target_accuracy"],
                   "reached_target": val_accuracy >= settings["target_accuracy"],
                   "relative_cost": cost, "macs_per_image": macs, "objective": value,
                   "train_images": int(len(train_idx)), "validation_images": int(len(val_idx))}))
    return row, value


def stored_recipe_value(row: dict) -> float | None:
    if row.get("status") != "ok" or not row.get("detail_json"):
        return None
    return float(json.loads(row["detail_json"])["objective"])


def stored_recipe_value_fn(cell: TrialSpec, study: str, env: TrialEnv):
    def value(params: dict):
        row = stored_row(env.store, recipe_spec(cell, params, study))
        return None if row is None else stored_recipe_value(row)
    return value


# --- choosing and writing the recipe -----------------------------------------------------------------
def study_rows(store: Store, study: str) -> list[dict]:
    """Finished (status ok) clean-model rows of one recipe study."""
    from ..rows import read_all

    table = read_all(store)
    return [r for r in table.to_pylist()
            if r["study"] == study and r["protocol"] == CLEAN_PROTOCOL and r["status"] == "ok"]


def choose_recipe(rows: list[dict]) -> dict | None:
    """The cheapest row that reached the target (ties: higher validation accuracy), else the most
    accurate. Returns the row with its parsed detail under 'detail', or None without rows."""
    if not rows:
        return None
    parsed = [{**r, "detail": json.loads(r["detail_json"])} for r in rows]
    reached = [r for r in parsed if r["detail"]["reached_target"]]
    if reached:
        return min(reached, key=lambda r: (r["detail"]["relative_cost"], -r["detail"]["validation_accuracy"],
                                           r["search_trial"]))
    return max(parsed, key=lambda r: (r["detail"]["validation_accuracy"], -r["search_trial"]))


def recipe_document(chosen: dict, study: str, searched: list[str], source: str) -> str:
    """The recipe YAML: ``fixed:`` (the searched fields) plus the evidence behind the choice."""
    config = json.loads(chosen["config_json"])
    d = chosen["detail"]
    doc = {
        "fixed": {name: config[name] for name in searched},
        "evidence": {
            "study": study, "search_trial": chosen["search_trial"], "trial_id": chosen["trial_id"],
            "reached_target": bool(d["reached_target"]), "target_accuracy": d["target_accuracy"],
            "validation_accuracy": round(d["validation_accuracy"], 6),
            "test_accuracy": round(chosen["accuracy"], 6), "relative_cost": round(d["relative_cost"], 6),
            "for": {k: config[k] for k in TrialSpec.MODEL_FIELDS if k not in searched},
        },
    }
    head = (f"# Retrain recipe chosen by `roar search {source}` (study {study}).\n"
            f"# A sweep spec takes it over with `recipe: <this file>`: the fields under fixed: join its fixed "
            f"section.\n")
    if not d["reached_target"]:
        head += ("# WARNING: no trial reached the target accuracy; this is the most accurate recipe found. "
                 "Widen the space or add trials.\n")
    return head + yaml.safe_dump(doc, sort_keys=False)


def recipe_key(study: str) -> str:
    return posixpath.join(SEARCH_DIR, study, RECIPE_FILE)


def write_recipe(store: Store, study: str, searched: list[str], source: str) -> tuple[str, dict] | None:
    """Choose the recipe of a study from its rows and write it; returns (where, chosen row) or None."""
    chosen = choose_recipe(study_rows(store, study))
    if chosen is None:
        return None
    store.write_bytes(recipe_key(study), recipe_document(chosen, study, searched, source).encode())
    return store.path(recipe_key(study)), chosen


def read_recipe(path: str, endpoint_url: str | None = None) -> dict:
    """The ``fixed`` fields of a recipe file (a local path or a store URI such as s3://b/p/recipe.yaml),
    validated as TrialSpec fields; raises ValueError naming the file and the field."""
    from ..fields import Problems, TRIAL_FIELDS, check_value

    from ..yaml_reader import MAX_BYTES, read_yaml_bytes, read_yaml_file

    # bounded reads (an endless or huge file is refused, not read), no duplicate keys, no alias bombs
    if "://" in path and not path.startswith("file://"):
        parent, name = path.rsplit("/", 1)
        store = Store(parent, endpoint_url)
        if store.exists(name) and store.size(name) > MAX_BYTES:
            raise ValueError(f"{path}: larger than {MAX_BYTES:,} bytes; a recipe is a few hundred bytes of YAML")
        doc = read_yaml_bytes(store.read_bytes(name), path)
    else:
        doc = read_yaml_file(path[len("file://"):] if path.startswith("file://") else path)
    fixed = doc.get("fixed") if isinstance(doc, dict) else None
    if not isinstance(fixed, dict) or not fixed:
        raise ValueError(f"{path}: a recipe file needs a non-empty fixed: mapping of trial fields")
    problems = Problems()
    out = {}
    for name, value in fixed.items():
        if name not in TRIAL_FIELDS:
            problems.add(f"{path}: fixed.{name}", f"unknown trial field {name!r}")
            continue
        out[name] = check_value(name, value, f"{path}: fixed.{name}", problems)
    if problems:
        raise ValueError("; ".join(problems))
    return out


def recipe_summary(store: Store, study: str, searched: list[str], source: str) -> list[str]:
    written = write_recipe(store, study, searched, source)
    if written is None:
        return [f"  {study}: no finished trial; no recipe written"]
    where, chosen = written
    d = chosen["detail"]
    config = json.loads(chosen["config_json"])
    recipe = ", ".join(f"{k}={config[k]:.4g}" if isinstance(config[k], float) else f"{k}={config[k]}"
                       for k in searched)
    verdict = "reached" if d["reached_target"] else "DID NOT reach"
    return [f"  {study}: {recipe} {verdict} the target {d['target_accuracy']:g} (validation accuracy "
            f"{d['validation_accuracy']:.4f}, test {chosen['accuracy']:.4f}, relative cost "
            f"{d['relative_cost']:.3f}); written to {where}"]
