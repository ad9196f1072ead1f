"""End to end through roar.pipeline (no Ray): stage A, stage B, protocols, one row per trial."""
import os

import pytest
import torch

from analysis.schema import rows_to_table
from roar import pipeline
from roar.attribution import compute_maps
from roar.datasets import dataset_available
from roar.spec import TrialSpec
from roar.storage import Store

FMNIST = dataset_available("fashion_mnist") is None


@pytest.fixture
def store(tmp_path):
    pipeline.clear_caches()
    return Store(str(tmp_path / "store"))


def _spec(**kw):
    base = dict(dataset="synthetic", subset=600, test_subset=300, model="small_cnn", width=8, epochs=2,
                batch_size=32, lr=0.1, attribution="saliency", fraction=0.5)
    base.update(kw)
    return TrialSpec(**base)


@pytest.mark.skipif(not FMNIST, reason="needs the dataset-fashion-mnist Debian package")
def test_fashion_mnist_roar_two_fractions(store):
    rows = []
    for attribution in ("saliency", "random"):
        for fraction in (0.1, 0.9):
            spec = _spec(dataset="fashion_mnist", subset=1000, test_subset=500, epochs=2,
                         attribution=attribution, fraction=fraction)
            rows.append(pipeline.run_trial(spec, store, "cpu", sweep_name="e2e"))
    assert [r["status"] for r in rows] == ["ok"] * 4, [r.get("error") for r in rows]
    by = {(r["attribution"], r["fraction"]): r for r in rows}
    for (attribution, fraction), r in by.items():
        # exactly k = round(p * 784) pixels removed in every image
        assert r["removed_fraction_actual"] == pytest.approx(round(fraction * 784) / 784, abs=1e-9)
        assert r["n_test"] == 500
        assert r["accuracy_drop"] == pytest.approx(r["base_accuracy"] - r["accuracy"])
        assert r["ci_low"] <= r["accuracy"] <= r["ci_high"]
    # one base model shared by all four trials, trained well above chance (10 classes)
    assert len({r["base_accuracy"] for r in rows}) == 1 and rows[0]["base_accuracy"] > 0.6
    # removing 90% of pixels at random hurts a retrained model more than removing 10%
    assert by[("random", 0.9)]["accuracy"] < by[("random", 0.1)]["accuracy"]
    rows_to_table(rows)  # every column the pipeline writes is in the schema


def test_stage_artifacts_are_cached_and_reused(store):
    spec = _spec()
    key = pipeline.ensure_base_model(spec, store)
    maps_key = pipeline.ensure_maps(spec, store)
    stamp = {k: os.path.getmtime(store.path(k)) for k in store.list("artifacts")}
    pipeline.clear_caches()
    row = pipeline.run_trial(spec.replace(sigma=1.0, postprocess="gaussian", fraction=0.3), store)
    assert row["status"] == "ok", row.get("error")
    assert {k: os.path.getmtime(store.path(k)) for k in store.list("artifacts")} == stamp
    assert key == spec.replace(attribution="random").base_model_key()
    assert maps_key != spec.replace(attribution="random").maps_key()


def test_failed_trial_gives_a_failed_row(store):
    row = pipeline.run_trial(_spec(options=(("fail_for_test", "raise"),)), store)
    assert row["status"] == "failed"
    assert "fail_for_test" in row["error"]
    rows_to_table([row])


def test_finetune_and_kar_run(store):
    for protocol, mode in (("kar", "scratch"), ("roar", "finetune")):
        row = pipeline.run_trial(_spec(protocol=protocol, retrain_mode=mode), store)
        assert row["status"] == "ok", row.get("error")
        assert 0.0 <= row["accuracy"] <= 1.0


def test_synthetic_gradient_maps_find_the_true_pixels(store):
    spec = _spec(subset=1500, epochs=3)
    model, meta = pipeline.load_base_model(spec, store)
    assert meta["base_accuracy"] > 0.9
    data = pipeline.load_data(spec)
    x = data.test_x.float() / 255
    maps = torch.from_numpy(compute_maps(model, x, data.test_y, "saliency"))
    true = data.test_true
    k = true.flatten(1).sum(1)
    order = maps.flatten(1).argsort(1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
    top = ranks < k[:, None]
    precision = ((top & true.flatten(1)).sum(1).float() / k.float()).mean().item()
    chance = (k.float() / true[0].numel()).mean().item()
    assert precision > 2 * chance, (precision, chance)
