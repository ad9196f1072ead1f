"""Per-trial row files: atomic write, footer check of damaged files, one row per trial when read."""
from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest

from analysis.schema import COLUMNS
from roar.spec import TrialSpec
from roar.storage import Store
from sweep import rows

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def make_row(i: int, status: str = "ok", dataset: str = "synthetic", protocol: str = "roar",
             finished_minute: int = 0, accuracy: float | None = None) -> dict:
    spec = TrialSpec(dataset=dataset, protocol=protocol, fraction=round(0.1 * (i % 9 + 1), 1), seed=i)
    row = rows.failed_row(spec, "test", "boom") if status == "failed" else {
        "trial_id": spec.trial_id, "sweep": "test", "dataset": dataset, "protocol": protocol,
        "attribution": spec.attribution, "fraction": spec.fraction, "seed": spec.seed, "status": "ok",
        "accuracy": 0.5 + i / 100 if accuracy is None else accuracy, "config_json": spec.canonical_json()}
    row["finished_at"] = T0 + dt.timedelta(minutes=finished_minute)
    return row


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "store"))


def test_write_then_read_one_row(store, tmp_path):
    row = make_row(3)
    key = rows.write_row(store, row)
    assert key == f"rows/{row['trial_id']}.parquet"
    assert sorted(p.name for p in (tmp_path / "store" / "rows").iterdir()) == [f"{row['trial_id']}.parquet"]
    table = rows.read_row_file(store, key)
    assert table.column_names == COLUMNS
    got = table.to_pylist()[0]
    assert {k: got[k] for k in ("trial_id", "dataset", "fraction", "seed", "status", "accuracy")} == {
        "trial_id": row["trial_id"], "dataset": "synthetic", "fraction": 0.4, "seed": 3, "status": "ok",
        "accuracy": 0.53}


def test_unknown_column_is_refused(store):
    with pytest.raises(ValueError, match="unknown result column"):
        rows.write_row(store, {**make_row(0), "acuracy": 1.0})
    assert store.list("rows") == []


def test_footer_check_finds_empty_and_truncated_files(store, tmp_path):
    good, empty, cut = make_row(0), make_row(1), make_row(2)
    rows.write_row(store, good)
    data = rows.encode_row(cut)
    folder = tmp_path / "store" / "rows"
    (folder / f"{empty['trial_id']}.parquet").write_bytes(b"")
    (folder / f"{cut['trial_id']}.parquet").write_bytes(data[: len(data) // 2])
    (folder / f".tmp-123-{cut['trial_id']}.parquet").write_bytes(data)  # a writer killed before rename

    assert rows.row_file_ok(store, rows.row_key(good["trial_id"]))
    assert not rows.row_file_ok(store, rows.row_key(empty["trial_id"]))
    assert not rows.row_file_ok(store, rows.row_key(cut["trial_id"]))

    found = rows.scan(store, prune_bad=False)
    assert found.done == {good["trial_id"]}
    assert sorted(found.bad_keys) == sorted([rows.row_key(empty["trial_id"]), rows.row_key(cut["trial_id"])])
    assert len(list(folder.iterdir())) == 4  # nothing deleted without prune_bad

    pruned = rows.scan(store)
    assert pruned.done == {good["trial_id"]}
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{good['trial_id']}.parquet", f".tmp-123-{cut['trial_id']}.parquet"])


def test_dedupe_prefers_ok_then_newest():
    a_failed, a_ok = make_row(1, "failed", finished_minute=9), make_row(1, "ok", finished_minute=1)
    b_old, b_new = make_row(2, accuracy=0.1, finished_minute=1), make_row(2, accuracy=0.9, finished_minute=5)
    c = make_row(3)
    from analysis.schema import rows_to_table
    table = rows.dedupe(rows_to_table([a_failed, b_old, c, b_new, a_ok]))
    got = {(r["trial_id"], r["status"], r["accuracy"]) for r in table.to_pylist()}
    assert got == {(a_ok["trial_id"], "ok", a_ok["accuracy"]), (b_new["trial_id"], "ok", 0.9),
                   (c["trial_id"], "ok", c["accuracy"])}
    assert table.num_rows == 3


def test_failed_row_carries_the_trial_identity():
    spec = TrialSpec(dataset="digits", attribution="random", sigma=2.0, postprocess="gaussian", fraction=0.3,
                     options=(("x", 1),))
    row = rows.failed_row(spec, "s", "ValueError: no")
    assert row["trial_id"] == spec.trial_id and row["status"] == "failed" and row["error"] == "ValueError: no"
    assert (row["dataset"], row["attribution"], row["sigma"], row["fraction"]) == ("digits", "random", 2.0, 0.3)
    assert TrialSpec.from_dict(__import__("json").loads(row["config_json"])) == spec
    assert "options" not in row and "lr" not in row  # only schema columns


def test_read_all_unions_row_files_and_compacted_parts(store):
    first, second, third = make_row(1, "failed"), make_row(2), make_row(3)
    buf = rows.encode_row(first)
    store.write_bytes("compacted/dataset=synthetic/protocol=roar/part-x.parquet", buf)
    rows.write_row(store, second)
    rows.write_row(store, third)
    rows.write_row(store, {**make_row(1), "finished_at": T0})   # the failed trial, retried
    table = rows.read_all(store, ["trial_id", "status"])
    assert sorted(zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist())) == sorted(
        [(first["trial_id"], "ok"), (second["trial_id"], "ok"), (third["trial_id"], "ok")])
    assert table.column_names == ["trial_id", "status"]
    assert rows.scan(store).done == {first["trial_id"], second["trial_id"], third["trial_id"]}


def test_row_file_is_plain_parquet(store, tmp_path):
    row = make_row(4)
    rows.write_row(store, row)
    table = pq.read_table(tmp_path / "store" / "rows" / f"{row['trial_id']}.parquet")
    assert table.num_rows == 1 and table.column("trial_id")[0].as_py() == row["trial_id"]


def test_trial_done_sees_row_files_and_ok_rows_compacted_by_another_sweep(store):
    from sweep.compact import compact

    ok, failed, absent = make_row(1), make_row(2, "failed"), make_row(3)
    spec = {r["trial_id"]: TrialSpec(dataset="synthetic", protocol="roar", fraction=round(0.1 * (i % 9 + 1), 1),
                                     seed=i) for i, r in ((1, ok), (2, failed), (3, absent))}
    rows.write_row(store, ok)
    rows.write_row(store, failed)
    assert rows.trial_done(store, spec[ok["trial_id"]]) and rows.trial_done(store, spec[failed["trial_id"]])
    compact(store)
    assert store.list("rows") == []
    assert rows.trial_done(store, spec[ok["trial_id"]])              # compacted ok row: done
    assert not rows.trial_done(store, spec[failed["trial_id"]])      # compacted failed row: a retry may run it
    assert not rows.trial_done(store, spec[absent["trial_id"]])
