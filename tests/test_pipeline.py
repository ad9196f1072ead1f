"""End to end through roar.pipeline (no Ray): stage A, stage B, protocols, one row per trial."""
import os

import numpy as np
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
    rows = {}
    for protocol, mode in (("kar", "scratch"), ("roar", "finetune")):
        row = pipeline.run_trial(_spec(protocol=protocol, retrain_mode=mode), store)
        assert row["status"] == "ok", row.get("error")
        rows[protocol] = row
        # accuracy is a count over the whole test split, with its interval and the drop derived from it
        assert row["n_test"] == 300
        assert row["accuracy"] * 300 == pytest.approx(round(row["accuracy"] * 300), abs=1e-4)   # float32 accuracy
        assert row["ci_low"] - 1e-12 <= row["accuracy"] <= row["ci_high"] + 1e-12   # Wilson bounds round
        assert row["accuracy_drop"] == pytest.approx(row["base_accuracy"] - row["accuracy"])
        assert row["removed_fraction_actual"] == pytest.approx(round(0.5 * 256) / 256, abs=1e-9)   # 16x16
        assert (row["protocol"], row["retrain_mode"]) == (protocol, mode)
    assert rows["kar"]["base_accuracy"] == rows["roar"]["base_accuracy"]   # one base model


def _context(store, **kw):
    from roar.protocols import TrialContext

    spec = _spec(**kw)
    model, meta = pipeline.load_base_model(spec, store)
    data = pipeline.load_data(spec)
    rng = np.random.default_rng(0)   # untied maps: the bottom k of each map is one exact set
    maps = {s: rng.random((len(getattr(data, f"{s}_y")), 16, 16), dtype=np.float32) for s in ("train", "test")}
    return TrialContext(spec=spec, data=data, device="cpu", base_model=model, base_accuracy=meta["base_accuracy"],
                        raw_maps=maps)


@pytest.mark.parametrize("mode", ["finetune", "scratch"])
def test_finetune_starts_from_the_base_weights(store, monkeypatch, mode):
    from roar.protocols import PROTOCOLS, context

    ctx = _context(store, protocol="roar", retrain_mode=mode, epochs=1)
    base = {k: v.clone() for k, v in ctx.base_model.state_dict().items()}
    started = []
    train = context.train_model

    def spy(model, *args, **kw):
        started.append({k: v.clone() for k, v in model.state_dict().items()})
        return train(model, *args, **kw)

    monkeypatch.setattr(context, "train_model", spy)
    PROTOCOLS["roar"].run(ctx)
    (initial,) = started
    same = all(torch.equal(initial[k], base[k]) for k in base)
    assert same == (mode == "finetune")
    # the base model itself is never trained further
    assert all(torch.equal(ctx.base_model.state_dict()[k], base[k]) for k in base)


def test_kar_removes_the_least_important_pixels(store):
    from roar.protocols import PROTOCOLS

    ctx = _context(store, protocol="kar", fill="zero", fraction=0.3, epochs=1)
    PROTOCOLS["kar"].run(ctx)
    k = round(0.3 * 256)
    for split in ("train", "test"):
        maps = torch.from_numpy(ctx.raw_maps[split]).flatten(1)
        bottom = torch.zeros_like(maps, dtype=torch.bool)
        for i, row in enumerate(maps):   # the looped reference: the k smallest values of each map
            bottom[i, sorted(range(len(row)), key=lambda j: row[j].item())[:k]] = True
        mask = ctx.mask(split, "lerf").flatten(1)
        assert torch.equal(mask, bottom)
        removed = ctx.removed_images(split, "lerf")   # the very images KAR trained / tested on
        original = ctx.images(split)
        keep = ~bottom.reshape(-1, 1, 16, 16).expand_as(original)
        assert torch.equal(removed[~keep], torch.zeros_like(removed[~keep]))
        assert torch.equal(removed[keep], original[keep])


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
