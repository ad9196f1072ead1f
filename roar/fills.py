"""Fills: what a removed pixel is replaced with. Registry ``FILLS`` keyed by the spec/Parquet string.

Every fill is ``fn(x, mask, mean, generator) -> x'``: x float (N, C, H, W) on [0, 1]; mask bool (N, H, W),
True = removed, on x's device; mean the per-channel dataset mean on [0, 1] (one value per channel);
generator a torch.Generator on x's device for stochastic fills. Fills return a new tensor and change
only removed pixels (all channels of a removed pixel).

- ``mean``: the per-channel dataset mean.
- ``zero``: 0 (black on the [0, 1] scale).
- ``uniform``: independent U[0, 1) noise per pixel and channel, from the generator.
- ``blur``: the pixel's value in a Gaussian-blurred copy of the original image (sigma ``BLUR_SIGMA_PX``).
  The blurred copy includes the removed pixels themselves, so this fill keeps their low-frequency
  content by design (the "blur" perturbation of the perturbation literature); it removes detail, not
  all information.
- ``road``: ROAD noisy linear imputation (roar.road) with its default noise; images with every pixel
  removed get the dataset mean.

Stochastic fills draw for the whole batch in order, so call ``apply_fill`` on a whole split (or the
same chunks) to reproduce the same noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from roar.blur import blur_images
from roar.registry import lookup
from roar.road import DEFAULT_NOISE_STD, check_images_and_mask, noisy_linear_impute

BLUR_SIGMA_PX = 2.0      # Gaussian sigma of the 'blur' fill, pixels

FillFn = Callable[[torch.Tensor, torch.Tensor, Sequence[float], torch.Generator], torch.Tensor]


def _channel_values(values: Sequence[float], x: torch.Tensor) -> torch.Tensor:
    """Per-channel values as a (1, C, 1, 1) tensor like x; the error names the 'mean' field."""
    t = torch.as_tensor(values, dtype=x.dtype, device=x.device).reshape(-1)
    if t.numel() != x.shape[1]:
        raise ValueError(f"mean must give one value per channel ({x.shape[1]}, [0, 1] scale); "
                         f"found {t.numel()} value(s): {list(values) if t.numel() < 10 else '...'}")
    return t.reshape(1, -1, 1, 1)


def _replace(x: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """x with removed pixels (all channels) taken from ``values`` (broadcastable to x)."""
    return torch.where(mask[:, None], values, x)


def fill_mean(x, mask, mean, generator):
    return _replace(x, mask, _channel_values(mean, x))


def fill_zero(x, mask, mean, generator):
    return _replace(x, mask, torch.zeros((), dtype=x.dtype, device=x.device))


def fill_uniform(x, mask, mean, generator):
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return _replace(x, mask, noise)


def gaussian_blur_images(x: torch.Tensor, sigma: float = BLUR_SIGMA_PX) -> torch.Tensor:
    """Gaussian blur of (N, C, H, W) images, sigma in pixels, edge pixels replicated (works for any
    image size; reflecting needs the radius below the size). roar.blur is the one blur."""
    return blur_images(x, sigma, edges="replicate")


def fill_blur(x, mask, mean, generator, sigma: float = BLUR_SIGMA_PX):
    return _replace(x, mask, gaussian_blur_images(x, sigma))


def fill_road(x, mask, mean, generator, noise_std: float = DEFAULT_NOISE_STD, noise_kind: str = "gaussian"):
    return noisy_linear_impute(x, mask, noise_std=noise_std, generator=generator, noise_kind=noise_kind,
                               fallback=tuple(_channel_values(mean, x).reshape(-1).tolist()))


@dataclass(frozen=True)
class Fill:
    """One registered fill. stochastic: draws from the generator (same seed and batch, same values).
    keeps_content: the filled value depends on the removed pixel's own value (blur, by design), so
    removal does not erase all of its information. params: extra keywords and their defaults."""

    fn: FillFn
    description: str
    stochastic: bool = False
    keeps_content: bool = False
    params: dict = field(default_factory=dict)

    def __call__(self, x, mask, mean, generator, **params):
        return self.fn(x, mask, mean, generator, **params)


FILLS: dict[str, Fill] = {
    "mean": Fill(fill_mean, "per-channel dataset mean"),
    "zero": Fill(fill_zero, "0, black on the [0, 1] scale"),
    "uniform": Fill(fill_uniform, "independent U[0, 1) noise per pixel and channel", stochastic=True),
    "blur": Fill(fill_blur, f"the pixel of a Gaussian-blurred copy of the image (sigma {BLUR_SIGMA_PX:g} px)",
                 keeps_content=True, params={"sigma": BLUR_SIGMA_PX}),
    "road": Fill(fill_road, "ROAD noisy linear imputation from the neighbouring pixels", stochastic=True,
                 params={"noise_std": DEFAULT_NOISE_STD, "noise_kind": "gaussian"}),
}


def apply_fill(x: torch.Tensor, mask, fill: str, mean: Sequence[float], seed: int = 0, **params) -> torch.Tensor:
    """Fill the removed pixels of ``x`` with fill ``fill``; returns a new tensor (x is not modified).

    x: float (N, C, H, W) on [0, 1]. mask: bool (N, H, W), True = removed (torch or numpy; moved to x's
    device). mean: per-channel dataset mean on [0, 1]. seed: seed of the generator (on x's device) of
    stochastic fills. params: extra keywords of the fill (road: noise_std, noise_kind).
    """
    fn = lookup(FILLS, fill, "fill")
    x, mask = check_images_and_mask(x, mask)
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    return fn(x, mask.to(x.device), mean, generator, **params)
