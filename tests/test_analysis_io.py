"""analysis.io.load: stores, compacted datasets, single files; bad files are reported and skipped."""
import os

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from analysis.io import SkippedFileWarning, as_results, load
from analysis.schema import rows_to_table
from analysis.testing import fake_results, frame_to_rows, make_rows, write_rows


@pytest.fixture(scope="module")
def rows():
    return fake_results(seed=2, n_seeds=2, sigmas=(0.0, 2.0), fractions=(0.2, 0.8), n_failed=2)


def _load_quiet(path, **kw):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFileWarning)
        return load(path, **kw)


def test_store_roundtrip_keeps_every_row_and_splits_failed(tmp_path, rows):
    write_rows(rows, str(tmp_path))
    r = load(str(tmp_path))
    assert len(r.ok) + len(r.failed) == len(rows) and len(r.failed) == 2 and r.n_files == len(rows)
    assert set(r.failed["error"]) == {"RuntimeError: planted failure"}
    assert r.skipped == [] and r.n_duplicates == 0
    ok = rows[rows["status"] == "ok"].set_index("trial_id").sort_index()
    got = r.ok.set_index("trial_id").sort_index()
    pd.testing.assert_series_equal(got["accuracy_drop"], ok["accuracy_drop"], check_dtype=False)
    assert {"score", "level", "is_reference", "setup", "family"} <= set(r.ok.columns)


def test_bad_files_are_reported_skipped_and_never_abort(tmp_path, rows):
    write_rows(rows.head(6), str(tmp_path))
    folder = tmp_path / "rows"
    good = sorted(folder.iterdir())[0].read_bytes()
    (folder / "corrupt.parquet").write_bytes(os.urandom(300))
    (folder / "empty.parquet").write_bytes(b"")
    (folder / "truncated.parquet").write_bytes(good[:-20])      # footer cut off
    # partial: a valid Parquet file that lacks required columns of the contract
    pq.write_table(pa.table({"trial_id": ["x"], "accuracy": [0.5]}), folder / "partial.parquet")
    with pytest.warns(SkippedFileWarning) as caught:
        r = load(str(tmp_path))
    reasons = dict((os.path.basename(p), why) for p, why in r.skipped)
    assert set(reasons) == {"corrupt.parquet", "empty.parquet", "truncated.parquet", "partial.parquet"}
    assert "empty" in reasons["empty.parquet"] and "missing required column" in reasons["partial.parquet"]
    assert len(r.ok) + len(r.failed) == 6 and r.n_files == 10 and r.counts["skipped_files"] == 4
    assert all(any(name in str(w.message) for w in caught) for name in reasons)


def test_temp_and_hidden_files_are_ignored(tmp_path, rows):
    write_rows(rows.head(3), str(tmp_path))
    (tmp_path / "rows" / ".tmp-abc-123.parquet").write_bytes(b"half written")
    (tmp_path / "rows" / "_SUCCESS").write_bytes(b"")
    r = load(str(tmp_path))
    assert r.n_files == 3 and r.skipped == [] and len(r.ok) + len(r.failed) == 3


def test_missing_optional_columns_load_as_null(tmp_path):
    table = pa.table({"trial_id": ["a"], "dataset": ["synthetic"], "attribution": ["saliency"], "protocol": ["roar"],
                      "fraction": [0.5], "seed": [0], "status": ["ok"], "accuracy": [0.7], "base_accuracy": [0.9]})
    pq.write_table(table, tmp_path / "old.parquet")
    r = load(str(tmp_path / "old.parquet"))
    assert len(r.ok) == 1 and r.ok["blur_spectral_centroid"].isna().all()
    # accuracy_drop is derived from base_accuracy - accuracy when a writer left it out
    assert r.ok["score"].iloc[0] == pytest.approx(0.2) and r.ok["level"].iloc[0] == "identity"


def _write_compacted(tmp_path, df):
    table = rows_to_table(frame_to_rows(df))
    ds.write_dataset(table, str(tmp_path / "compacted"), format="parquet", partitioning=["dataset", "protocol"],
                     partitioning_flavor="hive", basename_template="part-{i}.parquet")


def test_compacted_dataset_and_rows_are_merged_and_deduplicated(tmp_path, rows):
    _write_compacted(tmp_path, rows)                        # everything compacted
    write_rows(rows.head(5), str(tmp_path))                 # and five rows still as per-trial files
    (tmp_path / "artifacts").mkdir()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "artifacts" / "not-a-row.parquet")  # never read
    r = load(str(tmp_path))
    assert len(r.ok) + len(r.failed) == len(rows) and r.n_duplicates == 5 and r.skipped == []
    assert set(r.ok["dataset"]) == {"synthetic"} and set(r.ok["protocol"]) == {"roar"}
    only = load(str(tmp_path / "compacted"))                # any folder of parquet files
    assert len(only.ok) + len(only.failed) == len(rows)


def test_duplicate_trial_prefers_the_ok_row(tmp_path):
    failed = make_rows([{"trial_id": "t1", "status": "failed", "error": "boom"}])
    ok = make_rows([{"trial_id": "t1", "accuracy": 0.6, "base_accuracy": 0.9}])
    pq.write_table(rows_to_table(frame_to_rows(failed)), tmp_path / "a.parquet")
    pq.write_table(rows_to_table(frame_to_rows(ok)), tmp_path / "b.parquet")
    r = load(str(tmp_path))
    assert len(r.ok) == 1 and len(r.failed) == 0 and r.n_duplicates == 1


def test_filters_select_rows_and_name_bad_columns(tmp_path, rows):
    write_rows(rows, str(tmp_path))
    r = load(str(tmp_path), filters={"fraction": 0.2, "attribution": ["saliency", "random"]})
    assert set(r.ok["fraction"]) == {0.2} and set(r.ok["attribution"]) == {"saliency", "random"}
    assert set(load(str(tmp_path), filters={"level": "identity"}).ok["sigma"]) == {0.0}
    with pytest.raises(KeyError, match="'colour'"):
        load(str(tmp_path), filters={"colour": "red"})


def test_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load(str(tmp_path / "nope"))


def test_as_results_accepts_frames(rows):
    r = as_results(rows)
    assert len(r.ok) == (rows["status"] == "ok").sum() and r.source == "(in memory)"
    # a frame that already carries derived columns loads the same
    again = as_results(r.ok)
    assert len(again.ok) == len(r.ok)


def test_s3_store_through_endpoint_override(monkeypatch, rows):
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                     "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
            monkeypatch.setenv(k, v)
        from analysis.io import filesystem
        fs, _ = filesystem("s3://results")
        boto3 = pytest.importorskip("boto3")
        boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="results")
        write_rows(rows.head(4), "s3://results/store")
        fs.open_output_stream("results/store/rows/corrupt.parquet").close()   # an empty object
        r = _load_quiet("s3://results/store")
        assert len(r.ok) + len(r.failed) == 4 and len(r.skipped) == 1
    finally:
        server.stop()
