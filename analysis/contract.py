"""The torch-free facts of each post-processing and each protocol: one record per registry key, read by
roar (which adds the functions), the sweep (spec validation, search space) and the analysis (levels,
scores). Pure Python: analysis imports it without torch or ray, and roar imports it too, so no fact is
written twice.

Post-processing facts (``POSTPROCESS_FACTS``): the parameters a transform takes beyond the trial's
generic ``sigma``/``filter_size`` (each a ``Param`` with type, range, default), the generic field it
reads as its strength, the values at which it returns the map unchanged (``reference``), how its
strength is written in labels, and capability flags.

Protocol facts (``PROTOCOL_FACTS``): readable name, the mask order its metrics describe (MoRF/LeRF),
whether it retrains, what it measures and, for scored protocols, the result column and sign that turn
a row into "higher = better method".
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace

STRENGTH_FIELDS = ("sigma", "filter_size")            # the trial's generic post-processing fields, pixels
STRENGTH_OFF = {"sigma": 0.0, "filter_size": 1}       # at or below these a spatial transform does nothing
STRENGTH_LABELS = {"sigma": "σ={:g}", "filter_size": "{:g}px"}
BLUR_EDGES = ("mirror", "reflect", "replicate")       # roar.blur.EDGE_INDEX keys (a test keeps them equal)


def is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def is_integer(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


@dataclass(frozen=True)
class Param:
    """One extra parameter of a post-processing.

    kind: 'float' | 'int' (numbers, bounded by low/high; low_open: low itself is invalid), 'choice'
    (one of choices) or 'steps' (comma-separated post-processing names, for chain).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    required: bool = False            # a trial must give it (no default)
    default: object = None            # the value the function uses when it is not given
    choices: tuple = ()
    note: str = ""                    # unit or meaning, shown after the valid range
    example: object = None            # a valid value, for hints in spec errors

    def what(self) -> str:
        """What a valid value is, in words (used in every error message)."""
        if self.kind == "choice":
            text = f"one of {sorted(self.choices)}"
        elif self.kind == "steps":
            text = "comma-separated post-processing names (not chain, not seeded ones)"
        else:
            text = "a finite number" if self.kind == "float" else "an integer"
            if self.low is not None:
                text += f" {'>' if self.low_open else '>='} {self.low:g}"
            if self.high is not None:
                text += f" and <= {self.high:g}"
        return f"{text} ({self.note})" if self.note else text

    def valid(self, value) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "steps":
            return _valid_steps(value)
        ok = is_number(value) if self.kind == "float" else is_integer(value)
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        return ok and (self.high is None or value <= self.high)


@dataclass(frozen=True)
class PostProcessFacts:
    """What a post-processing is, without its function (roar.postprocess adds that).

    strength: the generic field it reads ('sigma' | 'filter_size' | None).
    reference: the values at which it returns the map unchanged, e.g. {'sigma': 0} (strength fields:
      at or below the value) or {'gamma': 1}; {} = always the identity; None = never.
    seeded: draws random values, so it gets the trial's seed and the images' indices.
    information_free: never looks at the model or the data (every entry so far).
    rank_preserving: keeps every per-image ranking, so every mask, unchanged.
    """

    params: dict[str, Param] = field(default_factory=dict)
    strength: str | None = None
    reference: dict | None = None
    seeded: bool = False
    information_free: bool = True
    rank_preserving: bool = False
    title: str | None = None          # readable family name for prose (None: not a family of its own)
    passes_strength: bool = False     # hands sigma and filter_size on (chain): it may read either

    @property
    def strength_fields(self) -> tuple[str, ...]:
        """The generic fields (sigma, filter_size) that can change its output."""
        return STRENGTH_FIELDS if self.passes_strength else ((self.strength,) if self.strength else ())

    @property
    def label_format(self) -> str | None:
        return STRENGTH_LABELS.get(self.strength)

    @property
    def reads(self) -> tuple[str, ...]:
        """Generic fields, then required extra parameters: what a search must draw for it."""
        strength = (self.strength,) if self.strength else ()
        return strength + tuple(k for k, p in self.params.items() if p.required)


_BLUR = {"edges": Param("choice", choices=BLUR_EDGES, default="mirror"),
         "truncate": Param("float", low=0, low_open=True, note="kernel radius in sigmas")}  # default: radius ceil(3 sigma)
_GAMMA = {"gamma": Param("float", low=0, low_open=True, required=True, example=0.5)}
_LEVELS = {"levels": Param("int", low=2, required=True, example=8)}

POSTPROCESS_FACTS: dict[str, PostProcessFacts] = {
    "identity": PostProcessFacts(reference={}, rank_preserving=True),
    "gaussian": PostProcessFacts(_BLUR, strength="sigma", reference={"sigma": 0}, title="Gaussian blur"),
    "max_filter": PostProcessFacts(strength="filter_size", reference={"filter_size": 1}, title="Max filtering"),
    "mean_filter": PostProcessFacts(strength="filter_size", reference={"filter_size": 1}, title="Mean filtering"),
    "gamma": PostProcessFacts(_GAMMA, reference={"gamma": 1}, rank_preserving=True, title="Gamma correction"),
    "quantize": PostProcessFacts(_LEVELS, title="Quantisation"),
    "blur_matched_random": PostProcessFacts(_BLUR, strength="sigma", seeded=True,
                                            title="Replacing maps by blur-matched random maps"),
    # a chain carries its steps' parameters; which of them it needs depends on the steps (params_problem)
    "chain": PostProcessFacts({"steps": Param("steps", required=True, example="gamma,gaussian"),
                               **{k: replace(p, required=False) for k, p in {**_GAMMA, **_LEVELS}.items()},
                               **_BLUR}, passes_strength=True),
}
CHAIN = "chain"


def _valid_steps(value) -> bool:
    steps = value.split(",") if isinstance(value, str) and value else []
    return bool(steps) and all(s in POSTPROCESS_FACTS and s != CHAIN and not POSTPROCESS_FACTS[s].seeded
                               for s in steps)


def example_entry(name: str) -> str | None:
    """A valid YAML postprocess entry for `name` with its required parameters, e.g.
    '{name: quantize, levels: 8}'; None when it needs none."""
    facts = POSTPROCESS_FACTS.get(name)
    required = {k: p for k, p in facts.params.items() if p.required} if facts else {}
    if not required:
        return None
    if "steps" in required:   # a chain also needs what its example steps need
        for step in required["steps"].example.split(","):
            required.update({k: p for k, p in POSTPROCESS_FACTS[step].params.items() if p.required})
    values = ", ".join(f"{k}: {p.example!r}" if isinstance(p.example, str) else f"{k}: {p.example}"
                       for k, p in required.items())
    return f"{{name: {name}, {values}}}"


def param_declaration(name: str) -> Param | None:
    """The declaration of an extra parameter by name (a name means the same in every post-processing)."""
    for facts in POSTPROCESS_FACTS.values():
        if name in facts.params:
            return facts.params[name]
    return None


def param_names() -> tuple[str, ...]:
    return tuple(sorted({k for facts in POSTPROCESS_FACTS.values() for k in facts.params}))


def params_problem(name: str, params: dict) -> str | None:
    """Why `name` cannot take these extra parameters, or None: unknown names, missing required ones,
    values out of range; for chain also each step's required parameters."""
    facts = POSTPROCESS_FACTS.get(name)
    valid = facts.params if facts else {}
    unknown = sorted(set(params) - set(valid))
    if unknown:
        return f"postprocess {name!r} takes no parameter(s) {unknown}; valid: {sorted(valid)}"
    for key, decl in valid.items():
        if decl.required and key not in params:
            return f"postprocess {name!r} needs parameter {key!r} ({decl.what()}); found none"
    for key, value in params.items():
        if not valid[key].valid(value):
            return f"{key} must be {valid[key].what()} for postprocess {name!r}; found {value!r}"
    if name == CHAIN:
        for step in params["steps"].split(","):
            step_params = POSTPROCESS_FACTS[step].params
            missing = [k for k, p in step_params.items() if p.required and k not in params]
            if missing:
                what = ", ".join(f"{k} ({step_params[k].what()})" for k in missing)
                return f"postprocess 'chain' step {step!r} needs parameter(s) {what} in the chain entry"
    return None


def is_reference(name: str, sigma: float, filter_size: float, params: dict) -> bool:
    """Whether (name, sigma, filter_size, params) returns the raw map: every reference value holds and
    no other extra parameter is set."""
    facts = POSTPROCESS_FACTS.get(name)
    if facts is None or facts.reference is None or set(params) - set(facts.reference):
        return False
    strength = {"sigma": sigma, "filter_size": filter_size}
    return all(strength[k] <= v if k in strength else params.get(k) == v for k, v in facts.reference.items())


# --- protocols ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreRule:
    column: str        # result column the score is read from
    direction: int     # +1: larger column value = better method; -1: smaller = better
    meaning: str       # plain words for tables and the summary


@dataclass(frozen=True)
class ProtocolFacts:
    name: str                     # readable name for prose
    order: str                    # 'morf' or 'lerf': the mask the trial's map/mask metrics describe
    retrains: bool                # trains a model per trial (the expensive part)
    description: str
    score: ScoreRule | None = None   # None: a diagnostic protocol, no score
    uses_fill: bool = True        # False: brings its own fill (ROAD imputes), so the fill field is ignored


_DROP = "accuracy_drop"
# Registry order is the display order of the analysis.
PROTOCOL_FACTS: dict[str, ProtocolFacts] = {
    "roar": ProtocolFacts("ROAR", "morf", True, "remove most important, retrain (Hooker et al.)",
                          ScoreRule(_DROP, +1, "accuracy drop after removing the most important pixels and retraining")),
    "kar": ProtocolFacts("KAR", "lerf", True, "remove least important (keep most), retrain",
                         ScoreRule(_DROP, -1, "accuracy kept (minus drop) after removing the least important pixels and retraining")),
    "road_morf": ProtocolFacts("ROAD MoRF", "morf", False,
                               "remove most important, noisy linear imputation, base model (Rong et al.)",
                               ScoreRule(_DROP, +1, "accuracy drop of the base model, most important pixels imputed (ROAD)"),
                               uses_fill=False),
    "road_lerf": ProtocolFacts("ROAD LeRF", "lerf", False,
                               "remove least important, noisy linear imputation, base model (Rong et al.)",
                               ScoreRule(_DROP, -1, "accuracy kept by the base model, least important pixels imputed (ROAD)"),
                               uses_fill=False),
    "mif": ProtocolFacts("MIF", "morf", False,
                         "base-model accuracy curve, most important first; fidelity = AUC(LIF) - AUC(MIF)",
                         ScoreRule(_DROP, +1, "accuracy drop of the base model, most important pixels removed first")),
    "lif": ProtocolFacts("LIF", "lerf", False,
                         "base-model accuracy curve, least important first; fidelity = AUC(LIF) - AUC(MIF)",
                         ScoreRule(_DROP, -1, "accuracy kept by the base model, least important pixels removed first")),
    "groundtruth": ProtocolFacts("ground truth", "morf", False,
                                 "precision of top-ranked pixels against the true pixels (synthetic only)",
                                 ScoreRule("groundtruth_precision", +1, "precision of the top-k pixels against the true pixels")),
    "leakage": ProtocolFacts("leakage", "morf", True, "classifier trained on the binary MoRF mask alone, no pixels"),
    "sanity": ProtocolFacts("sanity", "morf", True,
                            "cascading model randomisation: map rank correlation / SSIM, ROAR of randomised maps"),
    "robustness": ProtocolFacts("robustness", "morf", False, "map change under input noise and weight noise"),
}
# Sign convention for ranking, one entry per protocol with a score.
PROTOCOL_SCORES: dict[str, ScoreRule] = {k: f.score for k, f in PROTOCOL_FACTS.items() if f.score is not None}
