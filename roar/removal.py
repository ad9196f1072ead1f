"""Per-image removal masks from attribution maps: which pixels a benchmark removes at fraction p.

Contract: maps are float (N, H, W) (torch, or numpy converted to torch); masks are ``torch.bool``
(N, H, W) with True = removed, on the maps' device.

Selections (``SELECTIONS``):

- ``'topk'``: exactly ``k`` pixels per image (see ``pixels_removed`` for k), also on constant or tied
  maps. Pixels are ranked by one total order: by value, then by a seeded tie-break key that is a hash
  of (seed, global image index, pixel index). Because the key depends on the image's global index and not on its position in the batch,
  an image gets the same mask whichever batch it is in. The key is a bijective hash of the pixel index,
  so it never ties within an image and the order is total. MoRF at p and LeRF at 1 - p are derived from
  the same order, so they are exact complements, ties included.
- ``'percentile'``: remove every pixel at or above the value of the k-th largest pixel (MoRF), or at or
  below the k-th smallest (LeRF): the discrete (1 - p) / p quantile. Tied values at the threshold are
  all removed, so more than k pixels may go; ``removed_fraction`` measures what was removed. This is
  how several earlier implementations behave and is kept to measure that bias; MoRF/LeRF complements
  do not hold under ties.

Orders (``ORDERS``): ``'morf'`` removes the most important pixels (largest values), ``'lerf'`` the
least important (smallest values). Values are used as given (signed); sign handling happens earlier.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from roar.registry import lookup
from roar.rng import hash32 as _hash32

_MASK32 = 0xFFFFFFFF
# Tolerance of the rounding of fraction * n_pixels: 1 - (1 - p) differs from p by ~1e-16, which must not
# move k across a half-integer boundary (that would break the MoRF/LeRF complement).
_ROUND_TOL = 1e-9


def tiebreak_keys(seed: int, index: torch.Tensor, n_pixels: int) -> torch.Tensor:
    """Seeded tie-break key per (image, pixel): int64 (N, n_pixels) in [0, 2**32).

    A pure function of (seed, global image index, pixel index), so independent of batch composition.
    Within one image the keys are distinct (a bijective hash of pixel xor a per-image salt), so the
    order (value, key) has no ties left.
    """
    s = _hash32(torch.tensor(int(seed) & _MASK32, dtype=torch.int64, device=index.device))
    salt = _hash32((index.to(torch.int64) & _MASK32) ^ s)[:, None]
    pixel = torch.arange(n_pixels, dtype=torch.int64, device=index.device)[None, :]
    return _hash32(pixel ^ salt)


def _monotone_int32(values: torch.Tensor) -> torch.Tensor:
    """int32 whose signed order equals the float order of float32 ``values`` (no NaN); -0.0 == +0.0."""
    bits = (values.to(torch.float32) + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    # Negative floats order backwards as integers: flip their magnitude bits (sign bit kept).
    flip = bits >> 31  # arithmetic shift: -1 for negative floats, 0 otherwise
    flip &= 0x7FFFFFFF
    flip ^= bits
    return flip


def pixels_removed(fraction: float, n_pixels: int, order: str = "morf") -> int:
    """Pixels removed per image by 'topk' at ``fraction`` (of the image's pixels).

    k = round(fraction * n_pixels); an exact half rounds up for 'morf' and down for 'lerf', so that
    ``pixels_removed(p, n, 'morf') + pixels_removed(1 - p, n, 'lerf') == n`` always (exact complements).
    """
    _check_fraction(fraction)
    _check_order(order)
    exact = float(fraction) * n_pixels
    if order == "morf":
        k = math.floor(exact + 0.5 + _ROUND_TOL)
    else:
        k = math.ceil(exact - 0.5 - _ROUND_TOL)
    return int(min(max(k, 0), n_pixels))


def ascending_order(maps, seed: int = 0, index=None) -> torch.Tensor:
    """Pixel indices of each flattened map sorted ascending by (value, tie-break key).

    Returns int64 (N, H*W). Float32/16 maps: one sort of an exact int64 lexicographic key
    value_bits * 2**32 + tie_key (float32 converts to ordered int32 bits without rounding). Float64
    maps: sort by tie key, then a stable sort by value. Both give the same order for the same values;
    neither perturbs values, which would change the ranks of near-equal values.
    """
    maps = as_maps(maps)
    if maps.dtype != torch.float64:
        return torch.argsort(_order_keys(maps, seed, index), dim=1)
    n, h, w = maps.shape
    keys = tiebreak_keys(seed, _as_index(index, n, maps.device), h * w)
    flat = maps.reshape(n, h * w)
    by_key = torch.argsort(keys, dim=1)
    by_value = torch.argsort(torch.gather(flat, 1, by_key), dim=1, stable=True)
    return torch.gather(by_key, 1, by_value)


def _order_keys(maps: torch.Tensor, seed: int, index) -> torch.Tensor:
    """int64 (N, H*W) keys value_bits * 2**32 + tie_key of float16/32 maps: distinct within an image and
    ordered as (value, tie-break key)."""
    n, h, w = maps.shape
    keys = tiebreak_keys(seed, _as_index(index, n, maps.device), h * w)
    # |int32| <= 2**31 so value * 2**32 + key (key < 2**32) spans exactly the int64 range.
    combined = _monotone_int32(maps.reshape(n, h * w)).to(torch.int64)
    combined *= 2 ** 32
    combined += keys
    return combined


def _topk_mask(maps: torch.Tensor, fraction: float, order: str, seed: int, index) -> torch.Tensor:
    n, h, w = maps.shape
    k = pixels_removed(fraction, h * w, order)
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=maps.device)
    if k == 0 or n == 0:
        return mask.reshape(n, h, w)
    if maps.dtype == torch.float64:
        ranked = ascending_order(maps, seed, index)
        chosen = ranked[:, h * w - k:] if order == "morf" else ranked[:, :k]
    else:
        # the k largest (smallest) of the same exact (value, tie-break key) order ascending_order sorts
        # by: keys are distinct within an image, so the set is the same, without sorting all H*W pixels
        keys = _order_keys(maps, seed, index)
        chosen = torch.topk(keys, k, dim=1, largest=order == "morf", sorted=False).indices
    mask.scatter_(1, chosen, True)
    return mask.reshape(n, h, w)


def _percentile_mask(maps: torch.Tensor, fraction: float, order: str, seed: int, index) -> torch.Tensor:
    # seed and index are unused: a threshold needs no tie-break; the signature matches the registry.
    n, h, w = maps.shape
    k = pixels_removed(fraction, h * w, order)
    if k == 0 or n == 0:
        return torch.zeros(n, h, w, dtype=torch.bool, device=maps.device)
    flat = maps.reshape(n, h * w)
    ascending = torch.sort(flat, dim=1).values
    if order == "morf":
        mask = flat >= ascending[:, h * w - k, None]
    else:
        mask = flat <= ascending[:, k - 1, None]
    return mask.reshape(n, h, w)


ORDERS: dict[str, str] = {
    "morf": "most relevant first: remove the largest values",
    "lerf": "least relevant first: remove the smallest values",
}
SELECTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "topk": _topk_mask,
    "percentile": _percentile_mask,
}


def removal_mask(maps, fraction: float, order: str = "morf", seed: int = 0, selection: str = "topk",
                 index=None) -> torch.Tensor:
    """Boolean removal mask (N, H, W), True = removed, on the maps' device.

    maps: float (N, H, W) torch tensor or numpy array of attribution values.
    fraction: fraction of each image's pixels to remove, in [0, 1] (0 removes nothing, 1 everything).
    order: 'morf' or 'lerf'. seed: tie-break seed. selection: 'topk' or 'percentile' (module docstring).
    index: global image indices (N,) for the tie-break (default arange(N)); pass them when masks of a
    split are computed in chunks so each image's mask is the same as in one batch.
    """
    _check_fraction(fraction)
    _check_order(order)
    select = lookup(SELECTIONS, selection, "selection")
    maps = as_maps(maps)
    if torch.isnan(maps).any():
        raise ValueError(f"maps contain NaN values ({int(torch.isnan(maps).sum())} of {maps.numel()}); "
                         "a ranking needs finite or infinite values only")
    return select(maps, float(fraction), order, seed, index)


def removed_fraction(mask) -> torch.Tensor:
    """Fraction of pixels removed per image: float32 (N,) from a bool (N, H, W) mask."""
    mask = torch.as_tensor(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must have shape (N, H, W); found shape {tuple(mask.shape)}")
    return mask.reshape(mask.shape[0], -1).to(torch.float32).mean(dim=1)


# --- input checks ---------------------------------------------------------------------------------

def as_maps(maps) -> torch.Tensor:
    """Maps as a floating torch tensor (N, H, W); numpy arrays are converted (sharing memory)."""
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a torch tensor or numpy array; found {type(maps).__name__}")
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (N, H, W); found shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        maps = maps.to(torch.float32)
    return maps


def _as_index(index, n: int, device) -> torch.Tensor:
    if index is None:
        return torch.arange(n, dtype=torch.int64, device=device)
    index = torch.as_tensor(np.asarray(index) if not isinstance(index, torch.Tensor) else index)
    if index.dtype.is_floating_point or index.dtype == torch.bool or index.is_complex():
        raise TypeError(f"index must hold integer image indices; found dtype {index.dtype}")
    if tuple(index.shape) != (n,):
        raise ValueError(f"index must have shape ({n},) (one global index per map); found {tuple(index.shape)}")
    return index.to(device=device, dtype=torch.int64)


def _check_fraction(fraction) -> None:
    ok = isinstance(fraction, (int, float, np.integer, np.floating)) and not isinstance(fraction, bool)
    if not ok or not (0.0 <= float(fraction) <= 1.0):
        raise ValueError(f"fraction must be a number in [0, 1] (fraction of pixels); found {fraction!r}")


def _check_order(order) -> None:
    lookup(ORDERS, order, "order")
