"""Map and mask metrics recorded per trial: the explanatory variables of the analysis.

``map_metrics`` (blurriness and sparsity of post-processed attribution maps) and ``mask_metrics``
(geometry of removal masks) return means over images, keyed by the Parquet column names of
analysis/schema.py. The per-image functions are public for analyses that need distributions.

Definitions (all per image, then averaged):

- blur_spectral_centroid: power-weighted mean radial frequency sqrt(fy^2 + fx^2) of the 2-D DFT of
  the mean-subtracted map, cycles/pixel (0 .. sqrt(0.5) ~= 0.707). Lower = blurrier.
- blur_total_variation: mean absolute difference between 4-neighbours (all horizontal and vertical
  pairs) of the map min-max normalised to [0, 1]; dimensionless in [0, 1].
- blur_hf_energy: share of the spectral power without the DC term at radial frequency > 0.25
  cycles/pixel; in [0, 1].
- map_gini: Gini coefficient of |map| (0 = all equal, (n-1)/n = one non-zero pixel).
- removed_fraction_actual: fraction of pixels removed.
- mask_perimeter_area: 4-neighbour edges between a removed and a kept pixel, divided by the number of
  removed pixels (edges per pixel). Only edges inside the image count: the image border is not a
  boundary of the removed region, so a mask removing everything scores 0 (as does removing nothing).
- mask_components: 4-connected components of the removed region (count).
- mask_morans_i: Moran's I of the 0/1 mask with rook (4-neighbour, binary, symmetric) weights:
  I = (n / S0) * sum_ij w_ij d_i d_j / sum_i d_i^2, d = mask - mean; 1 = clustered, -1 = a
  checkerboard (of even size).

Degenerate inputs are defined, never NaN: a constant map has centroid, TV, hf energy and Gini 0 (an
all-zero map too); a constant mask (nothing or everything removed) has Moran's I 0.
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage
import torch

HF_CUTOFF = 0.25  # cycles/pixel: the "high frequency" band of blur_hf_energy is above this radius


# --- maps -----------------------------------------------------------------------------------------

def _as_maps64(maps) -> torch.Tensor:
    t = torch.as_tensor(maps)
    if t.ndim != 3 or t.shape[0] == 0:
        raise ValueError(f"maps must have shape (N, H, W) with N >= 1; found shape {tuple(t.shape)}")
    return t.detach().to(torch.float64)


def _is_constant(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.reshape(maps.shape[0], -1)
    return flat.amax(dim=1) == flat.amin(dim=1)


def _power_and_radius(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|DFT|^2 of the mean-subtracted maps (N, H, W) and the radial frequency grid (H, W), cycles/pixel."""
    centred = maps - maps.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(centred).abs() ** 2
    _, h, w = maps.shape
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=maps.device)
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=maps.device)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return power, radius


def _spectral_measures(maps: torch.Tensor, cutoff: float = HF_CUTOFF) -> tuple[torch.Tensor, torch.Tensor]:
    """(spectral centroid, high-frequency share) per map from one FFT; float64 maps (N, H, W)."""
    power, radius = _power_and_radius(maps)
    total = power.sum(dim=(1, 2))  # the DC term is ~0 after mean subtraction
    non_dc = total - power[:, 0, 0]
    centroid = (power * radius).sum(dim=(1, 2)) / torch.where(total > 0, total, 1.0)
    high = (power * (radius > cutoff)).sum(dim=(1, 2))
    share = high / torch.where(non_dc > 0, non_dc, 1.0)
    # Exact constancy test: the mean subtraction of a constant map can leave rounding residue whose
    # "spectrum" is meaningless.
    constant = _is_constant(maps)
    return torch.where(constant, 0.0, centroid), torch.where(constant, 0.0, share)


def spectral_centroid(maps) -> torch.Tensor:
    """Power-weighted mean radial frequency per map, cycles/pixel, float64 (N,)."""
    return _spectral_measures(_as_maps64(maps))[0]


def hf_energy(maps, cutoff: float = HF_CUTOFF) -> torch.Tensor:
    """Share of non-DC spectral power above ``cutoff`` cycles/pixel per map, float64 (N,)."""
    return _spectral_measures(_as_maps64(maps), cutoff)[1]


def total_variation(maps) -> torch.Tensor:
    """Mean absolute 4-neighbour difference of each min-max normalised map, float64 (N,)."""
    maps = _as_maps64(maps)
    lo = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - lo
    unit = (maps - lo) / torch.where(span > 0, span, 1.0)
    dy = (unit[:, 1:, :] - unit[:, :-1, :]).abs().sum(dim=(1, 2))
    dx = (unit[:, :, 1:] - unit[:, :, :-1]).abs().sum(dim=(1, 2))
    _, h, w = maps.shape
    pairs = (h - 1) * w + h * (w - 1)
    return (dy + dx) / max(pairs, 1)


def gini(maps) -> torch.Tensor:
    """Gini coefficient of |map| per map, float64 (N,): sum_i (2i - n - 1) x_(i) / (n sum x), i = 1..n."""
    maps = _as_maps64(maps)
    values = torch.sort(maps.reshape(maps.shape[0], -1).abs(), dim=1).values
    n = values.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=torch.float64, device=maps.device) - n - 1
    total = values.sum(dim=1)
    g = (values * weights).sum(dim=1) / (n * torch.where(total > 0, total, 1.0))
    # Equal values give exactly 0 in exact arithmetic; do not report their rounding residue.
    equal = values[:, -1] == values[:, 0]
    return torch.where(equal, 0.0, g)


MAP_METRICS = {
    "blur_spectral_centroid": spectral_centroid,
    "blur_total_variation": total_variation,
    "blur_hf_energy": hf_energy,
    "map_gini": gini,
}


def map_metrics(maps) -> dict[str, float]:
    """Means over images of the map metrics (module docstring); maps float (N, H, W), torch or numpy."""
    maps = _as_maps64(maps)
    centroid, share = _spectral_measures(maps)  # one FFT for both spectral measures
    per_image = {
        "blur_spectral_centroid": centroid,
        "blur_total_variation": total_variation(maps),
        "blur_hf_energy": share,
        "map_gini": gini(maps),
    }
    return {name: float(per_image[name].mean()) for name in MAP_METRICS}


# --- masks ----------------------------------------------------------------------------------------

def _as_mask_np(mask) -> np.ndarray:
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"mask must be bool (True = removed); found dtype {m.dtype}")
    if m.ndim != 3 or m.shape[0] == 0:
        raise ValueError(f"mask must have shape (N, H, W) with N >= 1; found shape {m.shape}")
    return m


def removed_fraction_per_image(mask) -> np.ndarray:
    m = _as_mask_np(mask)
    return m.reshape(m.shape[0], -1).mean(axis=1)


def perimeter_area(mask) -> np.ndarray:
    """Interior 4-neighbour edges between removed and kept pixels / removed pixels, per image (N,)."""
    m = _as_mask_np(mask)
    edges = (m[:, 1:, :] != m[:, :-1, :]).sum(axis=(1, 2)) + (m[:, :, 1:] != m[:, :, :-1]).sum(axis=(1, 2))
    area = m.sum(axis=(1, 2))
    return np.where(area > 0, edges / np.maximum(area, 1), 0.0)


# Connects 4-neighbours within an image plane and nothing across the image axis.
_ROOK_WITHIN_IMAGE = np.zeros((3, 3, 3), dtype=bool)
_ROOK_WITHIN_IMAGE[1] = scipy.ndimage.generate_binary_structure(2, 1)


def components(mask) -> np.ndarray:
    """Number of 4-connected components of the removed region per image, int64 (N,)."""
    m = _as_mask_np(mask)
    labels, count = scipy.ndimage.label(m, structure=_ROOK_WITHIN_IMAGE)
    if count == 0:
        return np.zeros(m.shape[0], dtype=np.int64)
    # Each label lives in one image: find that image from the label's first pixel.
    _, first = np.unique(labels.reshape(-1), return_index=True)
    image_of_label = first[1:] // (m.shape[1] * m.shape[2])  # label 0 (kept pixels) dropped
    return np.bincount(image_of_label, minlength=m.shape[0]).astype(np.int64)


def morans_i(mask) -> np.ndarray:
    """Moran's I of the 0/1 mask with rook weights per image (N,); 0 for a constant mask."""
    m = _as_mask_np(mask)
    n_img, h, w = m.shape
    d = m.astype(np.float64)
    d -= d.mean(axis=(1, 2), keepdims=True)
    # Each unordered neighbour pair appears twice in sum_ij w_ij d_i d_j, and S0 counts both directions.
    cross = 2 * ((d[:, 1:, :] * d[:, :-1, :]).sum(axis=(1, 2)) + (d[:, :, 1:] * d[:, :, :-1]).sum(axis=(1, 2)))
    s0 = 2 * ((h - 1) * w + h * (w - 1))
    var = (d ** 2).sum(axis=(1, 2))
    ok = (var > 0) & (s0 > 0)
    return np.where(ok, (h * w / max(s0, 1)) * cross / np.where(ok, var, 1.0), 0.0)


MASK_METRICS = {
    "removed_fraction_actual": removed_fraction_per_image,
    "mask_perimeter_area": perimeter_area,
    "mask_components": components,
    "mask_morans_i": morans_i,
}


def mask_metrics(mask) -> dict[str, float]:
    """Means over images of the mask metrics (module docstring); mask bool (N, H, W), torch or numpy."""
    m = _as_mask_np(mask)
    return {name: float(np.mean(fn(m))) for name, fn in MASK_METRICS.items()}
