"""A search spec: a sweep spec plus a ``search:`` section, validated like a sweep spec (every problem at
once, nothing started).

The sweep part (store, resources, fixed, axes, datasets, protocols) is parsed by ``sweep.spec``; its
grid gives the *cells* of the search, and each cell is one Optuna study. Example
(``specs/search-gaming.yaml`` is a full one)::

    name: search-gaming
    store: results/search-gaming
    fixed: {dataset: fashion_mnist, subset: 2000, protocol: roar, fraction: 0.3, ...}
    axes:
      attribution: [saliency, integrated_gradients]    # one study per method
    search:
      kind: gaming             # gaming | recipe
      trials: 24               # per study, in total: a rerun tops a study up to this many trials
      seed: 0                  # seed of the TPE sampler
      startup_trials: 8        # random trials before TPE models the space
      space:                   # see sweep.search.space
        transform: [gaussian, max_filter, mean_filter, quantize]
        sigma: {low: 0.25, high: 4.0, step: 0.25}
        filter_size: {low: 2, high: 7}
        levels: {low: 2, high: 16}

Recipe searches add ``target_accuracy`` (validation accuracy, fraction, the clean model must reach),
``validation_fraction`` (share of the train subset held out for tuning; the test split is never
used to choose), ``cost_weight`` (accuracy points traded per unit of relative cost) and ``pruning``
(``{grace_epochs, reduction_factor}`` of ASHA / successive halving on per-epoch validation accuracy,
or ``false``).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Mapping


from roar.spec import TrialSpec

from ..fields import Problems, is_int, is_number, unknown_message
from ..grid import expand
from ..spec import ClusterInfo, SpecError, SweepSpec, parse_spec, read_spec_yaml
from .space import RECIPE_FIELDS, Dim, parse_space

KINDS = ("gaming", "recipe")
COMMON_KEYS = ("kind", "trials", "seed", "startup_trials", "space")
# kind -> {setting: default}; None = required
KIND_SETTINGS: dict[str, dict] = {
    "gaming": {},
    "recipe": {"target_accuracy": None, "validation_fraction": 0.2, "cost_weight": 0.02,
               "pruning": {"grace_epochs": 1, "reduction_factor": 3}},
}
PRUNING_KEYS = ("grace_epochs", "reduction_factor")
# Fields a gaming search sets itself: the spec may not fix them.
GAMING_FIELDS = ("postprocess", "sigma", "filter_size")
_STUDY_CHARS = re.compile(r"[^A-Za-z0-9_.=-]+")


@dataclass(frozen=True)
class Cell:
    """One study: its name and the trial fields every one of its trials shares."""

    study: str
    spec: TrialSpec


@dataclass
class SearchSpec:
    sweep: SweepSpec
    kind: str
    trials: int
    seed: int = 0
    startup_trials: int = 10
    space: list[Dim] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    source: str = "<spec>"

    @property
    def name(self) -> str:
        return self.sweep.name

    def cells(self) -> list[Cell]:
        """The studies of the search in grid order, named after the fields that differ between them."""
        trials = expand(self.sweep)
        if self.kind == "recipe":  # a clean model depends only on the model fields: one study per model
            unique = {}
            for t in trials:
                unique.setdefault(tuple(getattr(t, f) for f in TrialSpec.MODEL_FIELDS), t)
            trials = list(unique.values())
        varying = [f.name for f in dataclasses.fields(TrialSpec) if len({repr(getattr(t, f.name)) for t in trials}) > 1]
        cells = []
        for t in trials:
            label = "-".join(_STUDY_CHARS.sub("_", str(getattr(t, f))) for f in varying)
            cells.append(Cell(f"{self.name}-{label}" if label else self.name, t))
        return cells

    def setup(self, cell: Cell) -> dict:
        """What a study's trials depend on besides their parameters: a resumed study must match it."""
        return {"kind": self.kind, "cell": cell.spec.to_dict(), "space": [d.describe() for d in self.space],
                "settings": self.settings}


# --- parsing ----------------------------------------------------------------------------------------
def _int_at_least(raw, key, low, problems, default):
    value = raw.get(key, default)
    if not is_int(value) or value < low:
        problems.add(f"search.{key}", f"must be an integer >= {low}, got {value!r}")
        return default
    return value


def _parse_settings(kind: str, raw: Mapping, problems: Problems) -> dict:
    settings = {}
    for key, default in KIND_SETTINGS[kind].items():
        where = f"search.{key}"
        if key not in raw:
            if default is None:
                problems.add(where, _MISSING[key])
            else:
                settings[key] = default
            continue
        value = raw[key]
        if key == "pruning":
            settings[key] = _parse_pruning(value, problems)
            continue
        low, high, what = _RANGES[key]
        if not is_number(value) or not low(value) or not high(value):
            problems.add(where, f"must be {what}, got {value!r}")
            continue
        settings[key] = float(value)
    return settings


_MISSING = {"target_accuracy": "missing: the validation accuracy (a fraction, e.g. 0.85) the clean model must "
                               "reach; the search finds the cheapest recipe that reaches it"}
_RANGES = {  # key -> (lower check, upper check, what is valid)
    "target_accuracy": (lambda v: v > 0, lambda v: v <= 1, "a fraction in (0, 1]"),
    "validation_fraction": (lambda v: v > 0, lambda v: v < 0.9, "a fraction in (0, 0.9) of the train subset"),
    "cost_weight": (lambda v: v >= 0, lambda v: True, "a number >= 0 (accuracy, fraction, per unit of relative cost)"),
}


def _parse_pruning(value, problems: Problems):
    if value is False or value is None:
        return False
    if not isinstance(value, Mapping):
        problems.add("search.pruning", f"must be false or a mapping with keys {list(PRUNING_KEYS)}, got {value!r}")
        return False
    out = dict(KIND_SETTINGS["recipe"]["pruning"])
    for key, v in value.items():
        where = f"search.pruning.{key}"
        if key not in PRUNING_KEYS:
            problems.add(where, unknown_message("pruning key", key, PRUNING_KEYS))
        elif not is_int(v) or v < (1 if key == "grace_epochs" else 2):
            problems.add(where, f"must be an integer >= {1 if key == 'grace_epochs' else 2}, got {v!r}")
        else:
            out[key] = v
    return out


def _parse_search(raw, problems: Problems) -> dict:
    if raw is None:
        problems.add("search", f"missing: a search spec needs a search section with kind ({' | '.join(KINDS)}), "
                               f"trials and space")
        return {}
    if not isinstance(raw, Mapping):
        problems.add("search", f"must be a mapping with keys {list(COMMON_KEYS)}, got {type(raw).__name__}")
        return {}
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.add("search.kind", unknown_message("search kind", kind, KINDS) if kind is not None
                     else f"missing: one of {', '.join(KINDS)}")
        return {}
    valid = COMMON_KEYS + tuple(KIND_SETTINGS[kind])
    for key in raw:
        if key not in valid:
            problems.add(f"search.{key}", unknown_message(f"key of a {kind} search", key, valid))
    if "trials" not in raw:
        problems.add("search.trials", "missing: trials per study (an integer >= 1)")
    return {"kind": kind,
            "trials": _int_at_least(raw, "trials", 1, problems, 1),
            "seed": _int_at_least(raw, "seed", 0, problems, 0),
            "startup_trials": _int_at_least(raw, "startup_trials", 0, problems, 10),
            "space": parse_space(raw.get("space"), kind, problems),
            "settings": _parse_settings(kind, raw, problems)}


def _searched_fields(kind: str, space: list[Dim]) -> tuple[str, ...]:
    return GAMING_FIELDS if kind == "gaming" else tuple(d.name for d in space if d.name in RECIPE_FIELDS)


def _check_conflicts(sweep: SweepSpec, kind: str, space: list[Dim], problems: Problems) -> None:
    """A field the search sets may not also be fixed or an axis: which value would a trial use?"""
    searched = _searched_fields(kind, space)
    places = [("fixed", [sweep.fixed])] + [(where, choices) for where, choices in sweep.groups]
    for where, choices in places:
        for f in sorted({k for c in choices for k in c} & set(searched)):
            why = "the search sets the post-processing" if kind == "gaming" else "it is in search.space"
            problems.add(where, f"{f} is set here but {why}; remove it")


def _check_protocols(spec: SearchSpec, problems: Problems) -> None:
    from analysis.contract import PROTOCOL_SCORES

    if spec.kind != "gaming":
        return
    for cell in spec.cells():
        if cell.spec.protocol not in PROTOCOL_SCORES:
            problems.add("protocol", f"{cell.spec.protocol!r} has no score to maximise; a gaming search needs "
                                     f"one of {', '.join(PROTOCOL_SCORES)}")
            return


def parse_search_spec(data, source: str = "<spec>", store: str | None = None, cluster: ClusterInfo | None = None,
                      check_environment: bool = True) -> SearchSpec:
    """Validate a search spec mapping; raise one SpecError listing every problem (sweep part included)."""
    if not isinstance(data, Mapping):
        raise SpecError(source, [f"the spec must be a YAML mapping with a search section, got {type(data).__name__}"])
    problems = Problems()
    search = _parse_search(data.get("search"), problems)
    rest = {k: v for k, v in data.items() if k != "search"}
    if search.get("kind") == "gaming" and "postprocess" in rest:
        problems.add("postprocess", "a gaming search chooses the post-processing itself (search.space.transform); "
                                    "remove the postprocess section")
        rest.pop("postprocess")
    try:
        sweep = parse_spec(rest, source=source, store=store, cluster=cluster, check_environment=check_environment)
    except SpecError as exc:
        raise SpecError(source, exc.problems + list(problems)) from None
    if search:
        _check_conflicts(sweep, search["kind"], search["space"], problems)
    if problems:
        raise SpecError(source, problems)
    spec = SearchSpec(sweep=sweep, source=source, **search)
    _check_protocols(spec, problems)
    if problems:
        raise SpecError(source, problems)
    return spec


def load_search_spec(path: str, store: str | None = None, cluster: ClusterInfo | None = None,
                     check_environment: bool = True) -> SearchSpec:
    """Read and validate a search spec YAML file."""
    return parse_search_spec(read_spec_yaml(path), source=path, store=store, cluster=cluster,
                             check_environment=check_environment)
