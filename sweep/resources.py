"""The ``resources:`` section of a sweep spec: what each trial and each stage task reserves on Ray."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from .fields import INT64_MAX, Problems, is_int, is_number, unknown_message
from .yaml_reader import shorten

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Resources:
    """What each trial and each stage task reserves on the Ray cluster."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int | None = None
    device: str = "auto"
    cpus_per_stage: float | None = None
    gpus_per_stage: float | None = None
    max_failures: int = 2

    @property
    def stage_cpus(self) -> float:
        return self.cpus_per_trial if self.cpus_per_stage is None else self.cpus_per_stage

    @property
    def stage_gpus(self) -> float:
        return self.gpus_per_trial if self.gpus_per_stage is None else self.gpus_per_stage


def parse_resources(raw, problems: Problems) -> Resources:
    if raw is None:
        return Resources()
    if not isinstance(raw, Mapping):
        problems.add("resources", f"must be a mapping, got {type(raw).__name__}")
        return Resources()
    names = [f.name for f in dataclasses.fields(Resources)]
    values = {}
    for key, value in raw.items():
        where = f"resources.{key}"
        if key not in names:
            problems.add(where, unknown_message("resources key", key, names))
        elif key == "device":
            if value not in DEVICES:
                problems.add(where, unknown_message("device", value, DEVICES))
            else:
                values[key] = value
        elif key in ("max_concurrent_trials", "max_failures"):
            low = 1 if key == "max_concurrent_trials" else 0
            if value is None and key == "max_concurrent_trials":
                values[key] = None
            elif not is_int(value) or value < low:
                problems.add(where, f"must be an integer >= {low}, got {shorten(value)}")
            elif value > INT64_MAX:
                problems.add(where, f"must be an integer <= {INT64_MAX:,}, got {shorten(value)}")
            else:
                values[key] = value
        elif value is None and key.endswith("_stage"):
            values[key] = None
        elif not is_number(value) or value < 0 or (key.startswith("cpus") and value == 0):
            low = "> 0" if key.startswith("cpus") else ">= 0 (fractions allowed)"
            problems.add(where, f"must be a number {low}, got {shorten(value)}")
        else:
            values[key] = float(value)
    res = Resources(**values)
    if res.device == "cuda" and res.gpus_per_trial == 0:
        problems.add("resources.device", "cuda needs resources.gpus_per_trial > 0: Ray hides GPUs from "
                                         "trials that reserve none")
    if res.device == "cpu" and (res.gpus_per_trial > 0 or (res.gpus_per_stage or 0) > 0):
        problems.add("resources.device", "cpu with gpus_per_trial/gpus_per_stage > 0 reserves GPUs that "
                                         "trials never use; set device: auto or cuda, or gpus to 0")
    return res
