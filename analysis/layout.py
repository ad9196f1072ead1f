"""The one definition of a results store's layout, shared by the writer (sweep) and every reader.

Pure pyarrow: no roar, torch or Ray, so ``analysis`` and ``sweep`` both import it::

    STORE/rows/<trial_id>.parquet                         one row per finished trial (atomic write)
    STORE/compacted/dataset=<d>/protocol=<p>/part-*.parquet   hive partitions; dataset and protocol live
                                                           in the path only (one type for every reader)
    STORE/_index/rows-*.index                             validated copies of row files (a cache)
    STORE/quarantine/rows/<name>.<UTC stamp>              row files that failed validation (kept, named)
    STORE/artifacts/...                                   models and maps (roar.artifacts), never rows

A temp file of an atomic write is ``.tmp-<uuid>-<name>.tmp``: hidden, and no ``*.parquet`` glob matches
it, so readers (ours, pandas, DuckDB, polars) never see a half-written row. Also here: the S3 endpoint
of S3-compatible servers, and ``dedupe`` (one row per trial_id).
"""
from __future__ import annotations

import datetime as dt
import os
import posixpath
import uuid
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

ROWS_DIR = "rows"
COMPACTED_DIR = "compacted"
INDEX_DIR = "_index"
QUARANTINE_DIR = "quarantine"
STORE_FOLDERS = (ROWS_DIR, COMPACTED_DIR)      # where a store keeps its Parquet rows
SUFFIX = ".parquet"
INDEX_SUFFIX = ".index"
TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".tmp"
PARTITION_COLUMNS = ("dataset", "protocol")   # compacted/ hive partitions, in path order


# --- where a store lives -----------------------------------------------------------------------------
def env_endpoint() -> str | None:
    """The S3 endpoint named by the environment (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3), if any."""
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")


def s3_options(endpoint_url: str | None = None) -> dict:
    """Keyword arguments of ``pyarrow.fs.S3FileSystem`` for an endpoint (default: the environment's)."""
    kwargs = {}
    endpoint = endpoint_url or env_endpoint()
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        kwargs["region"] = region
    return kwargs


def filesystem(uri: str, endpoint_url: str | None = None):
    """(pyarrow FileSystem, root path inside it) of a local path, ``file://``, ``s3://`` or ``gs://`` URI."""
    if uri.startswith("s3://"):
        return pafs.S3FileSystem(**s3_options(endpoint_url)), uri[len("s3://"):].rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def is_local(fs) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


# --- names -------------------------------------------------------------------------------------------
def row_key(trial_id: str) -> str:
    return f"{ROWS_DIR}/{trial_id}{SUFFIX}"


def trial_id_of(key: str) -> str:
    """The trial id a row file's name claims (``rows/<trial_id>.parquet``)."""
    name = posixpath.basename(key)
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name


def ignored(name: str) -> bool:
    """Temp files of atomic writes and hidden/metadata files (``_SUCCESS``, ``_common_metadata``)."""
    return name.startswith(TMP_PREFIX) or name.startswith(".") or name.startswith("_") or name.endswith(TMP_SUFFIX)


def temp_name(final: str) -> str:
    return posixpath.join(posixpath.dirname(final),
                          f"{TMP_PREFIX}{uuid.uuid4().hex}-{posixpath.basename(final)}{TMP_SUFFIX}")


def partition_dir(values: dict) -> str:
    """``compacted/dataset=<d>/protocol=<p>`` (values URL-quoted, as hive readers unquote them)."""
    return "/".join([COMPACTED_DIR] + [f"{c}={quote(str(values[c]), safe='')}" for c in PARTITION_COLUMNS])


def partition_values(path: str) -> dict[str, str]:
    """Hive partition values named by a path's folders (``…/dataset=x/protocol=roar/part-0.parquet``)."""
    out = {}
    for part in path.split("/")[:-1]:
        key, sep, value = part.partition("=")
        if sep and key in PARTITION_COLUMNS:
            out[key] = unquote(value)
    return out


def quarantine_key(key: str, now: dt.datetime | None = None) -> str:
    """Where a rejected file goes: its key under quarantine/, stamped, without a .parquet ending (so no
    reader's glob picks it up)."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{QUARANTINE_DIR}/{key}.{stamp}"


# --- writing -----------------------------------------------------------------------------------------
def atomic_write(fs, path: str, data: bytes, local: bool | None = None) -> None:
    """The path holds either the complete bytes or nothing, on every backend: object stores get the
    object once under its final key; file systems get a temp file renamed into place."""
    if not (is_local(fs) if local is None else local):
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    fs.create_dir(posixpath.dirname(path), recursive=True)
    tmp = temp_name(path)
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def move(fs, src: str, dst: str) -> None:
    """Rename (local) or copy-then-delete (object stores): the destination appears whole."""
    if is_local(fs):
        fs.create_dir(posixpath.dirname(dst), recursive=True)
        os.replace(src, dst)
    else:
        fs.copy_file(src, dst)
        fs.delete_file(src)


# --- one row per trial -------------------------------------------------------------------------------
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def dedupe(table: pa.Table) -> pa.Table:
    """One row per trial_id: an 'ok' row beats a 'failed' one, then the latest finished_at wins.

    Duplicates arise only from a retried failed trial or a compaction interrupted between writing a
    part and deleting what it replaced; both hold the same trial. Row order is kept.
    """
    if table.num_rows == 0:
        return table
    ids = pc.fill_null(table.column("trial_id"), "").to_numpy(zero_copy_only=False).astype(str)
    not_ok = pc.fill_null(pc.not_equal(table.column("status"), "ok"), True).to_numpy(zero_copy_only=False)
    finished = table.column("finished_at").cast(pa.int64())
    age = -pc.fill_null(finished, np.iinfo(np.int64).min + 1).to_numpy(zero_copy_only=False)
    order = np.lexsort((age, not_ok, ids))  # by id, then ok first, then newest first
    sorted_ids = ids[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    keep = np.sort(order[first])
    return table if len(keep) == table.num_rows else table.take(pa.array(keep))

