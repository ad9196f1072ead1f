"""Robustness of the maps (after Lin, Covert & Lee): how much a map moves when the input or the model
is perturbed a little, for a list of perturbation sizes.

Input noise of size eps: x' = x + eps * ||x||_2 * g / ||g||_2 per image, g ~ N(0, I) — a Gaussian
direction whose L2 norm is exactly eps times the image's L2 norm (relative, so one size means the
same on 28x28 grey and 224x224 colour images). x' is not clipped to [0, 1]: clipping would change
the norm, and the models take any float input.
Weight noise of size eps: every parameter tensor w of a copy of the base model gets
w + eps * rms(w) * g, g ~ N(0, I): noise whose RMS is eps times the tensor's own RMS.

Per size, over a fixed test subset (the trial's attribution settings and post-processing):
- l2: mean Euclidean distance between the maps scaled to unit L2 norm (0..2);
- rank_corr: mean Spearman rho between perturbed and unperturbed maps;
written to detail_json. A zero size leaves inputs and weights bit-identical, so it gives l2 = 0 and
rank_corr = 1 exactly (for deterministic methods and stochastic ones, whose noise is fixed per image).

Options: input_noise (relative L2 sizes, default 0, 0.01, 0.05, 0.1), weight_noise (relative RMS
sizes, default 0, 0.01, 0.05), each a list or a comma-separated string; robustness_images (default 256).
"""
from __future__ import annotations

import copy
import json

import torch
from torch import nn

from ..rng import counter_normal
from .context import TrialContext
from .map_change import MapProbe, image_mean, l2_distance, probe_subset, rank_correlation
from .options import number_list, positive_int

DEFAULT_INPUT_NOISE = (0.0, 0.01, 0.05, 0.1)
DEFAULT_WEIGHT_NOISE = (0.0, 0.01, 0.05)
DEFAULT_IMAGES = 256
WEIGHT_SEED_OFFSET = 104729     # keeps the weight-noise stream apart from other seeded streams


def perturb_input(x: torch.Tensor, size: float, seed: int, index: torch.Tensor, draw: int = 0) -> torch.Tensor:
    """x + Gaussian noise with L2 norm = size * ||x||_2 per image. The noise of image b depends only on
    (seed, draw, index[b]), not on the batch. size 0 returns x unchanged (bit for bit)."""
    g = counter_normal(seed, index.to(x.device), tuple(x.shape[1:]), "robustness/input", draw).to(x.dtype)
    scale = size * x.flatten(1).norm(dim=1) / g.flatten(1).norm(dim=1).clamp_min(1e-12)
    return x + scale.view(-1, *([1] * (x.dim() - 1))) * g


def perturb_weights(model: nn.Module, size: float, seed: int) -> nn.Module:
    """A copy of `model` whose every parameter tensor w gets eps * rms(w) * N(0, 1) noise (drawn on the
    CPU, so the same on every device). size 0 gives a bit-identical copy."""
    noisy = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in noisy.parameters():
            g = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
            p.add_(size * p.pow(2).mean().sqrt() * g)
    return noisy.eval()


def _compare(reference: torch.Tensor, maps: torch.Tensor, size: float) -> dict:
    return {"size": size, "l2": image_mean(l2_distance(reference, maps)),
            "rank_corr": image_mean(rank_correlation(reference, maps))}


def run_robustness(ctx: TrialContext) -> dict:
    input_sizes = number_list(ctx.spec, "input_noise", DEFAULT_INPUT_NOISE, 0.0, what="relative sizes")
    weight_sizes = number_list(ctx.spec, "weight_noise", DEFAULT_WEIGHT_NOISE, 0.0, what="relative sizes")
    rows = probe_subset(ctx.images("test").shape[0], positive_int(ctx.spec, "robustness_images", DEFAULT_IMAGES, 2))
    probe = MapProbe(ctx, rows)
    reference = probe.maps(ctx.base_model)
    seed = ctx.spec.seed
    detail = {"images": int(rows.numel()),
              "input_noise_unit": "L2 norm of the noise / L2 norm of the image",
              "weight_noise_unit": "RMS of the noise / RMS of the parameter tensor",
              "l2_unit": "distance between maps scaled to unit L2 norm (0..2)",
              "input_noise": [], "weight_noise": []}
    for draw, size in enumerate(input_sizes):
        x = perturb_input(probe.x, size, seed, probe.index, draw)
        detail["input_noise"].append(_compare(reference, probe.maps(ctx.base_model, x), size))
    for draw, size in enumerate(weight_sizes):
        model = perturb_weights(ctx.base_model, size, seed * 1_000_003 + WEIGHT_SEED_OFFSET + draw)
        detail["weight_noise"].append(_compare(reference, probe.maps(model), size))
    return {"accuracy": None, "loss": None, "n_test": int(rows.numel()), "detail_json": json.dumps(detail)}
