"""``roar verify STORE [--spec SPEC] [--strict]``: check a results store without changing anything.

Each check is an entry of ``CHECKS`` (name -> function over an ``Inventory`` yielding ``Finding``s):

- ``rows``: every row file and compacted part parses as Parquet (footer and data) and conforms to
  ``analysis.schema`` (``conform``); a row file holds one row whose trial_id is its file name; every
  row's trial_id is the hash of its config_json; statuses are 'ok' or 'failed'; a compacted part's rows
  belong to the partition its path names. Zero-byte and truncated files are problems (``roar run``
  deletes and redoes them).
- ``duplicates``: a trial_id twice in ``compacted/`` is a problem (an interrupted compaction; ``roar
  compact`` merges it); a trial in both ``rows/`` and ``compacted/`` is a problem when both rows are
  'ok' and disagree outside the provenance columns, and a warning otherwise (a retried failure, or a
  compaction interrupted before it deleted the row files).
- ``artifacts``: every cached model and map set has its meta file, the sha256 of each payload
  matches the meta (``roar.artifacts.verify_artifact``), the meta file matches its own meta_sha256
  (an edited base_accuracy is found) and the meta's fields hash to the artifact's key, so an artifact
  cannot sit under another trial's key.
- ``orphans``: artifacts that no stored row (and no trial of ``--spec``) refers to, and temp files left
  by interrupted writes. Reported as warnings, never deleted.

Exit codes: 0 no problems (warnings allowed unless ``--strict``), 1 problems (or warnings with
``--strict``), 2 the store or the spec cannot be read. Only keys and store URIs are printed, never
credentials.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import posixpath
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.schema import COLUMNS, PROVENANCE_COLUMNS, STATUSES, SchemaError, conform
from roar.artifacts import MAPS_DIR, MODELS_DIR, maps_meta_key, meta_checksum_problem, model_meta_key, verify_artifact
from roar.spec import TrialSpec, content_key
from analysis import layout, store_read
from roar.storage import TMP_PREFIX, Store

from . import rows

PROBLEM, WARNING = "problem", "warning"
SKIPPED_DIRS = ("_tune/",)  # Ray Tune's bookkeeping of an errored local run: not results
# Columns that may differ between two correct runs of one trial (where, when, how long, which sweep).
VOLATILE_COLUMNS = set(PROVENANCE_COLUMNS) | {"sweep", "error"}


@dataclass(frozen=True)
class Finding:
    check: str          # the CHECKS entry that found it
    severity: str       # PROBLEM or WARNING
    key: str            # the store key (file, or an artifact's folder/stem)
    message: str


@dataclass
class ParsedFile:
    """A row file or compacted part: its conformed rows, or why it could not be read."""

    key: str
    size: int
    rows: list[dict] = field(default_factory=list)
    error: str | None = None


@dataclass
class Inventory:
    """Everything the checks look at, read once."""

    store: Store
    files: dict[str, int]                       # key -> size, every file except temp files
    temp_files: list[str]
    row_files: list[ParsedFile]
    compacted: list[ParsedFile]
    spec_trials: list[TrialSpec] = field(default_factory=list)


@dataclass
class VerifyReport:
    store_uri: str
    findings: list[Finding]
    counts: dict[str, int]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    def exit_code(self, strict: bool = False) -> int:
        return 1 if self.problems or (strict and self.warnings) else 0

    def text(self, limit: int = 50) -> str:
        c = self.counts
        lines = [f"roar verify {self.store_uri}: {c['row_files']} row file(s), {c['compacted_parts']} compacted "
                 f"part(s) with {c['compacted_rows']} row(s), {c['trials']} trial(s); {c['models']} cached "
                 f"model(s), {c['map_sets']} map set(s)"]
        for title, items in (("PROBLEMS", self.problems), ("WARNINGS", self.warnings)):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines += [f"  [{f.check}] {f.key}: {f.message}" for f in items[:limit]]
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        verdict = "OK" if not self.problems else "FAILED"
        lines.append(f"verify {verdict}: {len(self.problems)} problem(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


# --- reading the store -------------------------------------------------------------------------------
def _list_files(store: Store) -> dict[str, int]:
    """key -> size of every file under the store root (temp files included), Tune's folder excluded."""
    info = store.fs.get_file_info(store.root)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"results store {store.uri!r} does not exist or is empty")
    out = {}
    for fi in store.fs.get_file_info(pafs.FileSelector(store.root, recursive=True)):
        if fi.type != pafs.FileType.File:
            continue  # folders, and the empty folder markers object stores keep
        key = fi.path[len(store.root):].lstrip("/")
        if not key.startswith(SKIPPED_DIRS):
            out[key] = fi.size
    return out


def _parse(store: Store, key: str, size: int) -> ParsedFile:
    """A compacted part, read whole: partition columns come from its path (``analysis.layout``)."""
    parsed = ParsedFile(key, size)
    if size == 0:
        parsed.error = "empty file (0 bytes)"
        return parsed
    try:
        table = pq.read_table(io.BytesIO(store.read_bytes(key)))
    except (OSError, pa.ArrowException, ValueError) as exc:
        parsed.error = f"truncated or not Parquet ({size} bytes): {_first_line(exc)}"
        return parsed
    for column, value in layout.partition_values(key).items():
        if column not in table.column_names:
            table = table.append_column(column, pa.array([value] * table.num_rows, pa.string()))
    try:
        parsed.rows = conform(table).to_pylist()
    except SchemaError as exc:
        parsed.error = f"does not match the result schema: {_first_line(exc)}"
        return parsed
    extra = sorted(set(table.column_names) - set(COLUMNS))
    if extra:  # conform drops them; a writer that adds columns outside the contract is a bug
        parsed.error = f"columns outside the result schema {extra} (analysis.schema.COLUMNS)"
    return parsed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _row_files(store: Store, full: bool) -> list[ParsedFile]:
    """Row files through the row index, read only (each validated once when it entered it: parses, schema,
    trial_id equal to its name, status); ``full`` ignores the index and reads every file again."""
    scan = store_read.scan_rows(store.fs, store.root, update_index=False, use_index=not full)
    out = [ParsedFile(key, scan.stamps[key][0], error=reason) for key, reason in scan.invalid]
    out += [ParsedFile(key, scan.stamps[key][0], rows=[row]) for key, row in zip(scan.keys, scan.table.to_pylist())]
    return sorted(out, key=lambda p: p.key)


def inventory(store: Store, spec_trials: Iterable[TrialSpec] = (), full: bool = False) -> Inventory:
    every = _list_files(store)
    temp = sorted(k for k in every if posixpath.basename(k).startswith(TMP_PREFIX))
    files = {k: s for k, s in every.items() if not posixpath.basename(k).startswith(TMP_PREFIX)}

    def parquet_under(folder: str) -> list[str]:
        return sorted(k for k in files if k.startswith(folder + "/") and k.endswith(rows.SUFFIX))

    part_keys = parquet_under(rows.COMPACTED_DIR)
    parse = lambda k: _parse(store, k, files[k])  # noqa: E731
    return Inventory(store, files, temp, _row_files(store, full), store_read.pmap(parse, part_keys, store_read.threads_for(store.fs)),
                     list(spec_trials))


# --- checks ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=200_000)  # a row's spec is needed by several checks
def _spec_of(config_json: str | None) -> TrialSpec | None:
    try:
        return TrialSpec.from_dict(json.loads(config_json))
    except (TypeError, ValueError, KeyError):
        return None


def _trial_of(row: dict) -> TrialSpec | None:
    return _spec_of(row.get("config_json"))


_SPEC_FIELDS = [f.name for f in dataclasses.fields(TrialSpec)]


@functools.lru_cache(maxsize=200_000)
def _id_of(config_json: str | None) -> str | None:
    """TrialSpec(config).trial_id without dataclasses.asdict's deep copy (10x faster; the spec's fields
    are flat, so the canonical JSON is the same): verify hashes every row of a 100k-trial store."""
    spec = _spec_of(config_json)
    if spec is None:
        return None
    fields = {k: getattr(spec, k) for k in _SPEC_FIELDS}
    fields["options"] = dict(spec.options)
    return content_key(fields)


def check_rows(inv: Inventory) -> Iterable[Finding]:
    for parsed in inv.row_files + inv.compacted:
        if parsed.error:
            yield Finding("rows", PROBLEM, parsed.key, parsed.error)
            continue
        is_row_file = parsed.key.startswith(rows.ROWS_DIR + "/")
        if is_row_file and len(parsed.rows) != 1:
            yield Finding("rows", PROBLEM, parsed.key, f"a row file must hold 1 row, found {len(parsed.rows)}")
        partition = _partition(parsed.key) if not is_row_file else {}
        for i, row in enumerate(parsed.rows):
            where = parsed.key if is_row_file else f"{parsed.key} row {i}"
            yield from _row_findings(where, row, rows.trial_id_of(parsed.key) if is_row_file else None, partition)


def _partition(key: str) -> dict[str, str]:
    out = {}
    for part in key.split("/")[1:-1]:
        name, sep, value = part.partition("=")
        if sep:
            out[name] = value
    return out


def _row_findings(where: str, row: dict, file_id: str | None, partition: dict) -> Iterable[Finding]:
    trial_id = row.get("trial_id")
    if file_id is not None and trial_id != file_id:
        yield Finding("rows", PROBLEM, where, f"trial_id {trial_id!r} differs from the file name {file_id!r}")
    if row.get("status") not in STATUSES:
        yield Finding("rows", PROBLEM, where, f"status {row.get('status')!r}; valid: {list(STATUSES)}")
    spec_id = _id_of(row.get("config_json"))
    if spec_id is None:
        yield Finding("rows", PROBLEM, where, "config_json is missing or not a trial key; the trial cannot be "
                                              "identified")
    elif spec_id != trial_id:
        yield Finding("rows", PROBLEM, where, f"trial_id {trial_id!r} is not the hash of its config_json "
                                              f"({spec_id!r})")
    for column, value in partition.items():
        if str(row.get(column)) != value:
            yield Finding("rows", PROBLEM, where, f"{column}={row.get(column)!r} inside partition {column}={value}")


def _same_result(a: dict, b: dict) -> bool:
    def same(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
    return all(same(a.get(c), b.get(c)) for c in COLUMNS if c not in VOLATILE_COLUMNS)


def check_duplicates(inv: Inventory) -> Iterable[Finding]:
    in_parts: dict[str, list[tuple[str, dict]]] = {}
    for parsed in inv.compacted:
        for row in parsed.rows:  # a null trial_id is reported by check_rows; str() keeps sorting total
            in_parts.setdefault(str(row["trial_id"]), []).append((parsed.key, row))
    for trial_id, found in sorted(in_parts.items()):
        if len(found) > 1:
            keys = sorted({k for k, _ in found})
            yield Finding("duplicates", PROBLEM, f"trial {trial_id}",
                          f"{len(found)} rows in compacted/ ({', '.join(keys)}); `roar compact` merges them")
    for parsed in inv.row_files:
        if parsed.error or len(parsed.rows) != 1:
            continue
        row = parsed.rows[0]
        for part_key, other in in_parts.get(str(row["trial_id"]), []):
            if row["status"] == "ok" and other["status"] == "ok" and not _same_result(row, other):
                differ = [c for c in COLUMNS if c not in VOLATILE_COLUMNS and not _same_result(
                    {c: row.get(c)}, {c: other.get(c)})]
                yield Finding("duplicates", PROBLEM, parsed.key,
                              f"disagrees with {part_key} in {differ[:6]}: two different results for one trial")
            elif row["status"] != other["status"]:
                yield Finding("duplicates", WARNING, parsed.key,
                              f"{row['status']} here, {other['status']} in {part_key} (a retried trial); the ok "
                              f"row counts, `roar compact` drops the other")
            else:
                yield Finding("duplicates", WARNING, parsed.key,
                              f"also in {part_key} (a compaction interrupted before deleting row files); "
                              f"`roar compact` removes the copy")


@dataclass
class _Artifact:
    kind: str           # 'model' or 'maps'
    key: str            # content key
    meta: str           # meta file key
    payloads: list[str]

    @property
    def where(self) -> str:
        return f"{MODELS_DIR}/{self.key}" if self.kind == "model" else f"{MAPS_DIR}/{self.key}/"


def _artifacts(inv: Inventory) -> tuple[dict[tuple[str, str], _Artifact], list[str]]:
    """(kind, key) -> artifact, and files under artifacts/ that fit no artifact layout."""
    found: dict[tuple[str, str], _Artifact] = {}
    stray = []
    for key in sorted(inv.files):
        if key.startswith(MODELS_DIR + "/") and key.count("/") == 2:
            stem, ext = posixpath.splitext(posixpath.basename(key))
            if ext in (".pt", ".json"):
                a = found.setdefault(("model", stem), _Artifact("model", stem, model_meta_key(stem), []))
                if ext == ".pt":
                    a.payloads.append(key)
                continue
        elif key.startswith(MAPS_DIR + "/") and key.count("/") == 3:
            stem, name = key.split("/")[2:]
            if name.endswith(".npy") or name == "meta.json":
                a = found.setdefault(("maps", stem), _Artifact("maps", stem, maps_meta_key(stem), []))
                if name.endswith(".npy"):
                    a.payloads.append(key)
                continue
        if key.startswith("artifacts/"):
            stray.append(key)
    return found, stray


def check_artifacts(inv: Inventory) -> Iterable[Finding]:
    found, stray = _artifacts(inv)
    for key in stray:
        yield Finding("artifacts", WARNING, key, "not part of any model or map set layout")
    for a in found.values():
        if a.meta not in inv.files:
            yield Finding("artifacts", WARNING, a.where, "payload without its meta file (a stage interrupted "
                                                         "before it finished); recomputed when a trial needs it")
            continue
        try:
            meta = json.loads(inv.store.read_bytes(a.meta))
            problems = verify_artifact(inv.store, a.meta)
        except (ValueError, OSError, AttributeError, TypeError) as exc:  # bad JSON, or JSON of the wrong shape
            yield Finding("artifacts", PROBLEM, a.meta, f"unreadable meta file: {_first_line(exc)}")
            continue
        for p in problems:
            yield Finding("artifacts", PROBLEM, a.where, p)
        yield from _meta_findings(a, meta)
        fields = meta.get("fields")
        if not isinstance(fields, dict) or content_key(fields, kind=a.kind) != a.key:
            yield Finding("artifacts", PROBLEM, a.where, f"its meta fields do not hash to the key {a.key!r}: the "
                                                         f"content belongs to another trial setup")


def _meta_findings(a: _Artifact, meta) -> Iterable[Finding]:
    """The meta file's own checksum: an edited value (base_accuracy, say) is a problem, like a payload's."""
    problem = meta_checksum_problem(meta) if isinstance(meta, dict) else "meta file is not a JSON object"
    if problem:
        yield Finding("artifacts", PROBLEM, a.meta, problem + "; the next trial that loads it recomputes the artifact")


def _referenced(inv: Inventory) -> set[tuple[str, str]]:
    specs = [s for p in inv.row_files + inv.compacted for s in map(_trial_of, p.rows) if s is not None]
    out = set()
    for spec in specs + inv.spec_trials:
        out.add(("model", spec.base_model_key()))
        out.add(("maps", spec.maps_key()))
    return out


def check_orphans(inv: Inventory) -> Iterable[Finding]:
    found, _ = _artifacts(inv)
    referenced = _referenced(inv)
    for (kind, key), a in sorted(found.items()):
        if (kind, key) not in referenced:
            yield Finding("orphans", WARNING, a.where, "no stored row" + (" or trial of the spec" if inv.spec_trials
                                                                         else "") + " refers to it (kept)")
    for key in inv.temp_files:
        yield Finding("orphans", WARNING, key, "temp file of an interrupted write (or of a sweep writing now); "
                                               "readers ignore it, safe to delete once no sweep runs")


CHECKS: dict[str, Callable[[Inventory], Iterable[Finding]]] = {
    "rows": check_rows,
    "duplicates": check_duplicates,
    "artifacts": check_artifacts,
    "orphans": check_orphans,
}


def verify_store(store: Store, spec_trials: Iterable[TrialSpec] = (), full: bool = False) -> VerifyReport:
    """Run every check over the store. Raises FileNotFoundError when the store does not exist.
    full: read every row file again instead of trusting the row index for files it has validated."""
    inv = inventory(store, spec_trials, full)
    findings = [f for check in CHECKS.values() for f in check(inv)]
    found, _ = _artifacts(inv)
    ids = {r["trial_id"] for p in inv.row_files + inv.compacted for r in p.rows}
    counts = {"row_files": len(inv.row_files), "compacted_parts": len(inv.compacted),
              "compacted_rows": sum(len(p.rows) for p in inv.compacted), "trials": len(ids),
              "models": sum(1 for k, _ in found if k == "model"), "map_sets": sum(1 for k, _ in found if k == "maps")}
    return VerifyReport(store.uri, findings, counts)
