"""Spec-time checks of protocol options (TrialSpec.options) and post-processing parameters, so a wrong
type or range is reported before Ray starts instead of failing every trial.

``OPTION_RULES`` maps each option name a protocol (or the sweep) reads to a check that runs the very
reader the protocol uses (roar.protocols.options), on a TrialSpec that holds only that option; the
check returns the reader's message or None. tests/test_hostile_inputs.py fails when a protocol reads
an option that has no rule here.
"""
from __future__ import annotations

from typing import Callable

from roar.conventions import CONVENTIONS, convention
from roar.spec import TrialSpec

_Check = Callable[[object], "str | None"]


def _reader(read: Callable[[TrialSpec, str], object]) -> Callable[[str], _Check]:
    """A rule that calls read(spec, name) the way the protocol does; its ValueError is the message."""
    def for_option(name: str) -> _Check:
        def check(value) -> str | None:
            try:
                read(TrialSpec(options=((name, value),)), name)
            except ValueError as exc:
                return str(exc)
            return None
        return check
    return for_option


def _options():
    from roar.protocols import options
    return options


def _positive_int(minimum: int) -> Callable[[str], _Check]:
    return _reader(lambda spec, name: _options().positive_int(spec, name, minimum, minimum))


def _number(low: float, high: float) -> Callable[[str], _Check]:
    return _reader(lambda spec, name: _options().number(spec, name, low, low, high))


def _number_list(low: float, high: float = float("inf")) -> Callable[[str], _Check]:
    return _reader(lambda spec, name: _options().number_list(spec, name, (low,), low, high))


def _curve_fractions(name: str) -> _Check:
    from roar.protocols.curves import curve_fractions
    return _reader(lambda spec, _: curve_fractions(spec))(name)


def _boolean(name: str) -> _Check:
    return _reader(lambda spec, n: _options().boolean(spec, n, True))(name)


def _string(name: str) -> _Check:
    return lambda v: None if isinstance(v, str) else f"option {name}={v!r}: must be a string"


def _model_name(name: str) -> _Check:
    def check(v):
        from roar.models import MODELS
        return None if v in MODELS else f"option {name}={v!r}: must be a model name ({', '.join(MODELS)})"
    return check


# option name -> rule factory (called with the name). Ranges are those the protocols enforce.
OPTION_RULES: dict[str, Callable[[str], _Check]] = {
    "curve_fractions": _curve_fractions,                 # mif / lif
    "leakage_epochs": _positive_int(1),                  # leakage
    "leakage_width": _positive_int(1),
    "leakage_model": _model_name,
    "input_noise": _number_list(0.0),                    # robustness
    "weight_noise": _number_list(0.0),
    "robustness_images": _positive_int(2),
    "sanity_images": _positive_int(2),                   # sanity
    "sanity_threshold": _number(-1.0, 1.0),
    "sanity_roar": _boolean,
    **{name: _reader(convention) for name in CONVENTIONS},   # ours | paper (roar.conventions)
    "search_study": _string,                             # set by `roar search`
    "fail_for_test": _string,                            # the test suite's failure switch
}


def option_problem(name: str, value) -> str | None:
    """Why option `name` cannot take `value`, or None when it can (unknown names included: the caller
    reports those with the valid names)."""
    rule = OPTION_RULES.get(name)
    return None if rule is None else rule(name)(value)


# --- post-processing parameters (declared once, in analysis.contract.POSTPROCESS_FACTS) -------------
def postprocess_param_names() -> tuple[str, ...]:
    from analysis.contract import param_names
    return param_names()


def postprocess_param_problem(name: str, value) -> str | None:
    """Type and range of one parameter (gamma, levels, steps), independent of the post-processing."""
    from analysis.contract import param_declaration
    decl = param_declaration(name)
    return None if decl is None or decl.valid(value) else f"{name} must be {decl.what()}; found {value!r}"


def postprocess_params_problem(postprocess: str, params: dict) -> str | None:
    """Whether `postprocess` takes exactly these parameters (chain: and each step gets what it needs)."""
    from analysis.contract import params_problem
    return params_problem(postprocess, params)
