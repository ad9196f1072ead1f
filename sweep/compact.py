"""``roar compact STORE``: merge the per-trial row files into one Parquet file per (dataset, protocol).

Layout: ``compacted/dataset=<d>/protocol=<p>/part-<hash>.parquet``; each file keeps every column
(including dataset and protocol), so a single file is self-describing. Safe by construction:

1. read the row files and the partition's existing parts, one row per trial_id (``rows.dedupe``);
2. write the merged part under a content-derived name and read it back: its trial_ids must equal the
   union of the inputs, otherwise stop before deleting anything;
3. only then delete the replaced parts and the row files that went in (a row file rewritten since it
   was read, e.g. by ``--retry-failed``, is kept for the next compaction).

Idempotent: a partition that is one part and has no new rows is left alone; re-running after an
interruption merges whatever is there. Sweeps may keep writing rows meanwhile.
"""
from __future__ import annotations

import hashlib
import io
import posixpath
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from roar.storage import Store

from . import rows


class CompactError(RuntimeError):
    """The merged data would not hold exactly the input trials; nothing was deleted."""


@dataclass
class CompactReport:
    partitions_written: list[str] = field(default_factory=list)
    row_files_merged: int = 0
    row_files_kept: int = 0           # changed while compacting; merged next time
    bad_row_files: list[str] = field(default_factory=list)
    trials_before: int = 0
    trials_after: int = 0

    def text(self, store_uri: str) -> str:
        lines = [f"compacted {store_uri}: {self.row_files_merged} row file(s) merged into "
                 f"{len(self.partitions_written)} partition(s); {self.trials_after} trials stored "
                 f"(before: {self.trials_before})"]
        lines += [f"  wrote {p}" for p in self.partitions_written]
        if self.row_files_kept:
            lines.append(f"  {self.row_files_kept} row file(s) changed while compacting; run compact again")
        if self.bad_row_files:
            lines.append(f"  {len(self.bad_row_files)} truncated/empty row file(s) skipped (their trials are "
                         f"missing; `roar run` redoes them): {', '.join(self.bad_row_files[:5])}")
        return "\n".join(lines)


def partition_dir(dataset: str, protocol: str) -> str:
    return f"{rows.COMPACTED_DIR}/dataset={dataset}/protocol={protocol}"


def _partition_of(key: str) -> tuple[str, str] | None:
    parts = key.split("/")
    if len(parts) >= 4 and parts[1].startswith("dataset=") and parts[2].startswith("protocol="):
        return parts[1][len("dataset="):], parts[2][len("protocol="):]
    return None


def _file_stamp(store: Store, key: str):
    info = store.fs.get_file_info(store.path(key))
    return info.size, info.mtime_ns


def compact(store: Store) -> CompactReport:
    report = CompactReport()
    stored = rows.scan(store, prune_bad=False)
    report.bad_row_files = stored.bad_keys
    report.trials_before = len(stored.done)

    # new rows grouped by partition; the stamp detects a row rewritten while we work
    new: dict[tuple[str, str], list[tuple[str, tuple, pa.Table]]] = {}
    for trial_id, key in stored.row_keys.items():
        stamp = _file_stamp(store, key)
        table = rows.read_row_file(store, key)
        part = (table.column("dataset")[0].as_py(), table.column("protocol")[0].as_py())
        new.setdefault(part, []).append((key, stamp, table))
    existing: dict[tuple[str, str], list[str]] = {}
    for key in rows.compacted_keys(store):
        part = _partition_of(key)
        if part is not None:
            existing.setdefault(part, []).append(key)

    for part in sorted(set(new) | set(existing), key=str):
        fresh, old_parts = new.get(part, []), existing.get(part, [])
        if not fresh and len(old_parts) <= 1:
            continue  # already compact
        report.partitions_written.append(_merge_partition(store, part, fresh, old_parts, report))

    after = rows.scan(store, prune_bad=False)
    report.trials_after = len(after.done)
    if report.trials_after < report.trials_before:
        raise CompactError(f"{store.uri}: {report.trials_before} trials before compaction, "
                           f"{report.trials_after} after")
    return report


def _merge_partition(store: Store, part: tuple[str, str], fresh, old_parts: list[str],
                     report: CompactReport) -> str:
    tables = [t for _, _, t in fresh] + [rows.read_row_file(store, k) for k in old_parts]
    merged = rows.dedupe(pa.concat_tables(tables))
    ids = sorted(merged.column("trial_id").to_pylist())
    merged = merged.sort_by([("trial_id", "ascending")])
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    key = f"{partition_dir(*part)}/part-{digest}{rows.SUFFIX}"
    buf = io.BytesIO()
    pq.write_table(merged, buf, compression="zstd")
    store.write_bytes(key, buf.getvalue())

    expected = set()
    for t in tables:
        expected.update(t.column("trial_id").to_pylist())
    back = rows.read_row_file(store, key, ["trial_id"]).column("trial_id").to_pylist()
    if set(back) != expected or len(back) != len(expected):
        raise CompactError(f"{key}: wrote {len(back)} rows for {len(expected)} trials; inputs were kept")

    for old in old_parts:
        if old != key:
            store.delete(old)
    for row_key, stamp, _ in fresh:
        try:
            if _file_stamp(store, row_key) == stamp:
                store.delete(row_key)
                report.row_files_merged += 1
            else:
                report.row_files_kept += 1
        except FileNotFoundError:
            report.row_files_merged += 1
    return posixpath.dirname(key)
