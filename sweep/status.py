"""``roar status STORE [--spec SPEC]``: what a store holds: ok / failed rows, and what a spec still misses."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from analysis import store_read
from roar.storage import Store

from .grid import expand
from .spec import SweepSpec


@dataclass
class StoreStatus:
    ok: int = 0
    failed: int = 0
    bad_files: int = 0                          # invalid row files (count as missing)
    bad: list[tuple[str, str]] = field(default_factory=list)        # (key, why it is not a valid row)
    missing: int | None = None                  # trials of the spec without a row (None: no spec)
    total: int | None = None                    # trials of the spec
    by_group: dict[tuple, Counter] = field(default_factory=dict)    # (sweep, dataset, protocol) -> statuses
    errors: Counter = field(default_factory=Counter)                # first line of each error -> count
    failed_ids: list[str] = field(default_factory=list)

    def text(self, store_uri: str) -> str:
        lines = [f"{store_uri}: {self.ok} ok, {self.failed} failed"
                 + (f", {self.missing} missing of {self.total} in the spec" if self.total is not None else "")]
        if self.bad_files:
            lines.append(f"  {self.bad_files} invalid row file(s), counted as missing; the next `roar run` or "
                         f"`roar compact` moves them to quarantine/ and the trials are redone:")
            lines += [f"    {key}: {why}" for key, why in self.bad[:10]]
            if self.bad_files > 10:
                lines.append(f"    ... and {self.bad_files - 10} more")
        for (sweep, dataset, protocol), counts in sorted(self.by_group.items(), key=str):
            lines.append(f"  sweep={sweep} dataset={dataset} protocol={protocol}: "
                         f"{counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed")
        if self.errors:
            lines.append("  most common errors:")
            lines += [f"    {n} x {msg}" for msg, n in self.errors.most_common(5)]
        return "\n".join(lines)


def store_status(store: Store, spec: SweepSpec | None = None) -> StoreStatus:
    """Counts over the whole store, or over the spec's trials when a spec is given. Reads the row index
    and the compacted parts' few columns, never a whole row file twice; changes nothing but the index.
    Raises FileNotFoundError when the store does not exist."""
    if not store.is_dir():
        raise FileNotFoundError(f"results store {store.uri!r} does not exist (nothing was ever written there)")
    got = store_read.read_store(store.fs, store.root, ["trial_id", "sweep", "dataset", "protocol", "status",
                                                         "error"])
    table = got.table
    out = StoreStatus(bad_files=len(got.rows.invalid), bad=list(got.rows.invalid))
    if spec is not None:
        wanted = pa.array(sorted({t.trial_id for t in expand(spec)}), pa.string())
        out.total = len(wanted)
        table = table.filter(pc.is_in(table.column("trial_id"), value_set=wanted))
        out.missing = out.total - table.num_rows
    groups = table.group_by(["sweep", "dataset", "protocol", "status"], use_threads=False).aggregate(
        [("trial_id", "count")])
    for g in groups.to_pylist():
        counts = out.by_group.setdefault((g["sweep"], g["dataset"], g["protocol"]), Counter())
        counts[g["status"]] += g["trial_id_count"]
    failed = table.filter(pc.not_equal(table.column("status"), "ok"))
    out.ok = table.num_rows - failed.num_rows
    out.failed = failed.num_rows
    out.failed_ids = failed.column("trial_id").to_pylist()
    for err in failed.column("error").to_pylist():
        text = (err or "").strip()
        out.errors[text.splitlines()[0][:160] if text else "no error text"] += 1
    return out
