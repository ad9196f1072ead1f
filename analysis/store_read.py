"""Reading a results store back at scale: validated row files through a light index, plus compacted parts.

A row file is read and validated once (parses, one row, the contract's columns and types, trial_id equal
to its file name, a valid status) when it first enters the index ``_index/rows-*.index``: Parquet
segments holding the validated rows with each file's (name, size, mtime). Later reads list ``rows/``
(one listing, sizes and times included, also on S3), take every file whose stamp the index knows from
the index, and read only the others. A file whose stamp changed is read again; an entry whose file is
gone is ignored and dropped when segments are merged. The index is a cache: losing it, or a writer
racing another, costs time, never a row. Pure pyarrow (analysis must not import roar, torch or Ray).
"""
from __future__ import annotations

import posixpath
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import layout, row_workers
from .schema import COLUMNS, SCHEMA, STATUSES, SchemaError, conform, rows_to_table

INDEX_VERSION = b"1"
_STAMP = ["_key", "_size", "_mtime_ns"]
MAX_SEGMENTS = 8            # more than this many index segments are merged into one
_THREADS = 16               # many small files: object stores are latency-bound, local reads release the GIL
_PLAIN = pa.schema([pa.field(f.name, f.type) for f in SCHEMA])  # index rows without per-field prose


def pmap(fn, items: list, threads: int = _THREADS) -> list:
    if len(items) < 4 or threads <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


def threads_for(fs) -> int:
    """Object stores are latency-bound (many requests in flight pay); local small-file reads are
    CPU-bound in pyarrow's per-file set-up, where threads only contend (measured on 2 cores)."""
    return 1 if layout.is_local(fs) else _THREADS


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def list_files(fs, folder: str, suffix: str = layout.SUFFIX) -> dict[str, tuple[int, int]]:
    """name relative to folder -> (size, mtime_ns) of every file under it; temp and hidden files skipped."""
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return {}
    out = {}
    for fi in fs.get_file_info(pafs.FileSelector(folder, recursive=True)):
        if fi.type != pafs.FileType.File or layout.ignored(fi.base_name) or not fi.base_name.endswith(suffix):
            continue
        rel = fi.path[len(folder):].lstrip("/")   # not posixpath.relpath: 10x slower at 100k files
        if any(layout.ignored(p) for p in rel.split("/")[:-1]):
            continue
        out[rel] = (fi.size, fi.mtime_ns or 0)
    return out


# --- one row file --------------------------------------------------------------------------------------
_CASTS_OK = {  # type families conform() may cast between without looking at values
    "int": (pa.types.is_integer,), "float": (pa.types.is_floating, pa.types.is_integer),
    "string": (pa.types.is_string, pa.types.is_large_string, pa.types.is_null),
    "timestamp": (pa.types.is_timestamp,), "bool": (pa.types.is_boolean,),
}
_FAMILY = {pa.int64(): "int", pa.float64(): "float", pa.string(): "string", pa.bool_(): "bool"}
_schema_verdicts: list[tuple[pa.Schema, str | None]] = []   # a store's files share a few schemas: check each once


def schema_problem(schema: pa.Schema) -> str | None:
    """Why a file schema is not the contract's (extra or missing required columns, a type that cannot
    hold the column), or None. Memoised per schema: one check per batch of files, not per file."""
    for known, verdict in _schema_verdicts:
        if schema.equals(known):   # field names and types; metadata ignored (C++, ~100x cheaper than a hash)
            return verdict
    extra = sorted(set(schema.names) - set(COLUMNS))
    verdict = None
    if extra:
        verdict = f"columns outside the result schema {extra[:5]} (a foreign file, not a row of this schema)"
    else:
        try:
            conform(pa.Table.from_batches([], schema))
        except SchemaError as exc:
            verdict = f"does not match the result schema: {first_line(exc)}"
        for f in SCHEMA:
            if verdict is None and f.name in schema.names:
                found = schema.field(f.name).type
                if pa.types.is_dictionary(found):
                    found = found.value_type
                family = "timestamp" if pa.types.is_timestamp(f.type) else _FAMILY[f.type]
                if found != f.type and not any(ok(found) for ok in _CASTS_OK[family]):
                    verdict = (f"does not match the result schema: column {f.name!r}: expected {f.type}, "
                               f"found {found}")
    if len(_schema_verdicts) < 64:
        _schema_verdicts.append((schema.remove_metadata(), verdict))
    return verdict


def parse_row_file(data: bytes, key: str) -> tuple[pa.Table | None, str | None]:
    """(the file's one-row table, None) for a valid row file, else (None, why it is not valid). The
    table keeps the file's own types: ``conform_batch`` casts many at once."""
    if not data:
        return None, "empty file (0 bytes)"
    try:
        table = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    except (OSError, pa.ArrowException, ValueError) as exc:
        return None, f"truncated or not Parquet ({len(data)} bytes): {first_line(exc)}"
    problem = schema_problem(table.schema)
    if problem:
        return None, problem
    if table.num_rows != 1:
        return None, f"a row file holds 1 row, found {table.num_rows}"
    trial_id, status = table.column("trial_id")[0].as_py(), table.column("status")[0].as_py()
    if trial_id != layout.trial_id_of(key):
        return None, f"holds trial {trial_id!r}, not the trial its name claims ({layout.trial_id_of(key)!r})"
    if status not in STATUSES:
        return None, f"status {status!r}; valid: {list(STATUSES)}"
    return table, None


def conform_batch(tables: list[pa.Table]) -> pa.Table:
    """Many checked row tables -> one conformed table, in order: one cast per column per distinct schema."""
    if not tables:
        return rows_to_table([])
    try:   # the usual case, one schema: concat checks it in C++ (hashing 10,000 schemas costs ~0.5 s)
        return conform(pa.concat_tables(tables).combine_chunks())   # one chunk per column for later work
    except pa.ArrowInvalid:
        pass
    groups: dict[pa.Schema, list[int]] = {}
    for i, t in enumerate(tables):
        groups.setdefault(t.schema.remove_metadata(), []).append(i)
    order, parts = [], []
    for idx in groups.values():
        parts.append(conform(pa.concat_tables([tables[i] for i in idx]).combine_chunks()))
        order += idx
    merged = pa.concat_tables(parts)
    inverse = [0] * len(order)
    for pos, i in enumerate(order):
        inverse[i] = pos
    return merged.take(pa.array(inverse, pa.int64()))


def read_row_file(fs, root: str, key: str) -> tuple[pa.Table | None, str | None]:
    try:
        with fs.open_input_stream(posixpath.join(root, key)) as f:
            data = f.read()
    except FileNotFoundError:
        return None, "gone (deleted while reading)"
    except OSError as exc:
        return None, f"unreadable: {first_line(exc)}"
    return parse_row_file(data, key)


def validate_files(fs, root: str, keys: list[str], threads: int = 1):
    """Read and validate row files: (valid keys, their rows conformed in one table or None, (key, reason)
    of each invalid file). A file deleted while reading is neither."""
    outcomes = pmap(lambda k: read_row_file(fs, root, k), keys, threads)
    valid, tables, invalid = [], [], []
    for key, (table, reason) in zip(keys, outcomes):
        if table is not None:
            valid.append(key)
            tables.append(table)
        elif not reason.startswith("gone"):
            invalid.append((key, reason))
    return valid, (conform_batch(tables) if tables else None), invalid


def read_new_files(fs, root: str, keys: list[str], threads: int = 1):
    """``validate_files``, in worker processes when there are many local files (``row_workers``)."""
    if layout.is_local(fs) and len(keys) >= row_workers.MIN_FILES:
        got = row_workers.validate_in_workers(root, keys)
        if got is not None:
            return got
    return validate_files(fs, root, keys, threads)


# --- the index -----------------------------------------------------------------------------------------
@dataclass
class RowScan:
    """The valid row files of a store and what was done to find them."""

    table: pa.Table                                         # one conformed row per valid row file
    keys: list[str]                                         # rows/<name>.parquet of each table row
    stamps: dict[str, tuple[int, int]]                      # key -> (size, mtime_ns) of every row file listed
    invalid: list[tuple[str, str]] = field(default_factory=list)   # (key, reason)
    from_index: int = 0                                     # rows served by the index
    read_now: int = 0                                       # row files read and validated by this scan
    index_error: str | None = None                          # why the index could not be updated

    @property
    def ids(self) -> list[str]:
        return self.table.column("trial_id").to_pylist()


def _segments(fs, root: str) -> list[str]:
    folder = posixpath.join(root, layout.INDEX_DIR)
    return sorted(posixpath.join(folder, k) for k in list_files(fs, folder, layout.INDEX_SUFFIX))


def _read_segment(fs, path: str, columns: list[str] | None) -> pa.Table | None:
    try:
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            meta = pf.schema_arrow.metadata or {}
            if meta.get(b"roar_index_version") != INDEX_VERSION:
                return None  # another index format: rebuilt from the row files
            names = set(pf.schema_arrow.names)
            want = _STAMP + [c for c in (columns or COLUMNS) if c in names]
            table = pf.read(columns=want, use_threads=False)
    except (OSError, pa.ArrowException, ValueError):
        return None  # a damaged cache entry costs a re-read, never a row
    return table


def _write_segment(fs, root: str, table: pa.Table) -> str:
    path = posixpath.join(root, layout.INDEX_DIR, f"rows-{uuid.uuid4().hex}{layout.INDEX_SUFFIX}")
    sink = pa.BufferOutputStream()
    table = table.replace_schema_metadata({"roar_index_version": INDEX_VERSION})
    pq.write_table(table, sink, compression="zstd")
    layout.atomic_write(fs, path, sink.getvalue().to_pybytes())
    return path


def _index_rows(keys: list[str], stamps: dict, body: pa.Table) -> pa.Table:
    body = body.cast(_PLAIN)
    stamp = [pa.array(keys, pa.string()), pa.array([stamps[k][0] for k in keys], pa.int64()),
             pa.array([stamps[k][1] for k in keys], pa.int64())]
    return pa.Table.from_arrays(stamp + body.columns, names=_STAMP + body.column_names)


def _live(entries: pa.Table, stamps: dict) -> pa.Table:
    """Entries whose file still exists with the same size and mtime; the last entry per file wins."""
    if entries.num_rows == 0:
        return entries
    keys = entries.column("_key").to_pylist()
    sizes = entries.column("_size").to_pylist()
    times = entries.column("_mtime_ns").to_pylist()
    chosen: dict[str, int] = {}
    for i, (k, s, t) in enumerate(zip(keys, sizes, times)):
        if stamps.get(k) == (s, t):
            chosen[k] = i
    return entries.take(pa.array(sorted(chosen.values()), pa.int64()))


def scan_rows(fs, root: str, columns: list[str] | None = None, update_index: bool = True,
              use_index: bool = True) -> RowScan:
    """Every valid row file of the store at ``root``; see the module docstring.

    columns: contract columns wanted in ``RowScan.table`` (None = all). update_index: add the rows read
    now to the index (skipped silently where the store is read-only: the index is only a cache).
    use_index: False reads and validates every row file again (``roar verify --full``).
    """
    cols = list(COLUMNS) if columns is None else [c for c in COLUMNS if c in set(columns) | {"trial_id"}]
    stamps = {f"{layout.ROWS_DIR}/{k}": v for k, v in list_files(fs, posixpath.join(root, layout.ROWS_DIR)).items()}
    threads = threads_for(fs)
    seg_paths = _segments(fs, root) if stamps and use_index else []
    segs = [s for s in pmap(lambda p: _read_segment(fs, p, cols), seg_paths, threads) if s is not None]
    entries = pa.concat_tables(segs, promote_options="permissive") if segs else None
    known = _live(entries, stamps) if entries is not None else None
    known_keys = known.column("_key").to_pylist() if known is not None else []
    todo = sorted(set(stamps) - set(known_keys))

    new_keys, new_body, invalid = read_new_files(fs, root, todo, threads)

    scan = RowScan(table=rows_to_table([]).select(cols), keys=[], stamps=stamps, invalid=invalid,
                   from_index=len(known_keys), read_now=len(todo))
    parts, keys = [], []
    if known is not None and known.num_rows:
        parts.append(_conform_some(known.drop_columns(_STAMP), cols))
        keys += known_keys
    if new_body is not None:
        parts.append(new_body.select(cols))
        keys += new_keys
    if parts:
        scan.table, scan.keys = pa.concat_tables(parts), keys
    if update_index and new_body is not None:
        try:
            _write_segment(fs, root, _index_rows(new_keys, stamps, new_body))
            if len(seg_paths) + 1 > MAX_SEGMENTS:
                rebuild_index(fs, root, stamps)
        except OSError as exc:
            scan.index_error = first_line(exc)
    return scan


def rebuild_index(fs, root: str, stamps: dict | None = None) -> int:
    """Merge the index segments into one holding only live entries; returns how many it holds.

    Old segments are deleted after the merged one is written: a crash in between leaves duplicates,
    which readers resolve (last entry per file wins, all equal)."""
    if stamps is None:
        stamps = {f"{layout.ROWS_DIR}/{k}": v for k, v in
                  list_files(fs, posixpath.join(root, layout.ROWS_DIR)).items()}
    old = _segments(fs, root)
    segs = [s for s in pmap(lambda p: _read_segment(fs, p, None), old) if s is not None]
    live = _live(pa.concat_tables(segs, promote_options="permissive"), stamps) if segs else None
    if live is not None and live.num_rows:
        body = conform(live.drop_columns(_STAMP)).cast(_PLAIN)
        _write_segment(fs, root, pa.Table.from_arrays(live.select(_STAMP).columns + body.columns,
                                                      names=_STAMP + body.column_names))
    for path in old:
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            pass
    return 0 if live is None else live.num_rows


# --- compacted parts -----------------------------------------------------------------------------------
def read_part(fs, path: str, columns: list[str] | None = None) -> pa.Table:
    """One compacted part (or any Parquet file), conformed; partition columns come from the path when
    the file does not hold them. Raises on anything unreadable."""
    info = fs.get_file_info(path)
    if info.size == 0:
        raise ValueError("empty file (0 bytes)")
    with fs.open_input_file(path) as f:
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        want = None if columns is None else [c for c in columns if c in names]
        table = pf.read(columns=want, use_threads=False)
    for key, value in layout.partition_values(path).items():
        if key not in table.column_names and (columns is None or key in columns):
            table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
    table = conform(table) if columns is None else _conform_some(table, columns)
    return table


def _conform_some(table: pa.Table, columns: list[str]) -> pa.Table:
    """conform() restricted to some columns (a projection need not hold every required column)."""
    out = []
    for name in columns:
        f = SCHEMA.field(name)
        if name in table.column_names:
            col = table.column(name)
            try:
                out.append(col.cast(f.type) if col.type != f.type else col)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(f"column {name!r}: expected {f.type}, found {col.type}") from exc
        else:
            out.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(out, schema=pa.schema([SCHEMA.field(c) for c in columns]))


def part_keys(fs, root: str) -> list[str]:
    folder = posixpath.join(root, layout.COMPACTED_DIR)
    return sorted(f"{layout.COMPACTED_DIR}/{k}" for k in list_files(fs, folder))


def read_parts(fs, root: str, keys: list[str], columns: list[str] | None = None):
    """(tables, skipped [(key, reason)]) of compacted parts, read concurrently."""
    def attempt(key):
        try:
            return read_part(fs, posixpath.join(root, key), columns), None
        except (OSError, ValueError, pa.ArrowException, SchemaError) as exc:
            return None, first_line(exc)

    tables, skipped = [], []
    for key, (table, reason) in zip(keys, pmap(attempt, keys, threads_for(fs))):
        if table is None:
            skipped.append((key, reason))
        else:
            tables.append(table)
    return tables, skipped


# --- the whole store -----------------------------------------------------------------------------------
@dataclass
class StoreRows:
    table: pa.Table                          # one row per trial_id (layout.dedupe), requested columns
    rows: RowScan
    parts: list[str]                         # compacted part keys
    skipped: list[tuple[str, str]]           # unreadable parts and invalid row files (key, reason)
    n_before_dedupe: int = 0

    @property
    def n_files(self) -> int:
        return len(self.rows.stamps) + len(self.parts)


def read_store(fs, root: str, columns: list[str] | None = None, update_index: bool = True,
               dedupe: bool = True) -> StoreRows:
    """Row files (through the index) and compacted parts of a store, deduplicated by trial_id."""
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"results store {root!r} does not exist")
    need = None if columns is None else [c for c in COLUMNS if c in set(columns) | {"trial_id", "status",
                                                                                     "finished_at"}]
    scan = scan_rows(fs, root, need, update_index=update_index)
    keys = part_keys(fs, root)
    tables, skipped = read_parts(fs, root, keys, need)
    both = [scan.table] + tables
    table = pa.concat_tables([t.select(need) if need else t for t in both]) if both else rows_to_table([])
    n = table.num_rows
    if dedupe:
        table = layout.dedupe(table)
    if columns is not None:
        table = table.select([c for c in COLUMNS if c in set(columns)])
    return StoreRows(table, scan, keys, scan.invalid + skipped, n)


def is_store(fs, root: str) -> bool:
    return any(fs.get_file_info(posixpath.join(root, d)).type == pafs.FileType.Directory
               for d in layout.STORE_FOLDERS)


def count_status(table: pa.Table) -> dict[str, int]:
    vc = pc.value_counts(table.column("status"))
    return {d["values"]: d["counts"] for d in vc.to_pylist()}
