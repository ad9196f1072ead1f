"""No input of the test split depends on a test label; every retrain row lets a reader check it."""
import contextlib
import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from roar import pipeline
from roar.artifacts import load_maps
from roar.attribution import TARGETS, resolve_targets, split_target
from roar.datasets import dataset_available
from roar.models import build_model
from roar.protocols.retrain import leak_diagnostics
from roar.spec import TrialSpec, content_key
from roar.storage import Store

ROOT = Path(__file__).resolve().parent.parent
FMNIST = dataset_available("fashion_mnist") is None


def _spec(**kw):
    base = dict(dataset="synthetic", subset=300, test_subset=200, width=8, epochs=1, batch_size=64, lr=0.05,
                attribution="saliency", fraction=0.5)
    return TrialSpec(**{**base, **kw})


def test_predicted_is_the_default_and_label_keeps_the_test_split_label_free():
    assert TrialSpec().target == "predicted"
    assert split_target("predicted", "test") == split_target("label", "test") == "predicted"
    assert split_target("label", "train") == "label"
    assert split_target("label_leaky", "test") == "label"
    with pytest.raises(ValueError, match="target"):
        split_target("labels", "test")


def test_label_rows_do_not_reuse_ids_of_the_leaky_meaning():
    spec = _spec(target="label")
    # before the split targets, 'label' trials were keyed by their fields alone (and leaked)
    assert spec.trial_id != content_key(spec.to_dict())
    assert spec.maps_key() != _spec(target="label_leaky").maps_key()
    # 'predicted' keeps its keys: caches and rows written before stay valid
    plain = _spec(target="predicted")
    assert plain.trial_id == content_key(plain.to_dict())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_test_maps_do_not_change_when_test_labels_are_permuted(tmp_path, target):
    """Stage B run twice, the second time with the test labels shuffled: a label-free target gives the very
    same test maps (and so the same masks, fills, imputations); label_leaky does not (the check can fail)."""
    spec = _spec(target=target)
    pipeline.clear_caches()
    data = pipeline.load_data(spec)
    first = Store(str(tmp_path / "a"))
    pipeline.ensure_maps(spec, first)
    maps_a = load_maps(first, spec.maps_key())

    permuted = data.test_y[torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(1))]
    assert (permuted != data.test_y).any()
    key = tuple(getattr(spec, f) for f in TrialSpec.DATA_FIELDS)
    pipeline.clear_caches()
    pipeline._DATA[key] = dataclasses.replace(data, test_y=permuted)
    second = Store(str(tmp_path / "b"))
    pipeline.ensure_maps(spec, second)
    maps_b = load_maps(second, spec.maps_key())
    pipeline.clear_caches()

    assert np.array_equal(maps_a["train"], maps_b["train"])
    same_test = np.array_equal(maps_a["test"], maps_b["test"])
    assert same_test == (split_target(target, "test") == "predicted")


def test_resolve_targets_per_split():
    model = build_model("small_cnn", 1, 4, (0.5,), (0.25,), width=4, seed=0).eval()
    x = torch.rand(6, 1, 16, 16)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    predicted = resolve_targets(model, x, y, "predicted", "cpu")
    assert torch.equal(resolve_targets(model, x, y, "label", "cpu", split="train"), y)
    assert torch.equal(resolve_targets(model, x, y, "label", "cpu", split="test"), predicted)
    assert torch.equal(resolve_targets(model, x, y, "label_leaky", "cpu", split="test"), y)


def test_leak_diagnostics_known_cases():
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    base = torch.tensor([0, 1, 2, 3, 1, 2, 3, 0])          # wrong on the last four
    # a model that reads the label from the mask is right where the base model was wrong
    oracle = leak_diagnostics(labels, base, labels)
    assert oracle == {"accuracy_base_wrong": 1.0, "n_base_wrong": 4, "agreement_base": 0.5}
    # a model that repeats the base model is never right there
    echo = leak_diagnostics(base, base, labels)
    assert echo == {"accuracy_base_wrong": 0.0, "n_base_wrong": 4, "agreement_base": 1.0}
    half = leak_diagnostics(torch.tensor([0, 1, 2, 3, 0, 1, 0, 0]), base, labels)
    assert half["accuracy_base_wrong"] == 0.5
    perfect = leak_diagnostics(labels, labels, labels)
    assert perfect["n_base_wrong"] == 0 and perfect["accuracy_base_wrong"] is None


@pytest.mark.parametrize("protocol", ["roar", "kar"])
def test_every_retrain_row_carries_targets_and_leak_columns(tmp_path, protocol):
    pipeline.clear_caches()
    row = pipeline.run_trial(_spec(protocol=protocol, target="label"), Store(str(tmp_path)))
    assert row["status"] == "ok", row.get("error")
    assert (row["target_train"], row["target_test"]) == ("label", "predicted")
    assert 0 <= row["agreement_base"] <= 1
    assert row["n_base_wrong"] == round((1 - row["base_accuracy"]) * row["n_test"])


@pytest.mark.skipif(not FMNIST, reason="needs the dataset-fashion-mnist Debian package")
def test_the_leak_shows_on_fashion_mnist(tmp_path):
    """Saliency, 50% removed: with test maps from the test labels the retrained model is right on most
    images the base model got wrong (it reads the label from the holes); label-free maps do not allow it."""
    pipeline.clear_caches()
    store = Store(str(tmp_path))
    rows = {t: pipeline.run_trial(_spec(dataset="fashion_mnist", subset=1000, test_subset=500, epochs=2,
                                        target=t), store) for t in ("predicted", "label_leaky")}
    pipeline.clear_caches()
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["predicted"]["n_base_wrong"] >= 50
    assert rows["label_leaky"]["accuracy_base_wrong"] > 0.5
    assert rows["predicted"]["accuracy_base_wrong"] < 0.35
    assert rows["label_leaky"]["accuracy_base_wrong"] > rows["predicted"]["accuracy_base_wrong"] + 0.3


def test_shipped_specs_are_label_free():
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        text = yaml.safe_load(path.read_text())
        fixed = text.get("fixed", {}) or {}
        if "leaky" in path.stem:   # a leak study says so in its name (paper-fmnist-cpu-leaky.yaml)
            assert fixed["target"] == "label_leaky" and "leaky" in text["name"], path.name
            continue
        assert fixed.get("target", "predicted") in ("predicted", "label"), path.name
        assert "label_leaky" not in path.read_text(), path.name


def test_roar_run_warns_about_a_leaky_target(tmp_path):
    from sweep.cli import main

    spec = yaml.safe_load((ROOT / "specs" / "smoke.yaml").read_text())
    spec["fixed"]["target"] = "label_leaky"
    spec["store"] = str(tmp_path / "store")
    path = tmp_path / "leaky.yaml"
    path.write_text(yaml.safe_dump(spec))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", str(path), "--dry-run"])
    assert code == 0
    assert "label_leaky" in err.getvalue() and "TEST labels" in err.getvalue()
    spec["fixed"]["target"] = "label"
    path.write_text(yaml.safe_dump(spec))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        main(["run", str(path), "--dry-run"])
    assert "TEST labels" not in err.getvalue()
