"""The benchmark harness: the --quick run end to end (JSON keys, a fair naive-vs-fast comparison), and
the pieces whose numbers the table is built from (shares, RSS series, goals) on exact small inputs."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import torch

from benchmarks.__main__ import SECTIONS, main, parse_sections
from benchmarks.gpu import CifarRecipe, gpu_section
from benchmarks.naive import MaskedImages, naive_maps
from benchmarks.report import Metric, format_table
from benchmarks.rss import Sample, cores_used, driver_growth, rss_by_trial, worker_growth
from benchmarks.settings import QUICK
from benchmarks.settings import FULL
from benchmarks.sweep_bench import TRIALS_PER_GPU_SLOT, SweepRun, _tiny_grid_axes, overhead_shares, packing_spec
from roar.attribution import compute_maps
from roar.datasets import dataset_available, make_image_data
from roar.fills import apply_fill
from roar.models import build_model
from roar.removal import pixels_removed, removal_mask

pytestmark = pytest.mark.usefixtures("single_thread")

FMNIST = dataset_available("fashion_mnist") is None




@pytest.fixture(scope="module")
def quick(tmp_path_factory, request):
    """One --quick run of every section (about 30 s), shared by the tests that read its JSON."""
    if not FMNIST:
        pytest.skip("needs the dataset-fashion-mnist Debian package")
    request.getfixturevalue("ray_session")  # reuse the test session's Ray cluster
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    threads = torch.get_num_threads()
    code = main(["--quick", "--out", str(out), "--workdir", str(tmp / "work")])
    assert torch.get_num_threads() == threads  # main() restores the caller's thread count
    return code, json.loads(out.read_text())


def test_quick_run_writes_every_section(quick):
    code, result = quick
    assert code == 0 and result["errors"] == []
    assert result["preset"] == "quick" and result["sections"] == list(SECTIONS)
    assert {"retrain", "gpu", "sweep", "gpu_packing", "memory"} <= set(result["details"])
    assert {"cpu", "cpus", "gpu", "torch", "ray", "code_version"} <= set(result["machine"])
    for m in result["metrics"]:
        assert {"section", "metric", "naive", "fast", "ratio", "goal_text", "met", "skipped"} <= set(m)
    names = [m["metric"] for m in result["metrics"]]
    assert "retrains/hour, saliency" in names
    assert "trials/hour, 1 → 2 concurrent trials (CPU)" in names
    assert result["table"].splitlines()[0].split() == ["metric", "naive", "fast", "ratio", "goal", "met?"]
    if result["machine"]["gpu"] is None:
        packing = [m for m in result["metrics"] if m["section"] == "scaling" and "GPU" in m["metric"]]
        assert packing and all(m["skipped"] == "no CUDA device" for m in packing)


def test_quick_run_compares_like_with_like(quick):
    """Both paths retrain the same net for the same epochs on the same data: both learn (10 classes,
    chance 0.1) and land within the preset's tolerance of each other."""
    _, result = quick
    d = result["details"]["retrain"]["saliency"]
    naive, fast = d["naive"]["accuracy"], d["fast"]["accuracy"]
    assert naive > 0.5 and fast > 0.5
    assert abs(naive - fast) <= QUICK.accuracy_tolerance
    row = next(m for m in result["metrics"] if m["metric"] == "retrains/hour, saliency")
    assert row["ratio"] == pytest.approx(row["fast"] / row["naive"])
    assert row["fast"] == pytest.approx(3600 / d["fast"]["seconds_per_retrain"])


def test_quick_run_sweep_and_memory_figures(quick):
    _, result = quick
    sweep = result["details"]["sweep"]
    n = len(QUICK.sweep_seeds) * len(QUICK.sweep_fractions) * len(QUICK.sweep_sigmas)
    assert sweep["two_at_once"]["trials"] == sweep["one_at_once"]["trials"] == n
    assert sweep["two_at_once"]["concurrency"] == 2 and sweep["one_at_once"]["concurrency"] == 1
    # the shares partition the slot-seconds
    parts = sweep["shares"]["seconds"]
    assert sum(parts.values()) == pytest.approx(sweep["shares"]["slot_seconds"])
    # the 1-at-once run reused the artifacts: no stage work of its own
    assert sweep["one_at_once"]["stage_a_seconds"] == 0 and sweep["one_at_once"]["stage_b_seconds"] == 0
    memory = result["details"]["memory"]
    assert memory["trials"] == QUICK.memory_trials
    assert memory["rss_by_trial"] and memory["worker_pids"]
    assert memory["workers"]["growth_mib"] is not None and memory["driver"]["growth_mib"] is not None


# --- the naive path masks like the fast path ---------------------------------------------------------
def test_naive_dataset_masks_exactly_like_removal_mask():
    """Per-sample argsort in __getitem__ removes the same k pixels as the batched top-k (ties are
    absent from continuous random maps), filled with the same per-channel mean."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 2, 5, 7), generator=g, dtype=torch.uint8)
    labels = torch.arange(6)
    maps = torch.rand(6, 5, 7, generator=g)
    mean = (0.25, 0.75)
    for order, fraction in (("morf", 0.3), ("lerf", 0.6)):
        dataset = MaskedImages(images, labels, maps.numpy(), fraction, order, np.asarray(mean))
        naive = torch.stack([dataset[i][0] for i in range(6)])
        mask = removal_mask(maps, fraction, order=order, seed=0)
        fast = apply_fill(images.float() / 255, mask, "mean", mean)
        assert torch.equal(naive, fast), order
        assert mask.sum(dim=(1, 2)).tolist() == [pixels_removed(fraction, 35, order)] * 6
        assert [dataset[i][1] for i in range(6)] == list(range(6))


def test_naive_maps_equal_roar_maps():
    """The naive path's captum calls give the maps stage B stores (same method, sign, reduction)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (10, 1, 12, 12), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 3, (10,), generator=g)
    data = make_image_data("tiny", x, y, x[:2], y[:2], num_classes=3)
    model = build_model("small_cnn", 1, 3, data.mean, data.std, width=4, seed=0)
    for method in ("saliency", "integrated_gradients"):
        naive = naive_maps(model, x, y, method, batch_size=4)
        fast = compute_maps(model, x, y, method, reduction="abs_sum", sign="abs", batch_size=3)
        np.testing.assert_allclose(naive, fast, rtol=1e-5, atol=1e-7, err_msg=method)


# --- numbers behind the table ------------------------------------------------------------------------
def test_metric_goals():
    assert Metric("s", "m", naive=10, fast=25, ratio=2.5, goal_on="ratio", goal=2.5).met is True
    assert Metric("s", "m", naive=10, fast=24, ratio=2.4, goal_on="ratio", goal=2.5).met is False
    assert Metric("s", "m", "%", fast=5.0, goal_on="fast", goal_op="le", goal=5).met is True
    assert Metric("s", "m", "%", fast=5.1, goal_on="fast", goal_op="le", goal=5).met is False
    assert Metric("s", "m", naive=0.90, fast=0.86, goal_on="abs_diff", goal_op="le", goal=0.05).met is True
    assert Metric("s", "m", naive=0.90, fast=0.96, goal_on="abs_diff", goal_op="le", goal=0.05).met is False
    assert Metric("s", "m", "MiB", naive=100, fast=140, goal_on="growth", goal_op="le", goal=32).met is False
    assert Metric("s", "m", "MiB", naive=140, fast=100, goal_on="growth", goal_op="le", goal=32).met is True
    assert Metric("s", "m", skipped="no CUDA device", goal_on="fast", goal=1).met is None
    table = format_table([Metric("s", "speed", "1/h", naive=100, fast=1500, ratio=15, goal_on="ratio", goal=10),
                          Metric("s", "gpu", "s", skipped="no CUDA device", goal_on="fast", goal_op="le", goal=5)])
    lines = table.splitlines()
    assert lines[2].split() == ["speed", "[1/h]", "100", "1,500", "15.00×", "≥", "10×", "yes"]
    assert lines[3].endswith("skipped: no CUDA device")


def _when(seconds: float) -> dt.datetime:
    return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)


def test_overhead_shares_partition_slot_seconds():
    rows = [{"seconds_train": 8.0, "seconds_attribution": 0.0, "seconds_mask": 0.5, "seconds_io": 0.5,
             "seconds_total": 10.0, "started_at": _when(10 + 10 * i), "finished_at": _when(20 + 10 * i)}
            for i in range(4)]
    run = SweepRun("x", concurrency=2, seconds=50.0, rows=rows, stage_a_seconds=4.0, stage_b_seconds=1.0,
                   ok=4, failed=0)
    s = overhead_shares(run)
    assert s["slot_seconds"] == 100.0
    assert s["percent"]["training"] == pytest.approx(36.0)            # 4 * 8 + 4
    assert s["percent"]["attribution_and_masking"] == pytest.approx(3.0)  # 1 + 4 * 0.5
    assert s["percent"]["io"] == pytest.approx(2.0)
    assert s["percent"]["orchestration"] == pytest.approx(59.0)
    # trial phase: 10 s .. 50 s, 2 slots = 80 slot-seconds; 40 outside trials, 2 of I/O and 4 untimed inside
    assert s["trial_phase_slot_seconds"] == pytest.approx(80.0)
    assert s["trial_phase_percent"]["training"] == pytest.approx(40.0)
    assert s["trial_phase_percent"]["orchestration_and_io"] == pytest.approx(100 * (40 + 2 + 4) / 80)
    assert s["fixed_seconds"] == pytest.approx(10.0)
    assert run.trials_per_hour == pytest.approx(3600 * 4 / 40)


def test_rss_series_growth_and_cores():
    samples = [Sample(0.5, 100.0, {1: 200.0}, {1: 1.0}, 10.0),
               Sample(1.5, 101.0, {1: 210.0, 2: 205.0}, {1: 1.5}, 11.0),
               Sample(2.5, 102.0, {}, {2: 0.25}, 12.0),
               Sample(3.5, 104.0, {1: 212.0, 2: 260.0}, {1: 2.5, 2: 1.25}, 13.5)]
    # trials finish at 1.0, 1.2, 2.0, 3.0 and 4.0: the first two share the 1.5 s sample, the third hits a
    # sample without workers, the last has no later sample
    series = rss_by_trial(samples, [1.2, 1.0, 2.0, 3.0, 4.0])
    assert series == [{"trial": 1, "driver_mib": 101.0, "workers_mib": {1: 210.0, 2: 205.0}},
                      {"trial": 2, "driver_mib": 101.0, "workers_mib": {1: 210.0, 2: 205.0}},
                      {"trial": 4, "driver_mib": 104.0, "workers_mib": {1: 212.0, 2: 260.0}}]
    # per worker: pid 2 grew 55 MiB, pid 1 only 2
    assert worker_growth(series, 1, 2) == {"from_mib": 205.0, "to_mib": 260.0, "growth_mib": 55.0, "pid": 2}
    assert driver_growth(series, 1, 2) == {"from_mib": 101.0, "to_mib": 104.0, "growth_mib": 3.0}
    assert driver_growth(series, 4, 1)["growth_mib"] is None
    # 1.5 s .. 3.5 s: worker 1 used 1.0 CPU seconds, worker 2 (first seen at 2.5 s) 1.0, the machine 2.5
    assert cores_used(samples, 1.0, 4.0) == {"trial_workers": 1.0, "machine": 1.25, "seconds": 2.0}
    assert cores_used(samples, 3.0, 4.0)["trial_workers"] is None


def test_tiny_grid_has_exactly_n_trials():
    for n in (24, 200, 7):
        fractions, sigmas = _tiny_grid_axes(n)
        assert len(fractions) * len(sigmas) == n
        assert all(0 < f < 1 for f in fractions) and len(set(fractions)) == len(fractions)


def test_gpu_packing_specs_are_valid_sweeps(tmp_path):
    """The packed-GPU sweeps parse as specs (the GPUs themselves are checked only on a GPU machine)."""
    from sweep.grid import expand
    from sweep.spec import parse_spec

    for k in FULL.gpu_packing:
        spec = parse_spec(packing_spec(FULL, k, str(tmp_path / f"gpu-{k}"), cpus=16), check_environment=False)
        assert spec.resources.gpus_per_trial == 1 / k and spec.resources.max_concurrent_trials == k
        assert spec.resources.cpus_per_trial == max(1, 16 // k) and spec.resources.device == "cuda"
        assert len(expand(spec)) == TRIALS_PER_GPU_SLOT * k


def test_gpu_rows_are_skipped_without_cuda():
    metrics, details = gpu_section(CifarRecipe(), cuda=None)
    assert [m.skipped for m in metrics] == ["no CUDA device"] * 2
    assert details == {"skipped": "no CUDA device"}


def test_bad_arguments_name_the_option(capsys):
    with pytest.raises(ValueError, match="--sections: unknown section.*'bogus'.*valid: retrain, gpu, sweep, memory"):
        parse_sections("retrain,bogus")
    assert parse_sections("memory,retrain") == ["retrain", "memory"]
    from sweep.cli import main as roar_main
    assert roar_main(["bench", "--sections", "bogus"]) == 2
    assert "unknown section" in capsys.readouterr().err
    assert main(["--threads", "0"]) == 2
