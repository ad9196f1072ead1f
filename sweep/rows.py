"""Per-trial result rows in the store: ``rows/<trial_id>.parquet``, one single-row Parquet file each.

The layout (names, partitions, dedupe) is ``analysis.layout``; reading back at scale (the row index,
compacted parts) is ``analysis.store_read``. This module is the sweep's side: the one row writer
(``encode_row`` stamps ``SCHEMA_VERSION``), and what counts as a finished trial. A row file counts only
when it is a valid row of this schema whose trial_id is its file name (``store_read.parse_row_file``);
anything else (truncated, empty, a foreign schema, another trial's row under this name) is moved to
``quarantine/`` by the commands that act on the store (``roar run``, ``roar compact``) and its trial is
redone. ``roar compact`` folds rows into ``compacted/``; the finished trials are the union of both.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa

from analysis import layout, store_read
from analysis.layout import COMPACTED_DIR, ROWS_DIR, SUFFIX, dedupe, row_key, trial_id_of  # noqa: F401
from analysis.schema import COLUMNS, SCHEMA_VERSION, encode_row_file, rows_to_table
from roar.spec import TrialSpec
from roar.storage import Store


def encode_row(row: dict) -> bytes:
    """One row dict -> Parquet bytes in the contract's schema, stamped with SCHEMA_VERSION (unknown keys
    raise SchemaError). Every row the sweep writes goes through here."""
    return encode_row_file({**row, "schema_version": SCHEMA_VERSION})


def write_row(store: Store, row: dict) -> str:
    """Write a row under rows/<trial_id>.parquet atomically; returns the key."""
    key = row_key(row["trial_id"])
    store.write_bytes(key, encode_row(row))
    return key


def read_row_file(store: Store, key: str, columns: list[str] | None = None) -> pa.Table:
    """One row file or compacted part, conformed (raises on anything unreadable)."""
    return store_read.read_part(store.fs, store.path(key), columns)


def row_file_ok(store: Store, key: str) -> bool:
    """The file is a valid row of this schema whose trial_id is its name (so its trial is done)."""
    table, _ = store_read.read_row_file(store.fs, store.root, key)
    return table is not None


def trial_done(store: Store, spec: TrialSpec) -> bool:
    """A valid row of this trial is stored: its row file, or an ok row in its compacted partition
    (another sweep on the same store may have compacted it; a compacted failed row is being retried).
    Reads one file, or two columns of the few parts of one partition."""
    if row_file_ok(store, row_key(spec.trial_id)):
        return True
    folder = layout.partition_dir({"dataset": spec.dataset, "protocol": spec.protocol})
    keys = [f"{folder}/{k}" for k in store_read.list_files(store.fs, store.path(folder))]
    tables, _ = store_read.read_parts(store.fs, store.root, keys, ["trial_id", "status"])
    return any((spec.trial_id, "ok") in zip(t.column("trial_id").to_pylist(), t.column("status").to_pylist())
               for t in tables)


@dataclass
class StoredRows:
    """What the store holds: trial ids with a valid row, and the row files that are not valid."""

    row_keys: dict[str, str] = field(default_factory=dict)      # trial_id -> rows/<id>.parquet
    compacted_ids: set[str] = field(default_factory=set)
    bad_keys: list[str] = field(default_factory=list)           # invalid row files (moved when pruned)
    reasons: dict[str, str] = field(default_factory=dict)       # bad key -> why it is not a valid row
    quarantined: dict[str, str] = field(default_factory=dict)   # bad key -> where it was moved
    scan: store_read.RowScan | None = None

    @property
    def done(self) -> set[str]:
        return set(self.row_keys) | self.compacted_ids

    def quarantine_text(self) -> str:
        """One line per moved file: what, why, where (empty when nothing was moved)."""
        return "\n".join(f"  moved {k} to {dest}: {self.reasons[k]}; its trial will be redone"
                         for k, dest in sorted(self.quarantined.items()))


def compacted_keys(store: Store) -> list[str]:
    return store_read.part_keys(store.fs, store.root)


def quarantine(store: Store, key: str, reason: str) -> str:
    """Move a rejected row file under quarantine/ (kept for inspection, never deleted); returns the key."""
    dest = layout.quarantine_key(key)
    layout.move(store.fs, store.path(key), store.path(dest))
    store.write_bytes(dest + ".reason.txt", f"{key}: {reason}\n".encode())
    return dest


def scan(store: Store, prune_bad: bool = True) -> StoredRows:
    """Every finished trial; invalid row files are moved to quarantine/ when prune_bad (their trials
    are then redone). Row files are validated once, through the store's row index."""
    out = StoredRows()
    found = store_read.scan_rows(store.fs, store.root, ["trial_id", "status"])
    out.scan = found
    out.row_keys = dict(zip(found.ids, found.keys))
    for key, reason in found.invalid:
        out.bad_keys.append(key)
        out.reasons[key] = reason
        if prune_bad:
            try:
                out.quarantined[key] = quarantine(store, key, reason)
            except FileNotFoundError:
                pass  # another sweep moved it first
    tables, _ = store_read.read_parts(store.fs, store.root, compacted_keys(store), ["trial_id"])
    for table in tables:
        out.compacted_ids.update(table.column("trial_id").to_pylist())
    return out


def read_rows(store: Store, keys: list[str], columns: list[str] | None = None) -> pa.Table:
    """Concatenate row files (or compacted parts) into one table of the contract's schema."""
    tables = [read_row_file(store, k, columns) for k in keys]
    if not tables:
        empty = rows_to_table([])
        return empty.select(columns) if columns else empty
    return pa.concat_tables(tables)


def read_all(store: Store, columns: list[str] | None = None) -> pa.Table:
    """Every stored row (valid row files and compacted parts), one per trial_id (``layout.dedupe``)."""
    if not store.fs.get_file_info(store.root).type.name == "Directory":
        empty = rows_to_table([])
        return empty.select(columns) if columns else empty
    return store_read.read_store(store.fs, store.root, columns).table


def failed_row(spec: TrialSpec, sweep_name: str, error: str) -> dict:
    """A status='failed' row for a trial that never ran (its base model or maps could not be made)."""
    now = dt.datetime.now(dt.timezone.utc)
    row = {k: v for k, v in spec.to_dict().items() if k in COLUMNS}
    row.update(trial_id=spec.trial_id, sweep=sweep_name, config_json=spec.canonical_json(), status="failed",
               error=error[:4000], started_at=now, finished_at=now, schema_version=SCHEMA_VERSION)
    return row

