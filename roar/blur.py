"""The one Gaussian blur and separable filter of the project, for maps (N, H, W) and images (N, C, H, W).

Edges: 'mirror' (d c b | a b c d | c b a; scipy 'mirror'), 'reflect' (the edge pixel repeated:
d c b a | a b c d | d c b a; scipy 'reflect') and 'replicate' (a a | a b c d | d d; scipy 'nearest'),
each for any padding width. Kernels are computed in float64, then cast to the data's dtype.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _mirror_index(n: int, before: int, after: int, device) -> torch.Tensor:
    """Source index of every position of a length-n axis padded by mirroring (any pad width)."""
    pos = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(pos)
    period = 2 * (n - 1)
    pos = torch.remainder(pos, period)
    return torch.where(pos < n, pos, period - pos)


def _reflect_index(n: int, before: int, after: int, device) -> torch.Tensor:
    """Source index of every position of a length-n axis padded by reflecting about the edge, the edge
    pixel repeated (d c b a | a b c d | d c b a; scipy.ndimage mode 'reflect'), any pad width."""
    pos = torch.remainder(torch.arange(-before, n + after, device=device), 2 * n)
    return torch.where(pos < n, pos, 2 * n - 1 - pos)


def _replicate_index(n: int, before: int, after: int, device) -> torch.Tensor:
    """Source index of every position of a length-n axis padded by repeating its edge pixels."""
    return torch.arange(-before, n + after, device=device).clamp(0, n - 1)


EDGE_INDEX = {"mirror": _mirror_index, "reflect": _reflect_index, "replicate": _replicate_index}


def separable_correlate(maps: torch.Tensor, kernel: torch.Tensor, before: int, edges: str = "mirror"
                         ) -> torch.Tensor:
    """Correlate every map along H then W with the 1-D ``kernel``; out[i] = sum_j k[j] x[i + j - before]."""
    size = kernel.numel()
    after = size - 1 - before
    height, width = maps.shape[1:]
    edge_index = EDGE_INDEX[edges]
    x = maps.unsqueeze(1)                                                     # (N, 1, H, W)
    x = x.index_select(2, edge_index(height, before, after, maps.device))
    x = F.conv2d(x, kernel.reshape(1, 1, size, 1))
    x = x.index_select(3, edge_index(width, before, after, maps.device))
    x = F.conv2d(x, kernel.reshape(1, 1, 1, size))
    return x.squeeze(1)


def gaussian_kernel(sigma: float, dtype=torch.float32, device="cpu", truncate: float | None = None
                    ) -> torch.Tensor:
    """Normalised 1-D Gaussian computed in float64 then cast. Radius: ceil(3 sigma) pixels [ours], or with
    `truncate` given, scipy's round(truncate sigma) (int(truncate * sigma + 0.5)) [paper]."""
    radius = math.ceil(3 * sigma) if truncate is None else int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def blur_images(x: torch.Tensor, sigma: float, edges: str = "replicate", truncate: float | None = None
                ) -> torch.Tensor:
    """Gaussian blur of images (N, C, H, W), sigma in pixels, every channel alike; sigma <= 0 copies x."""
    if sigma <= 0:
        return x.clone()
    n, c, h, w = x.shape
    kernel = gaussian_kernel(sigma, x.dtype, x.device, truncate)
    return separable_correlate(x.reshape(n * c, h, w), kernel, kernel.numel() // 2, edges).reshape(n, c, h, w)
