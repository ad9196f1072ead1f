"""`roar compact`: per-trial rows merged into dataset=/protocol= partitions, no row lost, idempotent."""
from __future__ import annotations

import pytest

from roar.storage import Store
from sweep import compact as compact_mod
from sweep import rows
from sweep.compact import CompactError, compact

from test_sweep_rows import make_row


def stored(store: Store) -> dict:
    """trial_id -> full row dict, over row files and compacted parts."""
    return {r["trial_id"]: r for r in rows.read_all(store).to_pylist()}


def files(store: Store) -> list[str]:
    return store.list("")


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "store"))
    for i in range(8):
        rows.write_row(s, make_row(i, status="failed" if i == 5 else "ok",
                                   dataset=("synthetic", "digits")[i % 2], protocol=("roar", "kar")[i // 4]))
    return s


def test_compaction_keeps_every_row(store):
    before = stored(store)
    report = compact(store)
    after = stored(store)
    assert after == before                       # every column of every row, failed one included
    assert store.list("rows") == []
    parts = files(store)
    assert len(parts) == 4 and all(k.startswith("compacted/dataset=") for k in parts)
    assert sorted(k.rsplit("/", 1)[0] for k in parts) == [
        "compacted/dataset=digits/protocol=kar", "compacted/dataset=digits/protocol=roar",
        "compacted/dataset=synthetic/protocol=kar", "compacted/dataset=synthetic/protocol=roar"]
    assert (report.row_files_merged, report.trials_before, report.trials_after) == (8, 8, 8)
    # each part holds only its partition's rows
    for key in parts:
        table = rows.read_row_file(store, key, ["dataset", "protocol"])
        d, p = key.split("/")[1][8:], key.split("/")[2][9:]
        assert set(table.column("dataset").to_pylist()) == {d} and set(table.column("protocol").to_pylist()) == {p}


def test_compaction_is_idempotent(store):
    compact(store)
    parts, content = files(store), stored(store)
    report = compact(store)
    assert report.partitions_written == [] and report.row_files_merged == 0
    assert files(store) == parts and stored(store) == content


def test_new_rows_and_a_retried_trial_merge_into_existing_parts(store):
    compact(store)
    failed_id = make_row(5, dataset="digits", protocol="kar")["trial_id"]
    rows.write_row(store, make_row(5, status="ok", dataset="digits", protocol="kar", finished_minute=3))
    rows.write_row(store, make_row(20, dataset="synthetic", protocol="roar"))
    compact(store)
    after = stored(store)
    assert len(after) == 9 and after[failed_id]["status"] == "ok"
    assert store.list("rows") == []
    # the retried trial's partition was rewritten as one part; the new row got a part of its own
    assert len(store.list("compacted/dataset=digits/protocol=kar")) == 1
    assert len(store.list("compacted/dataset=synthetic/protocol=roar")) == 2
    table = rows.read_rows(store, files(store), ["trial_id"])
    assert table.num_rows == 9                    # the failed version is gone, not duplicated


def test_interrupted_compaction_leaves_duplicates_that_the_next_one_merges(store):
    compact(store)
    part = next(k for k in files(store) if "dataset=synthetic/protocol=roar" in k)
    # as if a compaction crashed after writing a new part but before deleting the old one
    store.write_bytes(part.replace("part-", "part-zz"), store.read_bytes(part))
    assert rows.read_rows(store, files(store), ["trial_id"]).num_rows == 10
    compact(store)
    assert rows.read_rows(store, files(store), ["trial_id"]).num_rows == 8
    assert len(files(store)) == 4


def test_damaged_row_file_is_quarantined_named_and_not_merged(store, tmp_path):
    bad = make_row(30)
    (tmp_path / "store" / "rows" / f"{bad['trial_id']}.parquet").write_bytes(b"PAR1trunc")
    report = compact(store)
    key = rows.row_key(bad["trial_id"])
    assert report.bad_row_files == [key] and store.list("rows") == []
    dest = report.quarantined[key]
    assert dest.startswith(f"quarantine/{key}.") and store.read_bytes(dest) == b"PAR1trunc"
    assert f"moved invalid row file {key} to {dest}: truncated or not Parquet" in report.text(store.uri)
    assert len(stored(store)) == 8 and bad["trial_id"] not in rows.scan(store).done


def test_failed_verification_deletes_nothing_of_that_partition(store, monkeypatch):
    before_files, before = files(store), stored(store)
    real = compact_mod.store_read.read_part

    def lossy(fs, path, columns=None):
        table = real(fs, path, columns)
        return table.slice(1) if "/compacted/" in path else table  # the new part "lost" a row

    monkeypatch.setattr(compact_mod.store_read, "read_part", lossy)
    with pytest.raises(CompactError, match="were all kept"):
        compact(store)
    monkeypatch.undo()
    assert set(before_files) <= set(files(store))  # all row files still there
    assert stored(store) == before


# --- kill -9 at any point -------------------------------------------------------------------------
CRASHING_COMPACT = '''
import os, signal, sys
from roar.storage import Store
from sweep.compact import compact

uri, op, after = sys.argv[1], sys.argv[2], int(sys.argv[3])
real = getattr(Store, op)
calls = [0]

def crashing(self, *args):
    real(self, *args)
    calls[0] += 1
    if calls[0] == after:                      # the op landed; the process dies before anything else
        os.kill(os.getpid(), signal.SIGKILL)

setattr(Store, op, crashing)
compact(Store(uri))
'''


def _raw_ids(store: Store) -> list[str]:
    """Trial ids as a plain reader sees them: every row of compacted/ and rows/, no dedupe."""
    return [r for k in files(store) if not k.startswith(("_index/", "quarantine/"))
            for r in rows.read_row_file(store, k, ["trial_id"]).column("trial_id").to_pylist()]


@pytest.mark.parametrize("op,after", [("write_bytes", 1), ("write_bytes", 2), ("write_bytes", 3),
                                      ("delete", 1), ("delete", 4), ("delete", 9)])
def test_kill_9_mid_compaction_loses_and_duplicates_nothing(store, tmp_path, op, after):
    import subprocess
    import sys

    compact(store)                                             # a compacted store ...
    failed_id = make_row(5, dataset="digits", protocol="kar")["trial_id"]
    rows.write_row(store, make_row(5, status="ok", dataset="digits", protocol="kar", finished_minute=3))
    for i in range(40, 52):                                     # ... a retried trial and 12 new rows
        rows.write_row(store, make_row(i, dataset=("synthetic", "digits")[i % 2], protocol=("roar", "kar")[i % 3 > 0]))
    expected = stored(store)
    assert len(expected) == 20 and expected[failed_id]["status"] == "ok"
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_COMPACT)
    proc = subprocess.run([sys.executable, str(script), store.uri, op, str(after)], capture_output=True,
                          timeout=120, env={**__import__("os").environ})
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert stored(store) == expected                            # readers that dedupe: nothing lost
    report = compact(store)                                     # the next compaction repairs the rest
    assert stored(store) == expected and store.list("rows") == []
    raw = _raw_ids(store)
    assert sorted(raw) == sorted(expected)                      # plain readers: each trial exactly once
    assert report.trials_after == 20


def test_one_compaction_at_a_time_and_a_crashed_holder_is_taken_over(store, tmp_path):
    import json
    import socket

    lock = tmp_path / "store" / compact_mod.LOCK_KEY
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": __import__("os").getpid(),
                                "time": __import__("time").time()}))      # held by a live process
    with pytest.raises(compact_mod.CompactBusy, match="another compaction is running"):
        compact(store)
    assert len(store.list("rows")) == 8                                   # nothing changed
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 7, "time": 0}))  # crashed
    assert compact(store).row_files_merged == 8 and not lock.exists()


def test_parts_of_the_old_layout_are_rewritten_without_partition_columns(store):
    import pyarrow.parquet as pq

    from analysis import layout

    before = stored(store)
    table = rows.read_all(store)                                 # as the old compaction wrote them:
    for d in ("synthetic", "digits"):                            # partition columns inside the file too
        for p in ("roar", "kar"):
            part = table.filter((table.column("dataset").to_numpy(zero_copy_only=False) == d)
                                & (table.column("protocol").to_numpy(zero_copy_only=False) == p))
            store.write_bytes(f"{layout.partition_dir({'dataset': d, 'protocol': p})}/part-old.parquet",
                              _parquet(part))
    for key in store.list("rows"):
        store.delete(key)
    assert stored(store) == before
    report = compact(store)
    assert len(report.partitions_rewritten) == 4 and report.parts_deleted == 4
    parts = store.list("compacted")
    assert len(parts) == 4 and not [k for k in parts if k.endswith("part-old.parquet")]
    for key in parts:
        assert not {"dataset", "protocol"} & set(pq.read_schema(store.path(key)).names)
    assert stored(store) == before


def _parquet(table) -> bytes:
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
