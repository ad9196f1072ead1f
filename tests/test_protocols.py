"""Protocols beyond ROAR/KAR (issue 6): ROAD, MIF/LIF fidelity, leakage, sanity, robustness, ground
truth; the map-comparison kernels they share; the removal-based attribution methods and the oracle.

One small model trained once on the synthetic dataset (4 classes, 16x16, the label is the quadrant
of a bright patch; data.test_true marks the patch) serves every protocol test; maps are handmade
(the true pixels, their complement, uniform noise) or computed with the attribution registry.
"""
import dataclasses
import json

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from analysis.schema import rows_to_table
from roar import attribution, pipeline
from roar.attribution import compute_maps
from roar.attribution.perturbation import (ORACLE_ATTRIBUTIONS, PERTURBATION_ATTRIBUTIONS, patch_feature_mask,
                                           patch_side)
from roar.datasets import load_dataset
from roar.fills import apply_fill
from roar.models import build_model
from roar.protocols import PROTOCOLS, TrialContext
from roar.protocols.curves import curve_fractions, trapezoid_auc
from roar.protocols.groundtruth import topk_true_share
from roar.protocols.leakage import chance_accuracy
from roar.protocols.map_change import average_ranks, l2_distance, probe_subset, rank_correlation, ssim
from roar.protocols.robustness import perturb_input, perturb_weights
from roar.protocols.sanity import cascading_randomisations, parameterised_layers
from roar.removal import removal_mask
from roar.spec import TrialSpec
from roar.storage import Store
from roar.train import TrainConfig, evaluate, train_model

pytestmark = pytest.mark.usefixtures("single_thread")

N_TRAIN, N_TEST = 1000, 400




@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = load_dataset("synthetic", subset=N_TRAIN, test_subset=N_TEST, seed=0)
    spec = _spec()
    model = build_model("small_cnn", 1, data.num_classes, data.mean, data.std, width=8, seed=0)
    train_model(model, data.train_x.float() / 255, data.train_y, TrainConfig.from_spec(spec), "cpu", seed=0)
    accuracy, _ = evaluate(model, data.test_x.float() / 255, data.test_y)
    assert accuracy > 0.95  # the synthetic task is easy; every planted effect below relies on it
    return data, model.eval(), accuracy


def _spec(**kw):
    options = kw.pop("options", {})
    base = dict(dataset="synthetic", subset=N_TRAIN, test_subset=N_TEST, model="small_cnn", width=8, epochs=2,
                batch_size=64, lr=0.05, fraction=0.0625, attribution="saliency")
    base.update(kw)
    return TrialSpec(**base, options=tuple(sorted(options.items())))


def _context(trained, maps, **kw):
    data, model, accuracy = trained
    return TrialContext(spec=_spec(**kw), data=data, device="cpu", base_model=model, base_accuracy=accuracy,
                        raw_maps=maps)


def _true_maps(data):
    return {"train": data.train_true.float().numpy(), "test": data.test_true.float().numpy()}


def _random_maps(data, seed=0):
    rng = np.random.default_rng(seed)
    return {split: rng.random((len(getattr(data, f"{split}_y")), 16, 16), dtype=np.float32)
            for split in ("train", "test")}


def _run(trained, protocol, maps, **kw):
    return PROTOCOLS[protocol].run(_context(trained, maps, protocol=protocol, **kw))


# --- MIF / LIF ------------------------------------------------------------------------------------
def test_perfect_map_fidelity_far_above_random(trained):
    data, _, base_accuracy = trained
    perfect_mif, perfect_lif = (_run(trained, p, _true_maps(data)) for p in ("mif", "lif"))
    random_mif = _run(trained, "mif", _random_maps(data))
    # both rows of a trial carry the same fidelity; each row's auc is its own order's
    assert perfect_mif["fidelity"] == perfect_lif["fidelity"]
    assert perfect_mif["fidelity"] == pytest.approx(perfect_lif["auc"] - perfect_mif["auc"], abs=1e-12)
    # removing the 16 true pixels (6.25%) destroys the evidence; removing the others first keeps it
    assert perfect_mif["fidelity"] > 0.5
    assert abs(random_mif["fidelity"]) < 0.1
    assert perfect_mif["fidelity"] > random_mif["fidelity"] + 0.5
    for row in (perfect_mif, perfect_lif, random_mif):
        curve = json.loads(row["curve_json"])
        assert [f for f, _ in curve] == pytest.approx([0.1 * i for i in range(11)])
        assert curve[0][1] == pytest.approx(base_accuracy, abs=1e-9)   # nothing removed: the base model
        assert row["auc"] == pytest.approx(trapezoid_auc(*zip(*curve)), abs=1e-12)
        assert row["n_test"] == N_TEST
    # everything removed: the same constant image in both orders
    detail = json.loads(perfect_mif["detail_json"])
    assert detail["curve_mif"][-1][1] == detail["curve_lif"][-1][1]


def test_curve_accuracy_at_fraction_is_the_shared_mask(trained):
    """Off the grid, accuracy comes from ctx.removed_images: the very images ROAR tests on."""
    data, model, _ = trained
    maps = _random_maps(data)
    ctx = _context(trained, maps, protocol="mif", fraction=0.3, fill="zero",
                   options={"curve_fractions": [0.0, 0.5, 1.0]})
    row = PROTOCOLS["mif"].run(ctx)
    mask = removal_mask(torch.from_numpy(maps["test"]), 0.3, "morf", seed=0, index=ctx.index("test"))
    expected, _ = evaluate(model, apply_fill(ctx.images("test"), mask, "zero", data.mean), data.test_y)
    assert row["accuracy"] == expected
    assert [f for f, _ in json.loads(row["curve_json"])] == [0.0, 0.5, 1.0]


def test_trapezoid_auc_and_grid_validation():
    assert trapezoid_auc([0.0, 0.5, 1.0], [1.0, 0.5, 0.0]) == 0.5
    assert trapezoid_auc([0.0, 0.2, 1.0], [1.0, 1.0, 0.0]) == pytest.approx(0.2 + 0.4)
    def grid(value):
        return curve_fractions(_spec(options={"curve_fractions": value}))
    assert grid([1, 0.5, 0, 0.5]) == [0.0, 0.5, 1.0]
    assert grid("0, 0.5,1") == [0.0, 0.5, 1.0]      # sweep specs allow scalar options only
    assert curve_fractions(_spec()) == pytest.approx([0.1 * i for i in range(11)])
    for bad in ([0.5], [0.0, 1.5], "0,x", [0, True], []):
        with pytest.raises(ValueError, match="curve_fractions"):
            grid(bad)


# --- ROAD -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol,order", [("road_morf", "morf"), ("road_lerf", "lerf")])
def test_road_evaluates_the_base_model_on_the_whole_imputed_test_split(trained, protocol, order):
    data, model, _ = trained
    maps = _random_maps(data)
    row = _run(trained, protocol, maps, fraction=0.3, fill="zero")  # spec.fill is not ROAD's fill
    assert row["n_test"] == len(data.test_y) == N_TEST
    mask = removal_mask(torch.from_numpy(maps["test"]), 0.3, order, seed=0,
                        index=_context(trained, maps).index("test"))
    filled = apply_fill(data.test_x.float() / 255, mask, "road", data.mean, seed=0)
    expected_accuracy, expected_loss = evaluate(model, filled, data.test_y)
    assert (row["accuracy"], row["loss"]) == (expected_accuracy, expected_loss)


def test_road_morf_perfect_map_hurts_more_than_random(trained):
    data = trained[0]
    perfect = _run(trained, "road_morf", _true_maps(data))
    random = _run(trained, "road_morf", _random_maps(data))
    assert perfect["accuracy"] < 0.5 < 0.9 < random["accuracy"]


# --- ground truth ---------------------------------------------------------------------------------
def test_groundtruth_perfect_map_has_precision_one_and_its_complement_zero(trained):
    data = trained[0]
    perfect = _run(trained, "groundtruth", _true_maps(data))
    assert perfect["groundtruth_precision"] == 1.0 and perfect["accuracy"] is None
    assert perfect["n_test"] == N_TEST
    inverted = {k: 1.0 - v for k, v in _true_maps(data).items()}
    assert _run(trained, "groundtruth", inverted)["groundtruth_precision"] == 0.0
    detail = json.loads(perfect["detail_json"])
    assert detail["chance"] == 16 / 256 and detail["mask_precision"] == 1.0   # fraction 0.0625 = 16 px


def test_topk_true_share_matches_a_looped_reference():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(6, 5, 7, generator=g)               # continuous: no ties
    true = torch.rand(6, 5, 7, generator=g) < 0.3
    true[5] = False                                        # no true pixel: NaN
    fast = topk_true_share(maps, true)
    for i in range(5):
        k = int(true[i].sum())
        top = maps[i].flatten().argsort(descending=True)[:k]
        assert fast[i].item() == pytest.approx(true[i].flatten()[top].double().mean().item(), abs=1e-12)
    assert torch.isnan(fast[5])


def test_groundtruth_refuses_a_dataset_without_true_pixels(trained):
    data = trained[0]
    ctx = _context(trained, _true_maps(data), protocol="groundtruth")
    ctx.data = dataclasses.replace(data, train_true=None, test_true=None)
    with pytest.raises(ValueError, match="groundtruth.*synthetic"):
        PROTOCOLS["groundtruth"].run(ctx)


# --- leakage --------------------------------------------------------------------------------------
LEAK = {"leakage_width": 8, "leakage_epochs": 2}


def test_perfect_map_mask_leaks_the_label_random_mask_does_not(trained):
    data = trained[0]
    perfect = _run(trained, "leakage", _true_maps(data), options=LEAK)
    random = _run(trained, "leakage", _random_maps(data), options=LEAK)
    chance = chance_accuracy(data.test_y)
    assert perfect["chance_accuracy"] == random["chance_accuracy"] == chance
    assert chance == torch.bincount(data.test_y).max().item() / N_TEST
    # the removed 16 pixels are exactly the class patch: the mask's position is the label
    assert perfect["leakage_accuracy"] == perfect["accuracy"] >= 0.97
    # random masks carry no label information: at chance (4 classes, 400 test images)
    assert abs(random["leakage_accuracy"] - chance) < 0.07
    assert perfect["accuracy_drop"] is None


# --- sanity ---------------------------------------------------------------------------------------
NO_MAPS = {"train": np.zeros((N_TRAIN, 16, 16), np.float32), "test": np.zeros((N_TEST, 16, 16), np.float32)}
QUICK_SANITY = {"sanity_images": 48, "sanity_roar": False}


@pytest.mark.parametrize("method", ["saliency", "guided_backprop"])
def test_randomising_the_model_decorrelates_gradient_maps_with_depth(trained, method):
    row = _run(trained, "sanity", NO_MAPS, attribution=method, options=QUICK_SANITY)
    steps = json.loads(row["detail_json"])["steps"]
    layers = parameterised_layers(trained[1])
    assert [s["layer"] for s in steps] == [name for name, _ in reversed(layers)]
    corr = [s["rank_corr"] for s in steps]
    half = len(corr) // 2
    assert corr[-1] < corr[0] - 0.05
    assert np.mean(corr[-half:]) < np.mean(corr[:half])
    assert row["sanity_rank_corr"] == corr[-1]
    assert row["sanity_passed"] is (corr[-1] < 0.5)
    if method == "saliency":  # (guided backprop is known to stay close to an edge map: borderline)
        assert row["sanity_passed"] is True


def test_model_free_sobel_maps_never_change_and_fail_the_check(trained):
    row = _run(trained, "sanity", NO_MAPS, attribution="sobel", options=QUICK_SANITY)
    steps = json.loads(row["detail_json"])["steps"]
    assert {s["rank_corr"] for s in steps} == {1.0} and {s["ssim"] for s in steps} == {1.0}
    assert row["sanity_passed"] is False and "FAILED" in json.loads(row["detail_json"])["verdict"]


def test_randomised_roar_of_a_model_free_method_equals_its_roar(trained):
    """Sobel maps of the randomised model are the trial's maps, so its ROAR score is the trial's."""
    data, model, _ = trained
    maps = {split: compute_maps(model, getattr(data, f"{split}_x").float() / 255, getattr(data, f"{split}_y"),
                                "sobel", index=_context(trained, NO_MAPS).index(split))
            for split in ("train", "test")}
    kw = dict(attribution="sobel", fraction=0.3, options={"sanity_images": 16})
    sanity = _run(trained, "sanity", maps, **kw)
    roar = PROTOCOLS["roar"].run(_context(trained, maps, protocol="roar", **kw))
    assert sanity["accuracy"] == roar["accuracy"] and sanity["loss"] == roar["loss"]


def test_cascading_randomisation_replaces_layers_from_the_top_and_spares_the_base(trained):
    model = trained[1]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [name for name, _ in parameterised_layers(model)]
    for step, (name, _, randomised) in enumerate(cascading_randomisations(model, seed=0)):
        assert name == names[-1 - step]
        params = dict(randomised.named_parameters())
        for i, layer in enumerate(names):
            same = all(torch.equal(params[f"{layer}.{p}"], model.get_parameter(f"{layer}.{p}"))
                       for p, _ in model.get_submodule(layer).named_parameters(recurse=False))
            assert same == (i < len(names) - 1 - step), (step, layer)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- robustness -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["saliency", "smoothgrad", "sobel"])
def test_zero_perturbation_gives_exactly_zero_change(trained, method):
    row = _run(trained, "robustness", NO_MAPS, attribution=method,
               options={"robustness_images": 24, "input_noise": [0, 0.1], "weight_noise": "0, 0.05"})
    detail = json.loads(row["detail_json"])
    for kind in ("input_noise", "weight_noise"):
        zero = detail[kind][0]
        assert (zero["size"], zero["l2"], zero["rank_corr"]) == (0.0, 0.0, 1.0)
    assert detail["input_noise"][1]["l2"] > 0
    # a model-free map does not move when the weights do; a gradient map does
    assert (detail["weight_noise"][1]["l2"] == 0.0) == (method == "sobel")


def test_input_noise_has_the_requested_relative_norm_and_ignores_the_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 8, 8, generator=g)
    index = torch.tensor([3, 9, 27, 81, 243])
    noisy = perturb_input(x, 0.05, seed=1, index=index)
    ratio = (noisy - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert torch.allclose(ratio, torch.full((5,), 0.05), rtol=1e-5)
    assert torch.equal(perturb_input(x[2:4], 0.05, seed=1, index=index[2:4]), noisy[2:4])
    assert torch.equal(perturb_input(x, 0.0, seed=1, index=index), x)


def test_weight_noise_is_relative_per_tensor_and_zero_is_identity(trained):
    model = trained[1]
    assert all(torch.equal(a, b) for a, b in zip(perturb_weights(model, 0.0, 1).parameters(), model.parameters()))
    noisy = perturb_weights(model, 0.1, 1)
    for a, b in zip(noisy.parameters(), model.parameters()):
        if b.numel() > 100:  # enough elements for the RMS to be close to its expectation
            ratio = ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt()).item()
            assert ratio == pytest.approx(0.1, rel=0.2)


# --- map comparisons ------------------------------------------------------------------------------
def test_average_ranks_and_rank_correlation_match_scipy_with_ties():
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 5, (4, 30), generator=g).float()          # many ties
    b = a + torch.randint(0, 3, (4, 30), generator=g).float()
    ranks = average_ranks(a)
    for i in range(4):
        assert np.array_equal(ranks[i].numpy(), scipy.stats.rankdata(a[i].numpy()) - 1)
    rho = rank_correlation(a.view(4, 5, 6), b.view(4, 5, 6))
    for i in range(4):
        assert rho[i].item() == pytest.approx(scipy.stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)
    maps = torch.rand(3, 6, 6, generator=g)
    assert torch.equal(rank_correlation(maps, maps), torch.ones(3, dtype=torch.float64))
    assert torch.equal(rank_correlation(maps, -maps), -torch.ones(3, dtype=torch.float64))
    const = torch.zeros(3, 6, 6)
    assert rank_correlation(const, const).tolist() == [1.0] * 3
    assert rank_correlation(const, maps).tolist() == [0.0] * 3


def _ssim_reference(a, b, window, sigma):
    """One image, one window position at a time (numpy): the definition, for checking the batched one."""
    coords = np.arange(window) - (window - 1) / 2
    g = np.exp(-coords ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    out = []
    for x, y in zip(a, b):
        x = (x - x.min()) / (x.max() - x.min())
        y = (y - y.min()) / (y.max() - y.min())
        values = []
        for i in range(x.shape[0] - window + 1):
            for j in range(x.shape[1] - window + 1):
                px, py = x[i:i + window, j:j + window], y[i:i + window, j:j + window]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * px * px).sum() - mx ** 2, (w * py * py).sum() - my ** 2
                cxy = (w * px * py).sum() - mx * my
                c1, c2 = 0.01 ** 2, 0.03 ** 2
                values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
        out.append(np.mean(values))
    return np.array(out)


def test_ssim_matches_the_looped_definition_and_is_one_for_identical_maps():
    g = torch.Generator().manual_seed(4)
    a = torch.rand(3, 12, 10, generator=g)
    b = a + 0.3 * torch.rand(3, 12, 10, generator=g)
    fast = ssim(a, b, window=7, sigma=1.5).numpy()
    assert np.allclose(fast, _ssim_reference(a.double().numpy(), b.double().numpy(), 7, 1.5), atol=1e-10)
    assert torch.equal(ssim(a, a.clone()), torch.ones(3, dtype=torch.float64))
    # the window shrinks to fit: 8x8 maps get a 7x7 window instead of failing
    assert ssim(a[:, :8, :8], b[:, :8, :8]).shape == (3,)
    # invariant to a positive affine change of units (maps are min-max rescaled)
    assert torch.allclose(ssim(a, b), ssim(3 * a + 1, b), atol=1e-12)


def test_l2_distance_of_unit_norm_maps():
    a = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])
    b = torch.tensor([[[6.0, 8.0]], [[0.0, 1.0]]])
    assert l2_distance(a, b).tolist() == [0.0, pytest.approx(2 ** 0.5)]


def test_probe_subset_is_evenly_spread_and_options_are_validated(trained):
    assert probe_subset(10, 4).tolist() == [0, 3, 6, 9]
    assert probe_subset(5, 256).tolist() == [0, 1, 2, 3, 4]
    for protocol, options, message in [("sanity", {"sanity_images": 1}, "sanity_images=1"),
                                       ("sanity", {"sanity_threshold": 2}, "sanity_threshold=2"),
                                       ("robustness", {"input_noise": "0,-1"}, "input_noise='0,-1'"),
                                       ("leakage", {"leakage_epochs": 0}, "leakage_epochs=0")]:
        with pytest.raises(ValueError, match=message):
            _run(trained, protocol, NO_MAPS, options=options)


# --- removal-based attribution methods and the oracle ---------------------------------------------
class _Linear(nn.Module):
    """f(x)_k = sum(W_k * x): additive over pixels, so every patch's Shapley value is its own sum."""

    def __init__(self, c=2, h=16, w=16, k=3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, c, h, w, generator=torch.Generator().manual_seed(5)))

    def forward(self, x):
        return torch.einsum("nchw,kchw->nk", x, self.weight)


def test_patch_feature_mask():
    assert patch_side(16, 16) == 2 and patch_side(28, 28) == 4
    mask = patch_feature_mask(16, 16)
    assert mask.shape == (1, 1, 16, 16) and mask.max().item() == 63
    assert mask[0, 0, :2, :2].unique().tolist() == [0] and mask[0, 0, 2, 15].item() == 15
    assert torch.equal(torch.bincount(mask.flatten()), torch.full((64,), 4))


# occlusion slides overlapping windows (stride half the side), so its values are not patch sums
@pytest.mark.parametrize("method", sorted(set(PERTURBATION_ATTRIBUTIONS) - {"occlusion"}))
def test_perturbation_methods_give_patch_sums_on_an_additive_model(method):
    model = _Linear()
    g = torch.Generator().manual_seed(6)
    x = torch.rand(2, 2, 16, 16, generator=g)
    target = torch.tensor([0, 2])
    attr = PERTURBATION_ATTRIBUTIONS[method].fn(model, x, target, torch.arange(2), 0).detach()
    contribution = (model.weight[target].detach() * x).sum(1)                       # (2, 16, 16)
    patch_sum = torch.nn.functional.avg_pool2d(contribution[:, None], 2)[:, 0] * 4  # per 2x2 patch
    expected = patch_sum.repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert attr.shape == x.shape
    # ablation and permutation sampling are exact on an additive model (up to float32 sums); KernelSHAP
    # is a least-squares fit over 200 sampled coalitions, exact only up to the fit's conditioning
    tolerance = 2e-2 if method == "kernel_shap" else 1e-4
    for c in range(2):  # the patch spans all channels: every channel gets the patch's value
        assert torch.allclose(attr[:, c], expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("method", sorted(PERTURBATION_ATTRIBUTIONS))
def test_perturbation_methods_do_not_depend_on_the_batch(trained, method):
    data, model, _ = trained
    x = data.test_x[:3].float() / 255
    target, index = data.test_y[:3], torch.arange(3)
    fn = PERTURBATION_ATTRIBUTIONS[method].fn
    together = fn(model, x, target, index, 7)
    alone = fn(model, x[2:], target[2:], index[2:], 7)
    # equal up to float noise of batched convolutions; other random draws would differ by ~0.1
    assert torch.allclose(together[2:], alone, rtol=1e-4, atol=1e-4)
    assert torch.equal(fn(model, x, target, index, 7), together)          # same seed, same map


def test_true_pixels_oracle_is_the_datasets_true_mask(trained, monkeypatch):
    data = trained[0]
    x = data.test_x.float() / 255
    oracle = ORACLE_ATTRIBUTIONS["true_pixels"].fn(None, x, data.test_y, torch.arange(N_TEST), 0)
    assert torch.equal(oracle.bool(), data.test_true)
    monkeypatch.setitem(attribution.ATTRIBUTIONS, "true_pixels", ORACLE_ATTRIBUTIONS["true_pixels"])
    maps = compute_maps(trained[1], x, data.test_y, "true_pixels")
    assert np.array_equal(maps.astype(bool), data.test_true.numpy())


# --- through the pipeline: every new protocol writes a schema-valid row ----------------------------
def test_every_new_protocol_runs_through_the_pipeline(tmp_path, monkeypatch):
    monkeypatch.setitem(attribution.ATTRIBUTIONS, "true_pixels", ORACLE_ATTRIBUTIONS["true_pixels"])
    pipeline.clear_caches()
    store = Store(str(tmp_path / "store"))
    # scalar option values only, as a sweep spec gives them
    options = {"sanity_images": 16, "robustness_images": 16, "input_noise": "0,0.05", "weight_noise": "0,0.05",
               "curve_fractions": "0,0.5,1", "leakage_width": 4, "leakage_epochs": 1}
    rows = []
    for protocol in ("road_morf", "road_lerf", "mif", "lif", "leakage", "sanity", "robustness", "groundtruth"):
        spec = _spec(subset=300, test_subset=100, epochs=1, protocol=protocol, attribution="true_pixels",
                     options=options)
        rows.append(pipeline.run_trial(spec, store, "cpu", sweep_name="protocols"))
    assert [r["status"] for r in rows] == ["ok"] * len(rows), [r.get("error") for r in rows]
    by = {r["protocol"]: r for r in rows}
    assert by["road_morf"]["n_test"] == 100
    assert by["groundtruth"]["groundtruth_precision"] == 1.0 and by["groundtruth"]["accuracy"] is None
    assert by["mif"]["fidelity"] == by["lif"]["fidelity"]
    assert by["sanity"]["sanity_passed"] is False   # the oracle ignores the model
    rows_to_table(rows)
