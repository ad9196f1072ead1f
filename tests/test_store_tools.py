"""The store read with the analysts' own tools (pandas, pyarrow.dataset, DuckDB, polars), locally and on S3:
each plain call gives the same rows, values and column types as ``analysis.load``.

A small store holds trials both ways a real one does: some compacted (hive partitions, dataset and
protocol in the path only) and some still per-trial row files, plus a half-written temp file that no
reader may see. On S3 every tool takes the endpoint of the S3-compatible server from AWS_ENDPOINT_URL
or its own option; DuckDB reaches S3 here through an fsspec filesystem over pyarrow's S3 client (its
httpfs extension is a download, which this machine cannot make).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from analysis import layout
from analysis.io import load
from analysis.schema import COLUMNS, SCHEMA
from analysis.testing import fake_results, write_rows
from roar.storage import Store
from s3_server import moto_server, s3  # noqa: F401
from sweep.compact import compact

duckdb = pytest.importorskip("duckdb", reason="duckdb is a test extra: pip install -e .[test]")
pl = pytest.importorskip("polars", reason="polars is a test extra: pip install -e .[test]")


@dataclass
class Where:
    uri: str                        # the store: a local folder or s3://bucket/prefix
    endpoint: str | None = None     # S3-compatible server, also in AWS_ENDPOINT_URL

    def folder(self, name: str) -> str:
        return f"{self.uri}/{name}"


def _fill(uri: str) -> None:
    df = fake_results(seed=3, n_seeds=1, methods=("saliency", "random"), sigmas=(0.0, 2.0), fractions=(0.2, 0.8),
                      protocols=("roar", "kar"),
                      datasets=("synthetic", "digits"), n_failed=2)
    write_rows(df.iloc[: len(df) // 2], uri)
    compact(Store(uri))                          # half the trials compacted ...
    write_rows(df.iloc[len(df) // 2:], uri)      # ... half still per-trial row files


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools") / "store"
    _fill(str(root))
    # a writer killed mid-write leaves its temp file: no reader may see it
    (root / "rows" / layout.temp_name("x.parquet").lstrip("/")).write_bytes(b"PAR1 half a row")
    return Where(str(root))


@pytest.fixture
def where(request, local_store, s3, monkeypatch):
    if request.param == "local":
        return local_store
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    uri = s3.uri("store")
    _fill(uri)
    return Where(uri, s3.endpoint)


# --- each tool's plain call: folder (rows or compacted) -> its table ---------------------------------
def read_pandas(where: Where, folder: str) -> pd.DataFrame:
    return pd.read_parquet(where.folder(folder))


def read_pyarrow(where: Where, folder: str) -> pa.Table:
    return ds.dataset(where.folder(folder), format="parquet", partitioning="hive").to_table()


def read_duckdb(where: Where, folder: str) -> pa.Table:
    con = duckdb.connect()
    if where.endpoint:
        con.register_filesystem(_fsspec_s3())
    sql = f"SELECT * FROM read_parquet('{where.folder(folder)}/**/*.parquet', hive_partitioning=true)"
    return con.sql(sql).fetch_arrow_table()


def read_polars(where: Where, folder: str) -> pa.Table:
    options = {"aws_endpoint_url": where.endpoint, "aws_allow_http": "true"} if where.endpoint else None
    return pl.scan_parquet(f"{where.folder(folder)}/**/*.parquet", hive_partitioning=True,
                           storage_options=options).collect().to_arrow()


def _fsspec_s3():
    from fsspec.implementations.arrow import ArrowFSWrapper

    class S3(ArrowFSWrapper):
        protocol = "s3"
        root_marker = ""

    return S3(layout.filesystem("s3://x")[0])


TOOLS = {"pandas": read_pandas, "pyarrow": read_pyarrow, "duckdb": read_duckdb, "polars": read_polars}


# --- comparing with analysis.load ------------------------------------------------------------------
def _family(t: pa.DataType):
    """What a column's type means to an analyst: string flavours and UTC spellings are one."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_timestamp(t):
        return ("timestamp", t.unit, "UTC" if t.tz in ("UTC", "Etc/UTC", "+00:00") else t.tz)
    return str(t)


def _pandas_fits(series: pd.Series, t: pa.DataType) -> bool:
    """The pandas dtype of a contract type (integers with nulls become float64, bools with nulls object)."""
    kind = series.dtype.kind
    if pa.types.is_integer(t):
        return kind == "i" or (kind == "f" and series.isna().any())
    if pa.types.is_floating(t):
        return kind == "f"
    if pa.types.is_timestamp(t):
        return str(series.dtype) == "datetime64[us, UTC]"
    if pa.types.is_boolean(t):
        return kind == "b" or (kind == "O" and series.isna().any())
    return pd.api.types.is_string_dtype(series.dtype) or series.isna().all()


def _contract(table: pa.Table) -> pd.DataFrame:
    cols = []
    for f in SCHEMA:
        col = table.column(f.name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        cols.append(col.cast(f.type))
    return pa.Table.from_arrays(cols, schema=SCHEMA).sort_by("trial_id").to_pandas()


def _expected(where: Where) -> pd.DataFrame:
    r = load(where.uri)
    frame = pd.concat([r.ok[COLUMNS], r.failed[COLUMNS]], ignore_index=True)
    return _contract(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False))


@pytest.mark.parametrize("where", ["local", "s3"], indirect=True)
@pytest.mark.parametrize("tool", list(TOOLS))
def test_tool_reads_the_same_rows_and_types_as_analysis_load(tool, where):
    expected = _expected(where)
    assert len(expected) == 34 and (expected["status"] == "failed").sum() == 2
    got = [TOOLS[tool](where, folder) for folder in layout.STORE_FOLDERS]
    assert all(len(g) > 0 for g in got)             # both halves: per-trial rows and compacted parts
    if tool == "pandas":
        frames = [g.astype({c: str for c in layout.PARTITION_COLUMNS}) for g in got]
        # pandas turns hive partition columns into categoricals of the same strings; every other
        # column gets the dtype pandas gives the contract's type (as in analysis.load)
        assert all(isinstance(got[1][c].dtype, pd.CategoricalDtype) for c in layout.PARTITION_COLUMNS)
        for frame in frames:
            for f in SCHEMA:
                assert _pandas_fits(frame[f.name], f.type), (f.name, frame[f.name].dtype)
        tables = [pa.Table.from_pandas(f[COLUMNS], schema=SCHEMA, preserve_index=False) for f in frames]
    else:
        tables = got
        for table in tables:
            assert set(table.column_names) == set(COLUMNS)
            for f in SCHEMA:
                assert _family(table.schema.field(f.name).type) == _family(f.type), (tool, f.name)
    actual = _contract(pa.concat_tables([t.select(COLUMNS).cast(tables[0].select(COLUMNS).schema)
                                         for t in tables]))
    pd.testing.assert_frame_equal(actual.reset_index(drop=True), expected.reset_index(drop=True))


def test_compacted_parts_keep_partition_columns_in_the_path_only(local_store):
    import pyarrow.parquet as pq

    parts = Store(local_store.uri).list(layout.COMPACTED_DIR)
    assert parts and all(layout.partition_values(k).keys() == {"dataset", "protocol"} for k in parts)
    for key in parts:
        names = pq.read_schema(f"{local_store.uri}/{key}").names
        assert not set(layout.PARTITION_COLUMNS) & set(names) and "trial_id" in names


def test_readers_skip_temp_files_of_writers(local_store):
    """The temp file of a write in progress ends in .tmp and starts with '.': no glob or lister sees it."""
    name = layout.temp_name("rows/abc.parquet")
    assert posix_base(name).startswith(".tmp-") and name.endswith(".tmp") and layout.ignored(posix_base(name))
    n_rows = len(read_pyarrow(local_store, "rows"))
    assert len(read_duckdb(local_store, "rows")) == len(read_polars(local_store, "rows")) == n_rows
    assert len(read_pandas(local_store, "rows")) == n_rows


def posix_base(path: str) -> str:
    return path.rsplit("/", 1)[-1]
