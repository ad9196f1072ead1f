"""Protocol registry: spec string -> Protocol.

A protocol gets a TrialContext and returns result columns (at least accuracy, loss, n_test). `order`
says which mask the trial's map/mask metrics describe; `retrains` tells the sweep and the cost
estimate whether the trial trains a model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .context import TrialContext
from .retrain import retrain_protocol


@dataclass(frozen=True)
class Protocol:
    run: Callable[[TrialContext], dict]
    order: str            # 'morf' or 'lerf': the mask the metrics are computed on
    retrains: bool        # trains a model per trial (the expensive part)
    description: str


PROTOCOLS: dict[str, Protocol] = {
    "roar": Protocol(retrain_protocol("morf"), "morf", True, "remove most important, retrain (Hooker et al.)"),
    "kar": Protocol(retrain_protocol("lerf"), "lerf", True, "remove least important (keep most), retrain"),
}

__all__ = ["PROTOCOLS", "Protocol", "TrialContext"]
