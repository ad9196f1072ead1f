"""Models and the tensor-resident trainer."""
import pytest
import torch

from roar.models import build_model
from roar.pipeline import accuracy_interval
from roar.train import TrainConfig, evaluate, flip_crop, train_model


@pytest.mark.parametrize("name,size,channels", [("small_cnn", 28, 1), ("small_cnn", 32, 3),
                                                ("resnet18_small", 32, 3), ("fast_resnet", 32, 3),
                                                ("resnet18", 64, 3)])
def test_models_give_logits_for_their_input_sizes(name, size, channels):
    model = build_model(name, channels, 7, mean=[0.5] * channels, std=[0.25] * channels, width=8, seed=0)
    out = model.eval()(torch.rand(2, channels, size, size))
    assert out.shape == (2, 7)
    assert model.cam_layer is not None


def test_build_model_seed_fixes_initial_weights():
    a = build_model("small_cnn", 1, 10, [0.5], [0.25], width=8, seed=3)
    b = build_model("small_cnn", 1, 10, [0.5], [0.25], width=8, seed=3)
    c = build_model("small_cnn", 1, 10, [0.5], [0.25], width=8, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_unknown_model_names_closest():
    with pytest.raises(KeyError, match="did you mean 'small_cnn'"):
        build_model("smal_cnn", 1, 10, [0.5], [0.25])


def _toy(n=400, seed=0):
    # label = which quadrant is bright: learnable in one or two epochs
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 1, 12, 12, generator=g) * 0.3
    for q, (r, c) in enumerate([(0, 0), (0, 6), (6, 0), (6, 6)]):
        x[y == q, :, r:r + 6, c:c + 6] += 0.7
    return x, y


def test_trainer_is_reproducible_and_learns():
    x, y = _toy()
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05)
    results = []
    for _ in range(2):
        model = build_model("small_cnn", 1, 4, [0.5], [0.3], width=4, seed=0)
        train_model(model, x, y, cfg, "cpu", seed=0)
        results.append((evaluate(model, x, y), model.state_dict()))
    (acc_a, sa), (acc_b, sb) = results
    assert acc_a == acc_b
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert acc_a[0] > 0.9


def test_trainer_reports_nan_loss():
    x, y = _toy(64)
    x[0] = float("nan")
    model = build_model("small_cnn", 1, 4, [0.5], [0.3], width=4, seed=0)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train_model(model, x, y, TrainConfig(epochs=1, batch_size=64), "cpu")


def test_evaluate_uses_every_test_image():
    x, y = _toy(1001)
    model = build_model("small_cnn", 1, 4, [0.5], [0.3], width=4, seed=0)
    logits_pred = model.eval()(x).argmax(1)
    acc, _ = evaluate(model, x, y, batch_size=100)
    assert acc == pytest.approx((logits_pred == y).float().mean().item())


def test_flip_crop_keeps_shape_and_pixels_from_the_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    out = flip_crop(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    for i in range(2):
        assert set(out[i].flatten().tolist()) <= set(x[i].flatten().tolist())


def test_accuracy_interval_known_value():
    lo, hi = accuracy_interval(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)


def test_on_epoch_sees_every_epoch_in_eval_mode_and_can_stop_training():
    x, y = _toy(128)
    seen = []

    def on_epoch(epoch, model):
        seen.append((epoch, model.training))
        if epoch == 2:
            raise StopIteration("pruned")

    model = build_model("small_cnn", 1, 4, [0.5], [0.3], width=4, seed=0)
    with pytest.raises(StopIteration, match="pruned"):
        train_model(model, x, y, TrainConfig(epochs=4, batch_size=32), "cpu", on_epoch=on_epoch)
    assert seen == [(1, False), (2, False)]
