"""End to end on a real local Ray cluster (the session fixture) with the real roar.pipeline.

The tests share one store so stage A/B artifacts trained for the smoke spec are reused by the later
specs (options and post-processing are not part of the stage keys).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from roar.storage import Store
from sweep import rows
from sweep.grid import expand
from sweep.runner import run
from sweep.spec import load_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e") / "store"


def variant(tmp_path: Path, name: str, **changes) -> str:
    """A copy of the smoke spec with top-level sections replaced."""
    data = yaml.safe_load((SPECS / "smoke.yaml").read_text())
    data["name"] = name
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def stored_rows(store_uri: str) -> dict:
    return {r["trial_id"]: r for r in rows.read_all(Store(store_uri)).to_pylist()}


def test_smoke_sweep_then_rerun_skips_everything(ray_session, store_dir):
    spec = load_spec(str(SPECS / "smoke.yaml"), store=str(store_dir))
    lines: list[str] = []
    result = run(spec, out=lines.append)
    ids = {t.trial_id for t in expand(spec)}
    got = stored_rows(spec.store)
    assert (result.total, result.ok, result.failed, result.missing, result.exit_code) == (8, 8, 0, 0, 0)
    assert set(got) == ids and Store(spec.store).list("rows") == []   # compacted at the end of the sweep
    parts = Store(spec.store).list("compacted")
    assert sorted(rows.read_rows(Store(spec.store), parts, ["trial_id"]).column("trial_id").to_pylist()) == sorted(ids)
    assert any(line.startswith(f"[smoke] compacted {spec.store}: 8 row file(s) folded") for line in lines)
    assert all(r["status"] == "ok" and r["sweep"] == "smoke" for r in got.values())
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["n_test"] == 256 for r in got.values())
    assert {(r["attribution"], r["sigma"], r["fraction"]) for r in got.values()} == {
        (a, s, f) for a in ("saliency", "random") for s in (0.0, 1.0) for f in (0.2, 0.6)}
    assert "[smoke] stage A: 1 base model(s) to train, stage B: 2 map set(s) to compute" in lines
    assert any(line.startswith("[smoke] 8/8 done, 0 running, 0 failed") for line in lines)
    # the stages are cached by content key in the same store
    assert len(Store(spec.store).list("artifacts/models", suffix=".json")) >= 1
    assert not (store_dir / "_tune").exists()  # Tune's bookkeeping is removed after a clean run

    lines.clear()
    again = run(spec, out=lines.append)
    assert again.ran == 0 and (again.ok, again.missing) == (8, 0)
    assert lines[0] == f"[smoke] all 8 trials already done in {spec.store}; nothing to run"
    assert stored_rows(spec.store) == got   # untouched: same finished_at, same values


def test_failed_trial_writes_a_failed_row_and_the_sweep_goes_on(ray_session, store_dir, tmp_path):
    path = variant(tmp_path, "fails", axes={"attribution": ["saliency"], "fraction": [0.2],
                                            "options": [{}, {"fail_for_test": "raise"}]},
                   postprocess=["identity"])
    spec = load_spec(path, store=str(store_dir))
    lines: list[str] = []
    result = run(spec, out=lines.append)
    by_option = {r["config_json"].count("fail_for_test"): r for r in stored_rows(spec.store).values()
                 if r["sweep"] == "fails"}
    assert (result.ok, result.failed, result.missing, result.exit_code) == (1, 1, 0, 0)
    assert by_option[0]["status"] == "ok" and by_option[0]["error"] is None
    assert by_option[1]["status"] == "failed"
    assert by_option[1]["error"].startswith("RuntimeError: failure requested by option fail_for_test")
    assert "stage A" not in " ".join(lines)  # base model and maps came from the smoke run's cache
    assert any("failed trials keep a row with the error" in line for line in lines)

    retry = run(spec, retry_failed=True, out=lines.append)
    assert retry.ran == 1 and (retry.ok, retry.failed) == (1, 1)


def test_stage_failure_fails_its_trials_not_the_sweep(ray_session, store_dir, tmp_path):
    # an image folder whose class folders are empty passes validation (the files decide its size) and
    # fails in stage A, when the data is loaded
    for split in ("train", "val"):
        (tmp_path / "empty" / split / "a").mkdir(parents=True)
    path = variant(tmp_path, "badstage", fixed={"dataset": "imagefolder", "data_root": str(tmp_path / "empty")},
                   axes={"attribution": ["random"], "fraction": [0.2, 0.6]}, postprocess=["identity"])
    spec = load_spec(path, store=str(store_dir))
    lines: list[str] = []
    result = run(spec, out=lines.append)
    failed = [r for r in stored_rows(spec.store).values() if r["sweep"] == "badstage"]
    assert (result.ok, result.failed, result.missing) == (0, 2, 0)
    assert len(failed) == 2
    assert all(r["status"] == "failed" and r["error"].startswith("stage A (base model ")
               and "holds no images" in r["error"] for r in failed)
    assert "[badstage] 2 trial(s) recorded as failed because a stage failed" in lines
    # nothing succeeded: the sweep fails, and its last line says how many failed and why
    assert result.exit_code == 1
    assert lines[-1].startswith("[badstage] 2 of 2 trials failed: 2x stage A (base model "), lines[-1]
    assert "DatasetFormatError" in lines[-1]


def _has_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA device")
def test_fractional_gpus_pack_trials_on_one_gpu(ray_session, tmp_path):
    from sweep.runner import ray_cluster_info
    path = variant(tmp_path, "gpu", resources={"cpus_per_trial": 0.5, "gpus_per_trial": 0.5, "device": "cuda",
                                               "cpus_per_stage": 1, "gpus_per_stage": 1,
                                               "max_concurrent_trials": 2})
    spec = load_spec(path, store=str(tmp_path / "store"), cluster=ray_cluster_info())
    result = run(spec, out=lambda line: None)
    got = stored_rows(spec.store)
    assert (result.ok, result.missing) == (8, 0)
    assert all(r["device"].startswith("cuda") for r in got.values())
