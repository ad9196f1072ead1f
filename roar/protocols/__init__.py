"""Protocol registry: spec string -> Protocol.

A protocol gets a TrialContext and returns result columns (at least accuracy, loss, n_test). `order`
says which mask the trial's map/mask metrics describe; `retrains` tells the sweep and the cost
estimate whether the trial trains a model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
    order: str            # 'morf' or 'lerf': the mask the metrics are computed on
    retrains: bool        # trains a model per trial (the expensive part)
    description: str
    needs_true_pixels: bool = False   # only for datasets that know the label-deciding pixels


PROTOCOLS: dict[str, Protocol] = {
    "roar": Protocol(retrain_protocol("morf"), "morf", True, "remove most important, retrain (Hooker et al.)"),
    "kar": Protocol(retrain_protocol("lerf"), "lerf", True, "remove least important (keep most), retrain"),
    "road_morf": Protocol(road_protocol("morf"), "morf", False,
                          "remove most important, noisy linear imputation, base model (Rong et al.)"),
    "road_lerf": Protocol(road_protocol("lerf"), "lerf", False,
                          "remove least important, noisy linear imputation, base model (Rong et al.)"),
    "mif": Protocol(curves_protocol("mif"), "morf", False,
                    "base-model accuracy curve, most important first; fidelity = AUC(LIF) - AUC(MIF)"),
    "lif": Protocol(curves_protocol("lif"), "lerf", False,
                    "base-model accuracy curve, least important first; fidelity = AUC(LIF) - AUC(MIF)"),
    "leakage": Protocol(run_leakage, "morf", True, "classifier trained on the binary MoRF mask alone, no pixels"),
    "sanity": Protocol(run_sanity, "morf", True,
                       "cascading model randomisation: map rank correlation / SSIM, ROAR of randomised maps"),
    "robustness": Protocol(run_robustness, "morf", False, "map change under input noise and weight noise"),
    "groundtruth": Protocol(run_groundtruth, "morf", False,
                            "precision of top-ranked pixels against the true pixels (synthetic only)",
                            needs_true_pixels=True),
}

__all__ = ["PROTOCOLS", "Protocol", "TrialContext"]
