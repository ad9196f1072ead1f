"""ROAD noisy linear imputation (Rong et al., ICML 2022, "A Consistent and Efficient Evaluation
Strategy for Attribution Methods"), batched.

Each removed pixel is set to the weighted mean of its 8 neighbours (edge neighbours weight 1/6,
diagonal neighbours 1/12; at the image border the weights of the neighbours that exist are
renormalised to sum to 1), with known pixels fixed. The removed pixels of all images form one sparse
linear system, block-diagonal over images; the mask is shared by the channels, so the matrix is the
same for every channel and one LU factorisation solves C right-hand sides. Gaussian noise is then added
to the imputed pixels only, which is what keeps the imputation from leaking the mask's shape through
perfectly smooth patches.

Images are on the [0, 1] scale and ``noise_std`` is on that scale. Imputed values are not clipped to
[0, 1]: clipping would make the noise non-zero-mean on black (0) backgrounds such as MNIST's, and the
original method does not clip; values may leave [0, 1] by a few noise standard deviations.

Well-posedness: a connected patch of removed pixels that touches at least one known pixel gives a
non-singular (irreducibly diagonally dominant) block, so pixels whose whole neighbourhood is removed
are still determined. Only an image with every pixel removed has no known pixel; it is left out of the
system and filled with ``fallback`` (per-channel value, default 0.5) plus the noise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

# (row offset, column offset, weight) of the 8-neighbour stencil; the weights sum to 1 in the interior.
STENCIL: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12),
)
DEFAULT_NOISE_STD = 0.01   # [0, 1] image scale
DEFAULT_FALLBACK = 0.5     # value of a channel when every pixel of an image is removed
MAX_UNKNOWNS_PER_SOLVE = 400_000  # removed pixels per sparse LU (see _solve_removed)
NOISE_DRAWS = {"gaussian": torch.randn, "uniform": torch.rand}


def _neighbour_weight_sum(h: int, w: int) -> np.ndarray:
    """Sum of the stencil weights of the in-image neighbours of each pixel, (H, W)."""
    total = np.zeros((h, w))
    rows, cols = np.mgrid[0:h, 0:w]
    for di, dj, weight in STENCIL:
        inside = (rows + di >= 0) & (rows + di < h) & (cols + dj >= 0) & (cols + dj < w)
        total += weight * inside
    return total


def _solve_block(x: np.ndarray, mask: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Noise-free imputed values of the removed pixels of images with at least one known pixel.

    x: float64 (N, C, H, W); mask: bool (N, H, W), no image fully removed. Returns the (n, i, j) coordinates of the unknowns and
    their values, float64 (U, C).
    """
    n_img, n_ch, h, w = x.shape
    n, i, j = np.nonzero(mask)
    n_unknown = n.size
    if n_unknown == 0:  # a group of images with nothing removed
        return (n, i, j), np.zeros((0, n_ch))
    unknown_id = np.full(mask.shape, -1, dtype=np.int64)
    unknown_id[n, i, j] = np.arange(n_unknown)
    norm = _neighbour_weight_sum(h, w)[i, j]

    rows, cols, vals = [np.arange(n_unknown)], [np.arange(n_unknown)], [np.ones(n_unknown)]
    rhs = np.zeros((n_unknown, n_ch))
    # Loop over the 8 stencil offsets only; everything inside is vectorised over all unknowns.
    for di, dj, weight in STENCIL:
        ni, nj = i + di, j + dj
        inside = (ni >= 0) & (ni < h) & (nj >= 0) & (nj < w)
        u, nn, ni, nj = np.nonzero(inside)[0], n[inside], ni[inside], nj[inside]
        coef = weight / norm[u]
        neighbour = unknown_id[nn, ni, nj]
        is_unknown = neighbour >= 0
        rows.append(u[is_unknown])
        cols.append(neighbour[is_unknown])
        vals.append(-coef[is_unknown])
        known = ~is_unknown
        # One entry per unknown per offset, so plain fancy-index accumulation has no duplicates.
        rhs[u[known]] += coef[known, None] * x[nn[known], :, ni[known], nj[known]]
    matrix = scipy.sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_unknown, n_unknown)
    )
    # COLAMD ordering: measured fastest overall (1000x28x28 and 8x224x224 at 50% and 90% removal) against
    # MMD on A^T + A and the natural (banded) order, which degrades badly on large images.
    solution = scipy.sparse.linalg.splu(matrix, permc_spec="COLAMD").solve(rhs)
    return (n, i, j), solution.reshape(n_unknown, n_ch)


def _solve_removed(x: torch.Tensor, mask: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """``_solve_block`` over consecutive groups of images of at most ``MAX_UNKNOWNS_PER_SOLVE`` unknowns.

    The system is block-diagonal over images, so splitting it changes nothing but the cost: one LU of a
    very large matrix grew superlinearly (1000 MNIST-size images at 50%: 0.85 s; 10000: 17.6 s, 2 cores),
    while groups keep it linear. x: CPU float (N, C, H, W); results are in (image, row, column) order.
    """
    per_image = mask.reshape(mask.shape[0], -1).sum(axis=1)
    group = np.cumsum(per_image) // MAX_UNKNOWNS_PER_SOLVE
    starts = np.flatnonzero(np.diff(group, prepend=-1))
    coords, values = [], []
    for start, stop in zip(starts, np.append(starts[1:], mask.shape[0])):
        (n, i, j), v = _solve_block(x[start:stop].to(torch.float64).numpy(), mask[start:stop])
        coords.append((n + start, i, j))
        values.append(v)
    return tuple(np.concatenate(c) for c in zip(*coords)), np.concatenate(values)


def noisy_linear_impute(x: torch.Tensor, mask, noise_std: float = DEFAULT_NOISE_STD,
                        generator: torch.Generator | None = None,
                        fallback: Sequence[float] | float = DEFAULT_FALLBACK,
                        noise_kind: str = "gaussian") -> torch.Tensor:
    """ROAD noisy linear imputation of the removed pixels; returns a new tensor like ``x``.

    x: float (N, C, H, W) on [0, 1]. mask: bool (N, H, W), True = removed (torch or numpy).
    noise_std: scale of the noise added to imputed pixels, [0, 1] image scale (0 = none): the std of
    Gaussian noise (noise_kind 'gaussian', [ours]) or the width of uniform noise on [0, noise_std)
    ('uniform': the published code's noise, roar.conventions).
    generator: torch generator on x's device for the noise; None uses a fresh one seeded with 0, so the
    default is reproducible. Noise is drawn for the imputed pixels in (image, row, column) order, so
    it depends on the batch's composition; the noise-free solution does not.
    fallback: per-channel value (or one value) for images whose every pixel is removed.
    """
    x, mask = check_images_and_mask(x, mask)
    if not (noise_std >= 0):
        raise ValueError(f"noise_std must be >= 0 (std on the [0, 1] image scale); found {noise_std!r}")
    if noise_kind not in NOISE_DRAWS:
        raise ValueError(f"noise_kind must be one of {sorted(NOISE_DRAWS)}; found {noise_kind!r}")
    n_img, n_ch, h, w = x.shape
    out = x.clone()
    mask_np = mask.detach().cpu().numpy()
    full = mask_np.reshape(n_img, -1).all(axis=1)
    partial = mask_np & ~full[:, None, None]
    if not mask_np.any():
        return out

    if partial.any():
        (n, i, j), values = _solve_removed(x.detach().cpu(), partial)
        part_values = torch.from_numpy(values)
    else:
        n = i = j = np.zeros(0, dtype=np.int64)
        part_values = torch.zeros(0, n_ch, dtype=torch.float64)

    fill = _fallback_values(fallback, n_ch)
    fn, fi, fj = np.nonzero(mask_np & full[:, None, None])
    # Concatenate both groups and put them back in raster order so noise draws follow (n, i, j).
    all_n, all_i, all_j = (np.concatenate(a) for a in ((n, fn), (i, fi), (j, fj)))
    imputed = torch.cat([part_values, fill.expand(fn.size, n_ch)])
    raster = np.lexsort((all_j, all_i, all_n))
    all_n, all_i, all_j, imputed = all_n[raster], all_i[raster], all_j[raster], imputed[raster]

    imputed = imputed.to(device=x.device, dtype=x.dtype)
    if noise_std > 0:
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(0)
        draw = NOISE_DRAWS[noise_kind]
        imputed = imputed + noise_std * draw(imputed.shape, generator=generator, device=x.device, dtype=x.dtype)
    idx = [torch.from_numpy(a).to(x.device) for a in (all_n, all_i, all_j)]
    # Advanced indexing puts the channel axis last: out[n, :, i, j] has shape (U, C).
    out[idx[0], :, idx[1], idx[2]] = imputed
    return out


def _fallback_values(fallback, n_ch: int) -> torch.Tensor:
    values = torch.as_tensor(fallback, dtype=torch.float64).reshape(-1)
    if values.numel() == 1:
        values = values.expand(n_ch)
    if values.numel() != n_ch:
        raise ValueError(f"fallback must give one value per channel ({n_ch}); found {values.numel()} values")
    return values[None, :]


def check_images_and_mask(x, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate float images (N,C,H,W) and a bool removal mask (N,H,W); shared with roar.fills."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        found = f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))} {getattr(x, 'dtype', '')}"
        raise ValueError(f"x must be a float torch tensor (N, C, H, W); found {found}")
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be bool (True = removed); found dtype {mask.dtype}")
    expected = (x.shape[0], x.shape[2], x.shape[3])
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask must have shape (N, H, W) = {expected} to match x; found {tuple(mask.shape)}")
    return x, mask
