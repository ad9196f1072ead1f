"""How much an attribution map changes: recompute the trial's maps for another model or input, and
compare them with reference maps image by image (rank correlation, SSIM, L2 distance).

Shared by the `sanity` (model randomisation) and `robustness` (input / weight noise) protocols. All
comparisons are batched over images: one call per set of maps, no per-image Python loop.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..attribution import compute_maps, resolve_targets
from ..conventions import attribution_noise_std
from .context import TrialContext

SSIM_WINDOW = 11          # pixels: Gaussian window side of Wang et al. (2004), shrunk to fit small maps
SSIM_SIGMA = 1.5          # pixels: std of that window
SSIM_K1, SSIM_K2 = 0.01, 0.03   # stability constants of Wang et al., for maps rescaled to [0, 1]
MAP_BATCH = 256           # images per attribution batch


# --- which images, which targets ------------------------------------------------------------------
def probe_subset(n_total: int, n: int) -> torch.Tensor:
    """int64 indices of `n` test images spread evenly over the split (all of them when n >= n_total).

    Evenly spaced rather than random: the subset is the same for every trial of a dataset, so rows that
    differ only in method or post-processing compare the very same images.
    """
    if n >= n_total:
        return torch.arange(n_total)
    return torch.from_numpy(np.unique(np.linspace(0, n_total - 1, n).round().astype(np.int64)))


class MapProbe:
    """Recomputes the trial's maps (method, reduction, sign, seed, post-processing) for a fixed set of
    test images under any model or input, with the targets fixed once by the base model.

    Targets stay those of the base model (spec.target resolved once): a 'predicted' target must not
    follow a randomised model's prediction, or the comparison would mix a change of class with a change
    of explanation.
    """

    def __init__(self, ctx: TrialContext, rows: torch.Tensor):
        self.ctx = ctx
        self.rows = rows.cpu()
        self.x = ctx.images("test")[rows.to(ctx.images("test").device)]
        self.index = ctx.index("test")[rows.to(ctx.index("test").device)].cpu()
        labels = ctx.labels("test")[rows.to(ctx.labels("test").device)].cpu()
        with ctx.timed("attribution"):
            self.target = resolve_targets(ctx.base_model, self.x, labels, ctx.spec.target, ctx.device,
                                          split="test")

    def maps(self, model: torch.nn.Module, x: torch.Tensor | None = None) -> torch.Tensor:
        """Post-processed maps (n, H, W) float32 on the trial's device, for `model` at images `x`
        (default: the unperturbed probe images)."""
        return trial_maps(self.ctx, model, self.x if x is None else x, self.target, self.index)


def trial_maps(ctx: TrialContext, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor,
               index: torch.Tensor) -> torch.Tensor:
    """Maps of `model` at images x (N,C,H,W, [0,1] scale) with the trial's attribution settings and the
    trial's post-processing, applied as ctx.maps applies it (same seed, the images' global `index`), so
    the maps of the unchanged base model are the trial's own maps. Float32 (N,H,W) on ctx.device."""
    s = ctx.spec
    with ctx.timed("attribution"):
        raw = compute_maps(model, x, target, s.attribution, reduction=s.reduction, sign=s.sign, seed=s.seed,
                           batch_size=MAP_BATCH, device=ctx.device, index=index,
                           noise_std=attribution_noise_std(s, ctx.data.std))
    return ctx.postprocess(torch.from_numpy(raw), index)


# --- comparisons, one value per image -------------------------------------------------------------
def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """float64 (N, P) ranks 0..P-1 of each row, tied values sharing their mean rank (as scipy's rankdata
    'average' minus 1). Ties matter: a ReLU'd or positive-sign map has many exact zeros, and ranking
    them by position would invent agreement between two maps that are both zero there."""
    n, p = values.shape
    if n == 0:
        return torch.zeros(0, p, dtype=torch.float64, device=values.device)
    sorted_vals, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(sorted_vals, dtype=torch.bool)
    starts[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    # every row starts a group, so the running count over the flattened batch is a global group id
    group = starts.reshape(-1).cumsum(0) - 1
    position = torch.arange(p, device=values.device, dtype=torch.float64).repeat(n)
    n_groups = int(group[-1]) + 1
    first = torch.full((n_groups,), math.inf, dtype=torch.float64, device=values.device)
    first = first.scatter_reduce(0, group, position, "amin")
    last = torch.full((n_groups,), -math.inf, dtype=torch.float64, device=values.device)
    last = last.scatter_reduce(0, group, position, "amax")
    mean_rank = ((first + last) / 2)[group].reshape(n, p)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rho per image between maps a and b (N,H,W): float64 (N,).

    A constant map has no ranking: a pair of constant maps counts as 1 (the same, empty, ordering), one
    constant map against a varying one as 0 (no shared ordering), so a method whose maps collapse to a
    constant under randomisation is not reported as unchanged.
    """
    _check_pair(a, b)
    ra = average_ranks(a.reshape(a.shape[0], -1))
    rb = average_ranks(b.reshape(b.shape[0], -1).to(a.device))
    da, db = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    saa, sbb = (da * da).sum(1), (db * db).sum(1)
    rho = (da * db).sum(1) / torch.sqrt(saa * sbb).clamp_min(1e-300)
    both_constant, one_constant = (saa == 0) & (sbb == 0), (saa == 0) ^ (sbb == 0)
    return torch.where(both_constant, torch.ones_like(rho), torch.where(one_constant, torch.zeros_like(rho), rho))


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.reshape(maps.shape[0], -1).double()
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-300)).reshape(maps.shape)   # a constant map becomes 0


def gaussian_window(size: int, sigma: float, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """(size, size) Gaussian weights summing to 1."""
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Mean structural similarity (Wang et al., 2004) per image between maps a and b (N,H,W): float64 (N,).

    Each map is min-max rescaled to [0, 1] first (maps have arbitrary units), so the dynamic range is 1.
    Local statistics use a Gaussian window (side `window` px, shrunk to the largest odd side that fits,
    std `sigma` px) over the valid region only (no padding). Identical maps give exactly 1.
    """
    _check_pair(a, b)
    n, h, w = a.shape
    side = min(window, h, w)
    side -= 1 - side % 2
    kernel = gaussian_window(side, sigma, device=a.device)[None, None]
    x, y = _minmax(a)[:, None], _minmax(b.to(a.device))[:, None]

    def local_mean(t):
        return F.conv2d(t, kernel)

    mx, my = local_mean(x), local_mean(y)
    vx, vy = local_mean(x * x) - mx * mx, local_mean(y * y) - my * my
    cxy = local_mean(x * y) - mx * my
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(n, -1).mean(1)


def l2_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per image between maps scaled to unit L2 norm: float64 (N,), in [0, 2]
    (0 = same map up to a positive factor). A zero map stays zero."""
    _check_pair(a, b)

    def unit(m):
        flat = m.reshape(m.shape[0], -1).double()
        return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return (unit(a) - unit(b.to(a.device))).norm(dim=1)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 3 or a.shape != b.shape:
        raise ValueError(f"maps to compare must both have shape (N, H, W); found {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")


def image_mean(values: torch.Tensor) -> float:
    """Mean over images as a Python float (NaN when there are none)."""
    return float(values.mean()) if values.numel() else float("nan")
