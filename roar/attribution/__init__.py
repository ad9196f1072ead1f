"""Attribution maps: one registry of methods, one batched driver, explicit sign and channel reduction.

The methods live by family: gradient.py (captum gradients, GradCAM), perturbation.py (occlusion and the
other patch-removal methods, the synthetic oracle), baselines.py (model-free null maps); method.py is
their record.

Contract (docs/ARCHITECTURE.md): images are float tensors on the [0, 1] scale, shape (N, C, H, W); models
normalise inside their first layer, so every map here is an attribution with respect to the [0, 1] image.

Every method is ``fn(model, x, target, index, seed) -> (B, C, H, W) or (B, H, W)`` where ``target`` is a
LongTensor (B,) of classes gathered per sample (a batch never shares one target) and ``index`` the
LongTensor (B,) of the images' global indices in their split. Randomness is drawn from a counter-based
hash of (stream, seed, draw, image index, element), so a stochastic map depends only on (seed, image),
never on which other images share its batch or on the batch size.

``compute_maps`` applies the sign per channel first, then the channel reduction: ('abs', 'mean') is the
common paper convention "absolute value, then channel mean"; ('abs', 'max') is Simonyan et al.'s
saliency; ('raw', 'sum') the signed total contribution of a pixel. Under 'abs' (or 'positive'),
'abs_sum' equals 'sum'; 'abs_sum' differs only for 'raw', where it is the sum of per-channel magnitudes.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..registry import lookup, unknown_message
from ..rng import counter_normal, counter_uniform  # noqa: F401  (re-exported: roar.attribution.counter_*)
from .baselines import BASELINE_ATTRIBUTIONS
from .gradient import IG_STEPS, NOISE_SAMPLES, NOISE_STD, GRADIENT_ATTRIBUTIONS, cam_layer  # noqa: F401
from .method import AttributionMethod, Method  # noqa: F401
from .perturbation import ORACLE_ATTRIBUTIONS, PERTURBATION_ATTRIBUTIONS, occlusion_window  # noqa: F401

# captum's notices that repeat on every batch and say nothing about the result.
_CAPTUM_NOTICES = ("Input Tensor .* did not already require gradients", "Setting backward hooks",
                   "Setting forward, backward hooks")

ATTRIBUTIONS: dict[str, AttributionMethod] = {
    **GRADIENT_ATTRIBUTIONS, **PERTURBATION_ATTRIBUTIONS, **BASELINE_ATTRIBUTIONS, **ORACLE_ATTRIBUTIONS}

# --- sign (applied per channel first) and channel reduction -----------------------------------------
SIGNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "abs": torch.abs,
    "positive": lambda a: a.clamp(min=0),
    "raw": lambda a: a,
}

REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sum": lambda a: a.sum(dim=1),
    "abs_sum": lambda a: a.abs().sum(dim=1),
    "max": lambda a: a.amax(dim=1),
    "mean": lambda a: a.mean(dim=1),
}


# --- drivers ----------------------------------------------------------------------------------------
def _as_float_images(xb: torch.Tensor, device) -> torch.Tensor:
    """uint8 images are scaled to [0, 1]; float images are taken as already on the [0, 1] scale."""
    xb = xb.to(device)
    return xb.float() / 255.0 if xb.dtype == torch.uint8 else xb.float()


def _check_images(x) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        found = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a torch tensor of images (N, C, H, W); found {found}")


def _predicted(model, x, y, device, batch_size):
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            preds = [model(_as_float_images(x[i:i + batch_size], device)).argmax(dim=1).cpu()
                     for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)


# How one split's targets are computed: the true label, or the base model's prediction.
TARGET_KINDS = {
    "label": lambda model, x, y, device, batch_size: torch.as_tensor(y, dtype=torch.int64).cpu(),
    "predicted": _predicted,
}

# The `target` of a spec -> the target kind of each split. No input of the test split may depend on a
# test label (a map computed from the label puts the label into the test image's holes, and ROAR then
# measures that leak), so 'label' explains the true label on the train split only. 'label_leaky' keeps
# the leaky behaviour under a name that says so, for measuring the size of the leak.
TARGETS = {
    "predicted": {"train": "predicted", "test": "predicted"},
    "label": {"train": "label", "test": "predicted"},
    "label_leaky": {"train": "label", "test": "label"},
}
LEAKY_TARGETS = tuple(name for name, kinds in TARGETS.items() if kinds["test"] == "label")


def split_target(mode: str, split: str) -> str:
    """The target kind ('label' or 'predicted') the maps of `split` ('train'/'test') explain under `mode`."""
    if mode not in TARGETS:
        raise ValueError(unknown_message("target", mode, TARGETS.keys()))
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; found {split!r}")
    return TARGETS[mode][split]


def resolve_targets(model: nn.Module, x: torch.Tensor, y, mode: str, device, batch_size: int = 512,
                    split: str | None = None) -> torch.Tensor:
    """LongTensor (N,) of the class each map explains, gathered per sample.

    `mode` is a target kind ('label' = y, 'predicted' = the model's argmax) or, with `split` given, a
    spec target ('predicted', 'label', 'label_leaky') resolved for that split by `split_target`.
    """
    kind = split_target(mode, split) if split is not None else mode
    if kind not in TARGET_KINDS:
        raise ValueError(unknown_message("target", mode, TARGET_KINDS.keys()))
    _check_images(x)
    return TARGET_KINDS[kind](model, x, y, device, batch_size)


def _check_per_image(name: str, value: torch.Tensor, n: int) -> torch.Tensor:
    value = torch.as_tensor(value)
    if value.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one entry per image; found {tuple(value.shape)}")
    return value.long()


def _reduce(attr: torch.Tensor, sign: Callable, reduction: Callable) -> torch.Tensor:
    if attr.dim() == 3:        # method already gives one value per pixel
        attr = attr.unsqueeze(1)
    return reduction(sign(attr))


def compute_maps(model: nn.Module, x: torch.Tensor, target, method: str, reduction: str = "abs_sum",
                 sign: str = "abs", seed: int = 0, batch_size: int = 256, device="cpu", index=None,
                 progress: bool = False, noise_std=None) -> np.ndarray:
    """Attribution maps of a whole split: float32 numpy (N, H, W), one value per pixel.

    x: (N, C, H, W) float on [0, 1] (or uint8, scaled by 1/255 per batch); target: (N,) classes;
    index: (N,) global image indices that seed per-image randomness (default 0..N-1). The model is
    moved to ``device`` and put in eval mode for the call (its mode is restored afterwards); each
    batch's result is moved to the CPU before the next starts. noise_std: input-noise std of the
    methods flagged noise_std, on the [0, 1] scale, one value or one per channel (None = NOISE_STD).
    """
    attribution = lookup(ATTRIBUTIONS, method, "attribution")
    extra = {"noise_std": noise_std} if noise_std is not None and attribution.noise_std else {}
    sign_fn = lookup(SIGNS, sign, "sign")
    reduce_fn = lookup(REDUCTIONS, reduction, "reduction")
    _check_images(x)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; found {batch_size}")
    n, _, height, width = x.shape
    target = _check_per_image("target", target, n)
    index = torch.arange(n) if index is None else _check_per_image("index", index, n)

    out = np.empty((n, height, width), dtype=np.float32)
    total = math.ceil(n / batch_size)
    start = time.perf_counter()
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            for notice in _CAPTUM_NOTICES:
                warnings.filterwarnings("ignore", message=notice, category=UserWarning)
            for b, i in enumerate(range(0, n, batch_size)):
                xb = _as_float_images(x[i:i + batch_size], device)
                attr = attribution.fn(model, xb, target[i:i + batch_size].to(device),
                                      index[i:i + batch_size].to(device), seed, **extra)
                out[i:i + len(xb)] = _reduce(attr.detach(), sign_fn, reduce_fn).float().cpu().numpy()
                if progress:
                    rate = (i + len(xb)) / max(time.perf_counter() - start, 1e-9)
                    print(f"\r{method}: batch {b + 1}/{total}, {rate:.1f} images/s",
                          end="", file=sys.stderr, flush=True)
    finally:
        model.train(was_training)
        if progress:
            print(file=sys.stderr, flush=True)
    return out


