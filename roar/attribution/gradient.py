"""Gradient-family attribution methods (captum): each ``fn(model, x, target, index, seed)``.

Noise of SmoothGrad, VarGrad and GradientShap is drawn from roar.rng with the image's global index, so a
map depends on (seed, image) only.
"""
from __future__ import annotations

import torch
from captum.attr import (
    DeepLift,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Saliency,
)
from torch import nn

from ..rng import counter_normal, counter_uniform
from .method import AttributionMethod

IG_STEPS = 25               # integration points of integrated gradients (captum default Gauss-Legendre rule)
NOISE_SAMPLES = 15          # noisy copies per image for smoothgrad / vargrad / gradient_shap
NOISE_STD = 0.15            # std of the Gaussian input noise, on the [0, 1] image scale (15% of the range)


def _saliency(model, x, target, index, seed):
    # abs=False: the sign registry decides what to do with the sign.
    return Saliency(model).attribute(x, target=target, abs=False)


def _input_x_gradient(model, x, target, index, seed):
    return InputXGradient(model).attribute(x, target=target)


def _integrated_gradients(model, x, target, index, seed):
    # One interpolation step per chunk of len(x) images bounds memory at one batch of activations.
    return IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=IG_STEPS,
        internal_batch_size=x.shape[0])


def _noise_scale(noise_std, x: torch.Tensor) -> torch.Tensor:
    """The noise std as a tensor broadcastable to x (N,C,H,W): one value, or one per channel."""
    scale = torch.as_tensor(noise_std, dtype=x.dtype, device=x.device).reshape(-1)
    if scale.numel() not in (1, x.shape[1]):
        raise ValueError(f"noise_std must give one value or one per channel ({x.shape[1]}); found {scale.numel()}")
    return scale.reshape(1, -1, 1, 1)


def _noisy_gradient_moments(model, x, target, index, seed, stream, noise_std=NOISE_STD):
    """Mean and population variance over NOISE_SAMPLES of the gradient at x + N(0, noise_std²).

    captum NoiseTunnel semantics (smoothgrad = mean, vargrad = E[g²] - E[g]²), but the noise of image b
    is counter-drawn from (seed, index[b]) so the map does not depend on the batch. Welford's update
    keeps memory at one batch of gradients instead of NOISE_SAMPLES of them.
    """
    saliency = Saliency(model)
    scale = _noise_scale(noise_std, x)
    mean = torch.zeros_like(x)
    m2 = torch.zeros_like(x)
    for draw in range(NOISE_SAMPLES):
        noise = counter_normal(seed, index, tuple(x.shape[1:]), stream, draw).to(x.dtype) * scale
        grad = saliency.attribute(x + noise, target=target, abs=False)
        delta = grad - mean
        mean += delta / (draw + 1)
        m2 += delta * (grad - mean)
    return mean, m2 / NOISE_SAMPLES


def _smoothgrad(model, x, target, index, seed, noise_std=NOISE_STD):
    return _noisy_gradient_moments(model, x, target, index, seed, "smoothgrad", noise_std)[0]


def _vargrad(model, x, target, index, seed, noise_std=NOISE_STD):
    # Variance of gradients: squared gradient units, so values are ~ saliency², and always >= 0.
    return _noisy_gradient_moments(model, x, target, index, seed, "vargrad", noise_std)[1]


# Methods whose input-noise std a caller may set (compute_maps(noise_std=...)); see roar.conventions.

def _gradient_shap(model, x, target, index, seed):
    """captum GradientShap semantics with per-image counter randomness.

    Reference distribution: the black (0) and the white (1) image, as in captum's tutorial; each of
    NOISE_SAMPLES draws picks one (p = 1/2), adds N(0, NOISE_STD²) noise to the input and a uniform
    interpolation coefficient alpha; the map is mean of grad(b + alpha (x' - b)) * (x' - b).
    """
    saliency = Saliency(model)
    shape = tuple(x.shape[1:])
    total = torch.zeros_like(x)
    for draw in range(NOISE_SAMPLES):
        noisy = x + counter_normal(seed, index, shape, "gradient_shap/noise", draw).to(x.dtype) * NOISE_STD
        white = counter_uniform(seed, index, (1, 1, 1), "gradient_shap/baseline", draw) < 0.5
        baseline = white.to(x.dtype).expand_as(x)
        alpha = counter_uniform(seed, index, (1, 1, 1), "gradient_shap/alpha", draw).to(x.dtype)
        grad = saliency.attribute(baseline + alpha * (noisy - baseline), target=target, abs=False)
        total += grad * (noisy - baseline)
    return total / NOISE_SAMPLES


def _guided_backprop(model, x, target, index, seed):
    return GuidedBackprop(model).attribute(x, target=target)


def _deeplift(model, x, target, index, seed):
    return DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=target)


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer GradCAM explains: ``model.cam_layer`` if set, else the last nn.Conv2d in ``model``."""
    layer = getattr(model, "cam_layer", None)
    if isinstance(layer, nn.Module):
        return layer
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"attribution 'gradcam' needs a convolutional layer: model "
                         f"{type(model).__name__} has no nn.Conv2d and no 'cam_layer' attribute")
    return convs[-1]


def _gradcam(model, x, target, index, seed):
    # Raw CAM (no ReLU), so the sign field decides: sign='positive' is the paper's ReLU(GradCAM).
    cam = LayerGradCam(model, cam_layer(model)).attribute(x, target=target, relu_attributions=False)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")


GRADIENT_ATTRIBUTIONS: dict[str, AttributionMethod] = {
    "saliency": AttributionMethod(fn=_saliency, description="gradient of the target logit"),
    "input_x_gradient": AttributionMethod(fn=_input_x_gradient, description="input times gradient"),
    "integrated_gradients": AttributionMethod(
        fn=_integrated_gradients, needs_baseline=True,
        description=f"integrated gradients, {IG_STEPS} steps, zero baseline"),
    "smoothgrad": AttributionMethod(
        fn=_smoothgrad, stochastic=True, noise_std=True,
        description=f"mean gradient over {NOISE_SAMPLES} copies with N(0, {NOISE_STD}²) noise on the [0,1] image"),
    "vargrad": AttributionMethod(
        fn=_vargrad, stochastic=True, noise_std=True,
        description=f"variance of gradients over {NOISE_SAMPLES} noisy copies (std {NOISE_STD}); squared gradient units"),
    "guided_backprop": AttributionMethod(fn=_guided_backprop, description="guided backpropagation"),
    "deeplift": AttributionMethod(fn=_deeplift, needs_baseline=True, description="DeepLift (rescale rule), zero baseline"),
    "gradient_shap": AttributionMethod(
        fn=_gradient_shap, stochastic=True, needs_baseline=True,
        description=f"GradientShap, {NOISE_SAMPLES} samples, black/white baselines, input noise std {NOISE_STD}"),
    "gradcam": AttributionMethod(
        fn=_gradcam, description="GradCAM at the last conv layer, bilinearly upsampled to the input"),
}
