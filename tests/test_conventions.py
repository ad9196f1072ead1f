"""Each convention where we differ from the published code: both values, the paper's as an option."""
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch
import yaml

from roar.attribution import compute_maps
from roar.conventions import CONVENTIONS, attribution_noise_std, blur_params, convention, road_noise
from roar.fills import apply_fill
from roar.models import build_model
from roar.postprocess import postprocess_maps
from roar.road import noisy_linear_impute
from roar.spec import TrialSpec
from roar.train import TrainConfig, flip_crop

ROOT = Path(__file__).resolve().parent.parent
PAPER_SPECS = sorted(p for p in (ROOT / "specs").glob("paper-*.yaml"))


def _spec(**options):
    return TrialSpec(options=tuple(sorted(options.items())))


def test_ours_is_the_default_and_bad_choices_are_named():
    for name, c in CONVENTIONS.items():
        assert convention(_spec(), name) == c.ours
        assert convention(_spec(**{name: "paper"}), name) == c.paper
    with pytest.raises(ValueError, match="road_noise='published'.*ours.*paper"):
        convention(_spec(road_noise="published"), "road_noise")


@pytest.mark.parametrize("choice, mode, truncate", [("ours", "mirror", 3.0), ("paper", "reflect", 4.0)])
def test_gaussian_edges_match_scipy(choice, mode, truncate):
    maps = torch.rand(3, 11, 9, dtype=torch.float64)
    out = postprocess_maps(maps, "gaussian", sigma=1.3, **blur_params(_spec(blur_edges=choice)))
    ref = np.stack([scipy.ndimage.gaussian_filter(m, 1.3, mode=mode, truncate=truncate) for m in maps.numpy()])
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)


def test_road_noise_paper_is_255_times_smaller_and_uniform():
    x = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(4, 12, 12, generator=torch.Generator().manual_seed(1)) < 0.4
    clean = noisy_linear_impute(x, mask, noise_std=0.0)
    paper = apply_fill(x, mask, "road", (0.5,), seed=3, **road_noise(_spec(road_noise="paper")))
    ours = apply_fill(x, mask, "road", (0.5,), seed=3, **road_noise(_spec()))
    d_paper = (paper - clean)[mask[:, None]]
    d_ours = (ours - clean)[mask[:, None]]
    assert d_paper.min() >= 0 and d_paper.max() < 0.01 / 255 + 1e-9      # uniform on [0, 0.01/255)
    assert abs(float(d_ours.std()) - 0.01) < 0.002 and d_ours.min() < 0     # Gaussian, std 0.01
    assert torch.equal(paper[~mask[:, None].expand_as(x)], x[~mask[:, None].expand_as(x)])


def test_smoothgrad_noise_paper_scales_by_the_channel_std():
    data_std = (0.3,)
    assert attribution_noise_std(_spec(), data_std) == 0.15
    assert attribution_noise_std(_spec(smoothgrad_noise="paper"), data_std) == pytest.approx((0.045,))
    model = build_model("small_cnn", 1, 3, (0.5,), data_std, width=4, seed=0)
    x = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 0])
    per_channel = compute_maps(model, x, target, "smoothgrad", noise_std=(0.045,))
    scalar = compute_maps(model, x, target, "smoothgrad", noise_std=0.045)
    default = compute_maps(model, x, target, "smoothgrad")
    np.testing.assert_array_equal(per_channel, scalar)
    assert not np.allclose(scalar, default)
    # methods without input noise ignore it
    np.testing.assert_array_equal(compute_maps(model, x, target, "saliency", noise_std=0.5),
                                  compute_maps(model, x, target, "saliency"))


def test_crop_pad_reaches_the_trainer_and_the_cache_keys():
    assert TrainConfig.from_spec(_spec()).crop_pad == 2
    assert TrainConfig.from_spec(_spec(crop_pad="paper")).crop_pad == 4
    x = torch.arange(144.0).reshape(1, 1, 12, 12).repeat(400, 1, 1, 1)
    for pad in (2, 4):
        out = flip_crop(x, torch.Generator().manual_seed(0), pad=pad)
        # the top-left pixel moves by at most `pad` rows: its value tells the row offset taken
        rows = torch.unique((out[:, 0, 0, 0] // 12 - 0).long())
        assert out.shape == x.shape and rows.max().item() == pad
    # a convention joins the key of the first artifact it changes, and only when set
    assert _spec(crop_pad="paper").base_model_key() != _spec().base_model_key()
    assert _spec(smoothgrad_noise="paper").base_model_key() == _spec().base_model_key()
    assert _spec(smoothgrad_noise="paper").maps_key() != _spec().maps_key()
    assert _spec(road_noise="paper").maps_key() == _spec().maps_key()
    assert _spec(road_noise="paper").trial_id != _spec().trial_id


@pytest.mark.parametrize("path", PAPER_SPECS, ids=lambda p: p.name)
def test_paper_specs_use_every_paper_convention(path):
    options = (yaml.safe_load(path.read_text())["fixed"].get("options") or {})
    assert {name: options.get(name) for name in CONVENTIONS} == {name: "paper" for name in CONVENTIONS}
