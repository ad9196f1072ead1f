"""roar.storage.Store on a local folder and on a real S3-compatible server (moto): the same API, atomic
writes (complete or absent, never partial), temp files invisible to readers, and no credential in
anything the Store carries to other processes."""
from __future__ import annotations

import errno
import hashlib
import os
import pickle
import threading

import pytest
from s3_server import SECRET_KEY, moto_server, s3  # noqa: F401  (fixtures)

from roar.storage import TMP_PREFIX, Store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3")
    return Store(bucket.uri("prefix/store"), bucket.endpoint)


def test_write_read_list_delete(store):
    keys = {"rows/b.parquet": b"b" * 10, "rows/a.parquet": b"a" * 3, "artifacts/maps/k/train.npy": b"\x00\x01",
            "artifacts/models/m.json": b"{}"}
    for key, data in keys.items():
        store.write_bytes(key, data)
    for key, data in keys.items():
        assert store.exists(key) and store.read_bytes(key) == data and store.size(key) == len(data)
    assert store.list("rows") == ["rows/a.parquet", "rows/b.parquet"]
    assert store.list("artifacts", suffix=".json") == ["artifacts/models/m.json"]
    assert store.list() == sorted(keys)
    assert store.list("nothing-here") == [] and not store.exists("rows/c.parquet")
    store.delete("rows/a.parquet")
    assert store.list("rows") == ["rows/b.parquet"] and not store.exists("rows/a.parquet")


def test_rewrite_replaces_the_whole_content(store):
    store.write_bytes("k/v.bin", b"x" * 1000)
    store.write_bytes("k/v.bin", b"short")
    assert store.read_bytes("k/v.bin") == b"short"


def test_readers_ignore_temp_files(store, request):
    store.write_bytes("rows/a.parquet", b"a")
    temp = f"rows/{TMP_PREFIX}123-b.parquet"
    if store.is_local:
        with open(store.path(temp), "wb") as f:
            f.write(b"partial")
    else:  # put it behind the Store's back: objects never get temp names from the Store itself
        bucket = request.getfixturevalue("s3")
        bucket.client().put_object(Bucket=bucket.bucket, Key=f"prefix/store/{temp}", Body=b"partial")
    assert store.list("rows") == ["rows/a.parquet"]


def test_s3_writes_each_object_once_under_its_final_key(s3):
    store = Store(s3.uri("st"), s3.endpoint)
    for i in range(5):
        store.write_bytes(f"rows/{i}.parquet", bytes([i]) * 100)
    store.write_bytes("rows/0.parquet", b"again")
    objects = s3.objects()
    assert sorted(objects) == [f"st/rows/{i}.parquet" for i in range(5)]   # no temp or marker objects
    assert objects["st/rows/0.parquet"] == b"again" and objects["st/rows/3.parquet"] == b"\x03" * 100


class _DiskFullFS:
    """A LocalFileSystem whose output streams accept `limit` bytes, then fail with ENOSPC."""

    def __init__(self, fs, limit: int):
        self._fs, self._limit = fs, limit

    def __getattr__(self, name):
        return getattr(self._fs, name)

    def open_output_stream(self, path):
        stream, limit = self._fs.open_output_stream(path), self._limit

        class Partial:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                stream.close()

            def write(self, data):
                stream.write(bytes(data[:limit]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return Partial()


def test_local_write_that_fails_midway_leaves_the_old_content_and_no_temp_file(tmp_path):
    store = Store(str(tmp_path))
    store.write_bytes("rows/a.parquet", b"old complete row")
    store.fs = _DiskFullFS(store.fs, limit=4)
    with pytest.raises(OSError) as info:
        store.write_bytes("rows/a.parquet", b"new row that does not fit")
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        store.write_bytes("rows/b.parquet", b"never stored")
    assert sorted(os.listdir(tmp_path / "rows")) == ["a.parquet"]          # no .tmp- left, no b
    assert (tmp_path / "rows" / "a.parquet").read_bytes() == b"old complete row"


def test_local_write_under_a_regular_file_fails_and_creates_nothing(tmp_path):
    (tmp_path / "rows").write_bytes(b"a file where the rows folder should be")
    store = Store(str(tmp_path))
    with pytest.raises(FileExistsError, match="non-directory entry exists"):
        store.write_bytes("rows/a.parquet", b"x")
    assert sorted(os.listdir(tmp_path)) == ["rows"]


def test_local_rename_onto_a_directory_fails_and_removes_the_temp_file(tmp_path):
    (tmp_path / "rows" / "a.parquet").mkdir(parents=True)
    store = Store(str(tmp_path))
    with pytest.raises(IsADirectoryError):
        store.write_bytes("rows/a.parquet", b"x")
    assert os.listdir(tmp_path / "rows") == ["a.parquet"]


def test_concurrent_writers_and_a_reader_never_see_a_partial_value(tmp_path):
    """4 writer threads rewrite one key with self-checking payloads while a reader reads it: every read
    is one complete payload (temp file + rename)."""
    store = Store(str(tmp_path))
    store.write_bytes("k", _payload(0, 0))
    stop, bad, reads = threading.Event(), [], [0]

    def writer(w):
        for i in range(60):
            store.write_bytes("k", _payload(w, i))

    def reader():
        while not stop.is_set():
            data = store.read_bytes("k")
            reads[0] += 1
            if hashlib.sha256(data[32:]).digest() != data[:32]:
                bad.append(len(data))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert bad == [] and reads[0] > 0
    assert [n for n in os.listdir(tmp_path) if n.startswith(TMP_PREFIX)] == []


def _payload(writer: int, i: int) -> bytes:
    body = bytes([writer]) * (20000 + 997 * i)      # sizes differ, so a torn read cannot pass the check
    return hashlib.sha256(body).digest() + body


def test_check_writable_probes_and_cleans_up(tmp_path, s3):
    assert Store(str(tmp_path / "new")).check_writable() is None
    assert os.listdir(tmp_path / "new") == []                       # the probe is deleted
    (tmp_path / "file").write_bytes(b"x")
    message = Store(str(tmp_path / "file" / "sub")).check_writable()
    assert message.startswith(f"results store {str(tmp_path / 'file' / 'sub')!r} is not writable: NotADirectoryError")
    assert Store(s3.uri("p"), s3.endpoint).check_writable() is None
    assert s3.objects() == {"p/": b""}     # pyarrow keeps an empty folder marker after a delete
    missing = Store("s3://no-such-bucket-roar/p", s3.endpoint).check_writable()
    assert missing.startswith("results store 's3://no-such-bucket-roar/p' is not writable")
    assert SECRET_KEY not in missing


def test_endpoint_from_the_environment_travels_with_the_pickled_store(s3, monkeypatch):
    """A Ray worker on another node unpickles the Store without the driver's AWS_ENDPOINT_URL: the
    endpoint must come with it, the credentials must not."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    store = Store(s3.uri("p"))
    store.write_bytes("rows/a.parquet", b"row")
    blob = pickle.dumps(store)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    worker_side = pickle.loads(blob)
    assert worker_side.endpoint_url == s3.endpoint and worker_side.read_bytes("rows/a.parquet") == b"row"
    assert SECRET_KEY.encode() not in blob and SECRET_KEY not in repr(store)


def test_local_path_only_for_local_stores(tmp_path, s3):
    assert Store(str(tmp_path)).local_path("a/b") == str(tmp_path / "a" / "b")
    assert Store(s3.uri("p"), s3.endpoint).local_path("a/b") is None
    assert Store(f"file://{tmp_path}").root == str(tmp_path)
