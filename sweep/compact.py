"""``roar compact STORE``: fold per-trial row files into ``compacted/dataset=<d>/protocol=<p>/part-*.parquet``.

Incremental: only row files not yet compacted are read (through the row index), and each partition
with new rows gets one new part holding just those rows. A partition is rewritten as one part only
when it must be: a new row supersedes a compacted one (a retried failure), a trial sits in two parts
(an interrupted run), a part still holds the partition columns (the old layout), or it has more than
``MAX_PARTS`` parts. Parts hold every column except dataset and protocol, which live in the path only
(the hive convention pandas, pyarrow, DuckDB and polars expect).

Safe under kill -9 at any point: a part is written atomically under a content-derived name and read
back; only then are the row files that went into it (and the parts it replaces) deleted, and a row
file is deleted only if it is unchanged since it was read. A crash leaves at worst a row twice (row
file and part, or two parts), which every reader of ours deduplicates and the next compaction removes.
Invalid row files are moved to ``quarantine/``, never merged, never deleted.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from analysis import layout, store_read
from analysis.schema import COLUMNS, SCHEMA
from roar.storage import Store

from . import rows

MAX_PARTS = 16   # parts per partition before they are merged into one
LOCK_KEY = "_compact.lock"
STALE_LOCK_SECONDS = 600.0   # a lock this old (or of a dead process on this host) was left by a crash
_PART_SCHEMA = pa.schema([SCHEMA.field(c) for c in COLUMNS if c not in layout.PARTITION_COLUMNS])


class CompactBusy(RuntimeError):
    """Another compaction holds the store's lock: two at once could leave a trial in two parts."""


class CompactError(RuntimeError):
    """A written part did not hold exactly its input rows; that partition's inputs were all kept."""

    def __init__(self, message: str, report: "CompactReport"):
        super().__init__(message)
        self.report = report


@dataclass
class CompactReport:
    parts_written: list[tuple[str, int]] = field(default_factory=list)    # (key, rows)
    partitions_rewritten: list[str] = field(default_factory=list)
    parts_deleted: int = 0
    row_files_merged: int = 0          # deleted after their row was read back from a new part
    row_files_already_compacted: int = 0   # deleted: the identical row was already in compacted/
    row_files_superseded: int = 0      # deleted: a better row of the same trial (ok, or newer) is compacted
    row_files_kept: int = 0            # changed while compacting; merged next time
    quarantined: dict[str, str] = field(default_factory=dict)   # key -> quarantine key
    reasons: dict[str, str] = field(default_factory=dict)
    trials_before: int = 0
    trials_after: int = 0

    @property
    def partitions_written(self) -> list[str]:
        return sorted({k.rsplit("/", 1)[0] for k, _ in self.parts_written})

    @property
    def bad_row_files(self) -> list[str]:
        return sorted(self.quarantined)

    def text(self, store_uri: str) -> str:
        if not (self.parts_written or self.row_files_already_compacted or self.quarantined or self.parts_deleted):
            return f"compacted {store_uri}: nothing to do; {self.trials_after} trials stored, all compacted"
        lines = [f"compacted {store_uri}: {self.row_files_merged} row file(s) folded into "
                 f"{len(self.parts_written)} new part(s) in {len(self.partitions_written)} partition(s); "
                 f"{self.trials_after} trials stored (before: {self.trials_before})"]
        lines += [f"  wrote {k} ({n} rows)" for k, n in self.parts_written[:20]]
        if len(self.parts_written) > 20:
            lines.append(f"  ... and {len(self.parts_written) - 20} more parts")
        if self.partitions_rewritten:
            lines.append(f"  rewrote {len(self.partitions_rewritten)} partition(s) as one part each, "
                         f"deleting {self.parts_deleted} replaced part(s) after the new one was read back")
        if self.row_files_merged:
            lines.append(f"  deleted {self.row_files_merged} row file(s), each after its row was read back "
                         f"from the part it went into")
        if self.row_files_already_compacted:
            lines.append(f"  deleted {self.row_files_already_compacted} row file(s) whose identical row was "
                         f"already in compacted/ (left by an interrupted compaction)")
        if self.row_files_superseded:
            lines.append(f"  deleted {self.row_files_superseded} row file(s) superseded by a better row of the same "
                         f"trial in compacted/ (an ok row beats a failed one, then the newest wins)")
        if self.row_files_kept:
            lines.append(f"  kept {self.row_files_kept} row file(s) that changed while compacting; run compact again")
        for key, dest in sorted(self.quarantined.items()):
            lines.append(f"  moved invalid row file {key} to {dest}: {self.reasons[key]} (not merged; "
                         f"`roar run` redoes the trial)")
        return "\n".join(lines)


def part_bytes(table: pa.Table) -> bytes:
    """A compacted part: rows sorted by trial_id, partition columns left to the path."""
    table = table.sort_by([("trial_id", "ascending")]).select(_PART_SCHEMA.names).cast(_PART_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _part_key(partition: str, table: pa.Table) -> str:
    ident = pa.table({"t": table.column("trial_id"), "s": table.column("status"),
                      "f": table.column("finished_at").cast(pa.int64())}).sort_by("t")
    digest = hashlib.sha256(repr(ident.to_pydict()).encode()).hexdigest()[:16]
    return f"{partition}/part-{digest}{layout.SUFFIX}"


@dataclass
class _Partition:
    parts: list[str] = field(default_factory=list)
    fresh: list[int] = field(default_factory=list)          # indexes into the row scan's table
    rewrite_because: str | None = None


def compact(store: Store, wait_seconds: float = 0.0) -> CompactReport:
    """Fold new row files into compacted/ (see the module docstring). Raises FileNotFoundError for a
    missing store, CompactBusy while another compaction runs (after waiting up to wait_seconds for
    it), CompactError when a written part does not read back as its inputs (that partition's inputs
    are all kept)."""
    if not store.is_dir():
        raise FileNotFoundError(f"results store {store.uri!r} does not exist")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with _lock(store):
                return _compact(store)
        except CompactBusy:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


@contextmanager
def _lock(store: Store):
    """One compaction per store at a time (sweeps ending together each compact). Local: an exclusive
    create; object stores: check then write (best effort). A crashed holder's lock is taken over."""
    me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}).encode()
    path = store.path(LOCK_KEY)
    for attempt in range(2):
        try:
            if store.is_local:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, me)
                os.close(fd)
            elif store.exists(LOCK_KEY):
                raise FileExistsError(path)
            else:
                store.write_bytes(LOCK_KEY, me)
            break
        except FileExistsError:
            holder = _stale_holder(store)
            if attempt or holder is None:
                raise CompactBusy(f"another compaction is running on {store.uri} ({LOCK_KEY}); run `roar compact` "
                                  f"after it ends") from None
            try:
                store.delete(LOCK_KEY)                      # left by a crashed compaction: take it over
            except FileNotFoundError:
                pass
    try:
        yield
    finally:
        try:
            store.delete(LOCK_KEY)
        except FileNotFoundError:
            pass


def _stale_holder(store: Store) -> str | None:
    """Who held a lock that is no longer held (a dead process on this host, or too old), else None."""
    try:
        info = json.loads(store.read_bytes(LOCK_KEY))
        host, pid, since = info["host"], int(info["pid"]), float(info["time"])
    except FileNotFoundError:
        return "gone"
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable lock"
    if time.time() - since > STALE_LOCK_SECONDS:
        return f"{host}:{pid}, {time.time() - since:.0f} s old"
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"{host}:{pid}, not running"
        except PermissionError:
            return None
    return None


def _compact(store: Store) -> CompactReport:
    report = CompactReport()
    scan = store_read.scan_rows(store.fs, store.root)                # every column: rows go into parts
    for key, reason in scan.invalid:
        try:
            report.quarantined[key] = rows.quarantine(store, key, reason)
            report.reasons[key] = reason
        except FileNotFoundError:
            pass
    part_keys = store_read.part_keys(store.fs, store.root)
    light, unreadable = store_read.read_parts(store.fs, store.root, part_keys, _IDENT)
    if unreadable:
        raise CompactError(f"cannot read compacted part {unreadable[0][0]} ({unreadable[0][1]}); nothing was "
                           f"changed (`roar verify` lists every problem)", report)
    in_parts: dict[str, list[tuple[str, tuple]]] = {}
    parts: dict[str, _Partition] = {}
    for key, table in zip(part_keys, light):
        parts.setdefault(key.rsplit("/", 1)[0], _Partition()).parts.append(key)
        for t, s, f in zip(*(table.column(c).to_pylist() for c in ("trial_id", "status", "finished_at"))):
            in_parts.setdefault(t, []).append((key, (s, f)))
    report.trials_before = len(set(in_parts) | set(scan.ids))

    new = scan.table
    ids, statuses = new.column("trial_id").to_pylist(), new.column("status").to_pylist()
    finished = new.column("finished_at").to_pylist()
    dataset, protocol = new.column("dataset").to_pylist(), new.column("protocol").to_pylist()
    already: list[int] = []
    for i, trial_id in enumerate(ids):
        home = parts.setdefault(layout.partition_dir({"dataset": dataset[i], "protocol": protocol[i]}), _Partition())
        there = in_parts.get(trial_id, [])
        if there and all(v == (statuses[i], finished[i]) for _, v in there):
            already.append(i)
            continue
        home.fresh.append(i)
        if there:
            home.rewrite_because = "a new row supersedes a compacted one"
    twice = {k for found in in_parts.values() if len(found) > 1 for k, _ in found}
    for name, p in parts.items():
        if p.rewrite_because:
            continue
        if twice & set(p.parts):
            p.rewrite_because = "a trial in two parts"
        elif len(p.parts) + (1 if p.fresh else 0) > MAX_PARTS:
            p.rewrite_because = f"more than {MAX_PARTS} parts"
        elif _old_layout(store, p.parts):
            p.rewrite_because = "parts hold the partition columns"

    _delete_row_files(store, scan, already, report, "already")
    for name in sorted(parts):
        p = parts[name]
        if p.fresh or p.rewrite_because:
            _fold(store, name, p, scan, report)
    if report.parts_written or report.row_files_already_compacted:
        store_read.rebuild_index(store.fs, store.root)              # drop entries of deleted row files
    after = rows.scan(store, prune_bad=False)
    report.trials_after = len(after.done)
    if report.trials_after < report.trials_before:
        raise CompactError(f"{store.uri}: {report.trials_before} trials before compaction, "
                           f"{report.trials_after} after", report)
    return report


def _old_layout(store: Store, part_keys: list[str]) -> bool:
    """A part written before the partition columns moved to the path only (footer read only)."""
    for key in part_keys:
        try:
            with store.fs.open_input_file(store.path(key)) as f:
                names = pq.read_schema(f).names
        except (OSError, pa.ArrowException):
            continue
        if any(c in names for c in layout.PARTITION_COLUMNS):
            return True
    return False


def _fold(store: Store, name: str, p: _Partition, scan: store_read.RowScan, report: CompactReport) -> None:
    fresh = scan.table.take(pa.array(p.fresh, pa.int64())) if p.fresh else None
    old_parts = p.parts if p.rewrite_because else []
    tables = [fresh] if fresh is not None else []
    if old_parts:
        full, skipped = store_read.read_parts(store.fs, store.root, old_parts)
        if skipped:
            raise CompactError(f"{name}: cannot read {skipped[0][0]} ({skipped[0][1]}); nothing of this partition "
                               f"was changed", report)
        tables += full
    merged = layout.dedupe(pa.concat_tables(tables))
    key = _part_key(name, merged)
    store.write_bytes(key, part_bytes(merged))

    expected = set(merged.column("trial_id").to_pylist())
    back = store_read.read_part(store.fs, store.path(key), _IDENT)
    back_ids = back.column("trial_id").to_pylist()
    if set(back_ids) != expected or len(back_ids) != len(expected):
        raise CompactError(f"{key}: read back {len(back_ids)} rows for {len(expected)} trials; the row files "
                           f"and parts of {name} were all kept", report)
    report.parts_written.append((key, len(back_ids)))
    if old_parts:
        report.partitions_rewritten.append(name)
        for old in old_parts:
            if old != key:
                store.delete(old)
                report.parts_deleted += 1
    durable = set(zip(*(back.column(c).to_pylist() for c in _IDENT)))
    ident = list(zip(*(scan.table.column(c).to_pylist() for c in _IDENT)))
    inside = [i for i in p.fresh if ident[i] in durable]
    _delete_row_files(store, scan, inside, report, "merged")
    # a row that lost to a better row of its trial (an ok one, or a newer one) is not in the part
    _delete_row_files(store, scan, [i for i in p.fresh if ident[i] not in durable], report, "superseded")


def _delete_row_files(store: Store, scan: store_read.RowScan, indexes: list[int], report: CompactReport,
                      why: str) -> None:
    """Delete row files whose row is durably in compacted/, unless they changed since they were read
    (one listing of rows/ gives every file's current size and time)."""
    if not indexes:
        return
    now = store_read.list_files(store.fs, store.path(layout.ROWS_DIR))
    for i in indexes:
        key = scan.keys[i]
        stamp = now.get(key[len(layout.ROWS_DIR) + 1:])
        if stamp is None:
            continue                                     # another compaction got there first
        if stamp != scan.stamps[key]:
            report.row_files_kept += 1
            continue
        try:
            store.delete(key)
        except FileNotFoundError:
            continue
        setattr(report, _COUNTERS[why], getattr(report, _COUNTERS[why]) + 1)


_IDENT = ["trial_id", "status", "finished_at"]
_COUNTERS = {"merged": "row_files_merged", "already": "row_files_already_compacted",
             "superseded": "row_files_superseded"}
