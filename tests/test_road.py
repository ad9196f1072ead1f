"""ROAD noisy linear imputation: stencil values, exact linear reconstruction, batching, noise, channels."""
import numpy as np
import pytest
import torch

from roar.road import STENCIL, noisy_linear_impute


def _looped_reference(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Dense per-image, per-channel solve of the same equations, written with plain loops."""
    out = x.copy()
    n_img, n_ch, h, w = x.shape
    for n in range(n_img):
        unknown = [(i, j) for i in range(h) for j in range(w) if mask[n, i, j]]
        if not unknown or len(unknown) == h * w:
            continue
        pos = {p: k for k, p in enumerate(unknown)}
        for c in range(n_ch):
            a = np.eye(len(unknown))
            b = np.zeros(len(unknown))
            for (i, j), k in pos.items():
                nbrs = [(i + di, j + dj, wt) for di, dj, wt in STENCIL if 0 <= i + di < h and 0 <= j + dj < w]
                total = sum(wt for *_, wt in nbrs)
                for ii, jj, wt in nbrs:
                    if (ii, jj) in pos:
                        a[k, pos[(ii, jj)]] -= wt / total
                    else:
                        b[k] += wt / total * x[n, c, ii, jj]
            sol = np.linalg.solve(a, b)
            for (i, j), k in pos.items():
                out[n, c, i, j] = sol[k]
    return out


def test_stencil_weights():
    assert sorted(round(w * 12) for *_, w in STENCIL) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert abs(sum(w for *_, w in STENCIL) - 1) < 1e-15


def test_isolated_removed_pixel_gets_the_surrounding_value():
    x = torch.full((1, 1, 5, 5), 0.7, dtype=torch.float64)
    x[0, 0, 2, 2] = 0.0
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[0, 2, 2] = True
    out = noisy_linear_impute(x, mask, noise_std=0.0)
    assert out[0, 0, 2, 2].item() == pytest.approx(0.7, abs=1e-14)
    assert torch.equal(out[~mask[:, None].expand_as(out)], x[~mask[:, None].expand_as(x)])


def test_weighted_mean_of_the_eight_neighbours_and_border_renormalisation():
    x = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4) / 16
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 1, 1] = mask[0, 0, 3] = True  # an interior pixel and a corner, not adjacent
    out = noisy_linear_impute(x, mask, noise_std=0.0)[0, 0]
    v = x[0, 0]
    interior = (v[0, 1] + v[2, 1] + v[1, 0] + v[1, 2]) / 6 + (v[0, 0] + v[0, 2] + v[2, 0] + v[2, 2]) / 12
    corner = ((v[0, 2] + v[1, 3]) / 6 + v[1, 2] / 12) / (2 / 6 + 1 / 12)
    assert out[1, 1].item() == pytest.approx(interior.item(), abs=1e-14)
    assert out[0, 3].item() == pytest.approx(corner.item(), abs=1e-14)


def test_linear_ramp_is_reconstructed_exactly_inside_a_removed_block():
    h = w = 12
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                          indexing="ij")
    ramp = (0.03 * i - 0.02 * j + 0.4)[None, None]
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, 3:9, 2:8] = True  # 6x6 interior block: its centre pixels see only removed neighbours
    out = noisy_linear_impute(ramp, mask, noise_std=0.0)
    torch.testing.assert_close(out, ramp, rtol=0, atol=1e-12)


def test_matches_looped_dense_reference_with_borders_and_channels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 6, 7, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 6, 7, generator=g) < 0.6
    out = noisy_linear_impute(x, mask, noise_std=0.0)
    np.testing.assert_allclose(out.numpy(), _looped_reference(x.numpy(), mask.numpy()), rtol=0, atol=1e-12)


def test_batch_equals_per_image():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 9, 9, generator=g)
    mask = torch.rand(5, 9, 9, generator=g) < 0.5
    mask[2] = False  # an image with nothing removed inside the batch
    batch = noisy_linear_impute(x, mask, noise_std=0.0)
    for n in range(5):
        alone = noisy_linear_impute(x[n:n + 1], mask[n:n + 1], noise_std=0.0)
        torch.testing.assert_close(alone[0], batch[n], rtol=0, atol=1e-6)
    assert torch.equal(batch[2], x[2])


def test_noise_has_the_configured_std_and_only_touches_removed_pixels():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(40, 2, 16, 16, generator=g, dtype=torch.float64)
    mask = torch.rand(40, 16, 16, generator=g) < 0.5
    clean = noisy_linear_impute(x, mask, noise_std=0.0)
    noisy = noisy_linear_impute(x, mask, noise_std=0.05, generator=torch.Generator().manual_seed(3))
    diff = (noisy - clean)[mask[:, None].expand_as(x)]
    assert diff.numel() > 10000
    assert diff.std().item() == pytest.approx(0.05, rel=0.03)
    assert abs(diff.mean().item()) < 0.05 * 4 / diff.numel() ** 0.5
    assert torch.equal(noisy[~mask[:, None].expand_as(x)], x[~mask[:, None].expand_as(x)])


def test_noise_is_reproducible_by_generator_seed():
    x = torch.rand(2, 1, 6, 6)
    mask = torch.rand(2, 6, 6) < 0.5
    a = noisy_linear_impute(x, mask, generator=torch.Generator().manual_seed(4))
    b = noisy_linear_impute(x, mask, generator=torch.Generator().manual_seed(4))
    c = noisy_linear_impute(x, mask, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(noisy_linear_impute(x, mask), noisy_linear_impute(x, mask))  # default seed 0


def test_fully_removed_image_gets_fallback_and_others_still_solve():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0] = True
    mask[1, 1, 1] = True
    out = noisy_linear_impute(x, mask, noise_std=0.0, fallback=(0.1, 0.2, 0.3))
    assert out[0, :, 2, 3].tolist() == [0.1, 0.2, 0.3]
    assert torch.equal(out[0], torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)[:, None, None].expand(3, 4, 4))
    np.testing.assert_allclose(out[1].numpy(), _looped_reference(x[1:].numpy(), mask[1:].numpy())[0], atol=1e-12)
    assert torch.equal(noisy_linear_impute(x, mask[:1].expand(2, 4, 4).clone(), noise_std=0.0)[1],
                       torch.full((3, 4, 4), 0.5, dtype=torch.float64))


def test_dtype_preserved_input_untouched_and_nothing_removed():
    x = torch.rand(2, 1, 5, 5)
    before = x.clone()
    mask = torch.rand(2, 5, 5) < 0.3
    out = noisy_linear_impute(x, mask.numpy())
    assert out.dtype == torch.float32 and torch.equal(x, before)
    assert torch.equal(noisy_linear_impute(x, torch.zeros(2, 5, 5, dtype=torch.bool)), x)


def test_invalid_inputs():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="noise_std"):
        noisy_linear_impute(x, torch.zeros(1, 4, 4, dtype=torch.bool), noise_std=-1.0)
    with pytest.raises(ValueError, match=r"mask must have shape"):
        noisy_linear_impute(x, torch.zeros(1, 4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        noisy_linear_impute(x, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="fallback"):
        noisy_linear_impute(x, torch.ones(1, 4, 4, dtype=torch.bool), fallback=(0.1, 0.2))


def test_solving_in_groups_of_images_changes_nothing(monkeypatch):
    import roar.road
    g = torch.Generator().manual_seed(6)
    x = torch.rand(7, 2, 6, 6, generator=g, dtype=torch.float64)
    mask = torch.rand(7, 6, 6, generator=g) < 0.5
    mask[0] = False          # a leading image with nothing removed
    mask[3] = True           # a fully removed image between groups
    whole = noisy_linear_impute(x, mask, noise_std=0.02)
    monkeypatch.setattr(roar.road, "MAX_UNKNOWNS_PER_SOLVE", 10)
    grouped = noisy_linear_impute(x, mask, noise_std=0.02)
    torch.testing.assert_close(grouped, whole, rtol=0, atol=1e-12)
