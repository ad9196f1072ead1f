"""The store benchmark section and the FLOP/s figures of `roar bench`, on tiny inputs."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from benchmarks.flops import cpu_peak, forward_flops, retrain_flops
from benchmarks.settings import QUICK
from benchmarks.store_bench import fake_frame, store_notes, store_section


def test_forward_flops_count_multiply_adds_exactly():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    conv = 2 * (4 * 8 * 8) * 3 * 3 * 3           # 2 FLOPs x outputs x (in_channels x kernel area)
    linear = 2 * 10 * 256
    assert forward_flops(model, torch.zeros(1, 3, 8, 8)) == conv + linear
    assert retrain_flops(model, torch.zeros(1, 3, 8, 8), train_images=100, epochs=2) == 3 * (conv + linear) * 200


def test_cpu_peak_is_cores_times_clock_times_simd_width():
    p = cpu_peak(threads=1)
    assert p["flops_per_cycle"] in (16, 32, 64) and p["threads"] == 1
    assert p["peak"] == pytest.approx(p["clock_ghz"] * 1e9 * p["flops_per_cycle"])
    assert p["machine_peak"] == pytest.approx(p["peak"] * p["cores"])


def test_fake_frame_has_the_study_grid():
    df = fake_frame(2160)                       # one seed of 3 x 8 x 5 x 6 x 3
    assert len(df) == 2160 and df["trial_id"].is_unique
    assert (df["dataset"].nunique(), df["attribution"].nunique(), df["protocol"].nunique()) == (3, 8, 3)


def test_store_section_times_today_and_new_on_the_same_store(tmp_path):
    settings = dataclasses.replace(QUICK, store_trials=60, store_today_sample=30, store_compact_base=40,
                                   store_new_rows=10, store_report_trials=(240,))
    metrics, details = store_section(settings, str(tmp_path), log=lambda line: None)
    names = [m.metric for m in metrics]
    assert names == ["status, first read of 60 foreign row files (cold)", "status, 60 row files",
                     "resume planning, 60 row files", "load, 60 row files", "verify, 60 row files",
                     "compact 10 new rows into 40", "report, 240 compacted rows"]
    if details["today_seconds"]:                # git history present: the baseline ran, scaled 60/30
        assert all(m.naive is not None and m.ratio == pytest.approx(m.naive / m.fast) for m in metrics[:6])
        assert "today timed on 30 of 60 files, x2.00" in metrics[1].note
    assert details["report_240"]["html_mb"] > 0.01 and 0 < details["report_240"]["fits_seconds"] < metrics[6].fast
    assert all(m.fast > 0 for m in metrics)
    lines = store_notes({"store": details})
    assert lines[0] == "store, 60 trials (today / new / ratio, seconds):" and len(lines) == 8
    assert lines[-1].startswith("  roar report, 240 compacted rows: — / ")
