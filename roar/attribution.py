"""Attribution maps: one registry of methods, one batched driver, explicit sign and channel reduction.

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
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import (
    DeepLift,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from torch import nn

from roar.registry import lookup, unknown_message

# --- settings (units in comments) -----------------------------------------------------------------
IG_STEPS = 25               # integration points of integrated gradients (captum default Gauss-Legendre rule)
NOISE_SAMPLES = 15          # noisy copies per image for smoothgrad / vargrad / gradient_shap
NOISE_STD = 0.15            # std of the Gaussian input noise, on the [0, 1] image scale (15% of the range)
OCCLUSION_PATCH_PER_PIXEL = 1 / 7   # occlusion patch side = round(H / 7): 4 px on 28 px, 32 px on 224 px
OCCLUSION_PERTURBATIONS_PER_EVAL = 8  # occluded copies per forward pass (speed only)

# captum's notices that repeat on every batch and say nothing about the result.
_CAPTUM_NOTICES = ("Input Tensor .* did not already require gradients", "Setting backward hooks",
                   "Setting forward, backward hooks")

Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class AttributionMethod:
    """A registered attribution method and the capability flags the sweep and the analysis read.

    uses_model: the map depends on the model (False: a model-free baseline such as random or sobel).
    stochastic: the map depends on ``seed``. needs_baseline: the method compares against a reference input.
    needs_true_pixels: only valid on datasets that know the label-deciding pixels (the synthetic oracle).
    """
    fn: Method
    uses_model: bool
    stochastic: bool
    needs_baseline: bool
    description: str
    needs_true_pixels: bool = False


# --- counter-based randomness: a pure function of (stream, seed, draw, index, element) --------------
_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x, c: int):
    """(x * c) mod 2**32 for 0 <= x < 2**32 without overflowing int64: split c into 16-bit halves."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def _mix32(x):
    """A 32-bit integer finaliser (xorshift-multiply rounds); works on Python ints and int64 tensors alike."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _counter_bits(seed: int, index: torch.Tensor, numel: int, stream: str, draw: int) -> torch.Tensor:
    """int64 (B, numel) of 32-bit hashes; row b depends only on (stream, seed, draw, index[b])."""
    key = _mix32(zlib.crc32(stream.encode()))
    for part in (seed, draw):
        key = _mix32(((key ^ (int(part) & _M32)) + _GOLDEN) & _M32)
    per_image = _mix32((((index.long().reshape(-1, 1) & _M32) ^ key) + _GOLDEN) & _M32)
    counter = torch.arange(numel, device=index.device, dtype=torch.int64).reshape(1, -1)
    return _mix32((_mix32(counter ^ per_image) + per_image) & _M32)


def counter_uniform(seed: int, index: torch.Tensor, shape: tuple[int, ...], stream: str,
                    draw: int = 0) -> torch.Tensor:
    """float32 (B, *shape) uniform on the open interval (0, 1), on ``index.device``.

    A pure function of (stream, seed, draw, index[b], element): image b gets the same values whatever
    batch it is in. Different ``stream`` names give independent values for different uses.
    """
    numel = math.prod(shape)
    bits = _counter_bits(seed, index, numel, stream, draw) >> 8   # 24 bits: exact in float32
    u = (bits.to(torch.float32) + 0.5) * (1.0 / (1 << 24))
    return u.reshape(index.numel(), *shape)


def counter_normal(seed: int, index: torch.Tensor, shape: tuple[int, ...], stream: str,
                   draw: int = 0) -> torch.Tensor:
    """float32 (B, *shape) standard normal (Box-Muller over two counter-uniform draws)."""
    u1 = counter_uniform(seed, index, shape, stream, 2 * draw)
    u2 = counter_uniform(seed, index, shape, stream, 2 * draw + 1)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)


# --- captum-based methods ---------------------------------------------------------------------------
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
NOISE_STD_METHODS = frozenset({"smoothgrad", "vargrad"})


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


# --- model-free baselines ---------------------------------------------------------------------------
def _random(model, x, target, index, seed):
    """Uniform (0, 1) per pixel, fixed per (seed, image index): never redrawn, independent of the batch.
    postprocess.blur_matched_random draws the same stream, so it is exactly this map blurred."""
    return counter_uniform(seed, index.to(x.device), tuple(x.shape[2:]), "random")


_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def _sobel(model, x, target, index, seed):
    """Sobel gradient magnitude per channel, summed over channels; edges replicated (border is no edge)."""
    channels = x.shape[1]
    kx = torch.tensor(_SOBEL_X, dtype=x.dtype, device=x.device)
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(channels, 1, 1, 1)   # (2C, 1, 3, 3)
    grads = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels, groups=channels)
    gx, gy = grads[:, 0::2], grads[:, 1::2]
    return torch.sqrt(gx * gx + gy * gy).sum(dim=1)


def _center(model, x, target, index, seed):
    """Centre prior: minus the distance (pixels) to the image centre, shifted by the corner distance so
    the map is >= 0 and every sign mode keeps the centre on top. Same for every image."""
    height, width = x.shape[2:]
    rows = torch.arange(height, dtype=x.dtype, device=x.device) - (height - 1) / 2
    cols = torch.arange(width, dtype=x.dtype, device=x.device) - (width - 1) / 2
    dist = torch.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)
    return (dist.max() - dist).expand(x.shape[0], height, width)


ATTRIBUTIONS: dict[str, AttributionMethod] = {
    "saliency": AttributionMethod(_saliency, True, False, False, "gradient of the target logit"),
    "input_x_gradient": AttributionMethod(_input_x_gradient, True, False, False, "input times gradient"),
    "integrated_gradients": AttributionMethod(
        _integrated_gradients, True, False, True, f"integrated gradients, {IG_STEPS} steps, zero baseline"),
    "smoothgrad": AttributionMethod(
        _smoothgrad, True, True, False,
        f"mean gradient over {NOISE_SAMPLES} copies with N(0, {NOISE_STD}²) noise on the [0,1] image"),
    "vargrad": AttributionMethod(
        _vargrad, True, True, False,
        f"variance of gradients over {NOISE_SAMPLES} noisy copies (std {NOISE_STD}); squared gradient units"),
    "guided_backprop": AttributionMethod(_guided_backprop, True, False, False, "guided backpropagation"),
    "deeplift": AttributionMethod(_deeplift, True, False, True, "DeepLift (rescale rule), zero baseline"),
    "gradient_shap": AttributionMethod(
        _gradient_shap, True, True, True,
        f"GradientShap, {NOISE_SAMPLES} samples, black/white baselines, input noise std {NOISE_STD}"),
    "occlusion": AttributionMethod(
        _occlusion, True, False, True, "occlusion by zero patches of side H/7, stride half the side"),
    "gradcam": AttributionMethod(
        _gradcam, True, False, False, "GradCAM at the last conv layer, bilinearly upsampled to the input"),
    "random": AttributionMethod(_random, False, True, False, "uniform noise fixed per (seed, image)"),
    "sobel": AttributionMethod(_sobel, False, False, False, "Sobel edge magnitude of the image, channel sum"),
    "center": AttributionMethod(_center, False, False, False, "minus the distance to the image centre"),
}

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
    NOISE_STD_METHODS on the [0, 1] scale, one value or one per channel (None = NOISE_STD).
    """
    attribution = lookup(ATTRIBUTIONS, method, "attribution")
    extra = {"noise_std": noise_std} if noise_std is not None and method in NOISE_STD_METHODS else {}
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


# Removal-based methods (captum on patch features) and the synthetic oracle live in their own module;
# imported last because that module builds on AttributionMethod defined above.
from .attribution_perturbation import ORACLE_ATTRIBUTIONS, PERTURBATION_ATTRIBUTIONS  # noqa: E402

ATTRIBUTIONS.update(PERTURBATION_ATTRIBUTIONS)
ATTRIBUTIONS.update(ORACLE_ATTRIBUTIONS)
