"""Post-processing of attribution maps: transforms that know nothing about the model or the data.

By the data processing inequality none of these can add information about the decision function; the
sweep measures how much they still move removal-based scores. All functions work on a batch of maps,
torch float (N, H, W), as one convolution or one elementwise op over the whole batch.

``POSTPROCESS[name](maps, sigma, filter_size, **params) -> maps``. Units: ``sigma`` and ``filter_size`` in
pixels. Edges: the Gaussian and the mean filter extend a map by mirroring about its edge pixel
(d c b | a b c d | c b a; scipy.ndimage mode 'mirror', torch pad mode 'reflect'), for any padding width.
The max filter pads with -inf, so a border window only sees real pixels; for a max this equals scipy's
'reflect' and 'nearest' modes at any size (and 'mirror' at odd sizes), because each reflected or
repeated pixel is already inside the window. Even filter sizes follow scipy's origin: the window
covers offsets -(size // 2) .. (size - 1) // 2.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from roar.blur import EDGE_INDEX, gaussian_kernel, separable_correlate
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
        own = {k: v for k, v in params.items() if k in PARAMS.get(step, {})}
        missing = [k for k in REQUIRED.get(step, ()) if k not in own]
        if missing:
            raise ValueError(f"postprocess 'chain' step {step!r} needs parameter(s) {missing}")
        maps = POSTPROCESS[step](maps, sigma, filter_size, **own)
    return maps


POSTPROCESS: dict[str, PostProcess] = {
    "identity": identity,
    "gaussian": gaussian,
    "max_filter": max_filter,
    "mean_filter": mean_filter,
    "gamma": gamma,
    "quantize": quantize,
    "blur_matched_random": blur_matched_random,
    "chain": chain,
}

def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_integer(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


# Extra keyword parameters each post-processing accepts: (check, what is valid).
_BLUR_PARAMS = {"edges": (lambda v: v in EDGE_INDEX, f"one of {sorted(EDGE_INDEX)}"),
                "truncate": (lambda v: _is_number(v) and v > 0, "a finite number > 0 (kernel radius in sigmas)")}
PARAMS: dict[str, dict[str, tuple[Callable[[object], bool], str]]] = {
    "gamma": {"gamma": (lambda v: _is_number(v) and v > 0, "a finite number > 0")},
    "quantize": {"levels": (lambda v: _is_integer(v) and v >= 2, "an integer >= 2")},
    "gaussian": _BLUR_PARAMS,
    "blur_matched_random": _BLUR_PARAMS,
}
REQUIRED = {"gamma": ("gamma",), "quantize": ("levels",), "chain": ("steps",)}
# Post-processings that draw random values: postprocess_maps hands them its `seed` and `index`.
SEEDED = frozenset({"blur_matched_random"})


def _valid_steps(value) -> bool:
    steps = value.split(",") if isinstance(value, str) and value else []
    return bool(steps) and all(s in POSTPROCESS and s != "chain" and s not in SEEDED for s in steps)


PARAMS["chain"] = {"steps": (_valid_steps, "comma-separated post-processing names (not chain, not seeded ones)"),
                   **PARAMS["gamma"], **PARAMS["quantize"], **_BLUR_PARAMS}


def _check_params(name: str, params: dict) -> None:
    valid = PARAMS.get(name, {})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"postprocess {name!r} takes no parameter(s) {unknown}; valid: {sorted(valid)}")
    for key in REQUIRED.get(name, ()):
        if key not in params:
            raise ValueError(f"postprocess {name!r} needs parameter {key!r} ({valid[key][1]}); found none")
    for key, value in params.items():
        ok, what = valid[key]
        if not ok(value):
            raise ValueError(f"{key} must be {what} for postprocess {name!r}; found {value!r}")


def postprocess_maps(maps, name: str, sigma: float = 0.0, filter_size: int = 0, seed: int = 0, index=None,
                     **params):
    """Apply POSTPROCESS[name] to a batch of maps (N, H, W): torch in -> torch out, numpy in -> numpy out.

    sigma: Gaussian standard deviation in pixels (>= 0); filter_size: window side in pixels (>= 0).
    seed, index: seed and (N,) global image indices of the maps, used only by the SEEDED
    post-processings so that a map depends on (seed, image) and not on its batch; pass the same index
    as compute_maps got. params: the extra parameters in PARAMS[name] (gamma, levels).
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
    if name in SEEDED:
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
