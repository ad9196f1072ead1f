"""Attribution maps: every registered method against the same invariants, plus exact values where a
closed form or a looped reference exists."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_cases import LinearNet, TinyCNN, cases, hook_count, images

import roar.attribution as attribution
from roar.attribution import (ATTRIBUTIONS, REDUCTIONS, SIGNS, cam_layer, compute_maps, counter_normal,
                              counter_uniform, occlusion_window, resolve_targets)

pytestmark = pytest.mark.usefixtures("single_thread")

TARGET = torch.tensor([0, 1, 2, 0, 1, 2])


def assert_close(actual, expected, case):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=case["rtol"], atol=case["atol_rel"] * scale)


# --- invariants over every registered method -------------------------------------------------------
@pytest.mark.parametrize("case", cases())
def test_shape_dtype_finite_nonzero(case):
    maps = compute_maps(TinyCNN(), images(), TARGET, case["name"], batch_size=4)
    assert maps.shape == (6, 12, 12) and maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert (maps != 0).any()


@pytest.mark.parametrize("case", cases())
def test_batch_equals_per_sample_whatever_the_batch(case):
    """Batch of 6 == one image at a time == a shuffled batch of 4 + 2, image by image, with mixed targets."""
    model, x = TinyCNN(), images()
    whole = compute_maps(model, x, TARGET, case["name"], batch_size=6, seed=3)
    singles = np.concatenate([compute_maps(model, x[i:i + 1], TARGET[i:i + 1], case["name"], seed=3,
                                           index=torch.tensor([i])) for i in range(6)])
    order = torch.tensor([4, 1, 5, 0, 3, 2])
    shuffled = compute_maps(model, x[order], TARGET[order], case["name"], batch_size=4, seed=3, index=order)
    assert_close(whole, singles, case)
    assert_close(whole[order.numpy()], shuffled, case)


@pytest.mark.parametrize("case", cases())
def test_seed_reproducible_and_only_stochastic_methods_depend_on_it(case):
    model, x = TinyCNN(), images()
    first = compute_maps(model, x, TARGET, case["name"], seed=5)
    assert np.array_equal(first, compute_maps(model, x, TARGET, case["name"], seed=5))
    other_seed = compute_maps(model, x, TARGET, case["name"], seed=6)
    assert np.array_equal(first, other_seed) is (not case["method"].stochastic)


@pytest.mark.parametrize("case", cases())
def test_uses_model_flag_matches_behaviour(case):
    x = images()
    maps_a = compute_maps(TinyCNN(seed=0), x, TARGET, case["name"])
    maps_b = compute_maps(TinyCNN(seed=1), x, TARGET, case["name"])
    assert np.array_equal(maps_a, maps_b) is (not case["method"].uses_model)


@pytest.mark.parametrize("case", cases())
def test_no_hooks_left_and_mode_restored(case):
    model = TinyCNN().train()
    compute_maps(model, images(), TARGET, case["name"])
    assert hook_count(model) == 0
    assert model.training


@pytest.mark.parametrize("case", cases(lambda c: c["method"].uses_model))
def test_no_hooks_left_after_error_inside(case):
    model = TinyCNN().train()
    model.arm()
    with pytest.raises(RuntimeError, match="boom"):
        compute_maps(model, images(), TARGET, case["name"])
    assert hook_count(model) == 0
    assert model.training
    model.arm(False)      # and the model still attributes normally afterwards
    assert_close(compute_maps(model, images(), TARGET, case["name"]),
                 compute_maps(TinyCNN(), images(), TARGET, case["name"]), case)


@pytest.mark.parametrize("case", cases(lambda c: c["method"].uses_model))
def test_each_image_explains_its_own_target(case):
    """Mixed targets in one batch give each image the map of its own target, and targets matter."""
    model, x = TinyCNN(), images()
    mixed = compute_maps(model, x, TARGET, case["name"])
    for cls in range(3):
        own = compute_maps(model, x, torch.full((6,), cls), case["name"])
        rows = (TARGET == cls).numpy()
        assert_close(mixed[rows], own[rows], case)
        assert not np.allclose(mixed[~rows], own[~rows])


@pytest.mark.parametrize("case", cases())
def test_uint8_images_equal_float_images(case):
    x8 = (images() * 255).round().to(torch.uint8)
    model = TinyCNN()
    assert_close(compute_maps(model, x8, TARGET, case["name"]),
                 compute_maps(model, x8.float() / 255, TARGET, case["name"]), case)


# --- exact values on a linear model and against looped references -----------------------------------
def _linear_setup():
    model, x = LinearNet(), images(n=4, channels=1, size=6, seed=1)
    target = torch.tensor([2, 0, 1, 2])
    weights = model.fc.weight.detach()[target].reshape(x.shape)
    return model, x, target, weights


CLOSED_FORM = {   # on logits = W·x + b, with target t per image
    "saliency": lambda x, w: w,
    "guided_backprop": lambda x, w: w,         # no ReLU to guide through
    "smoothgrad": lambda x, w: w,              # the gradient does not depend on the noise
    "vargrad": lambda x, w: torch.zeros_like(w),
    "input_x_gradient": lambda x, w: x * w,
    "integrated_gradients": lambda x, w: x * w,
    "deeplift": lambda x, w: x * w,
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORM))
def test_closed_form_on_linear_model(name):
    model, x, target, weights = _linear_setup()
    maps = compute_maps(model, x, target, name, reduction="sum", sign="raw")
    expected = CLOSED_FORM[name](x, weights)[:, 0].numpy()
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)


def test_occlusion_matches_looped_reference_on_linear_model():
    model, x, target, weights = _linear_setup()
    side, stride = occlusion_window(6, 6)
    contribution = (x * weights)[:, 0]          # logit drop when a pixel is set to the zero baseline
    total = torch.zeros_like(contribution)
    count = torch.zeros(6, 6)
    for top in range(0, 6 - side + 1, stride):
        for left in range(0, 6 - side + 1, stride):
            drop = contribution[:, top:top + side, left:left + side].sum(dim=(1, 2))
            total[:, top:top + side, left:left + side] += drop[:, None, None]
            count[top:top + side, left:left + side] += 1
    maps = compute_maps(model, x, target, "occlusion", reduction="sum", sign="raw")
    np.testing.assert_allclose(maps, (total / count.clamp(min=1)).numpy(), rtol=1e-5, atol=1e-7)


def _gradient(model, point, target):
    point = point.clone().requires_grad_()
    return torch.autograd.grad(model(point)[0, target], point)[0]


def test_noise_methods_match_looped_reference():
    """smoothgrad = mean, vargrad = population variance, gradient_shap = mean of grad(b + a(x'-b))·(x'-b),
    each over the same per-image counter-drawn noise, one image and one draw at a time."""
    model, x = TinyCNN().eval(), images(n=3, size=8)
    target, index, seed = torch.tensor([2, 0, 1]), torch.tensor([7, 3, 11]), 4
    n, std = attribution.NOISE_SAMPLES, attribution.NOISE_STD
    shape = tuple(x.shape[1:])
    for i in range(3):
        xi, idx, t = x[i:i + 1], index[i:i + 1], int(target[i])
        def noisy_grads(stream):
            return torch.stack([_gradient(model, xi + std * counter_normal(seed, idx, shape, stream, d), t)
                                for d in range(n)])
        grads, var_grads = noisy_grads("smoothgrad"), noisy_grads("vargrad")
        shap = torch.zeros_like(xi)
        for d in range(n):
            noisy = xi + std * counter_normal(seed, idx, shape, "gradient_shap/noise", d)
            base = float(counter_uniform(seed, idx, (1,), "gradient_shap/baseline", d) < 0.5)
            alpha = float(counter_uniform(seed, idx, (1,), "gradient_shap/alpha", d))
            shap += _gradient(model, base + alpha * (noisy - base), t) * (noisy - base) / n
        expected = {"smoothgrad": grads.mean(0), "vargrad": var_grads.var(0, unbiased=False),
                    "gradient_shap": shap}
        for name, reference in expected.items():
            maps = compute_maps(model, x, target, name, reduction="sum", sign="raw", seed=seed, index=index)
            np.testing.assert_allclose(maps[i], reference[0].sum(0).numpy(), rtol=1e-4,
                                       atol=1e-5 * float(reference.abs().max()))


def test_gradcam_layer_choice():
    model = TinyCNN()
    assert cam_layer(model) is model.features[4]
    default = compute_maps(model, images(), TARGET, "gradcam", sign="raw")
    model.cam_layer = model.features[0]
    assert cam_layer(model) is model.features[0]
    assert not np.allclose(default, compute_maps(model, images(), TARGET, "gradcam", sign="raw"))
    with pytest.raises(ValueError, match="gradcam.*Conv2d"):
        compute_maps(LinearNet(shape=(3, 12, 12)), images(), TARGET, "gradcam")


# --- model-free baselines -----------------------------------------------------------------------------
def test_sobel_exact_on_step_edge():
    x = torch.zeros(2, 3, 8, 8)
    x[:, :, :, 4:] = 1.0                                 # vertical step between columns 3 and 4
    x[1, 1:] = 0.0                                       # image 1: the edge in one channel only
    maps = compute_maps(TinyCNN(), x, torch.zeros(2, dtype=torch.long), "sobel", sign="raw", reduction="sum")
    expected = np.zeros((2, 8, 8), np.float32)
    expected[:, :, 3:5] = 4.0                            # |1 + 2 + 1| on both sides of the step
    expected[0] *= 3                                     # summed over three channels
    np.testing.assert_array_equal(maps, expected)


@pytest.mark.parametrize("size", [7, 8])
def test_center_symmetric_peaked_and_image_independent(size):
    x = images(n=3, size=size)
    maps = compute_maps(TinyCNN(), x, torch.zeros(3, dtype=torch.long), "center")
    m = maps[0]
    np.testing.assert_array_equal(maps[1], m)
    np.testing.assert_allclose(m, m[::-1], atol=1e-6)
    np.testing.assert_allclose(m, m[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(m, m.T, atol=1e-6)
    mid = slice((size - 1) // 2, size // 2 + 1)
    assert m[mid, mid].min() == m.max() and m.min() == 0.0


def test_random_fixed_per_image_and_seed():
    x = images(n=5, size=8)
    index = torch.tensor([10, 11, 12, 13, 14])
    maps = compute_maps(TinyCNN(), x, torch.zeros(5, dtype=torch.long), "random", seed=2, index=index)
    # the same image index in another split-sized call, with other pixels: the same map
    again = compute_maps(TinyCNN(), torch.rand(1, 3, 8, 8), torch.zeros(1, dtype=torch.long), "random",
                         seed=2, index=torch.tensor([13]))
    np.testing.assert_array_equal(again[0], maps[3])
    assert len({m.tobytes() for m in maps}) == 5                 # every image its own map
    np.testing.assert_array_equal(maps, counter_uniform(2, index, (8, 8), "random").numpy())


def test_counter_randomness_is_uniform_and_normal():
    """Fixed seeds, so these are reproducible facts about the generator, not flaky checks: over 40 seeds
    the KS p-values of uniform and normal draws are themselves uniform (a second-order test)."""
    from scipy import stats
    index = torch.arange(16)
    u = [counter_uniform(s, index, (16, 16), "test").flatten().numpy() for s in range(40)]
    z = [counter_normal(s, index, (16, 16), "test").flatten().numpy() for s in range(40)]
    assert 0 < min(a.min() for a in u) and max(a.max() for a in u) < 1
    assert stats.kstest([stats.kstest(a, "uniform").pvalue for a in u], "uniform").pvalue > 1e-3
    assert stats.kstest([stats.kstest(a, "norm").pvalue for a in z], "uniform").pvalue > 1e-3
    other = counter_uniform(0, torch.arange(64), (40, 40), "other").flatten().numpy()
    same = counter_uniform(0, torch.arange(64), (40, 40), "test").flatten().numpy()
    assert abs(np.corrcoef(same, other)[0, 1]) < 0.01              # streams are independent


# --- sign and reduction --------------------------------------------------------------------------------
A = torch.tensor([[[[1.0, -4.0]], [[-2.0, 3.0]]]])     # (1, C=2, H=1, W=2)
EXPECTED = {   # sign applied per channel first, then the channel reduction
    ("raw", "sum"): [-1, -1], ("raw", "abs_sum"): [3, 7], ("raw", "max"): [1, 3],
    ("raw", "mean"): [-0.5, -0.5],
    ("abs", "sum"): [3, 7], ("abs", "abs_sum"): [3, 7], ("abs", "max"): [2, 4], ("abs", "mean"): [1.5, 3.5],
    ("positive", "sum"): [1, 3], ("positive", "abs_sum"): [1, 3], ("positive", "max"): [1, 3],
    ("positive", "mean"): [0.5, 1.5],
}


def test_registries_cover_the_table():
    assert {s for s, _ in EXPECTED} == set(SIGNS) and {r for _, r in EXPECTED} == set(REDUCTIONS)


@pytest.mark.parametrize("sign,reduction", sorted(EXPECTED))
def test_sign_then_reduction_exact(monkeypatch, sign, reduction):
    monkeypatch.setitem(ATTRIBUTIONS, "fixed", attribution.AttributionMethod(
        fn=lambda model, x, target, index, seed: A.expand(len(x), -1, -1, -1), uses_model=False, description="test"))
    maps = compute_maps(TinyCNN(), torch.zeros(1, 2, 1, 2), torch.zeros(1, dtype=torch.long), "fixed",
                        reduction=reduction, sign=sign)
    np.testing.assert_array_equal(maps, np.array([[EXPECTED[sign, reduction]]], np.float32))


# --- targets, validation, progress ---------------------------------------------------------------------
def test_resolve_targets():
    model, x = TinyCNN(), images(n=5)
    y = torch.tensor([2, 2, 1, 0, 1])
    assert torch.equal(resolve_targets(model, x, y, "label", "cpu"), y)
    with torch.no_grad():
        expected = model(x).argmax(dim=1)
    predicted = resolve_targets(model, x, y, "predicted", "cpu", batch_size=2)
    assert predicted.dtype == torch.int64 and torch.equal(predicted, expected)
    with pytest.raises(ValueError, match="target 'predicte'.*'predicted'"):
        resolve_targets(model, x, y, "predicte", "cpu")


@pytest.mark.parametrize("kwargs,error,match", [
    ({"method": "salency"}, KeyError, "attribution 'salency'.*'saliency'"),
    ({"reduction": "abssum"}, KeyError, "reduction 'abssum'.*'abs_sum'"),
    ({"sign": "absolute"}, KeyError, "sign 'absolute'"),
    ({"target": torch.zeros(5, dtype=torch.long)}, ValueError, r"target must have shape \(6,\).*\(5,\)"),
    ({"index": torch.arange(7)}, ValueError, r"index must have shape \(6,\).*\(7,\)"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1; found 0"),
    ({"x": torch.zeros(6, 12, 12)}, ValueError, r"x must be .*\(N, C, H, W\); found \(6, 12, 12\)"),
])
def test_user_errors_name_field_and_value(kwargs, error, match):
    args = {"model": TinyCNN(), "x": images(), "target": TARGET, "method": "saliency", **kwargs}
    with pytest.raises(error, match=match):
        compute_maps(**args)


def test_progress_line(capsys):
    compute_maps(TinyCNN(), images(), TARGET, "saliency", batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert "\rsaliency: batch 1/2" in err and "\rsaliency: batch 2/2" in err and "images/s" in err
    assert err.endswith("\n") and err.count("\n") == 1
