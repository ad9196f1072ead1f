"""Read result rows from a store, a compacted dataset, a folder of Parquet files or one file.

``load(path)`` never aborts on a bad file: a corrupt, empty, truncated or non-conforming file is
skipped with a warning naming it, and listed in ``Results.skipped``. Rows with status 'failed' are kept
apart in ``Results.failed``. Paths may be local, ``file://``, ``s3://`` (``AWS_ENDPOINT_URL`` is used as
the endpoint of S3-compatible servers) or ``gs://``. A store is read through its row index
(``analysis.store_read``): each row file is validated once, later loads read only files not seen
before. Only pyarrow is used: no roar, torch or Ray.
"""
from __future__ import annotations

import os
import posixpath
import warnings
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from . import layout, store_read
from .layout import STORE_FOLDERS, TMP_PREFIX, filesystem  # noqa: F401  (public names of this module)
from .schema import COLUMNS, conform, rows_to_table
from .scoring import derive


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


def list_parquet(fs, root: str) -> list[str]:
    """Parquet files under root (a file, a store's rows/ and compacted/, or any folder), temp and hidden
    files skipped."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"results path {root!r} does not exist; pass a results store, a folder of "
                                f".parquet files or one .parquet file")
    if info.type == pafs.FileType.File:
        return [root]
    bases = [posixpath.join(root, d) for d in STORE_FOLDERS
             if fs.get_file_info(posixpath.join(root, d)).type == pafs.FileType.Directory] or [root]
    return sorted(posixpath.join(base, k) for base in bases for k in store_read.list_files(fs, base))


def read_file(fs, path: str) -> pa.Table:
    """One file, conformed to the contract. Raises on anything unreadable (the caller skips it)."""
    return store_read.read_part(fs, path)


def _warn_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped:
        warnings.warn(f"skipped unreadable result file {path}: {reason}", SkippedFileWarning, stacklevel=4)


def _read_folder(fs, root: str) -> tuple[pa.Table, list[tuple[str, str]], int]:
    files = list_parquet(fs, root)
    rel = [posixpath.relpath(f, root) if f != root else posixpath.basename(f) for f in files]
    base = root if files != [root] else posixpath.dirname(root)
    tables, skipped = store_read.read_parts(fs, base, rel)
    table = pa.concat_tables(tables) if tables else rows_to_table([])
    return table, [(posixpath.join(base, k), why) for k, why in skipped], len(files)


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
    n_before = table.num_rows
    # a rerun may leave an old failed row beside the new ok one: keep ok, then the newest (the store's rule)
    df = layout.dedupe(table).to_pandas()
    n_dup = n_before - len(df)
    ok = derive(df[df["status"] == "ok"].reset_index(drop=True))
    failed = df[df["status"] != "ok"].reset_index(drop=True)
    ok = _apply_filters(ok, filters).reset_index(drop=True)
    failed = _apply_filters(failed, {k: v for k, v in (filters or {}).items() if k in failed.columns})
    return Results(ok=ok, failed=failed.reset_index(drop=True), skipped=list(skipped or []),
                   source=source, n_files=n_files, n_duplicates=n_dup)


def load(path: str, filters: dict | None = None, update_index: bool = True) -> Results:
    """Load every result row under ``path``.

    path: a results store (its ``rows/`` per-trial files and ``compacted/`` datasets are both read and
    deduplicated by trial_id), any folder of .parquet files (searched recursively), or one file.
    filters: ``{column: value or list of values}`` keeps matching rows, e.g. ``{"protocol": "roar"}``;
    the derived columns (``level``, ``setup``, ...) may be filtered too.
    update_index: record the row files validated now in the store's index (``_index/``), so the next
    load reads only new files; silently skipped where the store is read-only.
    """
    fs, root = filesystem(str(path))
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.Directory and store_read.is_store(fs, root):
        got = store_read.read_store(fs, root, update_index=update_index, dedupe=False)
        skipped = [(posixpath.join(root, k), why) for k, why in got.skipped]
        table, n_files = got.table, got.n_files
    else:
        table, skipped, n_files = _read_folder(fs, root)
    _warn_skipped(skipped)
    return from_table(table, filters=filters, source=str(path), skipped=skipped, n_files=n_files)


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
