"""The record of one attribution method: its function and the capability flags the sweep and the
analysis read. Every method is ``fn(model, x, target, index, seed) -> (B, C, H, W) or (B, H, W)``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class AttributionMethod:
    """A registered attribution method.

    uses_model: the map depends on the model (False: a model-free baseline such as random or sobel).
    stochastic: the map depends on ``seed``. needs_baseline: the method compares against a reference input.
    needs_true_pixels: only valid on datasets that know the label-deciding pixels (the synthetic oracle).
    noise_std: the method adds input noise whose std a caller may set (compute_maps(noise_std=...)).
    """
    fn: Method
    description: str
    uses_model: bool = True
    stochastic: bool = False
    needs_baseline: bool = False
    needs_true_pixels: bool = False
    noise_std: bool = False
