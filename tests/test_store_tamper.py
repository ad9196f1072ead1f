"""Row files that must not fool resume (issue 18 items 5-6): a row counts as done only when it is a valid
row of this schema whose trial_id is its file name; anything else is moved to quarantine/ (named in the
output) and its trial redone. Store commands on a store that does not exist fail clearly."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.io import SkippedFileWarning, load
from roar.storage import Store
from sweep import cli, rows
from sweep.compact import compact
from sweep.runner import make_plan
from sweep.spec import ClusterInfo, load_spec
from sweep.status import store_status

SMOKE = str(Path(__file__).resolve().parent.parent / "specs" / "smoke.yaml")


def ok_row(spec):
    row = rows.failed_row(spec, "smoke", "")
    row.update(status="ok", error=None, accuracy=0.5)
    return row


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


# name -> (bytes planted under trial 0's name, given the encoded rows of trials 0 and 1; start of the reason)
TAMPER = {
    "foreign schema": (lambda own, other: _parquet(pa.table({"id": [1], "score": [0.5]})),
                       "columns outside the result schema"),
    "another trial's row under this name": (lambda own, other: other, "holds trial "),
    "two rows in one file": (lambda own, other: _parquet(pa.concat_tables(
        [pq.read_table(io.BytesIO(own)), pq.read_table(io.BytesIO(own))])), "a row file holds 1 row, found 2"),
    "unknown status": (lambda own, other: _parquet(pq.read_table(io.BytesIO(own)).set_column(
        pq.read_table(io.BytesIO(own)).schema.get_field_index("status"), "status", pa.array(["done"]))),
        "status 'done'"),
    "truncated": (lambda own, other: own[: len(own) // 2], "truncated or not Parquet"),
    "empty": (lambda own, other: b"", "empty file (0 bytes)"),
}


@pytest.fixture
def planted(tmp_path, request):
    spec = load_spec(SMOKE, store=str(tmp_path / "store"), cluster=ClusterInfo(cpus=2, gpus=0))
    store = Store(spec.store)
    trials = make_plan(spec).trials
    encoded = [rows.encode_row(ok_row(t)) for t in trials[:3]]
    for t in trials[1:3]:
        rows.write_row(store, ok_row(t))
    make, reason = TAMPER[request.param]
    key = rows.row_key(trials[0].trial_id)
    store.write_bytes(key, make(encoded[0], encoded[1]))
    return spec, store, trials, key, reason


@pytest.mark.parametrize("planted", list(TAMPER), indirect=True)
def test_tampered_row_is_not_done_and_is_quarantined_by_run(planted):
    spec, store, trials, key, reason = planted
    status = store_status(store)
    assert (status.ok, status.bad_files) == (2, 1) and status.bad[0][0] == key
    assert status.bad[0][1].startswith(reason) and key in status.text(store.uri)
    assert store.exists(key)                                     # status moves nothing
    with pytest.warns(SkippedFileWarning, match=re.escape(reason[:20])):
        assert len(load(store.uri).ok) == 2                      # readers skip it, saying why

    plan = make_plan(spec)
    assert trials[0].trial_id not in plan.done and trials[0] in plan.todo   # the trial is redone
    assert plan.done == {t.trial_id for t in trials[1:3]}
    assert plan.pruned == [key] and not store.exists(key)
    (line,) = plan.quarantine_lines
    dest = line.split(" -> ")[1].split(": ")[0]
    assert line.startswith(f"{key} -> quarantine/{key}.") and reason in line
    assert store.exists(dest) and store.exists(dest + ".reason.txt")
    after = load(store.uri)                                      # a quarantined file is no longer read
    assert len(after.ok) == 2 and after.skipped == []


@pytest.mark.parametrize("planted", ["another trial's row under this name", "foreign schema"], indirect=True)
def test_compact_quarantines_instead_of_merging_or_deleting(planted):
    spec, store, trials, key, reason = planted
    report = compact(store)
    assert report.trials_after == 2 and report.row_files_merged == 2
    assert list(report.quarantined) == [key] and store.list("rows") == []
    text = report.text(store.uri)
    assert f"moved invalid row file {key} to {report.quarantined[key]}: {reason}" in text
    assert rows.scan(store).done == {t.trial_id for t in trials[1:3]}


@pytest.mark.parametrize("command", [["status"], ["compact"], ["verify"]])
def test_store_commands_on_a_missing_store_fail_clearly(tmp_path, capsys, command):
    missing = str(tmp_path / "no-such-store")
    assert cli.main(command + [missing]) == 2
    err = capsys.readouterr().err
    assert "no-such-store" in err and "does not exist" in err
    assert not (tmp_path / "no-such-store").exists()


def test_index_is_trusted_by_stamp_and_verify_full_rereads_every_file(tmp_path):
    """The row index keys each validated row by its file's size and mtime: a change to either is read
    again. An edit that keeps both (a deliberate forgery) needs `roar verify --full`."""
    import os

    from sweep.verify import PROBLEM, verify_store

    spec = load_spec(SMOKE, store=str(tmp_path / "store"), cluster=ClusterInfo(cpus=2, gpus=0))
    store = Store(spec.store)
    trials = make_plan(spec).trials
    for t in trials[:2]:
        rows.write_row(store, ok_row(t))
    assert store_status(store).ok == 2                            # validated into the index
    key = rows.row_key(trials[0].trial_id)
    path = store.path(key)
    data, stat = bytearray(Path(path).read_bytes()), os.stat(path)
    data[-1] ^= 0xFF                                              # a changed byte (footer magic), same size ...
    Path(path).write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))       # ... and the old mtime
    assert [f for f in verify_store(store).findings if f.severity == PROBLEM] == []
    full = [f for f in verify_store(store, full=True).findings if f.severity == PROBLEM]
    assert [f.key for f in full] == [key]
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # any real rewrite moves the mtime:
    assert store_status(store).bad_files == 1                     # read again, found out
