"""Resume after `kill -9` of a running `roar run` (and every Ray process it started): the same command
finishes the sweep with zero duplicates and zero lost rows, and does not rerun finished trials."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from roar.storage import Store
from sweep import rows

SMOKE = Path(__file__).resolve().parent.parent / "specs" / "smoke.yaml"


def sixteen_trial_spec(tmp_path: Path) -> Path:
    data = yaml.safe_load(SMOKE.read_text())
    data.update(name="resume")
    data["axes"] = {"attribution": ["saliency", "random"], "fraction": [0.2, 0.4, 0.6, 0.8]}
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def finished_at(store: Store) -> dict[str, object]:
    table = rows.read_all(store, ["trial_id", "finished_at"])
    return dict(zip(table.column("trial_id").to_pylist(), table.column("finished_at").to_pylist()))


def test_resume_after_sigkill(tmp_path, sweep_process):
    spec, store_dir = sixteen_trial_spec(tmp_path), tmp_path / "store"
    store = Store(str(store_dir))
    first = sweep_process(["run", str(spec), "--store", str(store_dir)])
    deadline = time.monotonic() + 240
    while len(rows.scan(store, prune_bad=False).done) < 3:
        assert first.proc.poll() is None, first.output()
        assert time.monotonic() < deadline, first.output()
        time.sleep(0.2)
    assert first.kill() >= 3          # the driver, the raylet/GCS and the workers, by PID
    before = finished_at(store)
    assert 3 <= len(before) < 16, first.output()

    second = sweep_process(["run", str(spec), "--store", str(store_dir)])
    assert second.wait(timeout=400) == 0, second.output()
    out = second.output()
    assert f"[resume] 16 trials, {len(before)} already done, {16 - len(before)} to run" in out

    files = store.list("rows") + store.list("compacted")       # the sweep compacts at its end
    after = finished_at(store)
    assert len(after) == 16 and store.list("rows") == []
    assert {k: after[k] for k in before} == before               # finished trials were not rerun
    table = rows.read_rows(store, files, ["trial_id", "status"])  # plain read, no dedupe
    print(f"resume counts: {len(before)} rows survived the kill, {16 - len(before)} run on resume, "
          f"{table.num_rows} rows stored, {len(after)} unique trials")
    assert table.num_rows == 16 and set(table.column("status").to_pylist()) == {"ok"}  # every trial exactly once


@pytest.mark.slow
def test_ctrl_c_keeps_rows_and_prints_how_to_resume(tmp_path, sweep_process):
    spec, store_dir = sixteen_trial_spec(tmp_path), tmp_path / "store"
    store = Store(str(store_dir))
    proc = sweep_process(["run", str(spec), "--store", str(store_dir)])
    deadline = time.monotonic() + 240
    while not rows.scan(store, prune_bad=False).done:
        assert proc.proc.poll() is None and time.monotonic() < deadline, proc.output()
        time.sleep(0.2)
    os.killpg(proc.proc.pid, signal.SIGINT)   # what Ctrl-C in a terminal sends: the foreground group
    assert proc.wait(timeout=120) == 130, proc.output()
    out = proc.output()
    assert f"Resume with the same command: roar run {spec} --store {store_dir}" in out
    kept = rows.scan(store, prune_bad=False).done
    assert 1 <= len(kept) < 16 and all(rows.row_file_ok(store, rows.row_key(t)) for t in kept)
