"""The first read of row files the index has not seen (issue 15): worker processes validate exactly what
the in-process reader does, invalid files included; a failing worker falls back; a row file is written
plain (one encoder for the sweep and the test writer); the sweep's driver keeps the index current."""
from __future__ import annotations

import io
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import layout, row_workers, store_read
from analysis.schema import ROW_FILE_SCHEMA, encode_row_file
from analysis.testing import fake_results, frame_to_rows, write_rows
from roar.storage import Store
from sweep.row_indexer import RowIndexer


@pytest.fixture
def mixed_store(tmp_path):
    """60 valid row files and three invalid ones (truncated, foreign schema, another trial's row)."""
    root = str(tmp_path / "store")
    df = fake_results(seed=0, n_seeds=1, methods=("saliency", "random"), sigmas=(0.0, 1.0, 2.0),
                      fractions=(0.1, 0.3, 0.5, 0.7, 0.9), protocols=("roar", "road_morf"), datasets=("mnist",))
    assert len(df) == 60
    write_rows(df, root)
    rows_dir = os.path.join(root, "rows")
    names = sorted(os.listdir(rows_dir))
    own = open(os.path.join(rows_dir, names[0]), "rb").read()
    open(os.path.join(rows_dir, "truncated0000.parquet"), "wb").write(own[: len(own) // 2])
    foreign = io.BytesIO()
    pq.write_table(pa.table({"id": [1]}), foreign)
    open(os.path.join(rows_dir, "foreign00000.parquet"), "wb").write(foreign.getvalue())
    open(os.path.join(rows_dir, "renamed00000.parquet"), "wb").write(own)
    return root


def _keys(root):
    return sorted(f"rows/{n}" for n in os.listdir(os.path.join(root, "rows")))


def _by_key(keys, table):
    return dict(zip(keys, table.to_pylist()))


def test_workers_validate_exactly_what_the_reader_does(mixed_store):
    fs, root = layout.filesystem(mixed_store)
    keys = _keys(root)
    here = store_read.validate_files(fs, root, keys)
    there = row_workers.validate_in_workers(root, keys, workers=2)
    assert there is not None
    assert sorted(there[0]) == sorted(here[0]) and len(here[0]) == 60
    assert _by_key(there[0], there[1]) == _by_key(here[0], here[1])
    assert sorted(there[2]) == sorted(here[2])
    reasons = dict(here[2])
    assert reasons["rows/truncated0000.parquet"].startswith("truncated or not Parquet")
    assert reasons["rows/foreign00000.parquet"].startswith("columns outside the result schema")
    assert reasons["rows/renamed00000.parquet"].startswith("holds trial ")


def test_scan_uses_workers_above_the_threshold_and_indexes_their_rows(mixed_store, monkeypatch):
    monkeypatch.setattr(row_workers, "MIN_FILES", 10)
    used = []
    real = row_workers.validate_in_workers
    monkeypatch.setattr(row_workers, "validate_in_workers",
                        lambda root, keys, workers=None: used.append(len(keys)) or real(root, keys, 2))
    fs, root = layout.filesystem(mixed_store)
    cold = store_read.scan_rows(fs, root)
    assert used == [63] and cold.read_now == 63 and cold.table.num_rows == 60 and len(cold.invalid) == 3
    warm = store_read.scan_rows(fs, root)
    assert warm.read_now == 3 and warm.from_index == 60      # only the invalid files are read again
    assert _by_key(warm.keys, warm.table) == _by_key(cold.keys, cold.table)


def test_a_failing_worker_falls_back_to_reading_in_process(mixed_store, monkeypatch):
    fs, root = layout.filesystem(mixed_store)
    monkeypatch.setattr(sys, "executable", "/bin/false")      # every worker exits 1 at once
    assert row_workers.validate_in_workers(root, _keys(root), workers=2) is None
    monkeypatch.setattr(row_workers, "MIN_FILES", 10)
    scan = store_read.scan_rows(fs, root)
    assert scan.table.num_rows == 60 and len(scan.invalid) == 3


def test_a_row_file_is_plain_and_round_trips():
    (row,) = frame_to_rows(fake_results(seed=1, n_seeds=1, methods=("saliency",), sigmas=(1.0,), fractions=(0.5,),
                                        protocols=("roar",), datasets=("mnist",)).head(1))
    data = encode_row_file(row)
    pf = pq.ParquetFile(io.BytesIO(data))
    chunks = [pf.metadata.row_group(0).column(i) for i in range(pf.metadata.num_columns)]
    assert {c.compression for c in chunks} == {"UNCOMPRESSED"}
    assert not any(c.is_stats_set for c in chunks)
    assert not any(c.has_dictionary_page for c in chunks)
    assert pf.schema_arrow.equals(ROW_FILE_SCHEMA)
    assert not any(f.metadata for f in pf.schema_arrow)          # the prose lives in analysis.schema
    back = pf.read().to_pylist()[0]
    assert back["trial_id"] == row["trial_id"] and back["accuracy"] == row["accuracy"]


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_sweep_driver_keeps_the_row_index_current(tmp_path):
    root = str(tmp_path / "store")
    df = fake_results(seed=0, n_seeds=1, methods=("saliency",), sigmas=(0.0, 1.0), fractions=(0.1, 0.5),
                      protocols=("roar",), datasets=("mnist",))
    write_rows(df.head(3), root)
    clock, lines = _Clock(), []
    indexer = RowIndexer(Store(root), interval_s=60, out=lines.append, clock=clock)
    indexer.on_step_end(0, [])
    assert indexer.refreshes == 0                               # nothing ended yet
    indexer.on_trial_complete(0, [], None)
    clock.now = 59
    indexer.on_step_end(0, [])
    assert indexer.refreshes == 0                               # not a minute yet
    clock.now = 61
    indexer.on_step_end(0, [])
    assert indexer.refreshes == 1 and indexer.pending == 0
    fs, r = layout.filesystem(root)
    scan = store_read.scan_rows(fs, r)
    assert (scan.from_index, scan.read_now) == (3, 0)           # the next command reads no row file
    assert lines == []


def test_an_index_that_cannot_be_written_is_reported_once_and_never_stops_the_sweep(tmp_path):
    root = str(tmp_path / "store")
    df = fake_results(seed=0, n_seeds=1, methods=("saliency",), sigmas=(0.0,), fractions=(0.1, 0.5),
                      protocols=("roar",), datasets=("mnist",))
    write_rows(df.head(2), root)
    (tmp_path / "store" / "_index").write_text("a file where the index folder belongs")
    lines = []
    indexer = RowIndexer(Store(root), interval_s=0, out=lines.append)
    for _ in range(2):
        indexer.on_trial_complete(0, [], None)
        indexer.on_step_end(0, [])
    assert indexer.refreshes == 2 and indexer.error and len(lines) == 1
    assert "loses nothing" in lines[0]
