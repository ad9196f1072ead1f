"""``roar status STORE [--spec SPEC]``: what a store holds: ok / failed rows, and what a spec still misses."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from roar.storage import Store

from . import rows
from .grid import expand
from .spec import SweepSpec


@dataclass
class StoreStatus:
    ok: int = 0
    failed: int = 0
    bad_files: int = 0                          # truncated / empty row files (count as missing)
    missing: int | None = None                  # trials of the spec without a row (None: no spec)
    total: int | None = None                    # trials of the spec
    by_group: dict[tuple, Counter] = field(default_factory=dict)    # (sweep, dataset, protocol) -> statuses
    errors: Counter = field(default_factory=Counter)                # first line of each error -> count
    failed_ids: list[str] = field(default_factory=list)

    def text(self, store_uri: str) -> str:
        lines = [f"{store_uri}: {self.ok} ok, {self.failed} failed"
                 + (f", {self.missing} missing of {self.total} in the spec" if self.total is not None else "")]
        if self.bad_files:
            lines.append(f"  {self.bad_files} truncated or empty row file(s): redone by the next `roar run`")
        for (sweep, dataset, protocol), counts in sorted(self.by_group.items(), key=str):
            lines.append(f"  sweep={sweep} dataset={dataset} protocol={protocol}: "
                         f"{counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed")
        if self.errors:
            lines.append("  most common errors:")
            lines += [f"    {n} x {msg}" for msg, n in self.errors.most_common(5)]
        return "\n".join(lines)


def store_status(store: Store, spec: SweepSpec | None = None) -> StoreStatus:
    """Counts over the whole store, or over the spec's trials when a spec is given."""
    table = rows.read_all(store, ["trial_id", "sweep", "dataset", "protocol", "status", "error"])
    out = StoreStatus(bad_files=len(rows.scan(store, prune_bad=False).bad_keys))
    wanted = None
    if spec is not None:
        wanted = {t.trial_id for t in expand(spec)}
        out.total = len(wanted)
    seen = set()
    for r in table.to_pylist():
        if wanted is not None and r["trial_id"] not in wanted:
            continue
        seen.add(r["trial_id"])
        out.by_group.setdefault((r["sweep"], r["dataset"], r["protocol"]), Counter())[r["status"]] += 1
        if r["status"] == "ok":
            out.ok += 1
        else:
            out.failed += 1
            out.failed_ids.append(r["trial_id"])
            out.errors[(r["error"] or "no error text").strip().splitlines()[0][:160]] += 1
    if wanted is not None:
        out.missing = len(wanted - seen)
    return out
