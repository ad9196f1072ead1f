"""Checks of a parsed sweep spec that look at the whole grid (without expanding it): fields that cannot
change a result, post-processing parameters, image and subset sizes, absurd sizes, the grid's size,
the sweep name and the store URI. Each returns messages "<where>: <what>, <what is valid>"; the
caller (sweep.spec.parse_spec) reports them all at once, before Ray starts.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from analysis.contract import PROTOCOL_FACTS
from roar.spec import TrialSpec

from .fields import Problems
from .yaml_reader import shorten

if TYPE_CHECKING:
    from .spec import ClusterInfo, SweepSpec

# Pseudo-field of a grid choice: the extra parameters of a postprocess entry (gamma, levels, steps).
# grid.trial_of moves them into TrialSpec.options['postprocess_params'], where `roar search` puts them.
POSTPROCESS_PARAMS = "postprocess_params"

DEFAULT_MAX_TRIALS = 100_000   # grid points a spec may have unless it raises max_trials itself

# --- name and store ---------------------------------------------------------------------------------
NAME_MAX = 100   # the name goes into Tune's folder name (with a timestamp); file names stop at 255 bytes
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
STORE_SCHEMES = ("file", "s3", "gs", "gcs")


def name_problem(name) -> str | None:
    if isinstance(name, str) and len(name) <= NAME_MAX and _NAME_RE.fullmatch(name):
        return None
    return (f"must be 1-{NAME_MAX} characters of letters, digits, '-', '_', '.' (starting with a letter or "
            f"digit; it names folders), got {shorten(name)}")


def store_problem(uri) -> str | None:
    valid = "a local folder, file://path, s3://bucket/prefix or gs://bucket/prefix"
    if not isinstance(uri, str) or not uri.strip():
        return f"must be {valid}, got {shorten(uri)}"
    if "\0" in uri or "\n" in uri:
        return f"must be {valid} without control characters, got {shorten(uri)}"
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.lower() not in STORE_SCHEMES:
        return f"unsupported URI scheme {scheme!r} in {shorten(uri)}; valid: {valid}"
    if sep and scheme.lower() != "file" and not rest.strip("/"):
        return f"{shorten(uri)} names no bucket; valid: {valid}"
    return None


# --- the grid without expanding it --------------------------------------------------------------------
def projected_grid(spec: "SweepSpec", fields: tuple[str, ...]) -> set[tuple]:
    """The distinct combinations of `fields` the grid uses (without expanding the whole grid)."""
    default = TrialSpec()
    combos = [{f: spec.fixed.get(f, getattr(default, f, ())) for f in fields}]
    for _, choices in spec.groups:
        projections = {tuple((k, c[k]) for k in fields if k in c) for c in choices}
        if projections != {()}:
            combos = [{**base, **dict(p)} for base in combos for p in projections]
    return {tuple(c[f] for f in fields) for c in combos}


def owner(spec: "SweepSpec", field_name: str) -> str:
    """Where the spec sets a field: 'fixed', a group ('axes.sigma', 'postprocess') or 'default'."""
    if field_name in spec.fixed:
        return f"fixed.{field_name}"
    for where, choices in spec.groups:
        if any(field_name in c for c in choices):
            return where
    return "default"


def grid_size_problem(spec: "SweepSpec", max_trials: int) -> str | None:
    sizes = [(where, len(choices)) for where, choices in spec.groups if len(choices) > 1]
    points = math.prod(n for _, n in sizes)
    if points <= max_trials:
        return None
    factors = " x ".join(f"{where} {n:,}" for where, n in sizes)
    return (f"the grid has {points:,} points ({factors}), more than max_trials={max_trials:,}; shrink an axis, "
            f"or set max_trials in the spec (or roar run --max-trials) if you mean it")


# --- fields that cannot change a result --------------------------------------------------------------
@dataclass(frozen=True)
class Relevance:
    """`field` changes a result only where `matters(value of context)`; elsewhere its values repeat
    one result. ``hint`` says how to write the spec instead."""

    field: str
    context: str
    matters: Callable[[object], bool]
    hint: str


def _postprocess_uses(param: str) -> Callable[[object], bool]:
    from analysis.contract import POSTPROCESS_FACTS
    return lambda name: name in POSTPROCESS_FACTS and param in POSTPROCESS_FACTS[name].strength_fields


def _retrains(protocol) -> bool:
    from roar.protocols import PROTOCOLS
    return protocol not in PROTOCOLS or PROTOCOLS[protocol].retrains


def _uses_model(attribution) -> bool:
    from roar.attribution import ATTRIBUTIONS
    return attribution not in ATTRIBUTIONS or ATTRIBUTIONS[attribution].uses_model


RELEVANCE = (
    Relevance("sigma", "postprocess", _postprocess_uses("sigma"),
              "give sigma inside the entries that use it: postprocess: [identity, {name: gaussian, sigma: [1, 2]}]"),
    Relevance("filter_size", "postprocess", _postprocess_uses("filter_size"),
              "give filter_size inside the entries that use it: postprocess: [{name: max_filter, filter_size: [3, 5]}]"),
    Relevance("retrain_mode", "protocol", _retrains,
              "give it per protocol: protocols: [{name: roar, retrain_mode: [scratch, finetune]}, road_morf]"),
    Relevance("fill", "protocol", lambda p: p not in PROTOCOL_FACTS or PROTOCOL_FACTS[p].uses_fill,
              "ROAD always imputes (fill 'road'); give fill per protocol: protocols: [{name: roar, fill: [mean, zero]}, "
              "road_morf]"),
    Relevance("target", "attribution", _uses_model,
              "a model-free map (random, sobel, center) is the same for every target; cross target only with "
              "methods that use the model"),
)


def irrelevant_axis_problems(spec: "SweepSpec") -> list[str]:
    problems = Problems()
    for rule in RELEVANCE:
        values_by_context: dict = defaultdict(set)
        for context, value in projected_grid(spec, (rule.context, rule.field)):
            values_by_context[context].add(value)
        for context, values in sorted(values_by_context.items(), key=lambda kv: str(kv[0])):
            if len(values) > 1 and not rule.matters(context):
                shown = shorten(sorted(values, key=str))
                problems.add(owner(spec, rule.field),
                             f"{rule.field} takes {len(values)} values {shown} with {rule.context} {context!r}, "
                             f"which ignores {rule.field}: those trials would repeat one result; {rule.hint}")
    return list(problems)


# --- post-processing parameters ----------------------------------------------------------------------
def postprocess_param_problems(spec: "SweepSpec") -> list[str]:
    from analysis.contract import example_entry

    from .option_rules import postprocess_params_problem

    problems = Problems()
    where = owner(spec, "postprocess")
    for name, params in sorted(projected_grid(spec, ("postprocess", POSTPROCESS_PARAMS)), key=str):
        message = postprocess_params_problem(name, dict(params or ()))
        if message:
            hint = example_entry(name)
            problems.add(where, message + (f"; e.g. postprocess: [{hint}]" if hint else ""))
    return list(problems)


# --- sizes --------------------------------------------------------------------------------------------
# Smallest image side (pixels) each model's forward pass accepts (pooling stages); absent = 1.
MIN_IMAGE_SIZE = {"small_cnn": 4, "fast_resnet": 8}


def _dataset(name):
    """The dataset's registry record (native_size, split_sizes), or None for an unknown name."""
    from roar.datasets import DATASETS
    return DATASETS.get(name)


def image_size_problems(spec: "SweepSpec") -> list[str]:
    problems = Problems()
    for dataset, size, model in sorted(projected_grid(spec, ("dataset", "image_size", "model")), key=str):
        loader = _dataset(dataset)
        side = size if size is not None else (loader.native_size if loader else None)
        least = MIN_IMAGE_SIZE.get(model, 1)
        if side is not None and side < least:
            what = f"image_size {size}" if size is not None else f"the native size {side} px of {dataset!r}"
            problems.add(owner(spec, "image_size" if size is not None else "model"),
                         f"{what} is smaller than model {model!r} accepts; valid: image_size >= {least} pixels")
    return list(problems)


def subset_problems(spec: "SweepSpec") -> list[str]:
    problems = Problems()
    for field_name, split in (("subset", 0), ("test_subset", 1)):
        for dataset, n in sorted(projected_grid(spec, ("dataset", field_name)), key=str):
            loader = _dataset(dataset)
            total = loader.split_sizes[split] if loader and loader.split_sizes else None
            if n is not None and total is not None and n > total:
                problems.add(owner(spec, field_name),
                             f"{field_name} {n:,} is larger than the {'train' if split == 0 else 'test'} split of "
                             f"{dataset!r} ({total:,} images); valid: 1..{total} or null for all")
    return list(problems)


# Above these a value is almost certainly a typo; a warning with the cost estimate, not an error.
WARN_ABOVE = {"epochs": 1000, "width": 1024, "batch_size": 65536, "image_size": 1024, "filter_size": 64,
              "sigma": 64.0}


def size_warnings(spec: "SweepSpec") -> list[str]:
    warnings = Problems()
    for field_name, limit in WARN_ABOVE.items():
        values = [v for (v,) in projected_grid(spec, (field_name,)) if v is not None and v > limit]
        if values:
            warnings.add(owner(spec, field_name), f"{field_name} {shorten(max(values))} is unusually large "
                                                  f"(above {limit:,}); is it a typo?")
    return list(warnings)


# --- moved from sweep.spec: the running environment and the true-pixel datasets -------------------------
def environment_problems(spec: "SweepSpec", cluster: "ClusterInfo", check_store: bool = True) -> list[str]:
    """Problems only the running environment reveals: data files, resources, store writability."""
    from roar.datasets import dataset_available
    from roar.storage import Store

    problems = Problems()
    res = spec.resources
    want_gpus = max(res.gpus_per_trial, res.stage_gpus)
    if want_gpus > 0 and cluster.gpus < want_gpus:
        problems.add("resources", f"gpus_per_trial={res.gpus_per_trial:g}, gpus_per_stage={res.stage_gpus:g} "
                                  f"but {cluster.where} has {cluster.gpus:g} GPU(s); set them to 0 to run on CPU")
    if res.device == "cuda" and cluster.gpus == 0:
        problems.add("resources.device", f"cuda requested but {cluster.where} has no GPU")
    for key, want in (("cpus_per_trial", res.cpus_per_trial), ("cpus_per_stage", res.stage_cpus)):
        if want > cluster.cpus:
            problems.add(f"resources.{key}", f"{want:g} exceeds the {cluster.cpus:g} CPU(s) of {cluster.where}; "
                                             f"no trial could ever start")
    for name, root in sorted(_dataset_roots(spec), key=str):
        try:
            message = dataset_available(name, root)
        except (OSError, ValueError) as exc:  # a path the file system refuses
            message = f"data_root {shorten(root)} cannot be checked: {type(exc).__name__}: {shorten(str(exc), 120)}"
        if message:
            problems.add(f"dataset {name}", message)
    if check_store:
        message = Store(spec.store, spec.endpoint_url).check_writable()
        if message:
            problems.add("store", message)
    return list(problems)


def true_pixel_problems(spec: "SweepSpec") -> list[str]:
    """Protocols and attributions flagged needs_true_pixels only run on datasets that have them."""
    from roar.attribution import ATTRIBUTIONS
    from roar.datasets import DATASETS
    from roar.protocols import PROTOCOLS

    problems = Problems()
    for field_name, registry in (("protocol", PROTOCOLS), ("attribution", ATTRIBUTIONS)):
        for dataset, value in sorted(projected_grid(spec, ("dataset", field_name)), key=str):
            entry, loader = registry.get(value), DATASETS.get(dataset)
            if entry and loader and entry.needs_true_pixels and not loader.has_true_pixels:
                valid = sorted(n for n, d in DATASETS.items() if d.has_true_pixels)
                problems.add(field_name, f"{value!r} needs a dataset with known true pixels ({', '.join(valid)}),"
                                         f" but the grid pairs it with dataset {dataset!r}")
    return list(problems)


def _dataset_roots(spec: "SweepSpec") -> set[tuple[str, str | None]]:
    return projected_grid(spec, ("dataset", "data_root"))
