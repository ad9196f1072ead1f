"""The sweep spec: a YAML file -> a validated ``SweepSpec``, with every problem reported at once.

A spec names a results store, the resources each trial gets, and the grid. Every field of
``roar.spec.TrialSpec`` may be fixed (one value for all trials) or an axis (a list of values the grid
crosses). Example (``specs/demo.yaml`` is a full one)::

    name: demo                      # sweep name, stored in every row's `sweep` column
    description: free text          # optional, ignored by the runner
    store: results/demo             # local folder, file://, s3://bucket/prefix or gs://bucket/prefix
    storage:                        # optional; only for S3-compatible servers (MinIO, Ceph, moto)
      endpoint_url: http://localhost:9000
    resources:                      # all optional
      cpus_per_trial: 1             # CPUs reserved per trial (> 0; fractions allowed)
      gpus_per_trial: 0.25          # GPUs per trial (>= 0; 0.25 packs four retrains on one GPU)
      max_concurrent_trials: 4      # at most this many trials at once (default: as many as fit)
      device: auto                  # auto | cpu | cuda: torch device inside trials
      cpus_per_stage: 1             # stage A/B tasks (base model, maps); default: cpus_per_trial
      gpus_per_stage: 1             # default: gpus_per_trial
      max_failures: 2               # retries of a trial whose worker or node died (not of trial errors)
    recipe: results/search-recipe/search/search-recipe/recipe.yaml   # optional: the training recipe
                                    # chosen by `roar search` (its fields join `fixed`; relative paths
                                    # are looked up from the working directory, then the spec's folder)
    fixed:                          # TrialSpec fields with one value
      model: small_cnn
      epochs: 2
      options: {}                   # protocol-specific options: a mapping of name: scalar
    axes:                           # TrialSpec fields with a list of values: the grid crosses them
      attribution: [saliency, integrated_gradients, smoothgrad, random]
      fraction: [0.1, 0.3, 0.5, 0.7, 0.9]
      seed: [0, 1]
    datasets:                       # optional: datasets with their own settings (one grid point each)
      - {name: fashion_mnist, subset: 2000, test_subset: 1000, root: null}
      - {name: cifar10, subset: 5000, image_size: null, data_seed: 0}
    postprocess:                    # optional: post-processings with their parameters
      - {name: identity}
      - {name: gaussian, sigma: [1, 2]}
      - {name: max_filter, filter_size: 3}
      - {name: gamma, gamma: [0.5, 2]}          # gamma, levels, steps, edges, truncate: analysis.contract
      - {name: chain, steps: "gamma,gaussian", gamma: 0.5, sigma: 1}
    protocols:                      # optional: protocols with their own fill / selection / retrain mode
      - {name: roar, fill: mean}
      - {name: road_morf, fill: road}
    max_trials: 100000              # optional: the largest grid allowed (roar run --max-trials overrides)

Fields: the names, types and ranges are in ``sweep.fields.FIELD_RULES``, their meanings in
``roar/spec.py``. Names (dataset, model, attribution, postprocess, fill, protocol, selection, optimizer,
schedule, augment, target, reduction, sign, retrain_mode) must be keys of the roar registries.
Entry keys: datasets {name, subset, test_subset, root, image_size, data_seed}; postprocess {name, sigma,
filter_size, gamma, levels, steps}; protocols {name, fill, selection, retrain_mode}. A postprocess entry's
gamma / levels / steps go to ``options['postprocess_params']`` of its trials (as ``roar search`` writes them).

Rules:
- Inside a ``datasets``, ``postprocess`` or ``protocols`` entry a list crosses its values within that
  entry: ``{name: gaussian, sigma: [1, 2]}`` is two grid points. Entries take the keys listed in
  ``DATASET_ENTRY_KEYS`` / ``POSTPROCESS_ENTRY_KEYS`` / ``PROTOCOL_ENTRY_KEYS``; omitted keys fall back
  to ``fixed`` (then to the TrialSpec default). An entry may also be just a name: ``- identity``.
- A field may appear in only one place: ``fixed``, ``axes``, or an entry list.
- Numbers are normalised to the field's type (``sigma: 1`` is ``1.0``), so the same spec always gives
  the same trial ids.
- A trial is identified by its TrialSpec alone, not by the sweep name: two specs that share grid
  points share their rows in a common store.
- ``device: auto`` uses CUDA inside a trial when the trial reserved a GPU, else the CPU; Ray hides
  GPUs from tasks that reserve none.

``load_spec`` parses and validates; every problem (unknown names with the closest valid one, sigma < 0,
fractions outside (0, 1), empty or duplicated axis values, wrong types, unknown keys, missing dataset
files, GPUs asked for but absent, more CPUs per trial than the cluster has, an unwritable store) goes
into one ``SpecError`` before Ray starts. So do the checks of ``sweep.spec_checks`` over the whole grid
(a field crossed with a value that ignores it, post-processing parameters, image and subset sizes, the
grid's size against max_trials, the name and the store's URI scheme); absurd sizes become
``SweepSpec.warnings``. The file itself is read by ``sweep.yaml_reader`` (bounded size, UTF-8, nesting
and alias expansion; duplicate keys are errors).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Mapping

from roar.spec import TrialSpec

from .fields import TRIAL_FIELDS, Problems, check_value, hashable, is_int, unknown_message
from .option_rules import postprocess_param_names, postprocess_param_problem
from .resources import DEVICES, Resources, parse_resources
from .spec_checks import (DEFAULT_MAX_TRIALS, POSTPROCESS_PARAMS, environment_problems, grid_size_problem,
                          image_size_problems, irrelevant_axis_problems, name_problem, postprocess_param_problems,
                          projected_grid, size_warnings, store_problem, subset_problems, true_pixel_problems)
from .yaml_reader import YamlInputError, read_yaml_file, shorten

__all__ = ["SpecError", "SweepSpec", "Resources", "DEVICES", "ClusterInfo", "parse_spec", "load_spec", "read_spec_yaml",
           "local_cluster_info", "environment_problems", "true_pixel_problems", "projected_grid"]

TOP_LEVEL_KEYS = ("name", "description", "store", "storage", "resources", "recipe", "fixed", "axes", "datasets",
                  "postprocess", "protocols", "max_trials")
STORAGE_KEYS = ("endpoint_url",)
# datasets entry key -> TrialSpec field
DATASET_ENTRY_KEYS = {"name": "dataset", "subset": "subset", "test_subset": "test_subset", "root": "data_root",
                      "image_size": "image_size", "data_seed": "data_seed"}
# postprocess entry key -> TrialSpec field; the extra parameters (gamma, levels, steps, ...) declared in
# analysis.contract.POSTPROCESS_FACTS are pseudo-fields 'postprocess_params.<name>' (grid.trial_of puts them in options)
POSTPROCESS_ENTRY_KEYS = {"name": "postprocess", "sigma": "sigma", "filter_size": "filter_size",
                          **{p: f"{POSTPROCESS_PARAMS}.{p}" for p in postprocess_param_names()}}
# protocols entry key -> TrialSpec field
PROTOCOL_ENTRY_KEYS = {"name": "protocol", "fill": "fill", "selection": "selection", "retrain_mode": "retrain_mode"}


class SpecError(ValueError):
    """A spec has problems; the message lists all of them, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        head = f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''} in the sweep spec"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


@dataclass
class SweepSpec:
    """A parsed spec. ``groups`` is the grid: the product over groups of one choice each, where a
    choice is a dict of TrialSpec fields; merged over ``fixed`` it gives one TrialSpec."""

    name: str
    store: str
    resources: Resources = field(default_factory=Resources)
    endpoint_url: str | None = None
    fixed: dict = field(default_factory=dict)
    groups: list[tuple[str, list[dict]]] = field(default_factory=list)
    description: str = ""
    source: str = "<spec>"
    max_trials: int = DEFAULT_MAX_TRIALS
    warnings: list[str] = field(default_factory=list)   # not errors: absurd sizes (see spec_checks)


@dataclass(frozen=True)
class ClusterInfo:
    """Resources the sweep can use: this machine, or the Ray cluster it is connected to."""

    cpus: float
    gpus: float
    where: str = "this machine"


def local_cluster_info() -> ClusterInfo:
    import torch  # only here: parsing a spec must not need torch
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return ClusterInfo(cpus=float(cpus), gpus=float(torch.cuda.device_count()), where="this machine")


# --- sections --------------------------------------------------------------------------------------
def _unknown_field(where: str, name, problems: Problems) -> None:
    problems.add(where, unknown_message("trial field", name, TRIAL_FIELDS))


def _parse_fixed(raw, problems: Problems) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.add("fixed", f"must be a mapping of TrialSpec field: value, got {type(raw).__name__}")
        return {}
    fixed = {}
    for name, value in raw.items():
        if name not in TRIAL_FIELDS:
            _unknown_field(f"fixed.{name}", name, problems)
            continue
        if isinstance(value, list) and name != "options":
            problems.add(f"fixed.{name}", f"is a list {shorten(value)}; a list of values belongs under axes")
            continue
        n_before = len(problems)
        v = check_value(name, value, f"fixed.{name}", problems)
        if len(problems) == n_before:
            fixed[name] = v
    return fixed


def _check_param(field_name: str, value, where: str, problems: Problems):
    """A post-processing parameter (pseudo-field 'postprocess_params.<name>') of a postprocess entry."""
    name = field_name.split(".", 1)[1]
    message = postprocess_param_problem(name, value)
    if message:
        problems.add(where, message)
        return None
    return value


def _check_list(values, field_name: str, where: str, problems: Problems, allow_scalar: bool) -> list:
    """Validate the values of an axis (or an entry key) and report duplicates; returns the good ones."""
    if not isinstance(values, list):
        if allow_scalar:
            values = [values]
        else:
            problems.add(where, f"an axis must be a list of values, got {type(values).__name__} {shorten(values)}; "
                                f"put a single value under fixed")
            return []
    if not values:
        problems.add(where, f"{field_name} axis is empty; give at least one value")
        return []
    good, seen = [], {}
    for i, value in enumerate(values):
        n_before = len(problems)
        check = _check_param if field_name.startswith(POSTPROCESS_PARAMS + ".") else check_value
        v = check(field_name, value, f"{where}[{i}]", problems)
        if len(problems) != n_before:
            continue
        key = hashable(v)
        if key in seen:
            problems.add(where, f"duplicate value {shorten(value)} (positions {seen[key]} and {i}); "
                                f"each value may appear once")
            continue
        seen[key] = i
        good.append(v)
    return good


def _parse_axes(raw, problems: Problems) -> list[tuple[str, list[dict]]]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        problems.add("axes", f"must be a mapping of TrialSpec field: [values], got {type(raw).__name__}")
        return []
    groups = []
    for name, values in raw.items():
        if name not in TRIAL_FIELDS:
            _unknown_field(f"axes.{name}", name, problems)
            continue
        good = _check_list(values, name, f"axes.{name}", problems, allow_scalar=False)
        groups.append((f"axes.{name}", [{name: v} for v in good]))
    return groups


def _parse_entries(raw, section: str, keys: dict[str, str], problems: Problems,
                   max_trials: int = DEFAULT_MAX_TRIALS) -> list[dict]:
    """A list of entries (datasets / postprocess); each entry's list values cross within the entry."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        problems.add(section, f"must be a non-empty list of entries like {{name: ...}}, got {shorten(raw)}")
        return []
    choices, seen = [], {}
    for i, entry in enumerate(raw):
        where = f"{section}[{i}]"
        if isinstance(entry, str):  # `- identity` is shorthand for `- {name: identity}`
            entry = {"name": entry}
        if not isinstance(entry, Mapping):
            problems.add(where, f"must be a mapping with keys {sorted(keys)}, got {shorten(entry)}")
            continue
        if "name" not in entry:
            problems.add(where, f"needs a 'name'; keys are {sorted(keys)}")
            continue
        per_key = []
        for key, value in entry.items():
            if key not in keys:
                problems.add(f"{where}.{key}", unknown_message(f"{section} key", key, keys))
                continue
            good = _check_list(value, keys[key], f"{where}.{key}", problems, allow_scalar=True)
            per_key.append([(keys[key], v) for v in good])
        combos = math.prod(len(values) for values in per_key)
        if combos > max_trials:  # refuse before materialising the product
            problems.add(where, f"crosses {combos:,} combinations, more than max_trials={max_trials:,}")
            continue
        for combo in _product(per_key):
            choice = _with_params(dict(combo))
            ident = tuple(sorted((k, hashable(v)) for k, v in choice.items()))
            if ident in seen:
                problems.add(where, f"duplicates {section}[{seen[ident]}] ({shorten(choice, 120)})")
                continue
            seen[ident] = i
            choices.append(choice)
    return choices


def _with_params(choice: dict) -> dict:
    """Collect the 'postprocess_params.<name>' keys of an entry choice into one hashable
    POSTPROCESS_PARAMS value: sorted (name, value) pairs (grid.trial_of moves them into options)."""
    prefix = POSTPROCESS_PARAMS + "."
    params = tuple(sorted((k[len(prefix):], v) for k, v in choice.items() if k.startswith(prefix)))
    if not params:
        return choice
    out = {k: v for k, v in choice.items() if not k.startswith(prefix)}
    out[POSTPROCESS_PARAMS] = params
    return out


def _product(lists: list[list]):
    out = [[]]
    for options in lists:
        out = [prev + [o] for prev in out for o in options]
    return out


# --- the whole spec --------------------------------------------------------------------------------
def parse_spec(data, source: str = "<spec>", store: str | None = None,
               cluster: ClusterInfo | None = None, check_environment: bool = True,
               max_trials: int | None = None) -> SweepSpec:
    """Validate a spec mapping; raise one SpecError listing every problem.

    store: overrides the spec's store (``roar run --store``). cluster: the resources to check against
    (default: this machine). check_environment: also check dataset files, the store's writability and
    the cluster's CPUs/GPUs (off for pure parsing, e.g. in ``roar status``). max_trials: overrides the
    spec's max_trials (``roar run --max-trials``).
    """
    problems = Problems()
    if not isinstance(data, Mapping):
        raise SpecError(source, [f"the spec must be a YAML mapping with keys {list(TOP_LEVEL_KEYS)}, "
                                 f"got {type(data).__name__}"])
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add(str(key), unknown_message("top-level key", key, TOP_LEVEL_KEYS))

    name = data.get("name")
    if (message := name_problem(name)) is not None:
        problems.add("name", message)
    store_uri = store if store is not None else data.get("store")
    if (message := store_problem(store_uri)) is not None:
        problems.add("store", message)
        store_uri = None
    max_trials = max_trials if max_trials is not None else data.get("max_trials", DEFAULT_MAX_TRIALS)
    if not is_int(max_trials) or not 1 <= max_trials <= 10 ** 12:
        problems.add("max_trials", f"must be an integer from 1 to 10**12 (grid points allowed), got {shorten(max_trials)}")
        max_trials = DEFAULT_MAX_TRIALS
    endpoint_url = _parse_storage(data.get("storage"), problems)
    description = data.get("description") or ""
    if not isinstance(description, str):
        problems.add("description", f"must be text, got {type(description).__name__}")

    resources = parse_resources(data.get("resources"), problems)
    fixed = _parse_fixed(data.get("fixed"), problems)
    if data.get("recipe") is not None:
        fixed = _with_recipe(data["recipe"], fixed, source, endpoint_url, problems)
    groups = _parse_axes(data.get("axes"), problems)
    datasets = _parse_entries(data.get("datasets"), "datasets", DATASET_ENTRY_KEYS, problems, max_trials)
    post = _parse_entries(data.get("postprocess"), "postprocess", POSTPROCESS_ENTRY_KEYS, problems, max_trials)
    protocols = _parse_entries(data.get("protocols"), "protocols", PROTOCOL_ENTRY_KEYS, problems, max_trials)
    for section, choices, keys in (("datasets", datasets, DATASET_ENTRY_KEYS),
                                   ("postprocess", post, POSTPROCESS_ENTRY_KEYS),
                                   ("protocols", protocols, PROTOCOL_ENTRY_KEYS)):
        if choices:
            # omitted entry keys fall back to fixed values; the name itself must come from the entry
            defaults = {f: fixed.pop(f) for f in list(keys.values())[1:] if f in fixed}
            groups.append((section, [{**defaults, **c} for c in choices]))
    _check_overlaps(fixed, groups, problems)

    spec = SweepSpec(name=name if isinstance(name, str) else "", store=store_uri or "", resources=resources,
                     endpoint_url=endpoint_url, fixed=fixed, groups=groups,
                     description=description if isinstance(description, str) else "", source=source,
                     max_trials=max_trials)
    too_big = grid_size_problem(spec, max_trials)
    if too_big:  # the grid-wide checks below are cheap, but a caller would expand the grid next
        problems.add("grid", too_big)
    for check in (true_pixel_problems, irrelevant_axis_problems, postprocess_param_problems, image_size_problems,
                  subset_problems):
        problems.extend(check(spec))
    spec.warnings = size_warnings(spec)
    if check_environment:
        problems.extend(environment_problems(spec, cluster or local_cluster_info(),
                                             check_store=store_uri is not None))
    if problems:
        raise SpecError(source, problems)
    return spec


def _with_recipe(path, fixed: dict, source: str, endpoint_url: str | None, problems: Problems) -> dict:
    """fixed plus the fields of a recipe file written by `roar search` (kind: recipe)."""
    from .search.recipe import read_recipe

    if not isinstance(path, str) or not path:
        problems.add("recipe", f"must be the path or URI of a recipe.yaml, got {path!r}")
        return fixed
    beside_spec = os.path.join(os.path.dirname(os.path.abspath(source)), path)
    if "://" not in path and not os.path.isabs(path) and not os.path.exists(path) and os.path.exists(beside_spec):
        path = beside_spec
    try:
        recipe = read_recipe(path, endpoint_url)
    except (OSError, ValueError) as exc:
        problems.add("recipe", f"cannot use {path!r}: {exc}")
        return fixed
    for name in sorted(set(recipe) & set(fixed)):
        problems.add("recipe", f"{name} is set by the recipe and in fixed; set each field in one place")
    return {**fixed, **recipe}


def _parse_storage(raw, problems: Problems) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add("storage", f"must be a mapping with keys {list(STORAGE_KEYS)}, got {raw!r}")
        return None
    for key in raw:
        if key not in STORAGE_KEYS:
            problems.add(f"storage.{key}", unknown_message("storage key", key, STORAGE_KEYS) +
                         " (credentials come from the environment, never from the spec)")
    url = raw.get("endpoint_url")
    if url is not None and (not isinstance(url, str) or "://" not in url):
        problems.add("storage.endpoint_url", f"must be a URL like http://host:9000, got {url!r}")
        return None
    return url


def _check_overlaps(fixed: dict, groups, problems: Problems) -> None:
    """A field set in two places would make the grid ambiguous."""
    owner = {f: "fixed" for f in fixed}
    for where, choices in groups:
        for f in sorted({k for c in choices for k in c}):
            if f in owner and owner[f] != where:
                problems.add(where, f"{f} is also given in {owner[f]}; set each field in one place")
            owner.setdefault(f, where)


def read_spec_yaml(path: str):
    """The parsed YAML of a spec file, read in bounded time and memory (sweep.yaml_reader); a missing
    file, a directory, non-UTF-8 bytes, bad YAML, duplicate keys or an alias bomb is a SpecError."""
    try:
        return read_yaml_file(path, what="spec file")
    except YamlInputError as exc:
        raise SpecError(path, [exc.reason]) from None


def load_spec(path: str, store: str | None = None, cluster: ClusterInfo | None = None,
              check_environment: bool = True, max_trials: int | None = None) -> SweepSpec:
    """Read and validate a YAML spec file (see the module docstring for the format)."""
    return parse_spec(read_spec_yaml(path), source=path, store=store, cluster=cluster,
                      check_environment=check_environment, max_trials=max_trials)
