"""Protocol registry: spec string -> Protocol.

A protocol gets a TrialContext and returns result columns (at least accuracy, loss, n_test). Its facts
(readable name, `order`: which mask the trial's map/mask metrics describe, `retrains`: whether the trial
trains a model, what it measures, its score) are analysis.contract.PROTOCOL_FACTS, shared with the
analysis; this record adds the function and the dataset capability it needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from analysis.contract import PROTOCOL_FACTS, ProtocolFacts

from .context import TrialContext
from .curves import curves_protocol
from .groundtruth import run_groundtruth
from .leakage import run_leakage
from .retrain import retrain_protocol
from .road_eval import road_protocol
from .robustness import run_robustness
from .sanity import run_sanity


@dataclass(frozen=True)
class Protocol:
    run: Callable[[TrialContext], dict]
    facts: ProtocolFacts
    needs_true_pixels: bool = False   # only for datasets that know the label-deciding pixels

    @property
    def order(self) -> str:           # 'morf' or 'lerf': the mask the metrics are computed on
        return self.facts.order

    @property
    def retrains(self) -> bool:       # trains a model per trial (the expensive part)
        return self.facts.retrains

    @property
    def description(self) -> str:
        return self.facts.description


def _order(name: str) -> str:
    return PROTOCOL_FACTS[name].order


_RUNS: dict[str, Callable[[TrialContext], dict]] = {
    "roar": retrain_protocol(_order("roar")),
    "kar": retrain_protocol(_order("kar")),
    "road_morf": road_protocol(_order("road_morf")),
    "road_lerf": road_protocol(_order("road_lerf")),
    "mif": curves_protocol("mif"),
    "lif": curves_protocol("lif"),
    "leakage": run_leakage,
    "sanity": run_sanity,
    "robustness": run_robustness,
    "groundtruth": run_groundtruth,
}
_NEEDS_TRUE_PIXELS = frozenset({"groundtruth"})

PROTOCOLS: dict[str, Protocol] = {name: Protocol(run, PROTOCOL_FACTS[name], name in _NEEDS_TRUE_PIXELS)
                                  for name, run in _RUNS.items()}

__all__ = ["PROTOCOLS", "Protocol", "TrialContext"]
