"""A relative store path means the same folder in the driver and in every worker."""
import os
import pickle

from roar.storage import Store


def test_relative_store_path_is_made_absolute_before_it_travels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store("results/demo")
    assert store.uri == str(tmp_path / "results" / "demo")
    elsewhere = tmp_path / "trial_dir"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # Ray Tune runs a trial in its own folder
    copy = pickle.loads(pickle.dumps(store))
    copy.write_bytes("rows/x.parquet", b"data")
    assert (tmp_path / "results" / "demo" / "rows" / "x.parquet").read_bytes() == b"data"
    assert not os.path.exists(elsewhere / "results")
