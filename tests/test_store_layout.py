"""analysis.layout: the one definition of names and partitions that the sweep and every reader share."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from analysis import layout


@pytest.mark.parametrize("dataset,protocol", [("mnist", "roar"), ("my data/v2", "road_morf"), ("a=b", "kar")])
def test_partition_dir_round_trips_through_the_path(dataset, protocol):
    folder = layout.partition_dir({"dataset": dataset, "protocol": protocol})
    assert folder.startswith("compacted/dataset=") and folder.count("/") == 2      # one folder level each
    assert layout.partition_values(f"{folder}/part-x.parquet") == {"dataset": dataset, "protocol": protocol}


def test_names_of_rows_temp_files_and_quarantine():
    assert layout.row_key("abc") == "rows/abc.parquet" and layout.trial_id_of("rows/abc.parquet") == "abc"
    tmp = layout.temp_name("/s/rows/abc.parquet")
    base = tmp.rsplit("/", 1)[1]
    assert tmp.startswith("/s/rows/.tmp-") and not tmp.endswith(".parquet") and layout.ignored(base)
    assert not layout.ignored("abc.parquet") and layout.ignored("_SUCCESS") and layout.ignored(".hidden")
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
    assert layout.quarantine_key("rows/abc.parquet", when) == "quarantine/rows/abc.parquet.20260102T030405000006Z"


def test_s3_endpoint_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert layout.s3_options() == {"endpoint_override": "127.0.0.1:9000", "scheme": "http", "region": "eu-west-1"}
    assert layout.s3_options("https://s3.example.org")["endpoint_override"] == "s3.example.org"
    fs, root = layout.filesystem("s3://bucket/prefix/")
    assert fs.type_name == "s3" and root == "bucket/prefix"


def test_dedupe_keeps_ok_then_newest_in_input_order():
    t = pa.table({"trial_id": ["a", "b", "a", "c", "b"], "status": ["failed", "ok", "ok", "failed", "ok"],
                  "finished_at": pa.array([5, 1, 1, None, 9], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                  "n": [0, 1, 2, 3, 4]})
    assert layout.dedupe(t).column("n").to_pylist() == [2, 3, 4]


def test_atomic_write_leaves_no_temp_file(tmp_path):
    fs, root = layout.filesystem(str(tmp_path))
    layout.atomic_write(fs, f"{root}/rows/x.parquet", b"123")
    assert [p.name for p in (tmp_path / "rows").iterdir()] == ["x.parquet"]
