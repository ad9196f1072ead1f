"""Map and mask metrics: hand-computed values, planted blur effects, degenerate inputs, batch = looped."""
import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from analysis.schema import COLUMNS
from roar.metrics import (
    MAP_METRICS, MASK_METRICS, components, gini, hf_energy, map_metrics, mask_metrics, morans_i,
    perimeter_area, spectral_centroid, total_variation,
)


def _checkerboard(h=6, w=6):
    i, j = np.indices((h, w))
    return ((i + j) % 2).astype(bool)


def test_keys_are_schema_columns():
    assert set(map_metrics(np.ones((1, 4, 4)))) == set(MAP_METRICS)
    assert set(mask_metrics(np.ones((1, 4, 4), dtype=bool))) == set(MASK_METRICS)
    assert set(MAP_METRICS) | set(MASK_METRICS) <= set(COLUMNS)


# --- maps -----------------------------------------------------------------------------------------

def test_checkerboard_map_values():
    m = _checkerboard().astype(np.float64)[None]
    assert spectral_centroid(m).item() == pytest.approx(math.sqrt(0.5), abs=1e-12)
    assert hf_energy(m).item() == pytest.approx(1.0, abs=1e-12)
    assert total_variation(m).item() == 1.0
    assert gini(m).item() == pytest.approx(0.5, abs=1e-12)


def test_cosine_maps_put_the_centroid_at_their_frequency():
    j = np.arange(8)
    slow = np.tile(np.cos(2 * np.pi * j / 4), (8, 1))         # 0.25 cycles/pixel along columns
    fast = np.tile(np.cos(2 * np.pi * 3 * j / 8), (8, 1))     # 0.375 cycles/pixel
    maps = np.stack([slow, fast])
    np.testing.assert_allclose(spectral_centroid(maps).numpy(), [0.25, 0.375], atol=1e-12)
    np.testing.assert_allclose(hf_energy(maps).numpy(), [0.0, 1.0], atol=1e-12)  # cutoff is strict


def test_total_variation_hand_case_is_scale_free():
    m = np.array([[[0.0, 1.0], [1.0, 1.0]]])
    assert total_variation(m).item() == 0.5   # pairs: 1, 0 (rows) and 1, 0 (columns)
    assert total_variation(7 * m - 3).item() == 0.5


def test_gini_one_hot_constant_zero_and_sign():
    n = 25
    one_hot = np.zeros((1, 5, 5))
    one_hot[0, 2, 3] = 2.0
    assert gini(one_hot).item() == pytest.approx((n - 1) / n, abs=1e-12)
    assert gini(-one_hot).item() == pytest.approx((n - 1) / n, abs=1e-12)
    assert gini(np.full((1, 5, 5), 0.3)).item() == 0.0
    assert gini(np.zeros((1, 5, 5))).item() == 0.0


def test_constant_maps_give_zeros_not_nan():
    maps = np.stack([np.full((7, 7), 0.1234567), np.zeros((7, 7))])
    for name, fn in MAP_METRICS.items():
        assert fn(maps).tolist() == [0.0, 0.0], name
    assert map_metrics(maps) == {name: 0.0 for name in MAP_METRICS}


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_blurring_lowers_every_blur_measure(sigma):
    # A checkerboard on top of a smooth blob, and white noise: blurring must lower all three measures.
    i, j = np.indices((24, 24))
    blob = np.exp(-((i - 10) ** 2 + (j - 13) ** 2) / 40)
    sharp = np.stack([0.5 * _checkerboard(24, 24) + blob, np.random.default_rng(0).random((24, 24))])
    blurred = scipy.ndimage.gaussian_filter(sharp, sigma=(0, sigma, sigma))
    for name in ["blur_spectral_centroid", "blur_total_variation", "blur_hf_energy"]:
        fn = MAP_METRICS[name]
        assert (fn(blurred) < fn(sharp)).all(), name


def test_map_metrics_are_means_over_images_and_accept_torch():
    rng = np.random.default_rng(1)
    maps = rng.random((3, 8, 8))
    result = map_metrics(torch.from_numpy(maps).float())
    for name, fn in MAP_METRICS.items():
        per_image = [fn(maps[k:k + 1]).item() for k in range(3)]
        assert result[name] == pytest.approx(np.mean(per_image), rel=1e-6), name


# --- masks ----------------------------------------------------------------------------------------

def test_block_inside_image():
    mask = np.zeros((1, 6, 6), dtype=bool)
    mask[0, 2:4, 2:4] = True
    result = mask_metrics(mask)
    assert result["removed_fraction_actual"] == pytest.approx(4 / 36)
    assert result["mask_perimeter_area"] == 2.0   # 8 edges / 4 pixels
    assert result["mask_components"] == 1.0


def test_perimeter_counts_interior_edges_only():
    mask = np.zeros((3, 6, 6), dtype=bool)
    mask[0, :2, :2] = True                   # corner block: 4 interior edges / 4 pixels
    mask[1] = True                           # everything removed: no interior boundary
    assert perimeter_area(mask).tolist() == [1.0, 0.0, 0.0]  # image 2: nothing removed -> 0


def test_components_are_four_connected_and_per_image():
    mask = np.zeros((3, 6, 6), dtype=bool)
    mask[0, 0:2, 0:2] = True
    mask[0, 4:6, 3:5] = True                 # two separated blocks
    mask[1, 1, 1] = mask[1, 2, 2] = True     # diagonal touch: two 4-components
    mask[1, :, 5] = True                     # right column of image 1 ...
    mask[2, :, 0] = True                     # ... next to the left column of image 2 in the stacked array
    assert components(mask).tolist() == [2, 3, 1]
    assert components(np.zeros((2, 4, 4), dtype=bool)).tolist() == [0, 0]


def test_components_match_per_image_labelling():
    rng = np.random.default_rng(2)
    mask = rng.random((20, 9, 11)) < 0.45
    looped = [scipy.ndimage.label(m)[1] for m in mask]  # default 2-D structure is 4-connectivity
    assert components(mask).tolist() == looped


def _looped_morans_i(m: np.ndarray) -> float:
    h, w = m.shape
    z = m.reshape(-1).astype(float)
    d = z - z.mean()
    weights = np.zeros((h * w, h * w))
    for i in range(h):
        for j in range(w):
            for di, dj in [(-1, 0), (1, 0), (0, -1), (0, 1)]:
                if 0 <= i + di < h and 0 <= j + dj < w:
                    weights[i * w + j, (i + di) * w + j + dj] = 1
    return len(z) / weights.sum() * (d @ weights @ d) / (d @ d)


def test_morans_i_hand_cases():
    assert morans_i(_checkerboard()[None]).item() == pytest.approx(-1.0, abs=1e-12)
    half = np.zeros((1, 6, 6), dtype=bool)
    half[0, :, :3] = True
    assert morans_i(half).item() == pytest.approx(0.8, abs=1e-12)  # 36/120 * 24/9
    assert morans_i(np.ones((1, 4, 4), dtype=bool)).item() == 0.0
    assert morans_i(np.zeros((1, 4, 4), dtype=bool)).item() == 0.0


def test_morans_i_matches_weight_matrix_reference():
    rng = np.random.default_rng(3)
    mask = rng.random((6, 5, 7)) < 0.4
    np.testing.assert_allclose(morans_i(mask), [_looped_morans_i(m) for m in mask], atol=1e-12)


def test_mask_metrics_means_and_torch_input():
    mask = torch.zeros(2, 6, 6, dtype=torch.bool)
    mask[0, 2:4, 2:4] = True
    mask[1] = torch.from_numpy(_checkerboard())
    result = mask_metrics(mask)
    assert result["removed_fraction_actual"] == pytest.approx((4 / 36 + 0.5) / 2)
    assert result["mask_components"] == (1 + 18) / 2
    assert result["mask_perimeter_area"] == pytest.approx((2.0 + 60 / 18) / 2)
    assert result["mask_morans_i"] == pytest.approx((morans_i(mask[:1]).item() - 1.0) / 2)


def test_invalid_inputs():
    with pytest.raises(TypeError, match="bool"):
        mask_metrics(np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="shape"):
        mask_metrics(np.zeros((3, 3), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        map_metrics(np.zeros((0, 3, 3)))
