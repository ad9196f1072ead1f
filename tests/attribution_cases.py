"""The table of attribution test cases, and the tiny models and helpers the tests share.

One row per ATTRIBUTIONS entry, built from the registry itself: a method is tested by every
parametrised invariant the moment it is registered. OVERRIDES holds the few per-method settings that
differ from DEFAULTS; a new method needs a row there only if it needs a different tolerance.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from roar.attribution import ATTRIBUTIONS

# Batch-vs-one-by-one agreement: float32 convolutions sum in a different order for other batch
# sizes, so equality holds to rounding: |a - b| <= atol_rel * max|b| + rtol * |b|.
DEFAULTS = {"rtol": 1e-4, "atol_rel": 1e-5}
OVERRIDES: dict[str, dict] = {}

CASES = [{"name": name, "method": method, **DEFAULTS, **OVERRIDES.get(name, {})}
         for name, method in ATTRIBUTIONS.items()]


def cases(where=lambda case: True):
    """pytest.param per case (id = registry key), optionally filtered, e.g. on a capability flag."""
    return [pytest.param(case, id=case["name"]) for case in CASES if where(case)]




# --- tiny models --------------------------------------------------------------------------------------
class Boom(nn.Module):
    """Identity that raises when armed: an error in the middle of a forward pass, after captum's hooks."""

    def __init__(self):
        super().__init__()
        self.armed = False

    def forward(self, x):
        if self.armed:
            raise RuntimeError("boom")
        return x


class TinyCNN(nn.Module):
    """conv-relu-pool-conv-relu-pool-linear on [0, 1] images, normalising inside like the real models."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), Boom(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, num_classes))

    def forward(self, x):
        return self.head(self.features((x - 0.5) / 0.25))

    def arm(self, armed: bool = True) -> None:
        self.features[2].armed = armed


class LinearNet(nn.Module):
    """logits = W · flatten(x) + b: every gradient method has a closed form on it."""

    def __init__(self, shape=(1, 6, 6), num_classes: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(int(torch.tensor(shape).prod()), num_classes)

    def forward(self, x):
        return self.fc(self.flatten(x))


def images(n: int = 6, channels: int = 3, size: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g)


def hook_count(model: nn.Module) -> int:
    """Hooks registered on any module of ``model`` plus torch's global module hooks."""
    from torch.nn.modules import module as torch_module
    per_module = sum(len(getattr(m, attr)) for m in model.modules()
                     for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                                  "_backward_pre_hooks"))
    global_hooks = sum(len(getattr(torch_module, attr)) for attr in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks"))
    return per_module + global_hooks
