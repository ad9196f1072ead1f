"""Removal-based attribution methods (captum) on square patches, and a ground-truth oracle.

These explain a prediction by removing features and watching the output, the very operation the
removal benchmarks use to score explanations, so they are the natural comparison for gradient
methods in the robustness and benchmark protocols.

Features are square patches of side round(min(H, W) / 7) pixels (the occlusion method's side: 4 px on
28 px images, 2 px on 16 px, 32 px on 224 px; about 7 x 7 = 49 features), spanning all channels, with
edge patches cut at the border. A removed patch is set to 0 (black), as occlusion does. Every pixel of a
patch gets the patch's value, so the maps are piecewise constant (and the removal tie-break decides
within a patch).

Randomness (permutations, coalitions) comes from torch's CPU generator, re-seeded with `seed` at every
call, so every image of every batch gets the same draws: a map depends on (seed, image) only, never on
its batch.

Occlusion (captum) slides the same patch over the image.
"""
from __future__ import annotations

import torch
from captum.attr import FeatureAblation, KernelShap, Occlusion, ShapleyValueSampling

from ..datasets import synthetic_slots
from .method import AttributionMethod

OCCLUSION_PATCH_PER_PIXEL = 1 / 7   # occlusion patch side = round(H / 7): 4 px on 28 px, 32 px on 224 px
OCCLUSION_PERTURBATIONS_PER_EVAL = 8  # occluded copies per forward pass (speed only)
SHAPLEY_PERMUTATIONS = 8          # random feature orders per image (captum's n_samples)
KERNEL_SHAP_SAMPLES = 200         # coalitions per image for the weighted linear fit
PERTURBATIONS_PER_EVAL = 16       # perturbed copies per forward pass (speed and memory only)


def occlusion_window(height: int, width: int) -> tuple[int, int]:
    """(patch side, stride) in pixels: side = round(min(H, W) / 7) >= 1, stride = max(1, side // 2)."""
    side = max(1, round(min(height, width) * OCCLUSION_PATCH_PER_PIXEL))
    return side, max(1, side // 2)


def _occlusion(model, x, target, index, seed):
    channels, height, width = x.shape[1:]
    side, stride = occlusion_window(height, width)
    # The window spans all channels: a pixel is occluded as a whole, as removal later does.
    return Occlusion(model).attribute(
        x, sliding_window_shapes=(channels, side, side), strides=(channels, stride, stride),
        baselines=0.0, target=target, perturbations_per_eval=OCCLUSION_PERTURBATIONS_PER_EVAL)



def patch_side(height: int, width: int) -> int:
    """Side of a feature patch in pixels: the occlusion window's side."""
    return occlusion_window(height, width)[0]


def patch_feature_mask(height: int, width: int, device="cpu") -> torch.Tensor:
    """int64 (1, 1, H, W) feature ids, one per square patch, row-major; broadcasts over batch and channels."""
    side = patch_side(height, width)
    cols_per_row = -(-width // side)
    rows = torch.arange(height, device=device) // side
    cols = torch.arange(width, device=device) // side
    return (rows[:, None] * cols_per_row + cols[None, :]).reshape(1, 1, height, width)


class _seeded:
    """Fork torch's CPU generator and seed it (captum draws permutations and coalitions there)."""

    def __init__(self, seed: int):
        self.seed = seed
        self._fork = None

    def __enter__(self):
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


def _feature_ablation(model, x, target, index, seed):
    mask = patch_feature_mask(*x.shape[2:], device=x.device)
    return FeatureAblation(model).attribute(x, baselines=0.0, target=target, feature_mask=mask,
                                            perturbations_per_eval=PERTURBATIONS_PER_EVAL)


def _shapley_sampling(model, x, target, index, seed):
    mask = patch_feature_mask(*x.shape[2:], device=x.device)
    # ShapleyValueSampling draws one permutation per sample for the whole batch: seeding per call gives
    # every image the same permutations, whatever its batch.
    with _seeded(seed):
        return ShapleyValueSampling(model).attribute(
            x, baselines=0.0, target=target, feature_mask=mask, n_samples=SHAPLEY_PERMUTATIONS,
            perturbations_per_eval=PERTURBATIONS_PER_EVAL)


def _kernel_shap(model, x, target, index, seed):
    mask = patch_feature_mask(*x.shape[2:], device=x.device)
    explainer = KernelShap(model)
    maps = []
    # captum fits one linear model per example in a Python loop either way; calling it per image with
    # the generator re-seeded gives every image the same coalitions, so a map does not depend on its
    # position in the batch (captum's own loop would hand each position different draws).
    for b in range(x.shape[0]):
        with _seeded(seed):
            maps.append(explainer.attribute(
                x[b:b + 1], baselines=0.0, target=target[b:b + 1], feature_mask=mask,
                n_samples=KERNEL_SHAP_SAMPLES, perturbations_per_eval=PERTURBATIONS_PER_EVAL))
    return torch.cat(maps) if maps else torch.zeros_like(x)


def _true_pixels(model, x, target, index, seed):
    """The synthetic dataset's true pixels of the target class: its class patch (1) on 0 elsewhere.

    With target='label' this is exactly ImageData.*_true, a pixel-perfect map. Meaningful on the
    'synthetic' dataset only: on other data it is a quadrant-shaped prior.
    """
    slots = torch.from_numpy(synthetic_slots(x.shape[2])).to(x.device)
    if slots.shape[1:] != x.shape[2:]:
        raise ValueError(f"attribution 'true_pixels' needs square synthetic images; found {tuple(x.shape[2:])}")
    if target.numel() and int(target.max()) >= slots.shape[0]:
        raise ValueError(f"attribution 'true_pixels': target class {int(target.max())} is not a synthetic class "
                         f"(0..{slots.shape[0] - 1}); use it with dataset 'synthetic' only")
    return slots[target.to(x.device)].to(x.dtype)


PERTURBATION_ATTRIBUTIONS: dict[str, AttributionMethod] = {
    "occlusion": AttributionMethod(
        fn=_occlusion, needs_baseline=True, description="occlusion by zero patches of side H/7, stride half the side"),
    "feature_ablation": AttributionMethod(
        fn=_feature_ablation, needs_baseline=True, description="output drop when one patch (side H/7) is set to 0"),
    "shapley_sampling": AttributionMethod(
        fn=_shapley_sampling, stochastic=True, needs_baseline=True,
        description=f"Shapley value sampling over patches (side H/7), {SHAPLEY_PERMUTATIONS} permutations, 0 baseline"),
    "kernel_shap": AttributionMethod(
        fn=_kernel_shap, stochastic=True, needs_baseline=True,
        description=f"KernelSHAP over patches (side H/7), {KERNEL_SHAP_SAMPLES} coalitions, 0 baseline"),
}

ORACLE_ATTRIBUTIONS: dict[str, AttributionMethod] = {
    "true_pixels": AttributionMethod(
        fn=_true_pixels, uses_model=False, needs_true_pixels=True,
        description="synthetic only: the target class's true-pixel patch (perfect map)"),
}
