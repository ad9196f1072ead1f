"""Lookup in the string-keyed registries with errors that name the field and the closest valid key."""
from __future__ import annotations

import difflib
from typing import Mapping, TypeVar

T = TypeVar("T")


def closest(name: str, valid) -> str | None:
    match = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.5)
    return match[0] if match else None


def unknown_message(field: str, name, valid) -> str:
    """'unknown attribution 'salency'; did you mean 'saliency'? valid: ...'"""
    hint = closest(name, valid)
    did_you_mean = f"; did you mean {hint!r}?" if hint else ";"
    return f"unknown {field} {name!r}{did_you_mean} valid: {', '.join(sorted(map(str, valid)))}"


def lookup(registry: Mapping[str, T], name: str, field: str) -> T:
    try:
        return registry[name]
    except KeyError:
        raise KeyError(unknown_message(field, name, registry.keys())) from None
