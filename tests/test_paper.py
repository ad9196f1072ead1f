"""The published study's grid as specs (specs/paper-*.yaml), its methods in the registries, threshold
('percentile') selection, and the reduced CPU reproduction end to end (slow)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from attribution_cases import CASES

from roar import attribution, pipeline
from roar.attribution import ATTRIBUTIONS
from roar.datasets import dataset_available
from roar.protocols import PROTOCOLS
from roar.removal import pixels_removed, removal_mask
from roar.spec import TrialSpec
from roar.storage import Store
from sweep import rows
from sweep.grid import expand
from sweep.spec import load_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"
PAPER_DATASETS = ("cifar10", "svhn", "cub200")
PAPER_METHODS = {"saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "vargrad", "gradcam",
                 "sobel", "random"}
PAPER_FRACTIONS = {0.1, 0.3, 0.5, 0.7, 0.9}
PAPER_POSTPROCESS = {("identity", 0.0, 0), ("max_filter", 0.0, 3), ("gaussian", 1.0, 0)}
# The study's recipe, the same on every dataset; the CPU reproduction changes lr and augment (noted in
# its spec: the CIFAR augmentation costs Fashion-MNIST accuracy).
CPU_CHANGES = {"lr": 0.05, "augment": "none"}
PAPER_SETTINGS = {"target": "predicted", "sign": "abs", "reduction": "mean", "retrain_mode": "finetune",
                  "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step",
                  "augment": "flip_crop"}
FMNIST = dataset_available("fashion_mnist") is None


def trials(name: str, tmp_path) -> list[TrialSpec]:
    """The spec's trials, validated without the environment (no CIFAR files, GPUs or S3 needed)."""
    return expand(load_spec(str(SPECS / f"{name}.yaml"), store=str(tmp_path / "store"), check_environment=False))


def grid_cell(t: TrialSpec) -> tuple:
    return t.attribution, t.fraction, t.postprocess, t.sigma, t.filter_size, t.seed


def retrains(ts) -> list[TrialSpec]:
    return [t for t in ts if PROTOCOLS[t.protocol].retrains]


# --- the paper specs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", PAPER_DATASETS)
def test_paper_spec_is_exactly_the_studys_grid(dataset, tmp_path):
    ts = trials(f"paper-{dataset}", tmp_path)
    assert len(retrains(ts)) == 120 and len(ts) == 240
    assert Counter(t.protocol for t in ts) == {"roar": 120, "road_morf": 120}
    roar = [t for t in ts if t.protocol == "roar"]
    road = [t for t in ts if t.protocol == "road_morf"]
    # ROAD on the same grid points as ROAR: one ROAD row per ROAR row
    assert sorted(map(grid_cell, roar)) == sorted(map(grid_cell, road))
    assert len(set(map(grid_cell, roar))) == 120
    assert {t.attribution for t in ts} == PAPER_METHODS
    assert {t.fraction for t in ts} == PAPER_FRACTIONS
    assert {(t.postprocess, t.sigma, t.filter_size) for t in ts} == PAPER_POSTPROCESS
    assert {t.dataset for t in ts} == {dataset} and {t.seed for t in ts} == {0}
    assert {(k, getattr(t, k)) for t in ts for k in PAPER_SETTINGS} == set(PAPER_SETTINGS.items())
    assert {t.selection for t in ts} == {"percentile"}   # the study thresholds at a percentile
    assert {t.fill for t in roar} == {"mean"} and {t.fill for t in road} == {"road"}
    assert {t.model for t in ts} == {"resnet50" if dataset == "cub200" else "resnet18_small"}


@pytest.mark.parametrize("dataset", PAPER_DATASETS)
def test_extended_spec_is_a_superset_adding_our_axes(dataset, tmp_path):
    paper = trials(f"paper-{dataset}", tmp_path)
    extended = trials(f"paper-{dataset}-extended", tmp_path)
    # same trial ids: run into the same store, the extended sweep reuses the paper's 240 rows
    assert {t.trial_id for t in paper} <= {t.trial_id for t in extended}
    assert {t.selection for t in extended} == {"percentile", "topk"}
    assert "leakage" in {t.protocol for t in extended}
    assert len({t.seed for t in extended}) >= 2
    assert len({t.sigma for t in extended if t.postprocess == "gaussian"}) == 4
    # every (protocol, selection) pair covers the whole extended grid
    cells = Counter((t.protocol, t.selection) for t in extended)
    assert len(set(cells.values())) == 1 and len(cells) == 6


def test_cpu_spec_keeps_the_grid_and_recipe_per_seed(tmp_path):
    ts = trials("paper-fmnist-cpu", tmp_path)
    seeds = sorted({t.seed for t in ts})
    for seed in seeds:
        mine = [t for t in ts if t.seed == seed]
        assert Counter(t.protocol for t in mine) == {"roar": 120, "road_morf": 120}
        assert len(retrains(mine)) == 120   # ROAR trains; ROAD does not
    assert {t.attribution for t in ts} == PAPER_METHODS and {t.fraction for t in ts} == PAPER_FRACTIONS
    assert {(t.postprocess, t.sigma, t.filter_size) for t in ts} == PAPER_POSTPROCESS
    recipe = PAPER_SETTINGS | CPU_CHANGES
    assert {(k, getattr(t, k)) for t in ts for k in recipe} == set(recipe.items())
    assert {(t.dataset, t.model, t.selection) for t in ts} == {("fashion_mnist", "small_cnn", "topk")}


def test_reduced_cpu_spec_differs_only_in_scale():
    full, reduced = (yaml.safe_load((SPECS / f"{n}.yaml").read_text())
                     for n in ("paper-fmnist-cpu", "paper-fmnist-cpu-reduced"))
    scale = {"subset", "test_subset", "epochs"}
    assert {k: v for k, v in full["fixed"].items() if k not in scale} == \
           {k: v for k, v in reduced["fixed"].items() if k not in scale}
    assert all(reduced["fixed"][k] < full["fixed"][k] for k in scale)
    assert reduced["axes"]["attribution"] == full["axes"]["attribution"]
    assert set(reduced["axes"]["fraction"]) < set(full["axes"]["fraction"])
    assert (reduced["postprocess"], reduced["protocols"]) == (full["postprocess"], full["protocols"])


# --- the methods ---------------------------------------------------------------------------------------
def test_paper_methods_are_registered_and_in_the_invariant_table():
    assert PAPER_METHODS <= set(ATTRIBUTIONS)
    assert PAPER_METHODS <= {case["name"] for case in CASES}   # every parametrised invariant runs on them
    # the study's settings: IG 25 steps, SmoothGrad/VarGrad 15 samples of std 0.15 x the [0, 1] range
    assert (attribution.IG_STEPS, attribution.NOISE_SAMPLES, attribution.NOISE_STD) == (25, 15, 0.15)
    assert "std 0.15" in ATTRIBUTIONS["vargrad"].description


# --- percentile (threshold) selection ------------------------------------------------------------------
def test_percentile_removes_every_tied_pixel_topk_exactly_k():
    maps = torch.tensor([[[3.0, 1.0, 1.0], [1.0, 0.0, 0.0]]])   # 6 pixels, three tied at 1
    k = pixels_removed(0.5, 6)
    assert k == 3
    topk = removal_mask(maps, 0.5, selection="topk")
    percentile = removal_mask(maps, 0.5, selection="percentile")
    assert int(topk.sum()) == 3 and bool(topk[0, 0, 0])
    assert percentile.tolist() == [[[True, True, True], [True, False, False]]]   # 4 > k


def _center_removed_pixels(size: int, fraction: float) -> int:
    """Oracle for 'center' maps (largest at the centre, a function of the distance only): the threshold
    removes every pixel at least as close to the centre as the k-th closest one."""
    rows_, cols = np.meshgrid(np.arange(size) - (size - 1) / 2, np.arange(size) - (size - 1) / 2,
                              indexing="ij")
    d2 = np.sort((rows_ ** 2 + cols ** 2).ravel())
    k = pixels_removed(fraction, size * size)
    return int((d2 <= d2[k - 1]).sum())


def test_percentile_trial_row_records_more_than_the_fraction(tmp_path):
    pipeline.clear_caches()
    store = Store(str(tmp_path / "store"))
    fraction, size = 0.1, 16   # synthetic images are 16 x 16: k = 26, but the 26th ring is shared
    expected = _center_removed_pixels(size, fraction)
    assert expected > pixels_removed(fraction, size * size) == 26   # the map really ties at the threshold
    base = TrialSpec(dataset="synthetic", subset=128, test_subset=64, model="small_cnn", width=4, epochs=1,
                     batch_size=32, attribution="center", fraction=fraction, protocol="roar")
    out = {sel: pipeline.run_trial(base.replace(selection=sel), store) for sel in ("topk", "percentile")}
    assert [r["status"] for r in out.values()] == ["ok", "ok"], [r.get("error") for r in out.values()]
    assert out["percentile"]["selection"] == "percentile"
    assert out["topk"]["removed_fraction_actual"] == pytest.approx(26 / 256, abs=1e-7)
    assert out["percentile"]["removed_fraction_actual"] == pytest.approx(expected / 256, abs=1e-7)
    assert out["percentile"]["removed_fraction_actual"] > fraction


# --- the CPU reproduction, reduced ---------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not FMNIST, reason="needs the Fashion-MNIST files (dataset-fashion-mnist package)")
def test_reduced_cpu_spec_runs_end_to_end(sweep_process, tmp_path):
    spec_path = SPECS / "paper-fmnist-cpu-reduced.yaml"
    store = tmp_path / "store"
    proc = sweep_process(["run", str(spec_path), "--store", str(store)])
    assert proc.wait(timeout=1500) == 0, proc.output()[-3000:]
    spec = load_spec(str(spec_path), store=str(store), check_environment=False)
    got = rows.read_all(Store(str(store))).to_pylist()
    assert {r["trial_id"] for r in got} == {t.trial_id for t in expand(spec)}
    assert all(r["status"] == "ok" for r in got), [r["error"] for r in got if r["status"] != "ok"][:3]
    assert Counter(r["protocol"] for r in got) == {"roar": 48, "road_morf": 48}
    # top-k: exactly round(fraction x 784) pixels of every image
    assert {round(r["removed_fraction_actual"] * 784, 3) for r in got} == {235.0, 549.0}


def test_leaky_cpu_spec_differs_only_in_target_and_fraction():
    full, leaky = (yaml.safe_load((SPECS / f"{n}.yaml").read_text())
                   for n in ("paper-fmnist-cpu", "paper-fmnist-cpu-leaky"))
    assert leaky["fixed"] == full["fixed"] | {"target": "label_leaky"}
    assert leaky["axes"] == full["axes"] | {"fraction": [0.5]}
    assert (leaky["postprocess"], leaky["protocols"]) == (full["postprocess"], full["protocols"])
    assert leaky["store"] != full["store"]   # the leak study never mixes into the findings' store
