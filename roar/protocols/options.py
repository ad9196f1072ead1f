"""Reading protocol options (TrialSpec.options) with errors that name the option, the value and what
is valid.

Sweep specs allow scalar option values only, so a list of numbers may be given either as a list (in
Python) or as a comma-separated string ("0, 0.01, 0.05") in YAML; both give the same trial.
"""
from __future__ import annotations

import math
import numbers

from ..spec import TrialSpec


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def number_list(spec: TrialSpec, name: str, default, low: float = float("-inf"), high: float = float("inf"),
                what: str = "numbers") -> list[float]:
    """Option `name` as a list of finite floats in [low, high]: a list/tuple of numbers or a
    comma-separated string."""
    value = spec.option(name, default)
    items = value.split(",") if isinstance(value, str) else value
    numbers_ = []
    if isinstance(items, (list, tuple)):
        for item in items:
            try:
                number = float(item) if isinstance(item, str) else (float(item) if _is_number(item) else None)
            except ValueError:
                number = None
            if number is None or not math.isfinite(number) or not low <= number <= high:
                numbers_ = None
                break
            numbers_.append(number)
    if not numbers_:
        raise ValueError(f"option {name}={value!r}: must be a non-empty list of {what} in [{low}, {high}] "
                         f"(a list, or a comma-separated string such as {','.join(map(str, default))!r})")
    return numbers_


def positive_int(spec: TrialSpec, name: str, default: int, minimum: int = 1) -> int:
    value = spec.option(name, default)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"option {name}={value!r}: must be an integer >= {minimum}")
    return int(value)


def boolean(spec: TrialSpec, name: str, default: bool) -> bool:
    value = spec.option(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"option {name}={value!r}: must be true or false")
    return value


def number(spec: TrialSpec, name: str, default: float, low: float, high: float) -> float:
    value = spec.option(name, default)
    if not _is_number(value) or not low <= value <= high:
        raise ValueError(f"option {name}={value!r}: must be a number in [{low}, {high}]")
    return float(value)
