"""`roar verify STORE`: a clean store passes; each kind of damage planted in it is found, named by its key,
and makes the exit code 1; orphans and temp files are warnings (exit 1 only with --strict); nothing is
changed by verifying. Stores are built by hand here (no Ray): rows through sweep.rows, artifacts through
roar.artifacts."""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from s3_server import SECRET_KEY, moto_server, s3  # noqa: F401  (fixtures)

from analysis.schema import rows_to_table
from roar.artifacts import MAPS_DIR, MODELS_DIR, save_maps, save_model
from roar.spec import TrialSpec
from roar.storage import Store
from sweep import cli, rows
from sweep.compact import compact
from sweep.grid import expand
from sweep.spec import load_spec
from sweep.verify import PROBLEM, WARNING, verify_store
from sweep.verify_cli import main

SMOKE = Path(__file__).resolve().parent.parent / "specs" / "smoke.yaml"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
BASE = TrialSpec(dataset="synthetic", subset=64, epochs=1, width=4, attribution="saliency", postprocess="gaussian")
TRIALS = [BASE.replace(sigma=0.0), BASE.replace(sigma=1.0), BASE.replace(attribution="random", fraction=0.2)]


def ok_row(spec: TrialSpec, accuracy: float = 0.5, minute: int = 0) -> dict:
    row = rows.failed_row(spec, "verify-test", "unused")
    row.update(status="ok", error=None, accuracy=accuracy, base_accuracy=0.9, n_test=100,
               started_at=T0, finished_at=T0 + dt.timedelta(minutes=minute))
    return row


def add_artifacts(store: Store, spec: TrialSpec) -> None:
    torch.manual_seed(0)
    save_model(store, spec.base_model_key(), torch.nn.Linear(3, 2),
               {"fields": spec.model_key_fields()})
    maps = {"train": np.linspace(0, 1, 2 * 4 * 4).reshape(2, 4, 4), "test": np.ones((1, 4, 4))}
    save_maps(store, spec.maps_key(), maps, {"fields": spec.maps_key_fields()})


def build(store: Store) -> Store:
    """Three ok trials (two share their maps) and the artifacts they used."""
    for spec in TRIALS:
        rows.write_row(store, ok_row(spec))
        add_artifacts(store, spec)
    return store


@pytest.fixture
def store(tmp_path) -> Store:
    return build(Store(str(tmp_path / "store")))


def snapshot(store: Store) -> dict[str, bytes]:
    return {k: store.read_bytes(k) for k in store.list()}


def only(findings, severity):
    return [(f.check, f.key, f.message) for f in findings if f.severity == severity]


def test_clean_store_passes_and_verify_changes_nothing(store, capsys):
    before = snapshot(store)
    report = verify_store(store)
    assert report.findings == []
    assert report.counts == {"row_files": 3, "compacted_parts": 0, "compacted_rows": 0, "trials": 3,
                             "models": 1, "map_sets": 2}
    assert main([store.uri]) == 0 and main([store.uri, "--strict"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (f"roar verify {store.uri}: 3 row file(s), 0 compacted part(s) with 0 row(s), "
                                   f"3 trial(s); 1 cached model(s), 2 map set(s)")
    assert "verify OK: 0 problem(s), 0 warning(s)" in out
    assert snapshot(store) == before


def test_compacted_store_passes(store):
    compact(store)
    report = verify_store(store)
    assert report.findings == [] and report.counts["compacted_rows"] == 3 and report.counts["row_files"] == 0


def _truncate(store, key):
    data = store.read_bytes(key)
    store.write_bytes(key, data[: len(data) // 2])


def _replace_row(store, key, **changes):
    row = rows.read_row_file(store, key).to_pylist()[0]
    row.update(changes)
    store.write_bytes(key, rows.encode_row(row))


def _write_table(store, key, table):
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store.write_bytes(key, buf.getvalue())


def _flip_byte(store, key):
    data = bytearray(store.read_bytes(key))
    data[len(data) // 2] ^= 0xFF
    store.write_bytes(key, bytes(data))


ROW0 = rows.row_key(TRIALS[0].trial_id)
MODEL = f"{MODELS_DIR}/{BASE.base_model_key()}"
MAPS0 = f"{MAPS_DIR}/{TRIALS[0].maps_key()}"
MAPS2 = f"{MAPS_DIR}/{TRIALS[2].maps_key()}"

# name -> (plant the damage, expected problems as (check, key, start of message))
DAMAGE = {
    "zero-byte row file": (lambda s: s.write_bytes(ROW0, b""),
                           [("rows", ROW0, "empty file (0 bytes)")]),
    "truncated row file": (lambda s: _truncate(s, ROW0),
                           [("rows", ROW0, "truncated or not Parquet (")]),
    "wrong column type": (lambda s: _write_table(s, ROW0, pa.table({
        "trial_id": [TRIALS[0].trial_id], "dataset": ["synthetic"], "attribution": ["saliency"], "protocol": ["roar"],
        "fraction": [0.5], "seed": ["zero"], "status": ["ok"]})),
                          [("rows", ROW0, "does not match the result schema: column 'seed': expected "
                                          "int64, found string")]),
    "column outside the schema": (lambda s: _write_table(s, ROW0, rows_to_table([ok_row(TRIALS[0])]).append_column(
        "acuracy", pa.array([0.5]))), [("rows", ROW0, "columns outside the result schema ['acuracy']")]),
    "row under another trial's name": (lambda s: s.write_bytes(ROW0, s.read_bytes(rows.row_key(TRIALS[1].trial_id))),
                                       [("rows", ROW0, f"holds trial {TRIALS[1].trial_id!r}, not the trial its name claims")]),
    "trial_id not the hash of config_json": (
        lambda s: _replace_row(s, ROW0, config_json=TRIALS[1].canonical_json()),
        [("rows", ROW0, f"trial_id {TRIALS[0].trial_id!r} is not the hash of its config_json")]),
    "unknown status": (lambda s: _replace_row(s, ROW0, status="done"),
                       [("rows", ROW0, "status 'done'; valid: ['ok', 'failed']")]),
    "model payload changed": (lambda s: _flip_byte(s, f"{MODEL}.pt"),
                              [("artifacts", MODEL, f"{MODEL}.pt: content does not match its recorded sha256")]),
    "map payload missing": (lambda s: s.delete(f"{MAPS0}/train.npy"),
                            [("artifacts", f"{MAPS0}/", f"{MAPS0}/train.npy: missing")]),
    "artifact under another key": (
        lambda s: [s.write_bytes(f"{MAPS2}/{n}", s.read_bytes(f"{MAPS0}/{n}")) for n in ("train.npy", "test.npy",
                                                                                         "meta.json")],
        [("artifacts", f"{MAPS2}/", f"its meta fields do not hash to the key {TRIALS[2].maps_key()!r}")]),
    "unreadable meta": (lambda s: s.write_bytes(f"{MODEL}.json", b"{not json"),
                        [("artifacts", f"{MODEL}.json", "unreadable meta file: JSONDecodeError")]),
    "meta of the wrong shape": (lambda s: s.write_bytes(f"{MAPS0}/meta.json", b"[1, 2]"),
                                [("artifacts", f"{MAPS0}/meta.json", "unreadable meta file: AttributeError")]),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damage_is_found_and_named(store, name, capsys):
    plant, expected = DAMAGE[name]
    plant(store)
    report = verify_store(store)
    problems = only(report.findings, PROBLEM)
    assert [(c, k) for c, k, _ in problems] == [(c, k) for c, k, _ in expected], problems
    for (_, _, message), (_, _, start) in zip(problems, expected):
        assert message.startswith(start), message
    assert main([store.uri]) == 1
    out = capsys.readouterr().out
    assert expected[0][1] in out and "verify FAILED: 1 problem(s)" in out


def _part(store: Store, name: str, row_list: list[dict]) -> str:
    key = f"compacted/dataset=synthetic/protocol=roar/part-{name}.parquet"
    _write_table(store, key, rows_to_table(row_list))
    return key


def test_trial_twice_in_compacted_is_a_problem(store):
    a = _part(store, "a", [ok_row(TRIALS[0])])
    b = _part(store, "b", [ok_row(TRIALS[0]), ok_row(TRIALS[1])])
    store.delete(ROW0)
    store.delete(rows.row_key(TRIALS[1].trial_id))
    problems = only(verify_store(store).findings, PROBLEM)
    assert problems == [("duplicates", f"trial {TRIALS[0].trial_id}", f"2 rows in compacted/ ({a}, {b}); "
                                                                      f"`roar compact` merges them")]


def test_disagreeing_ok_rows_in_rows_and_compacted_are_a_problem(store):
    part = _part(store, "a", [ok_row(TRIALS[0], accuracy=0.75, minute=5)])
    problems = only(verify_store(store).findings, PROBLEM)
    assert problems == [("duplicates", ROW0, f"disagrees with {part} in ['accuracy']: two different results "
                                             f"for one trial")]


def test_harmless_copies_are_warnings(store):
    # same result, other timing (an interrupted compaction) and a retried failure: dedupe resolves both
    same = _part(store, "a", [ok_row(TRIALS[0], minute=9)])
    failed = rows.failed_row(TRIALS[1], "verify-test", "RuntimeError: boom")
    retried = _part(store, "b", [failed])
    report = verify_store(store)
    assert only(report.findings, PROBLEM) == []
    assert sorted(only(report.findings, WARNING)) == sorted([
        ("duplicates", ROW0, f"also in {same} (a compaction interrupted before deleting row files); "
                             f"`roar compact` removes the copy"),
        ("duplicates", rows.row_key(TRIALS[1].trial_id), f"ok here, failed in {retried} (a retried trial); the "
                                                          f"ok row counts, `roar compact` drops the other")])
    assert report.exit_code() == 0 and report.exit_code(strict=True) == 1


def test_orphans_and_temp_files_are_warnings_and_kept(store, tmp_path, capsys):
    stray = TrialSpec(dataset="synthetic", subset=64, epochs=1, width=4, seed=7)
    add_artifacts(store, stray)
    temp = Path(store.root) / "rows" / ".tmp-0123-abc.parquet"
    temp.write_bytes(b"half a row")
    (Path(store.root) / MODELS_DIR / "unpaired.pt").write_bytes(b"x")
    before = snapshot(store)
    report = verify_store(store)
    assert only(report.findings, PROBLEM) == []
    assert sorted(only(report.findings, WARNING)) == sorted([
        ("artifacts", f"{MODELS_DIR}/unpaired", "payload without its meta file (a stage interrupted before it "
                                                 "finished); recomputed when a trial needs it"),
        ("orphans", f"{MODELS_DIR}/{stray.base_model_key()}", "no stored row refers to it (kept)"),
        ("orphans", f"{MAPS_DIR}/{stray.maps_key()}/", "no stored row refers to it (kept)"),
        ("orphans", f"{MODELS_DIR}/unpaired", "no stored row refers to it (kept)"),
        ("orphans", "rows/.tmp-0123-abc.parquet", "temp file of an interrupted write (or of a sweep writing now); "
                                                  "readers ignore it, safe to delete once no sweep runs")])
    assert main([store.uri]) == 0 and main([store.uri, "--strict"]) == 1
    assert snapshot(store) == before and temp.read_bytes() == b"half a row"   # reported, never deleted


def test_artifacts_of_the_spec_are_not_orphans(tmp_path, capsys):
    spec = load_spec(str(SMOKE), check_environment=False)
    trial = expand(spec)[0]
    store = Store(str(tmp_path / "store"))
    add_artifacts(store, trial)
    assert [f.check for f in verify_store(store).findings] == ["orphans", "orphans"]
    assert verify_store(store, expand(spec)).findings == []
    assert main([store.uri, "--spec", str(SMOKE), "--strict"]) == 0


def test_missing_store_and_bad_spec_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert f"roar verify: cannot read {str(tmp_path / 'nope')!r}: results store" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("name: x\nstore: s\nbogus: 1\n")
    assert main([str(tmp_path), "--spec", str(tmp_path / "bad.yaml")]) == 2


def test_roar_cli_dispatches_verify(store, capsys):
    assert cli.main(["verify", store.uri]) == 0
    assert "verify OK" in capsys.readouterr().out


def test_s3_store_is_verified_the_same_way(s3, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    store = build(Store(s3.uri("store")))
    assert verify_store(store).findings == []
    _truncate(store, ROW0)
    assert main([store.uri]) == 1
    out = capsys.readouterr().out
    assert f"[rows] {ROW0}: truncated or not Parquet (" in out and SECRET_KEY not in out
