"""Why trials failed, in one line: failed rows grouped by the first line of their error."""
from __future__ import annotations

from typing import Iterable


def error_reason(error: str | None, limit: int = 240) -> str:
    """The first line of a failed row's error (its exception, without the traceback), shortened."""
    text = (error or "").strip()
    line = text.splitlines()[0] if text else "no error text"
    return line if len(line) <= limit else line[:limit] + "..."


def group_errors(errors: Iterable[str | None]) -> dict[str, int]:
    """reason -> number of trials, largest group first (ties in order of the reason)."""
    groups: dict[str, int] = {}
    for error in errors:
        reason = error_reason(error)
        groups[reason] = groups.get(reason, 0) + 1
    return dict(sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])))


def failure_line(name: str, failed: int, total: int, errors: dict[str, int], groups: int = 3) -> str:
    """'[name] 4 of 6 trials failed: 3x ValueError: ...; 1x RuntimeError: ...' (largest groups first)."""
    shown = "; ".join(f"{n}x {reason}" for reason, n in list(errors.items())[:groups])
    more = f"; and {len(errors) - groups} other error(s)" if len(errors) > groups else ""
    return f"[{name}] {failed} of {total} trials failed: {shown}{more}"
