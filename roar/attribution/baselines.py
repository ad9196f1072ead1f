"""Model-free baselines: maps that carry no information about the model (the null methods)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..rng import counter_uniform
from .method import AttributionMethod


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


BASELINE_ATTRIBUTIONS: dict[str, AttributionMethod] = {
    "random": AttributionMethod(fn=_random, uses_model=False, stochastic=True,
                                description="uniform noise fixed per (seed, image)"),
    "sobel": AttributionMethod(fn=_sobel, uses_model=False, description="Sobel edge magnitude of the image, channel sum"),
    "center": AttributionMethod(fn=_center, uses_model=False, description="minus the distance to the image centre"),
}
