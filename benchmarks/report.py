"""One row of the result table, the table itself and the JSON file.

A metric compares a baseline ("naive" column) with the roar-sweep path ("fast" column); a goal is a
comparison of one number (the ratio, or the fast value) against a bound. Rows a machine cannot
measure (GPU rows without CUDA) carry a ``skipped`` reason instead of numbers.
"""
from __future__ import annotations

import json
import math
import operator
from dataclasses import asdict, dataclass

# goal comparison -> (operator, symbol)
COMPARISONS = {"ge": (operator.ge, "≥"), "le": (operator.le, "≤")}
# which number the goal is about -> how the Metric finds it
SUBJECTS = {"ratio": lambda m: m.ratio, "fast": lambda m: m.fast,
            "abs_diff": lambda m: _diff(m, abs), "growth": lambda m: _diff(m, lambda d: d)}


def _diff(m: "Metric", how):
    if m.naive is None or m.fast is None:
        return None
    return how(m.fast - m.naive)


@dataclass
class Metric:
    """naive: the baseline's value; fast: the roar-sweep path's value; unit: of both values.
    ratio: fast/naive (or naive/fast for 'lower is better' units), set by the section.
    goal_on: 'ratio', 'fast', 'abs_diff' (|fast - naive|) or 'growth' (fast - naive, e.g. memory at the
    first and last trial); goal_op: 'ge' or 'le'; goal: the bound."""

    section: str
    metric: str
    unit: str = ""
    naive: float | None = None
    fast: float | None = None
    ratio: float | None = None
    goal_on: str | None = None
    goal_op: str = "ge"
    goal: float | None = None
    skipped: str | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.skipped or self.goal is None:
            return None
        value = SUBJECTS[self.goal_on](self)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return bool(COMPARISONS[self.goal_op][0](value, self.goal))

    def goal_text(self) -> str:
        if self.goal is None:
            return ""
        symbol = COMPARISONS[self.goal_op][1]
        if self.goal_on == "ratio":
            return f"{symbol} {self.goal:g}×"
        if self.goal_on == "abs_diff":
            return f"|Δ| {symbol} {self.goal:g}"
        if self.goal_on == "growth":
            return f"growth {symbol} {self.goal:g} {self.unit}"
        return f"{symbol} {self.goal:g}{' ' + self.unit if self.unit not in ('', '%') else self.unit}"

    def to_dict(self) -> dict:
        return {**asdict(self), "goal_text": self.goal_text(), "met": self.met}


def _number(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return text + ("%" if unit == "%" else "")


def format_table(metrics: list[Metric]) -> str:
    """Plain-text table: metric, naive, fast, ratio, goal, met?; skipped rows give their reason."""
    head = ("metric", "naive", "fast", "ratio", "goal", "met?")
    rows = []
    for m in metrics:
        name = f"{m.metric} [{m.unit}]" if m.unit and m.unit != "%" else m.metric
        if m.skipped:
            rows.append((name, "—", "—", "—", m.goal_text(), f"skipped: {m.skipped}"))
            continue
        ratio = "—" if m.ratio is None else f"{m.ratio:.2f}×"
        met = {True: "yes", False: "NO", None: ""}[m.met]
        rows.append((name, _number(m.naive, m.unit), _number(m.fast, m.unit), ratio, m.goal_text(), met))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, rows)])


def write_json(path: str, payload: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, default=_jsonable, allow_nan=True)
        f.write("\n")


def _jsonable(obj):
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
