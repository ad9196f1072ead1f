"""Tampered artifacts end to end: a trial never uses a cached model, map set or meta file whose bytes do
not match its key and checksums. It recomputes them and its row equals the row of an untampered run;
if the recomputed artifact fails too, the trial fails with a clear error. `roar verify` finds the
same damage, edited meta files included.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from roar import artifacts, pipeline
from roar.spec import TrialSpec
from roar.storage import Store
from sweep.verify import verify_store

SPEC = TrialSpec(dataset="synthetic", subset=300, test_subset=200, model="small_cnn", width=4, epochs=1,
                 batch_size=64, lr=0.05, attribution="saliency", fraction=0.5, protocol="roar")
MODEL = f"{artifacts.MODELS_DIR}/{SPEC.base_model_key()}"
MAPS = f"{artifacts.MAPS_DIR}/{SPEC.maps_key()}"
RESULT_COLUMNS = ("status", "accuracy", "base_accuracy", "loss", "removed_fraction_actual", "blur_spectral_centroid")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, single_thread):
    """A store after one clean trial, and that trial's row."""
    root = tmp_path_factory.mktemp("reference") / "store"
    pipeline.clear_caches()
    row = pipeline.run_trial(SPEC, Store(str(root)))
    assert row["status"] == "ok", row.get("error")
    return root, row


@pytest.fixture
def store(reference, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(reference[0], root)
    pipeline.clear_caches()  # a fresh worker: nothing cached in memory
    return root


# --- ways to tamper, each a function of the store folder ----------------------------------------------
def flip_map_values(root: Path):
    path = root / MAPS / "test.npy"
    np.save(path, -np.load(path), allow_pickle=False)  # a valid .npy whose ranking is reversed


def truncate_maps(root: Path):
    path = root / MAPS / "train.npy"
    path.write_bytes(path.read_bytes()[:-100])


def delete_maps(root: Path):
    (root / MAPS / "test.npy").unlink()


def change_weight_byte(root: Path):
    path = root / f"{MODEL}.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def edit_meta(path: Path, **changes):
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def edit_base_accuracy(root: Path):
    edit_meta(root / f"{MODEL}.json", base_accuracy=0.999)


def rehash_tampered_weights(root: Path):
    """A careful edit: the weights changed and the meta's payload sha256 updated to match them."""
    change_weight_byte(root)
    payload = (root / f"{MODEL}.pt").read_bytes()
    edit_meta(root / f"{MODEL}.json", sha256={"model": artifacts._sha(payload)})


def maps_of_another_setup(root: Path):
    """A self-consistent meta (valid meta_sha256) whose fields belong to another key."""
    path = root / MAPS / "meta.json"
    meta = json.loads(path.read_text())
    meta["fields"] = SPEC.replace(attribution="random").maps_key_fields()
    path.write_bytes(artifacts._meta_bytes(meta))


def legacy_meta(root: Path):
    path = root / f"{MODEL}.json"
    meta = json.loads(path.read_text())
    del meta[artifacts.META_SHA]
    path.write_text(json.dumps(meta))


def garbage_meta(root: Path):
    (root / MAPS / "meta.json").write_bytes(b"\x00not json")


# (id, tamper, file named in the rejection, its reason)
TAMPERING = [
    ("flipped-map-values", flip_map_values, "test.npy", "does not match its recorded sha256"),
    ("truncated-maps", truncate_maps, "train.npy", "does not match its recorded sha256"),
    ("deleted-maps", delete_maps, "test.npy", "missing, though its meta file marks the artifact complete"),
    ("changed-weight-byte", change_weight_byte, ".pt", "does not match its recorded sha256"),
    ("edited-base-accuracy", edit_base_accuracy, ".json", "meta file was changed after it was written"),
    ("rehashed-tampered-weights", rehash_tampered_weights, ".json", "meta file was changed after it was written"),
    ("maps-of-another-setup", maps_of_another_setup, "meta.json", "meta fields do not hash to the key"),
    ("legacy-meta", legacy_meta, ".json", "meta file has no meta_sha256"),
    ("garbage-meta", garbage_meta, "meta.json", "unreadable meta file"),
]


@pytest.mark.parametrize("tamper, file, reason", [c[1:] for c in TAMPERING], ids=[c[0] for c in TAMPERING])
def test_tampered_artifact_is_recomputed_and_never_used(reference, store, tamper, file, reason):
    _, clean = reference
    before = {k: (store / k).read_bytes() for k in (f"{MODEL}.pt", f"{MAPS}/train.npy", f"{MAPS}/test.npy")}
    tamper(store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = pipeline.run_trial(SPEC, Store(str(store)))
    rejected = [str(w.message) for w in caught if "cached artifact rejected and recomputed" in str(w.message)]
    assert len(rejected) == 1 and file in rejected[0] and reason in rejected[0], rejected
    # the row is the clean run's: nothing of the tampered bytes reached it
    assert {c: row[c] for c in RESULT_COLUMNS} == {c: clean[c] for c in RESULT_COLUMNS}, row.get("error")
    # the store holds verified artifacts again: recomputed, byte for byte the clean ones (CPU, seeded)
    s = Store(str(store))
    assert artifacts.check_artifact(s, "model", SPEC.base_model_key()) is None
    assert artifacts.check_artifact(s, "maps", SPEC.maps_key()) is None
    assert {k: (store / k).read_bytes() for k in before} == before


def test_edited_meta_is_what_verify_reports(store):
    edit_base_accuracy(store)
    report = verify_store(Store(str(store)))
    found = [f for f in report.problems if f.check == "artifacts"]
    assert len(found) == 1 and found[0].key == f"{MODEL}.json", report.text()
    assert "meta file was changed after it was written" in found[0].message
    assert report.exit_code() == 1


def test_clean_store_verifies(store):
    report = verify_store(Store(str(store)))
    assert not report.problems, report.text()


def test_stage_task_retrains_a_tampered_model(reference, store):
    clean = (store / f"{MODEL}.pt").read_bytes()
    change_weight_byte(store)
    key = pipeline.ensure_base_model(SPEC, Store(str(store)))   # what a stage A task runs
    assert key == SPEC.base_model_key() and (store / f"{MODEL}.pt").read_bytes() == clean


def test_a_recomputed_artifact_that_fails_again_fails_the_trial(store, monkeypatch):
    flip_map_values(store)
    save = artifacts.save_maps

    def save_then_damage(s, key, maps, meta):  # a store that corrupts what it is given
        save(s, key, maps, meta)
        truncate_maps(Path(s.root))
    monkeypatch.setattr(pipeline, "save_maps", save_then_damage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = pipeline.run_trial(SPEC, Store(str(store)))
    assert row["status"] == "failed" and row.get("accuracy") is None
    assert row["error"].startswith("ArtifactMismatch: recomputed artifact still fails its checks: "), row["error"]
    assert "train.npy: content does not match its recorded sha256" in row["error"]
