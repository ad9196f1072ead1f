"""Post-processing of maps: exact values against plain-loop and scipy references, identities, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from roar.attribution import compute_maps
from roar.postprocess import POSTPROCESS, postprocess_maps

pytestmark = pytest.mark.usefixtures("single_thread")

EXTRA = {"gamma": {"gamma": 2.0}, "quantize": {"levels": 4}, "blur_matched_random": {"seed": 1},
         "chain": {"steps": "gamma,max_filter", "gamma": 0.5}}
INDEX = torch.tensor([3, 8, 0, 5])


def maps(n=3, h=9, w=11, seed=0):
    return torch.rand(n, h, w, generator=torch.Generator().manual_seed(seed))


def gaussian_delta_reference(size, centre, sigma):
    """Blur of a delta by the normalised discrete Gaussian of radius ceil(3 sigma), one pixel at a time."""
    radius = math.ceil(3 * sigma)
    weights = [math.exp(-d * d / (2 * sigma * sigma)) for d in range(-radius, radius + 1)]
    norm = sum(weights)
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            di, dj = i - centre[0], j - centre[1]
            if abs(di) <= radius and abs(dj) <= radius:
                out[i, j] = weights[di + radius] * weights[dj + radius] / norm ** 2
    return out


# --- identities -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs", [
    ("identity", {}), ("gaussian", {"sigma": 0.0}), ("max_filter", {"filter_size": 1}),
    ("mean_filter", {"filter_size": 0})])
def test_identity_settings_return_the_input_itself(name, kwargs):
    m = maps()
    assert postprocess_maps(m, name, **kwargs) is m
    a = m.numpy().copy()
    assert postprocess_maps(a, name, **kwargs) is a


# --- Gaussian -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7])
def test_gaussian_of_delta_is_the_discrete_gaussian(sigma):
    delta = torch.zeros(1, 17, 17, dtype=torch.float64)
    delta[0, 8, 7] = 1.0          # further than the radius (<= 6) from the edges and their mirror images
    out = postprocess_maps(delta, "gaussian", sigma=sigma)
    np.testing.assert_allclose(out[0].numpy(), gaussian_delta_reference(17, (8, 7), sigma), atol=1e-6, rtol=0)


def test_gaussian_preserves_sum_of_interior_delta():
    delta = torch.zeros(2, 16, 16)
    delta[0, 8, 8] = 3.0
    delta[1, 6, 9] = 1.0
    out = postprocess_maps(delta, "gaussian", sigma=1.5)       # radius 5 keeps both inside the image
    np.testing.assert_allclose(out.sum(dim=(1, 2)).numpy(), [3.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.5])
def test_gaussian_matches_scipy_mirror_mode(sigma):
    """scipy's radius is int(3 sigma + 0.5), ours ceil(3 sigma): equal for these sigmas."""
    m = maps(h=8, w=10).double()
    out = postprocess_maps(m, "gaussian", sigma=sigma)
    for i in range(len(m)):
        expected = ndimage.gaussian_filter(m[i].numpy(), sigma, mode="mirror", truncate=3.0)
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-12)


def test_gaussian_wider_than_the_image_mirrors_repeatedly():
    m = maps(n=1, h=4, w=5).double()
    out = postprocess_maps(m, "gaussian", sigma=3.0)           # radius 9 > image side
    np.testing.assert_allclose(out[0].numpy(), ndimage.gaussian_filter(m[0].numpy(), 3.0, mode="mirror",
                                                                       truncate=3.0), atol=1e-12)


# --- max and mean filters ----------------------------------------------------------------------------
@pytest.mark.parametrize("size,mode", [(s, m) for s in (2, 3, 4, 5) for m in ("reflect", "nearest")]
                         + [(3, "mirror"), (5, "mirror")])
def test_max_filter_matches_scipy(size, mode):
    """-inf padding equals scipy's 'reflect' and 'nearest' at any size, and 'mirror' at odd sizes."""
    m = maps(h=7, w=9)
    out = postprocess_maps(m, "max_filter", filter_size=size)
    for i in range(len(m)):
        np.testing.assert_array_equal(out[i].numpy(), ndimage.maximum_filter(m[i].numpy(), size, mode=mode))


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_mean_filter_matches_scipy_mirror_mode(size):
    m = maps(h=7, w=9).double()
    out = postprocess_maps(m, "mean_filter", filter_size=size)
    for i in range(len(m)):
        expected = ndimage.uniform_filter(m[i].numpy(), size, mode="mirror")
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-12)


# --- information-free transforms and the null model ---------------------------------------------------
def test_gamma_is_signed_power_and_keeps_ranking():
    m = torch.tensor([[[-2.0, 0.5], [3.0, 0.0]]])
    out = postprocess_maps(m, "gamma", gamma=2.0)
    np.testing.assert_array_equal(out.numpy(), [[[-4.0, 0.25], [9.0, 0.0]]])
    r = maps()
    assert torch.equal(r.flatten(1).argsort(), postprocess_maps(r, "gamma", gamma=0.3).flatten(1).argsort())


def test_quantize_exact_levels():
    m = torch.tensor([[[0.0, 0.2, 0.49], [0.5, 0.74, 1.0]], [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]])
    out = postprocess_maps(m, "quantize", levels=2)
    np.testing.assert_array_equal(out.numpy(), [[[0, 0, 0], [1, 1, 1]], [[2, 2, 2], [2, 2, 2]]])
    out = postprocess_maps(m[:1] * 4 + 1, "quantize", levels=3)     # range [1, 5], bins of width 4/3
    np.testing.assert_allclose(out.numpy(), [[[1, 1, 3], [3, 5, 5]]])   # 0.74 * 3 -> bin 2


def test_blur_matched_random_is_the_blurred_random_attribution():
    m = maps(n=4, h=10, w=10)
    index = torch.tensor([5, 2, 9, 0])
    out = postprocess_maps(m, "blur_matched_random", sigma=1.2, seed=3, index=index)
    random_maps = compute_maps(torch.nn.Identity(), torch.zeros(4, 1, 10, 10), torch.zeros(4).long(),
                               "random", sign="raw", reduction="sum", seed=3, index=index)
    torch.testing.assert_close(out, postprocess_maps(torch.from_numpy(random_maps), "gaussian", sigma=1.2),
                               rtol=0, atol=0)
    assert torch.equal(out, postprocess_maps(m * 7, "blur_matched_random", sigma=1.2, seed=3, index=index))
    assert not torch.equal(out, postprocess_maps(m, "blur_matched_random", sigma=1.2, seed=4, index=index))
    assert torch.equal(postprocess_maps(m, "blur_matched_random", sigma=1.2, seed=3),
                       postprocess_maps(m, "blur_matched_random", sigma=1.2, seed=3, index=torch.arange(4)))


# --- every registered post-processing ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(POSTPROCESS))
def test_batch_equals_per_map_and_types_round_trip(name):
    m = maps(n=4)
    kwargs = {"sigma": 1.3, "filter_size": 3, **EXTRA.get(name, {})}
    batch = postprocess_maps(m, name, index=INDEX, **kwargs)
    assert isinstance(batch, torch.Tensor) and batch.shape == m.shape and batch.dtype == torch.float32
    for i in range(4):
        one = postprocess_maps(m[i:i + 1], name, index=INDEX[i:i + 1], **kwargs)
        torch.testing.assert_close(one[0], batch[i], rtol=1e-6, atol=1e-7)
    as_numpy = postprocess_maps(m.numpy(), name, index=INDEX, **kwargs)
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_array_equal(as_numpy, batch.numpy())
    as_half = postprocess_maps(m.half(), name, index=INDEX, **kwargs)
    assert as_half.dtype == torch.float32


# --- errors name the field and the value ---------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"name": "gaussian", "sigma": -0.5}, r"sigma must be a finite number >= 0 \(pixels\); found -0.5"),
    ({"name": "gaussian", "sigma": float("nan")}, "sigma .* found nan"),
    ({"name": "max_filter", "filter_size": -1}, r"filter_size must be an integer >= 0 \(pixels\); found -1"),
    ({"name": "max_filter", "filter_size": 2.5}, "filter_size .* found 2.5"),
    ({"name": "gamma"}, "postprocess 'gamma' needs parameter 'gamma'"),
    ({"name": "gamma", "gamma": -1.0}, "gamma must be a finite number > 0 .* found -1.0"),
    ({"name": "quantize", "levels": 1}, "levels must be an integer >= 2 .* found 1"),
    ({"name": "gaussian", "gamma": 2.0}, r"postprocess 'gaussian' takes no parameter\(s\) \['gamma'\]"),
    ({"name": "blur_matched_random", "seed": 1.5}, "seed must be an integer; found 1.5"),
    ({"name": "blur_matched_random", "index": [1, 2]}, r"index must have shape \(3,\).*found \(2,\)"),
])
def test_invalid_settings_raise_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        postprocess_maps(maps(), **kwargs)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(KeyError, match="unknown postprocess 'gausian'; did you mean 'gaussian'"):
        postprocess_maps(maps(), "gausian", sigma=1.0)


def test_maps_must_be_three_dimensional():
    with pytest.raises(ValueError, match=r"maps must be .*\(N, H, W\); found \(9, 11\)"):
        postprocess_maps(maps()[0], "gaussian", sigma=1.0)


def test_chain_applies_its_steps_in_order_with_their_own_parameters():
    maps = torch.rand(3, 9, 9, generator=torch.Generator().manual_seed(0))
    chained = postprocess_maps(maps, "chain", sigma=1.0, steps="gamma,gaussian", gamma=2.0)
    by_hand = postprocess_maps(postprocess_maps(maps, "gamma", gamma=2.0), "gaussian", sigma=1.0)
    assert torch.equal(chained, by_hand)
    with pytest.raises(ValueError, match="steps must be comma-separated"):
        postprocess_maps(maps, "chain", steps="gamma,nonsense", gamma=2.0)
    with pytest.raises(ValueError, match="step 'quantize' needs parameter"):
        postprocess_maps(maps, "chain", steps="quantize,gaussian", sigma=1.0)
