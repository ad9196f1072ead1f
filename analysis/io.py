"""Read result rows from a store, a compacted dataset, a folder of Parquet files or one file.

``load(path)`` never aborts on a bad file: a corrupt, empty, truncated or non-conforming file is
skipped with a warning naming it, and listed in ``Results.skipped``. Rows with status 'failed' are kept
apart in ``Results.failed``. Paths may be local, ``file://``, ``s3://`` (``AWS_ENDPOINT_URL`` is used as
the endpoint of S3-compatible servers) or ``gs://``. Only pyarrow is used: no roar, torch or Ray.
"""
from __future__ import annotations

import os
import posixpath
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .schema import COLUMNS, SchemaError, conform, rows_to_table
from .scoring import derive

TMP_PREFIX = ".tmp-"          # the store's in-flight files (roar.storage.TMP_PREFIX)
STORE_FOLDERS = ("rows", "compacted")  # where a store keeps its Parquet rows


class SkippedFileWarning(UserWarning):
    """A result file could not be read and was skipped; the message names it and says why."""


@dataclass
class Results:
    """Loaded rows. ``ok`` carries the derived columns of ``analysis.scoring.derive``."""

    ok: pd.DataFrame
    failed: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    source: str = ""
    n_files: int = 0            # Parquet files found (read or skipped)
    n_duplicates: int = 0       # rows dropped because their trial_id was already loaded

    @property
    def counts(self) -> dict:
        return {"ok": len(self.ok), "failed": len(self.failed), "skipped_files": len(self.skipped),
                "files": self.n_files, "duplicates": self.n_duplicates}

    def describe(self) -> str:
        c = self.counts
        return (f"{c['ok']} successful rows, {c['failed']} failed, {c['skipped_files']} unreadable files "
                f"skipped (of {c['files']} files), {c['duplicates']} duplicate rows dropped")


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for a local path or URI; mirrors roar.storage."""
    if uri.startswith("s3://"):
        kwargs = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        if region:
            kwargs["region"] = region
        return pafs.S3FileSystem(**kwargs), uri[len("s3://"):].rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def _ignored(name: str) -> bool:
    # temp files of atomic writes, and hidden/metadata files such as _SUCCESS or _common_metadata
    return name.startswith(TMP_PREFIX) or name.startswith(".") or name.startswith("_")


def list_parquet(fs, root: str) -> list[str]:
    """Parquet files under root. In a store only rows/ and compacted/ are searched (artifacts/ holds
    models and maps, never rows)."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"results path {root!r} does not exist; pass a results store, a folder of "
                                f".parquet files or one .parquet file")
    if info.type == pafs.FileType.File:
        return [root]
    bases = [posixpath.join(root, d) for d in STORE_FOLDERS
             if fs.get_file_info(posixpath.join(root, d)).type == pafs.FileType.Directory] or [root]
    files = []
    for base in bases:
        for fi in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
            if fi.type == pafs.FileType.File and fi.base_name.endswith(".parquet") and not _ignored(fi.base_name):
                if not any(_ignored(part) for part in posixpath.relpath(fi.path, base).split("/")[:-1]):
                    files.append(fi.path)
    return sorted(files)


def _partition_values(path: str) -> dict:
    """Hive partition values of a compacted file (``…/dataset=x/protocol=roar/part-0.parquet``)."""
    out = {}
    for part in path.split("/")[:-1]:
        key, sep, value = part.partition("=")
        if sep and key in COLUMNS:
            out[key] = unquote(value)
    return out


def read_file(fs, path: str) -> pa.Table:
    """One file, conformed to the contract. Raises on anything unreadable (the caller skips it)."""
    if fs.get_file_info(path).size == 0:
        raise ValueError("empty file (0 bytes)")
    with fs.open_input_file(path) as f:
        table = pq.ParquetFile(f).read()
    for key, value in _partition_values(path).items():
        if key not in table.column_names:  # partition columns live in the path, not in the file
            table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
    return conform(table)


def _read_all(fs, files: list[str]) -> tuple[list[pa.Table], list[tuple[str, str]]]:
    def attempt(path):
        try:
            return read_file(fs, path), None
        except (OSError, ValueError, pa.ArrowException, SchemaError) as exc:
            return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]

    # Object stores are latency bound: read many small per-trial files concurrently.
    workers = min(16, max(1, len(files)))
    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(attempt, files))
    tables, skipped = [], []
    for path, (table, reason) in zip(files, outcomes):
        if table is None:
            skipped.append((path, reason))
            warnings.warn(f"skipped unreadable result file {path}: {reason}", SkippedFileWarning, stacklevel=3)
        else:
            tables.append(table)
    return tables, skipped


def _apply_filters(df: pd.DataFrame, filters: dict | None) -> pd.DataFrame:
    if not filters:
        return df
    for col, wanted in filters.items():
        if col not in df.columns:
            raise KeyError(f"filter column {col!r} unknown; valid columns: {sorted(df.columns)}")
        values = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        df = df[df[col].isin(values)]
    return df


def from_table(table: pa.Table | pd.DataFrame, filters: dict | None = None, source: str = "",
               skipped=None, n_files: int = 0) -> Results:
    """Results from rows already in memory (a conformed table or a DataFrame of contract columns)."""
    if isinstance(table, pd.DataFrame):
        extra = sorted(set(table.columns) - set(COLUMNS))
        if extra:  # derived columns of an earlier derive() are recomputed below
            table = table.drop(columns=extra)
        table = conform(pa.Table.from_pandas(table, preserve_index=False))
    df = table.to_pandas()
    n_before = len(df)
    if n_before:
        # a rerun may leave an old failed row beside the new ok one: keep ok, then the newest
        df = df.assign(_failed=(df["status"] != "ok"))
        df = df.sort_values(["_failed", "finished_at"], ascending=[True, False], na_position="last",
                            kind="stable")
        df = df.drop_duplicates("trial_id", keep="first").drop(columns="_failed").sort_index()
    n_dup = n_before - len(df)
    df = df.reset_index(drop=True)
    ok = derive(df[df["status"] == "ok"].reset_index(drop=True))
    failed = df[df["status"] != "ok"].reset_index(drop=True)
    ok = _apply_filters(ok, filters).reset_index(drop=True)
    failed = _apply_filters(failed, {k: v for k, v in (filters or {}).items() if k in failed.columns})
    return Results(ok=ok, failed=failed.reset_index(drop=True), skipped=list(skipped or []),
                   source=source, n_files=n_files, n_duplicates=n_dup)


def load(path: str, filters: dict | None = None) -> Results:
    """Load every result row under ``path``.

    path: a results store (its ``rows/`` per-trial files and ``compacted/`` datasets are both read and
    deduplicated by trial_id), any folder of .parquet files (searched recursively), or one file.
    filters: ``{column: value or list of values}`` keeps matching rows, e.g. ``{"protocol": "roar"}``;
    the derived columns (``level``, ``setup``, ...) may be filtered too.
    """
    fs, root = filesystem(str(path))
    files = list_parquet(fs, root)
    tables, skipped = _read_all(fs, files)
    table = pa.concat_tables(tables) if tables else rows_to_table([])
    return from_table(table, filters=filters, source=str(path), skipped=skipped, n_files=len(files))


def as_results(results_or_path, filters: dict | None = None) -> Results:
    """Accept Results, a path/URI or a DataFrame of contract rows."""
    if isinstance(results_or_path, Results):
        if filters:
            r = results_or_path
            return Results(ok=_apply_filters(r.ok, filters).reset_index(drop=True), failed=r.failed,
                           skipped=r.skipped, source=r.source, n_files=r.n_files, n_duplicates=r.n_duplicates)
        return results_or_path
    if isinstance(results_or_path, (pd.DataFrame, pa.Table)):
        return from_table(results_or_path, filters=filters, source="(in memory)")
    return load(os.fspath(results_or_path), filters=filters)
