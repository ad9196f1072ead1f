"""The search space of ``roar search``: which parameters each kind of search may vary, their valid
ranges, and one define-by-run function that plain Optuna (``--local``) and Ray Tune's OptunaSearch
both call, so the two backends search exactly the same space.

A space is a mapping ``parameter: distribution`` where a distribution is one of::

    {low: 0.25, high: 4.0}                 # float, uniform
    {low: 1.0e-4, high: 0.1, log: true}    # float, log-uniform (low > 0)
    {low: 0.25, high: 4.0, step: 0.25}     # float on a grid: low, low + step, ... <= high
    {low: 2, high: 7}                      # int (both bounds integers), optional step / log
    {choices: [4, 8, 16]}                  # categorical
    [gaussian, max_filter]                 # shorthand for {choices: [...]}

Gaming searches (``kind: gaming``) vary the post-processing of a fixed method's maps:
``transform`` (choices of post-processing names, or combinations ``a+b`` applied in order) and the
parameters the chosen transforms take: ``sigma`` (pixels), ``filter_size`` (pixels) and the extra
parameters the post-processings declare (``analysis.contract.POSTPROCESS_FACTS``: ``gamma``, ``levels``). A parameter is drawn only when the
drawn transform uses it (conditional space). The raw map (``identity``) is always a candidate.

Recipe searches (``kind: recipe``) vary the training recipe: the TrialSpec fields in RECIPE_FIELDS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from analysis.contract import POSTPROCESS_FACTS, STRENGTH_FIELDS, is_reference, param_declaration

from ..fields import Problems, check_value, is_int, is_number, unknown_message

DIST_KEYS = ("low", "high", "log", "step", "choices")
IDENTITY = "identity"
CHAIN = "chain"            # the roar.postprocess entry a combination `a+b` runs as (when registered)
COMBINE = "+"

SPATIAL_FIELDS = STRENGTH_FIELDS   # the TrialSpec's generic post-processing fields (pixels)
NUMERIC_KINDS = ("float", "int")   # extra parameters a search can draw from a range

# Training-recipe fields a recipe search may vary (TrialSpec fields; ranges as in sweep.fields).
RECIPE_FIELDS = ("lr", "epochs", "width", "weight_decay", "batch_size", "momentum", "optimizer", "schedule",
                 "augment")


@dataclass(frozen=True)
class Dim:
    """One searched parameter: a float/int range or a list of choices."""

    name: str
    kind: str                       # 'float' | 'int' | 'choice'
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial):
        """Draw from an Optuna trial (or Ray's capturing wrapper of one)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> dict:
        """JSON form, stored with the study so a resumed search can tell whether its space changed."""
        if self.kind == "choice":
            return {"name": self.name, "choices": list(self.choices)}
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log,
                "step": self.step}

    @property
    def values(self) -> list:
        """The values the dimension can take, for choices; its bounds otherwise."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


# --- post-processing families -----------------------------------------------------------------------
def _postprocess():
    from roar import postprocess  # torch; imported when a gaming space is checked or run
    return postprocess


def family_params(name: str) -> tuple[str, ...]:
    """Parameters one post-processing reads: its strength field, then its required extra parameters."""
    return POSTPROCESS_FACTS[name].reads


def transform_params(transform: str) -> tuple[str, ...]:
    """Parameters a transform (a name or a combination 'a+b') reads, each once, in order."""
    out: list[str] = []
    for step in transform.split(COMBINE):
        out += [p for p in family_params(step) if p not in out]
    return tuple(out)


def check_transform(value, where: str, problems: Problems) -> str | None:
    """A transform name: a registered, deterministic post-processing, or 'a+b' when 'chain' exists."""
    pp = _postprocess()
    if not isinstance(value, str) or not value:
        problems.add(where, f"a transform must be a post-processing name or 'a+b', got {value!r}")
        return None
    steps = value.split(COMBINE)
    if len(steps) > 1:
        if CHAIN not in pp.POSTPROCESS:
            problems.add(where, f"combination {value!r} needs the {CHAIN!r} post-processing, which "
                                f"roar.postprocess does not register; search single transforms "
                                f"({', '.join(searchable_transforms())})")
            return None
        if len(set(steps)) != len(steps) or IDENTITY in steps:
            problems.add(where, f"combination {value!r} must list distinct transforms other than identity")
            return None
    ok = True
    for step in steps:
        if step not in pp.POSTPROCESS or step == CHAIN:
            problems.add(where, unknown_message("transform", step, searchable_transforms()))
            ok = False
        elif pp.POSTPROCESS[step].seeded:
            problems.add(where, f"{step!r} replaces the map by seeded noise: it is a null model, not a "
                                f"transform of the method's map; compare it in a sweep instead")
            ok = False
        elif not _searchable_params(step):
            required = [k for k, p in POSTPROCESS_FACTS[step].params.items() if p.required]
            problems.add(where, f"post-processing {step!r} is not searchable yet: its required parameter(s) "
                                f"{required} are not numbers a search can draw")
            ok = False
    return value if ok else None


def _searchable_params(name: str) -> bool:
    return all(p.kind in NUMERIC_KINDS for p in POSTPROCESS_FACTS[name].params.values() if p.required)


def searchable_transforms() -> list[str]:
    pp = _postprocess()
    return sorted(n for n, r in pp.POSTPROCESS.items() if not r.seeded and n != CHAIN and _searchable_params(n))


def _check_extra_param(name: str, value, where: str, problems: Problems):
    """Value check for a post-processing extra parameter (gamma, levels), as declared in the contract."""
    decl = param_declaration(name)
    if decl is None:
        raise KeyError(name)
    if not decl.valid(value):
        problems.add(where, f"{name} must be {decl.what()}, got {value!r}")
        return None
    return value


def gaming_param_names() -> list[str]:
    extra = sorted({k for f in POSTPROCESS_FACTS.values() for k, p in f.params.items()
                    if p.required and p.kind in NUMERIC_KINDS})
    return ["transform", *SPATIAL_FIELDS, *extra]


def check_gaming_value(name: str, value, where: str, problems: Problems):
    if name == "transform":
        return check_transform(value, where, problems)
    if name in SPATIAL_FIELDS:
        return check_value(name, value, where, problems)
    return _check_extra_param(name, value, where, problems)


def check_recipe_value(name: str, value, where: str, problems: Problems):
    return check_value(name, value, where, problems)


# kind -> (parameter names, value check)
KIND_PARAMS = {
    "gaming": (gaming_param_names, check_gaming_value),
    "recipe": (lambda: list(RECIPE_FIELDS), check_recipe_value),
}


# --- parsing ----------------------------------------------------------------------------------------
def parse_space(raw, kind: str, problems: Problems, where: str = "search.space") -> list[Dim]:
    """Validate a space mapping for a search kind; every problem goes into ``problems``."""
    names_of, check = KIND_PARAMS[kind]
    names = names_of()
    if not isinstance(raw, Mapping) or not raw:
        problems.add(where, f"must be a non-empty mapping of parameter: distribution; parameters of a "
                            f"{kind} search: {', '.join(names)}")
        return []
    dims = []
    for name, dist in raw.items():
        at = f"{where}.{name}"
        if name not in names:
            problems.add(at, unknown_message(f"{kind} search parameter", name, names))
            continue
        dim = _parse_dim(str(name), dist, at, problems, check)
        if dim is not None:
            dims.append(dim)
    if kind == "gaming":
        dims = _gaming_dims(dims, problems, where)
    return dims


def _parse_dim(name: str, dist, where: str, problems: Problems, check) -> Dim | None:
    if isinstance(dist, list):
        dist = {"choices": dist}
    if not isinstance(dist, Mapping):
        problems.add(where, f"must be {{low, high[, log, step]}}, {{choices: [...]}} or a list, got {dist!r}")
        return None
    n_before = len(problems)
    for key in dist:
        if key not in DIST_KEYS:
            problems.add(f"{where}.{key}", unknown_message("distribution key", key, DIST_KEYS))
    if "choices" in dist:
        other = sorted(set(dist) & {"low", "high", "log", "step"})
        if other:
            problems.add(where, f"give either choices or low/high, not both (found {other})")
        return _parse_choices(name, dist["choices"], where, problems, check, n_before)
    if "low" not in dist or "high" not in dist:
        problems.add(where, f"needs both low and high (or choices); found keys {sorted(dist)}")
        return None
    low = check(name, dist["low"], f"{where}.low", problems)
    high = check(name, dist["high"], f"{where}.high", problems)
    if len(problems) > n_before:
        return None
    if not (is_number(low) and is_number(high)):
        problems.add(where, f"{name} is not numeric: give choices instead of low/high")
        return None
    kind = "int" if _is_int_field(name) else "float"  # by the field's type: sigma {low: 0, high: 4} is a float
    if low > high:
        problems.add(where, f"low {low!r} > high {high!r}; low must be <= high")
        return None
    log = dist.get("log", False)
    if not isinstance(log, bool):
        problems.add(f"{where}.log", f"must be true or false, got {log!r}")
        return None
    step = dist.get("step")
    if step is not None:
        if not is_number(step) or step <= 0 or (kind == "int" and not is_int(step)):
            what = "a positive integer" if kind == "int" else "a positive number"
            problems.add(f"{where}.step", f"must be {what}, got {step!r}")
            return None
        if log:
            problems.add(where, "log and step cannot be combined (Optuna samples a log scale continuously)")
            return None
    if log and low <= 0:
        problems.add(where, f"log: true needs low > 0, got low {low!r}")
        return None
    if kind == "float":
        low, high = float(low), float(high)
        step = None if step is None else float(step)
    return Dim(name, kind, low, high, log, step)


def _is_int_field(name: str) -> bool:
    from ..fields import FIELD_RULES
    if name in FIELD_RULES:
        return FIELD_RULES[name][0] == "int"
    decl = param_declaration(name)
    return decl is not None and decl.kind == "int"


def _parse_choices(name, values, where, problems, check, n_before) -> Dim | None:
    if not isinstance(values, list) or not values:
        problems.add(f"{where}.choices", f"must be a non-empty list of values, got {values!r}")
        return None
    good, seen = [], set()
    for i, value in enumerate(values):
        v = check(name, value, f"{where}.choices[{i}]", problems)
        if v is None:
            continue
        if v in seen:
            problems.add(f"{where}.choices", f"duplicate value {value!r}; each value may appear once")
            continue
        seen.add(v)
        good.append(v)
    if len(problems) > n_before:
        return None
    return Dim(name, "choice", choices=tuple(good))


def _gaming_dims(dims: list[Dim], problems: Problems, where: str) -> list[Dim]:
    """A gaming space needs `transform`; every parameter a transform reads must be in the space, and every
    parameter in the space must be read by some transform. The raw map is always a candidate."""
    by_name = {d.name: d for d in dims}
    transform = by_name.get("transform")
    if transform is None:
        if not any(p.startswith(f"{where}.transform") for p in problems):
            problems.add(f"{where}.transform", f"missing: list the post-processings to search, e.g. "
                                               f"[{', '.join(searchable_transforms())}]")
        return []
    if transform.kind != "choice":
        problems.add(f"{where}.transform", "must be a list of transform names")
        return []
    used: set[str] = set()
    for t in transform.choices:
        for p in transform_params(t):
            used.add(p)
            reported = any(x.startswith(f"{where}.{p}") for x in problems)  # a bad range, said already
            if p not in by_name and not reported:
                problems.add(f"{where}.{p}", f"missing: transform {t!r} reads {p}; give its range")
    for d in dims:
        if d.name != "transform" and d.name not in used:
            problems.add(f"{where}.{d.name}", f"no transform in {where}.transform reads {d.name} "
                                              f"(transforms: {', '.join(transform.choices)})")
    choices = transform.choices if IDENTITY in transform.choices else (IDENTITY, *transform.choices)
    return [Dim("transform", "choice", choices=choices), *(d for d in dims if d.name != "transform")]


# --- sampling and mapping to trial fields ------------------------------------------------------------
def suggest(space: list[Dim], kind: str, trial) -> dict:
    """Define-by-run: draw one point. Gaming draws a transform, then only the parameters it reads."""
    if kind != "gaming":
        return {d.name: d.suggest(trial) for d in space}
    by_name = {d.name: d for d in space}
    transform = by_name["transform"].suggest(trial)
    params = {"transform": transform}
    for p in transform_params(transform):
        params[p] = by_name[p].suggest(trial)
    return params


def baseline_params() -> dict:
    """The raw map: the first trial of every gaming study."""
    return {"transform": IDENTITY}


def gaming_fields(params: Mapping) -> tuple[dict, dict]:
    """(TrialSpec fields, post-processing extra params) of a gaming point; fields the transform does not
    read stay at their 'off' values (sigma 0, filter_size 0) so equal transforms give equal trial ids."""
    transform = params["transform"]
    steps = transform.split(COMBINE)
    fields = {"postprocess": steps[0] if len(steps) == 1 else CHAIN, "sigma": 0.0, "filter_size": 0}
    extra = {}
    for p in transform_params(transform):
        if p == "sigma":
            fields[p] = float(params[p])
        elif p == "filter_size":
            fields[p] = int(params[p])
        else:
            extra[p] = params[p]
    if len(steps) > 1:
        extra["steps"] = ",".join(steps)
    elif _is_off(steps[0], fields):  # gaussian sigma 0, a 1-pixel filter: the raw map, one trial id for all
        return {"postprocess": IDENTITY, "sigma": 0.0, "filter_size": 0}, {}
    return fields, extra


def _is_off(name: str, fields: dict) -> bool:
    """A spatial transform at its reference strength (sigma 0 px, window <= 1 px) returns the map
    unchanged."""
    return is_reference(name, fields["sigma"], fields["filter_size"], {})


def recipe_fields(params: Mapping) -> dict:
    """TrialSpec fields of a recipe point, normalised to the field types (1 -> 1.0 for lr)."""
    problems = Problems()
    out = {k: check_value(k, v, k, problems) for k, v in params.items() if k in RECIPE_FIELDS}
    if problems:  # the space was validated, so this is a programming error
        raise ValueError("; ".join(problems))
    return out


def space_bounds(space: list[Dim], name: str):
    """Largest value a parameter can take (for cost normalisation), or None if it is not searched."""
    for d in space:
        if d.name == name:
            return max(d.values) if all(is_number(v) for v in d.values) else None
    return None

