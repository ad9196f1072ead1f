"""Per-trial result rows in the store: ``rows/<trial_id>.parquet``, one single-row Parquet file each.

A row file is written once, atomically (``Store.write_bytes``), so it is either complete or absent on
every backend; a file left truncated or empty by a crash of a non-atomic file system fails the footer
check and counts as missing (and is deleted, so the trial is redone). ``roar compact`` moves rows into
``compacted/dataset=<d>/protocol=<p>/part-<hash>.parquet``; the set of finished trials is the union
of both places.
"""
from __future__ import annotations

import datetime as dt
import io
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.schema import COLUMNS, SCHEMA_VERSION, conform, rows_to_table
from roar.spec import TrialSpec
from roar.storage import Store

ROWS_DIR = "rows"
COMPACTED_DIR = "compacted"
SUFFIX = ".parquet"
_IO_THREADS = 16  # footer reads are latency-bound on object stores


def row_key(trial_id: str) -> str:
    return f"{ROWS_DIR}/{trial_id}{SUFFIX}"


def trial_id_of(key: str) -> str:
    return posixpath.basename(key)[: -len(SUFFIX)]


def encode_row(row: dict) -> bytes:
    """One row dict -> Parquet bytes in the contract's schema (unknown keys raise SchemaError)."""
    buf = io.BytesIO()
    pq.write_table(rows_to_table([row]), buf, compression="zstd")
    return buf.getvalue()


def write_row(store: Store, row: dict) -> str:
    """Write a row under rows/<trial_id>.parquet atomically; returns the key."""
    key = row_key(row["trial_id"])
    store.write_bytes(key, encode_row(row))
    return key


def read_row_file(store: Store, key: str, columns: list[str] | None = None) -> pa.Table:
    table = pq.read_table(io.BytesIO(store.read_bytes(key)))
    table = conform(table)
    return table.select(columns) if columns else table


def row_file_ok(store: Store, key: str) -> bool:
    """Footer check: the file parses as Parquet with at least one row. Reads only the footer."""
    try:
        meta = pq.read_metadata(store.path(key), filesystem=store.fs)
        return meta.num_rows >= 1
    except (OSError, pa.ArrowException, ValueError):
        return False


def _map(store: Store, fn, items):
    if store.is_local or len(items) < 8:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        return list(pool.map(fn, items))


@dataclass
class StoredRows:
    """What the store holds: trial ids with a valid row, and the files that failed the footer check."""

    row_keys: dict[str, str] = field(default_factory=dict)      # trial_id -> rows/<id>.parquet
    compacted_ids: set[str] = field(default_factory=set)
    bad_keys: list[str] = field(default_factory=list)           # truncated / empty row files

    @property
    def done(self) -> set[str]:
        return set(self.row_keys) | self.compacted_ids


def compacted_keys(store: Store) -> list[str]:
    return store.list(COMPACTED_DIR, suffix=SUFFIX)


def scan(store: Store, prune_bad: bool = True) -> StoredRows:
    """Find every stored row; bad row files are deleted when prune_bad (so their trials are redone)."""
    out = StoredRows()
    keys = store.list(ROWS_DIR, suffix=SUFFIX)
    for key, ok in zip(keys, _map(store, lambda k: row_file_ok(store, k), keys)):
        if ok:
            out.row_keys[trial_id_of(key)] = key
        else:
            out.bad_keys.append(key)
    for table in _map(store, lambda k: read_row_file(store, k, ["trial_id"]), compacted_keys(store)):
        out.compacted_ids.update(table.column("trial_id").to_pylist())
    if prune_bad:
        for key in out.bad_keys:
            try:
                store.delete(key)
            except FileNotFoundError:
                pass  # another sweep pruned it first
    return out


def read_rows(store: Store, keys: list[str], columns: list[str] | None = None) -> pa.Table:
    """Concatenate row files (or compacted parts) into one table of the contract's schema."""
    tables = _map(store, lambda k: read_row_file(store, k, columns), keys)
    if not tables:
        empty = rows_to_table([])
        return empty.select(columns) if columns else empty
    return pa.concat_tables(tables)


def read_all(store: Store, columns: list[str] | None = None) -> pa.Table:
    """Every stored row (row files and compacted parts), one per trial_id (see ``dedupe``)."""
    cols = None if columns is None else sorted(set(columns) | {"trial_id", "status", "finished_at"},
                                               key=COLUMNS.index)
    stored = scan(store, prune_bad=False)
    table = read_rows(store, list(stored.row_keys.values()) + compacted_keys(store), cols)
    table = dedupe(table)
    return table.select(columns) if columns else table


def dedupe(table: pa.Table) -> pa.Table:
    """One row per trial_id: an 'ok' row beats a 'failed' one, then the latest finished_at wins.

    Duplicates arise only from a retried failed trial or a compaction interrupted between writing a
    part and deleting what it replaced; both hold the same trial.
    """
    if table.num_rows == 0:
        return table
    ids = np.asarray(table.column("trial_id").to_pylist(), dtype=object)
    not_ok = np.asarray([s != "ok" for s in table.column("status").to_pylist()])
    finished = table.column("finished_at").to_pylist()
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    age = np.asarray([-(f - epoch).total_seconds() if f is not None else np.inf for f in finished])
    order = np.lexsort((age, not_ok, ids))  # by id, then ok first, then newest first
    sorted_ids = ids[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return table.take(pa.array(np.sort(order[first])))


def failed_row(spec: TrialSpec, sweep_name: str, error: str) -> dict:
    """A status='failed' row for a trial that never ran (its base model or maps could not be made)."""
    now = dt.datetime.now(dt.timezone.utc)
    row = {k: v for k, v in spec.to_dict().items() if k in COLUMNS}
    row.update(trial_id=spec.trial_id, sweep=sweep_name, config_json=spec.canonical_json(), status="failed",
               error=error[:4000], started_at=now, finished_at=now, schema_version=SCHEMA_VERSION)
    return row
