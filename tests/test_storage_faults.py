"""A results store that fails under a running sweep, crash leftovers, and two sweeps writing one store.

- Unwritable store: the rows folder turns into something no process can create files in. chmod does
  not stop root (CI runs as root), so the fault that works for everyone is a regular file where the
  `rows/` folder should be (creating a file under it fails for root too); earlier rows live in
  `compacted/`. The chmod variant runs when the tests are not root.
- Disk full: a Store whose writes run out of space after N successful ones (ENOSPC after writing part
  of the temp file), shared by the Ray workers (pickled by value) and counted across processes.
- Truncated and zero-byte row files left by a crash are found by the footer check and redone.
- Two `roar run` processes (each its own Ray cluster) on one store: every trial once, artifacts once.

Each fault must stop the sweep with exit code 3 and a message naming the failed write, leave every
earlier file byte-for-byte intact and no temp file behind, and a rerun after the fix must finish the
sweep without redoing finished trials. Stage artifacts and reference rows come from one clean run of
the pipeline in this process (no Ray); every sweep here must reproduce those rows exactly.
"""
from __future__ import annotations

import errno
import functools
import math
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from analysis.schema import COLUMNS, PROVENANCE_COLUMNS
from roar.artifacts import verify_artifact
from roar.storage import TMP_PREFIX, Store
from sweep import rows
from sweep import plan as plan_mod
from sweep.compact import compact
from sweep.grid import expand
from sweep.runner import run
from sweep.spec import load_spec
from sweep.verify import PROBLEM, verify_store

SMOKE = Path(__file__).resolve().parent.parent / "specs" / "smoke.yaml"
COMPARED = [c for c in COLUMNS if c not in PROVENANCE_COLUMNS]


def four_trial_spec(folder: Path, name: str = "faults") -> Path:
    """The smoke spec cut to one map set: saliency × fraction {0.2, 0.6} × sigma {0, 1}."""
    data = yaml.safe_load(SMOKE.read_text())
    data.update(name=name, axes={"attribution": ["saliency"], "fraction": [0.2, 0.6]})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Reference:
    spec_path: Path
    store: Store                    # a clean run: artifacts and the 4 reference rows

    def trials(self):
        return sorted(expand(load_spec(str(self.spec_path), check_environment=False)), key=lambda t: t.trial_id)

    def new_store(self, folder: Path, with_rows=()) -> Store:
        """A store holding the reference artifacts (stages are not rerun) and the given trials' rows."""
        shutil.copytree(Path(self.store.root) / "artifacts", folder / "artifacts")
        for trial in with_rows:
            key = rows.row_key(trial.trial_id)
            (folder / "rows").mkdir(exist_ok=True)
            shutil.copyfile(self.store.path(key), folder / key)
        return Store(str(folder))


REFERENCE_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from roar import pipeline
from roar.storage import Store
from sweep import rows
from sweep.grid import expand
from sweep.spec import load_spec
store = Store(sys.argv[2])
for trial in expand(load_spec(sys.argv[1], check_environment=False)):
    rows.write_row(store, pipeline.run_trial(trial, store, "cpu", "faults"))
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """Artifacts and rows of the 4 trials computed without Ray, on one thread as in a Ray worker with 1 CPU,
    in a fresh interpreter (like a worker: no state left by earlier tests in this process): what every
    sweep below must reproduce exactly (apart from provenance)."""
    folder = tmp_path_factory.mktemp("faults-ref")
    path = four_trial_spec(folder)
    store = Store(str(folder / "store"))
    done = subprocess.run([sys.executable, "-c", REFERENCE_SCRIPT, str(path), store.root],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return Reference(path, store)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a local store (Tune's bookkeeping folder aside) -> its bytes."""
    out = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not rel.startswith("_tune/"):
            out[rel] = path.read_bytes()
    return out


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(f"{TMP_PREFIX}*")]


def stored(store: Store) -> dict[str, dict]:
    return {r["trial_id"]: r for r in rows.read_all(store).to_pylist()}


def differing(a: dict, b: dict) -> list[str]:
    def same(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
    return [c for c in COMPARED if not same(a[c], b[c])]


def assert_same_results(store: Store, reference: Reference) -> None:
    got, ref = stored(store), stored(reference.store)
    assert set(got) == set(ref) and all(r["status"] == "ok" for r in got.values())
    assert {t: differing(got[t], ref[t]) for t in ref} == {t: [] for t in ref}


# --- unwritable store ----------------------------------------------------------------------------------
def _rows_folder_is_a_file(store_dir: Path) -> None:
    shutil.rmtree(store_dir / "rows", ignore_errors=True)
    (store_dir / "rows").write_bytes(b"not a folder")


def _rows_folder_read_only(store_dir: Path) -> None:
    os.chmod(store_dir / "rows", stat.S_IRUSR | stat.S_IXUSR)


def _fix_rows_file(store_dir: Path) -> None:
    (store_dir / "rows").unlink()


def _fix_read_only(store_dir: Path) -> None:
    os.chmod(store_dir / "rows", stat.S_IRWXU)


# fault name -> (break the store, repair it, compact the earlier rows first, error the write gives)
UNWRITABLE = {
    "rows folder replaced by a file": (_rows_folder_is_a_file, _fix_rows_file, True, "FileExistsError"),
    "rows folder read-only": (_rows_folder_read_only, _fix_read_only, False, "PermissionError"),
}


@pytest.mark.parametrize("fault", [
    "rows folder replaced by a file",
    pytest.param("rows folder read-only", marks=pytest.mark.skipif(
        os.geteuid() == 0, reason="chmod does not stop root; the file-in-place fault covers root")),
])
def test_unwritable_store_stops_the_sweep_and_a_rerun_after_the_fix_finishes(ray_session, reference, tmp_path,
                                                                              fault):
    breaks, repair, compact_first, error = UNWRITABLE[fault]
    trials = reference.trials()
    store = reference.new_store(tmp_path / "store", with_rows=trials[:2])
    if compact_first:
        compact(store)
    before = snapshot(tmp_path / "store")
    spec = load_spec(str(reference.spec_path), store=store.uri)   # writable when the sweep starts
    breaks(tmp_path / "store")

    lines: list[str] = []
    result = run(spec, out=lines.append)
    assert result.exit_code == 3 and result.ran == 2
    stopped = [line for line in lines if "STOPPED: the results store failed" in line]
    assert len(stopped) == 1, lines
    assert "writing rows/" in stopped[0] and f"failed: {error}" in stopped[0]
    assert "rows written before the fault are intact; fix the store, then rerun" in stopped[0]
    if compact_first:
        assert snapshot(tmp_path / "store") == {**before, "rows": b"not a folder"}
    else:
        assert snapshot(tmp_path / "store") == before
    assert temp_files(tmp_path / "store") == []

    repair(tmp_path / "store")
    lines.clear()
    again = run(spec, out=lines.append)
    assert (again.exit_code, again.ran, again.ok) == (0, 2, 4)
    assert lines[0] == "[faults] 4 trials, 2 already done, 2 to run"
    after = snapshot(tmp_path / "store")
    assert {k: after[k] for k in before} == before                  # earlier rows and artifacts untouched
    assert_same_results(store, reference)
    assert [f for f in verify_store(store).findings if f.severity == PROBLEM] == []


# --- disk full -----------------------------------------------------------------------------------------
class _FullDiskFS:
    """Delegates to a LocalFileSystem; output streams take half the data, then fail with ENOSPC."""

    def __init__(self, fs):
        self._fs = fs

    def __getattr__(self, name):
        return getattr(self._fs, name)

    def open_output_stream(self, path):
        stream = self._fs.open_output_stream(path)

        class HalfThenFull:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                stream.close()

            def write(self, data):
                stream.write(bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return HalfThenFull()


@dataclass
class DiskFillingStore(Store):
    """A local Store on a disk with room for `room` more writes, counted across processes (one
    O_EXCL token file per write in `ledger`); later writes fail the way a full disk fails them."""

    ledger: str = ""
    room: int = 0

    def __getstate__(self):
        return {**super().__getstate__(), "ledger": self.ledger, "room": self.room}

    def _take_room(self) -> bool:
        for i in range(self.room):
            try:
                os.close(os.open(os.path.join(self.ledger, f"write-{i}"), os.O_CREAT | os.O_EXCL))
                return True
            except FileExistsError:
                continue
        return False

    def write_bytes(self, key: str, data: bytes) -> None:
        if self._take_room():
            return super().write_bytes(key, data)
        real, self.fs = self.fs, _FullDiskFS(self.fs)   # the real write path, on a full disk
        try:
            super().write_bytes(key, data)
        finally:
            self.fs = real


@pytest.fixture
def by_value():
    """Ray workers cannot import this test module: ship its classes by value while a test runs."""
    from ray import cloudpickle

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


def test_disk_full_mid_sweep_stops_keeps_finished_rows_and_resumes(ray_session, reference, tmp_path, monkeypatch,
                                                                   by_value):
    store = reference.new_store(tmp_path / "store")
    artifacts = snapshot(tmp_path / "store")
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    spec = load_spec(str(reference.spec_path), store=store.uri)
    monkeypatch.setattr(plan_mod, "Store", functools.partial(DiskFillingStore, ledger=str(ledger), room=2))

    lines: list[str] = []
    result = run(spec, out=lines.append)
    assert result.exit_code == 3 and (result.ok, result.missing) == (2, 2)
    stopped = [line for line in lines if "STOPPED: the results store failed" in line]
    assert len(stopped) == 1 and "OSError: [Errno 28] No space left on device" in stopped[0], lines
    assert sorted(p.name for p in ledger.iterdir()) == ["write-0", "write-1"]
    written = store.list("rows")
    assert len(written) == 2 and all(rows.row_file_ok(store, k) for k in written)
    assert temp_files(tmp_path / "store") == []                     # the half-written temp files are gone
    kept = snapshot(tmp_path / "store")
    assert {k: kept[k] for k in artifacts} == artifacts
    finished = {r["trial_id"]: r for r in rows.read_all(store).to_pylist()}

    monkeypatch.undo()                                              # space freed
    lines.clear()
    again = run(spec, out=lines.append)
    assert (again.exit_code, again.ran, again.ok) == (0, 2, 4)
    after = snapshot(tmp_path / "store")
    assert {k: after[k] for k in artifacts} == artifacts
    now = {r["trial_id"]: r for r in rows.read_all(store).to_pylist()}
    assert {k: now[k] for k in finished} == finished                # the two finished rows: same values
    assert_same_results(store, reference)


def test_disk_full_in_a_stage_stops_the_sweep_before_any_trial(ray_session, reference, tmp_path, monkeypatch,
                                                               by_value):
    """The first write of the sweep (the base model, in a stage task) hits the full disk: the stage
    fails, the failed rows the driver then writes fail too, and the sweep stops with a store fault
    instead of recording trial failures that are really the store's."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    spec = load_spec(str(reference.spec_path), store=str(tmp_path / "store"))
    monkeypatch.setattr(plan_mod, "Store", functools.partial(DiskFillingStore, ledger=str(ledger), room=0))
    lines: list[str] = []
    result = run(spec, out=lines.append)
    assert result.exit_code == 3 and (result.ok, result.failed, result.missing) == (0, 0, 4)
    assert any("stage A 1/1, stage B 0/1" in line and "No space left on device" in line for line in lines), lines
    stopped = [line for line in lines if "STOPPED: the results store failed: writing rows/" in line]
    assert len(stopped) == 1 and "OSError: [Errno 28] No space left on device" in stopped[0], lines
    assert sorted(snapshot(tmp_path / "store")) == [] and temp_files(tmp_path / "store") == []


# --- crash leftovers -------------------------------------------------------------------------------------
def test_truncated_and_empty_row_files_are_detected_and_redone(ray_session, reference, tmp_path):
    trials = reference.trials()
    store = reference.new_store(tmp_path / "store", with_rows=trials)
    half, empty = rows.row_key(trials[0].trial_id), rows.row_key(trials[1].trial_id)
    data = Path(store.path(half)).read_bytes()
    Path(store.path(half)).write_bytes(data[: len(data) // 2])
    Path(store.path(empty)).write_bytes(b"")
    (tmp_path / "store" / "rows" / f"{TMP_PREFIX}dead-{trials[2].trial_id}.parquet").write_bytes(data[:100])
    intact = {k: v for k, v in snapshot(tmp_path / "store").items() if k.startswith("artifacts/")}
    intact_rows = {r["trial_id"]: r for r in rows.read_all(store).to_pylist()}

    problems = sorted((f.key, f.message.split(" (")[0]) for f in verify_store(store).findings
                      if f.severity == PROBLEM)
    assert problems == sorted([(half, "truncated or not Parquet"), (empty, "empty file")])

    spec = load_spec(str(reference.spec_path), store=store.uri)
    lines: list[str] = []
    result = run(spec, out=lines.append)
    moved = lines[0].splitlines()
    assert moved[0] == "[faults] 2 invalid row file(s) moved to quarantine/; their trials run again:"
    assert sorted(m.split(" -> ")[0].strip() for m in moved[1:]) == sorted([half, empty])
    assert any("empty file (0 bytes)" in m for m in moved) and any("truncated or not Parquet" in m for m in moved)
    assert lines[1] == "[faults] 4 trials, 2 already done, 2 to run"
    assert (result.exit_code, result.ran, result.ok) == (0, 2, 4)
    after = snapshot(tmp_path / "store")
    assert {k: after[k] for k in intact} == intact                   # the artifacts were not touched
    now = {r["trial_id"]: r for r in rows.read_all(store).to_pylist()}
    assert {k: now[k] for k in intact_rows} == intact_rows           # nor the other rows
    assert len(store.list("quarantine", suffix=".reason.txt")) == 2  # the damaged files are kept aside
    assert {trials[0].trial_id, trials[1].trial_id} <= rows.scan(store).done
    assert_same_results(store, reference)
    assert [f for f in verify_store(store).findings if f.severity == PROBLEM] == []


# --- two sweeps, one store -------------------------------------------------------------------------------
def test_two_concurrent_sweeps_store_every_trial_and_artifact_once(reference, tmp_path, sweep_process):
    """Both processes start on an empty store, so both train the base model and compute the maps, and
    may both run a trial; the store must still end with one row per trial and one copy of each
    artifact, consistent with its recorded sha256 and identical to the reference run's."""
    store_dir = tmp_path / "store"
    first = sweep_process(["run", str(reference.spec_path), "--store", str(store_dir)])
    second = sweep_process(["run", str(reference.spec_path), "--store", str(store_dir)])
    assert first.wait(timeout=600) == 0, first.output()
    assert second.wait(timeout=600) == 0, second.output()
    store = Store(str(store_dir))
    files = sorted(snapshot(store_dir))
    ids = sorted(t.trial_id for t in reference.trials())
    # each sweep compacts at its end (one at a time): every trial exactly once in rows/ + compacted/
    stored_keys = [k for k in files if k.startswith(("rows/", "compacted/"))]
    assert sorted(rows.read_rows(store, stored_keys, ["trial_id"]).column("trial_id").to_pylist()) == ids
    assert temp_files(store_dir) == [] and not (store_dir / "_tune").exists()
    ref_files = sorted(k for k in snapshot(Path(reference.store.root)) if k.startswith("artifacts/"))
    assert [k for k in files if k.startswith("artifacts/")] == ref_files        # one copy of each
    for meta in (k for k in ref_files if k.endswith(".json")):
        assert verify_artifact(store, meta) == []
    payloads = [k for k in ref_files if not k.endswith(".json")]
    assert {k: store.read_bytes(k) for k in payloads} == {k: reference.store.read_bytes(k) for k in payloads}
    assert_same_results(store, reference)
    assert verify_store(store).findings == []
