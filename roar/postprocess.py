"""Post-processing of attribution maps: transforms that know nothing about the model or the data.

By the data processing inequality none of these can add information about the decision function; the
sweep measures how much they still move removal-based scores. All functions work on a batch of maps,
torch float (N, H, W), as one convolution or one elementwise op over the whole batch.

``POSTPROCESS[name]`` is one record: the function, called as ``(maps, sigma, filter_size, **params) ->
maps``, and its torch-free facts (``analysis.contract.POSTPROCESS_FACTS[name]``: extra parameters with
type/range/default, strength field, reference values, flags), which the sweep and the analysis read. Units: ``sigma`` and ``filter_size`` in
pixels. Edges: the Gaussian and the mean filter extend a map by mirroring about its edge pixel
(d c b | a b c d | c b a; scipy.ndimage mode 'mirror', torch pad mode 'reflect'), for any padding width.
The max filter pads with -inf, so a border window only sees real pixels; for a max this equals scipy's
'reflect' and 'nearest' modes at any size (and 'mirror' at odd sizes), because each reflected or
repeated pixel is already inside the window. Even filter sizes follow scipy's origin: the window
covers offsets -(size // 2) .. (size - 1) // 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from analysis.contract import POSTPROCESS_FACTS, Param, PostProcessFacts, params_problem
from analysis.contract import is_integer as _is_integer, is_number as _is_number
from roar.blur import gaussian_kernel, separable_correlate
from roar.registry import lookup
from roar.rng import counter_uniform

PostProcess = Callable[..., torch.Tensor]


# --- registered post-processings --------------------------------------------------------------------
def identity(maps, sigma, filter_size, **params):
    return maps


def gaussian(maps, sigma, filter_size, edges="mirror", truncate=None, **params):
    """Gaussian blur, standard deviation ``sigma`` pixels; sigma 0 returns ``maps`` itself.

    [ours] edges 'mirror', kernel radius ceil(3 sigma); [paper] scipy's gaussian_filter defaults
    'reflect', truncate 4 (option blur_edges: paper, roar.conventions)."""
    if sigma == 0:
        return maps
    kernel = gaussian_kernel(sigma, maps.dtype, maps.device, truncate)
    return separable_correlate(maps, kernel, kernel.numel() // 2, edges)


def max_filter(maps, sigma, filter_size, **params):
    """Maximum over a filter_size x filter_size window (pixels), same-size output; size <= 1 = identity."""
    if filter_size <= 1:
        return maps
    before, after = filter_size // 2, (filter_size - 1) // 2
    padded = F.pad(maps.unsqueeze(1), (before, after, before, after), value=-math.inf)
    return F.max_pool2d(padded, kernel_size=filter_size, stride=1).squeeze(1)


def mean_filter(maps, sigma, filter_size, **params):
    """Mean over a filter_size x filter_size window (pixels), mirrored edges; size <= 1 = identity."""
    if filter_size <= 1:
        return maps
    kernel = torch.full((filter_size,), 1.0 / filter_size, dtype=maps.dtype, device=maps.device)
    return separable_correlate(maps, kernel, filter_size // 2)


def gamma(maps, sigma, filter_size, *, gamma):
    """sign(m) |m| ** gamma: strictly monotone, so it leaves every per-image ranking unchanged."""
    return torch.sign(maps) * maps.abs() ** gamma


def quantize(maps, sigma, filter_size, *, levels):
    """Per map, snap values to ``levels`` evenly spaced values from its min to its max (floor of the bin).

    Monotone but not strictly: it only creates ties, which the seeded tie-break then orders at random.
    """
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    scaled = torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1), 0)
    bins = torch.clamp(torch.floor(scaled * levels), 0, levels - 1)
    return low + bins / (levels - 1) * span


def blur_matched_random(maps, sigma, filter_size, *, seed=0, index=None, **blur):
    """Null model: the 'random' attribution of (seed, index) blurred by the same sigma (pixels).

    It carries no information about model or image but has the spatial spectrum of a blurred map;
    ``index`` (N,) are the maps' global image indices (default 0..N-1), so a map does not depend on
    which other maps share the batch. Identical to gaussian(ATTRIBUTIONS['random'] maps, sigma).
    """
    n, height, width = maps.shape
    index = torch.arange(n) if index is None else torch.as_tensor(index)
    index = index.to(maps.device)
    if index.shape != (n,):
        raise ValueError(f"index must have shape ({n},), one entry per map; found {tuple(index.shape)}")
    noise = counter_uniform(int(seed), index, (height, width), "random").to(maps.dtype)
    return gaussian(noise, sigma, filter_size, **blur)


def chain(maps, sigma, filter_size, *, steps, **params):
    """Several post-processings in order, e.g. steps='gamma,gaussian': each step gets the trial's sigma
    and filter_size (pixels) and the parameters it takes (gamma, levels). Still information-free: a
    composition of transforms that never look at the model or the data."""
    for step in steps.split(","):
        record = POSTPROCESS[step]
        own = {k: v for k, v in params.items() if k in record.params}
        missing = [k for k, p in record.params.items() if p.required and k not in own]
        if missing:
            raise ValueError(f"postprocess 'chain' step {step!r} needs parameter(s) {missing}")
        maps = record.fn(maps, sigma, filter_size, **own)
    return maps


@dataclass(frozen=True)
class PostProcessing:
    """One registered post-processing: its function and its torch-free facts (analysis.contract:
    parameters, strength field, reference values, flags), which spec validation, the search space and
    the analysis read."""

    fn: PostProcess
    facts: PostProcessFacts

    def __call__(self, maps, sigma, filter_size, **params):
        return self.fn(maps, sigma, filter_size, **params)

    @property
    def params(self) -> dict[str, Param]:
        return self.facts.params

    @property
    def seeded(self) -> bool:
        return self.facts.seeded


_FUNCTIONS: dict[str, PostProcess] = {
    "identity": identity,
    "gaussian": gaussian,
    "max_filter": max_filter,
    "mean_filter": mean_filter,
    "gamma": gamma,
    "quantize": quantize,
    "blur_matched_random": blur_matched_random,
    "chain": chain,
}
POSTPROCESS: dict[str, PostProcessing] = {name: PostProcessing(fn, POSTPROCESS_FACTS[name])
                                          for name, fn in _FUNCTIONS.items()}


def _check_params(name: str, params: dict) -> None:
    problem = params_problem(name, params)
    if problem:
        raise ValueError(problem)


def postprocess_maps(maps, name: str, sigma: float = 0.0, filter_size: int = 0, seed: int = 0, index=None,
                     **params):
    """Apply POSTPROCESS[name] to a batch of maps (N, H, W): torch in -> torch out, numpy in -> numpy out.

    sigma: Gaussian standard deviation in pixels (>= 0); filter_size: window side in pixels (>= 0).
    seed, index: seed and (N,) global image indices of the maps, used only by the seeded
    post-processings so that a map depends on (seed, image) and not on its batch; pass the same index
    as compute_maps got. params: the extra parameters POSTPROCESS[name].params declares (gamma, levels).
    float16/bfloat16 and integer maps are computed and returned as float32. An identity result (e.g.
    sigma 0) returns the input object itself.
    """
    fn = lookup(POSTPROCESS, name, "postprocess")
    if not _is_number(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0 (pixels); found {sigma!r}")
    if not _is_integer(filter_size) or filter_size < 0:
        raise ValueError(f"filter_size must be an integer >= 0 (pixels); found {filter_size!r}")
    _check_params(name, params)
    if not _is_integer(seed):
        raise ValueError(f"seed must be an integer; found {seed!r}")
    if fn.seeded:
        params = {**params, "seed": int(seed), "index": index}
    is_numpy = isinstance(maps, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(maps)) if is_numpy else maps
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
        found = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a torch tensor or numpy array of shape (N, H, W); found {found}")
    converted = tensor.dtype not in (torch.float32, torch.float64)
    if converted:
        tensor = tensor.float()
    out = fn(tensor, float(sigma), int(filter_size), **params)
    if out is tensor and not converted:
        return maps
    return out.cpu().numpy() if is_numpy else out
