"""Per-field rules of a sweep spec: which TrialSpec field takes which type, range and registry names.

Each check adds "<where>: <field> <value> <what is valid>" to a problem list and returns the value
normalised to the field's type (ints stay ints, numbers become floats), so a spec always yields the
same trial ids.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, Callable, Mapping

from roar.registry import closest
from roar.spec import TrialSpec

from .yaml_reader import shorten

TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(TrialSpec))


def unknown_message(kind: str, name, valid) -> str:
    """"unknown attribution 'salency'; did you mean 'saliency'? valid: ...". Besides a close spelling,
    a unique valid key that starts with the name counts as the hint ('gpus' -> 'gpus_per_trial')."""
    valid = [str(v) for v in valid]
    hint = closest(str(name), valid)
    if hint is None:
        starts = [v for v in valid if isinstance(name, str) and name and v.startswith(name)]
        hint = starts[0] if len(starts) == 1 else None
    did_you_mean = f"; did you mean {hint!r}?" if hint else ";"
    return f"unknown {kind} {shorten(name)}{did_you_mean} valid: {', '.join(sorted(valid))}"

# Registries the valid names come from: field -> (module, attribute, fallback when the attribute is absent).
REGISTRY_SOURCES: dict[str, tuple[str, str, tuple[str, ...] | None]] = {
    "dataset": ("roar.datasets", "DATASETS", None),
    "model": ("roar.models", "MODELS", None),
    "attribution": ("roar.attribution", "ATTRIBUTIONS", None),
    "postprocess": ("roar.postprocess", "POSTPROCESS", None),
    "fill": ("roar.fills", "FILLS", None),
    "protocol": ("roar.protocols", "PROTOCOLS", None),
    "selection": ("roar.removal", "SELECTIONS", None),
    "optimizer": ("roar.train", "OPTIMIZERS", None),
    "schedule": ("roar.train", "SCHEDULES", None),
    "augment": ("roar.train", "AUGMENTATIONS", None),
    "target": ("roar.attribution", "TARGETS", ("label", "predicted")),
    "reduction": ("roar.attribution", "REDUCTIONS", ("sum", "abs_sum", "max", "mean")),
    "sign": ("roar.attribution", "SIGNS", ("abs", "positive", "raw")),
    "retrain_mode": ("roar.protocols", "RETRAIN_MODES", ("scratch", "finetune")),
}


def valid_names(field_name: str) -> tuple[str, ...]:
    module, attr, fallback = REGISTRY_SOURCES[field_name]
    registry = getattr(importlib.import_module(module), attr, None)
    if registry is None:
        if fallback is None:
            raise ImportError(f"{module}.{attr} is missing: the {field_name} registry is required")
        return fallback
    return tuple(registry)


# Integers are stored as int64 in Parquet and handed to torch/numpy: a value outside this range would
# pass the spec and fail after the stages ran.
INT64_MAX = 2 ** 63 - 1
# Seeds are multiplied and offset inside the protocols (seed * 1000 + k) and fed to numpy/torch RNGs.
SEED_MAX = 2 ** 32 - 1
MAX_KERNEL_PIXELS = 1024
PATH_MAX, NAME_MAX_BYTES = 4096, 255   # what Linux file systems hold (data_root)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A finite int or float (an int too large for a float is not: math.isfinite would overflow)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, int):
        return abs(v) <= INT64_MAX
    return math.isfinite(v)


# field -> (kind, range check returning an error fragment or None). kinds: name, int, float, str.
_Check = Callable[[Any], "str | None"]


def _at_least(lo, what="", hi=INT64_MAX):
    def check(v):
        if v < lo:
            return f"must be >= {lo}{what}"
        return None if v <= hi else f"must be <= {hi:,}{what}"
    return check


def _open_unit(v):
    return None if 0 < v < 1 else "must be strictly between 0 and 1 (a fraction of the image's pixels)"


def _half_open_unit(v):
    return None if 0 <= v < 1 else "must be in [0, 1)"


FIELD_RULES: dict[str, tuple[str, _Check | None, bool]] = {  # (kind, check, nullable)
    "dataset": ("name", None, False), "model": ("name", None, False), "attribution": ("name", None, False),
    "postprocess": ("name", None, False), "fill": ("name", None, False), "protocol": ("name", None, False),
    "selection": ("name", None, False), "optimizer": ("name", None, False), "schedule": ("name", None, False),
    "augment": ("name", None, False), "target": ("name", None, False), "reduction": ("name", None, False),
    "sign": ("name", None, False), "retrain_mode": ("name", None, False),
    "subset": ("int", _at_least(1, " images"), True), "test_subset": ("int", _at_least(1, " images"), True),
    "data_seed": ("int", _at_least(0, hi=SEED_MAX), False), "data_root": ("str", None, True),
    "image_size": ("int", _at_least(1, " pixels"), True), "width": ("int", _at_least(1), False),
    "epochs": ("int", _at_least(1), False), "batch_size": ("int", _at_least(1), False),
    "lr": ("float", lambda v: None if v > 0 else "must be > 0", False),
    "momentum": ("float", _half_open_unit, False), "weight_decay": ("float", _at_least(0), False),
    "removal_augment": ("float", _half_open_unit, False),
    # a kernel wider than any image only costs memory (radius 3 sigma): 1024 pixels bounds both
    "sigma": ("float", _at_least(0, " (a Gaussian blur sigma in pixels)", hi=MAX_KERNEL_PIXELS), False),
    "filter_size": ("int", _at_least(0, " pixels", hi=MAX_KERNEL_PIXELS), False),
    "fraction": ("float", _open_unit, False), "seed": ("int", _at_least(0, hi=SEED_MAX), False),
    "options": ("options", None, False),
}
assert set(FIELD_RULES) == set(TRIAL_FIELDS), "every TrialSpec field needs a validation rule"


class Problems(list):
    def add(self, where: str, message: str) -> None:
        self.append(f"{where}: {message}")


def check_value(field_name: str, value, where: str, problems: Problems):
    """Type- and range-check one value of a TrialSpec field; return it normalised (or None on error)."""
    kind, check, nullable = FIELD_RULES[field_name]
    if value is None:
        if nullable:
            return None
        problems.add(where, f"{field_name} may not be null")
        return None
    if kind == "name":
        if not isinstance(value, str):
            problems.add(where, f"{field_name} must be a name (string), got {type(value).__name__} {shorten(value)}")
            return None
        valid = valid_names(field_name)
        if value not in valid:
            problems.add(where, unknown_message(field_name, value, valid))
            return None
        return value
    if kind == "str":
        if not isinstance(value, str):
            problems.add(where, f"{field_name} must be a string or null, got {type(value).__name__} {shorten(value)}")
            return None
        if any(c in value for c in "\0\n\r") or len(value) > PATH_MAX or \
                any(len(part.encode()) > NAME_MAX_BYTES for part in value.split("/")):
            problems.add(where, f"{field_name} must be a path without NUL or line breaks, at most {PATH_MAX:,} "
                                f"characters and {NAME_MAX_BYTES} bytes per folder name, got {shorten(value)}")
            return None
        return value
    if kind == "options":
        return check_options(value, where, problems)
    ok = is_int(value) if kind == "int" else is_number(value)
    if not ok:
        expected = "an integer" if kind == "int" else "a finite number"
        problems.add(where, f"{field_name} must be {expected}{' or null' if nullable else ''}, "
                            f"got {type(value).__name__} {shorten(value)}")
        return None
    value = int(value) if kind == "int" else float(value)
    err = check(value) if check else None
    if err:
        problems.add(where, f"{field_name} {shorten(value)} {err}")
        return None
    return value


def check_options(value, where: str, problems: Problems):
    """Protocol options: known names (sweep.option_rules), scalar values of the type and range the
    protocol reads. Returns the sorted (name, value) tuple of the good ones."""
    from .option_rules import OPTION_RULES, option_problem

    if not isinstance(value, Mapping):
        problems.add(where, f"options must be a mapping of name: value, got {type(value).__name__} {shorten(value)}")
        return None
    out = []
    for k, v in value.items():
        if not isinstance(k, str):
            problems.add(where, f"option names must be strings, got {shorten(k)}")
        elif k == "postprocess_params":
            problems.add(f"{where}.{k}", "give post-processing parameters in a postprocess entry, e.g. "
                                         "postprocess: [{name: gamma, gamma: 0.5}, {name: quantize, levels: 8}]")
        elif k not in OPTION_RULES:
            problems.add(f"{where}.{k}", unknown_message("option", k, OPTION_RULES))
        elif v is not None and not isinstance(v, (str, int, float, bool)):
            problems.add(f"{where}.{k}", f"option values must be scalars (string, number, bool, null), "
                                         f"got {type(v).__name__} {shorten(v)}")
        elif (err := option_problem(k, v)) is not None:
            problems.add(f"{where}.{k}", err if len(err) <= 300 else err[:300] + "...")
        else:
            out.append((k, v))
    return tuple(sorted(out))


def hashable(v):
    return v if not isinstance(v, list) else tuple(v)
