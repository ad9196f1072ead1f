"""Fills: only removed pixels change, to the right values; no in-place edits; seeded noise."""
import pytest
import scipy.ndimage
import torch

from roar.fills import BLUR_SIGMA_PX, FILLS, apply_fill, gaussian_blur_images
from roar.road import noisy_linear_impute

MEAN = (0.25, 0.5, 0.75)
STOCHASTIC = {"uniform", "road"}


def _batch(seed=0, n=4, c=3, h=8, w=9):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g)
    mask = torch.rand(n, h, w, generator=g) < 0.4
    return x, mask


def _removed(mask, x):
    return mask[:, None].expand_as(x)


@pytest.mark.parametrize("fill", sorted(FILLS))
def test_every_fill_changes_only_removed_pixels_and_not_x(fill):
    x, mask = _batch()
    before = x.clone()
    out = apply_fill(x, mask, fill, MEAN, seed=1)
    assert torch.equal(x, before)
    assert out.shape == x.shape and out.dtype == x.dtype and out.data_ptr() != x.data_ptr()
    assert torch.equal(out[~_removed(mask, x)], x[~_removed(mask, x)])
    assert not torch.equal(out[_removed(mask, x)], x[_removed(mask, x)])


@pytest.mark.parametrize("fill", sorted(FILLS))
def test_every_fill_is_reproducible_by_seed(fill):
    x, mask = _batch()
    a = apply_fill(x, mask, fill, MEAN, seed=3)
    assert torch.equal(a, apply_fill(x, mask, fill, MEAN, seed=3))
    assert torch.equal(a, apply_fill(x, mask, fill, MEAN, seed=4)) == (fill not in STOCHASTIC)


def test_mean_fill_sets_channel_means_exactly():
    x, mask = _batch()
    out = apply_fill(x, mask, "mean", MEAN)
    for c, m in enumerate(MEAN):
        channel = out[:, c]
        assert (channel[mask] == torch.tensor(m, dtype=x.dtype)).all()
    assert torch.equal(out[~_removed(mask, x)], x[~_removed(mask, x)])


def test_zero_fill():
    x, mask = _batch()
    out = apply_fill(x, mask, "zero", MEAN)
    assert (out[_removed(mask, x)] == 0).all()


def test_uniform_fill_is_uniform_noise():
    x, mask = _batch(n=50, h=20, w=20)
    out = apply_fill(x, mask, "uniform", MEAN, seed=0)
    values = out[_removed(mask, x)]
    assert values.min() >= 0 and values.max() < 1
    assert values.mean().item() == pytest.approx(0.5, abs=4 * (1 / 12) ** 0.5 / values.numel() ** 0.5)


def test_blur_fill_takes_the_blurred_image_value():
    x, mask = _batch(c=2, h=16, w=16)
    out = apply_fill(x, mask, "blur", (0.5, 0.5))
    reference = torch.from_numpy(scipy.ndimage.gaussian_filter(
        x.double().numpy(), sigma=(0, 0, BLUR_SIGMA_PX, BLUR_SIGMA_PX), mode="nearest", truncate=3.0)).float()
    torch.testing.assert_close(out[_removed(mask, x)], reference[_removed(mask, x)], rtol=0, atol=1e-5)


def test_gaussian_blur_preserves_constants_and_tiny_images():
    x = torch.full((1, 1, 3, 2), 0.4)
    torch.testing.assert_close(gaussian_blur_images(x, 2.0), x)
    assert torch.equal(gaussian_blur_images(x, 0.0), x)


def test_road_fill_is_noisy_linear_imputation_with_the_same_generator():
    x, mask = _batch()
    out = apply_fill(x, mask, "road", MEAN, seed=5)
    expected = noisy_linear_impute(x, mask, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, expected)
    full = torch.ones_like(mask)
    clean = apply_fill(x, full, "road", MEAN, seed=5)
    assert (clean[:, 0] - 0.25).abs().max() < 0.1  # fully removed images fall back to the dataset mean


def test_numpy_mask_and_registry_errors():
    x, mask = _batch()
    assert torch.equal(apply_fill(x, mask.numpy(), "zero", MEAN), apply_fill(x, mask, "zero", MEAN))
    with pytest.raises(KeyError, match="fill 'gaussian'"):
        apply_fill(x, mask, "gaussian", MEAN)
    with pytest.raises(ValueError, match="mean must give one value per channel"):
        apply_fill(x, mask, "mean", (0.5,))
    with pytest.raises(ValueError, match="mask must have shape"):
        apply_fill(x, mask[:, :4], "zero", MEAN)
    with pytest.raises(TypeError, match="bool"):
        apply_fill(x, mask.float(), "zero", MEAN)
