"""The one storage layer: every row, model and map goes through a Store over pyarrow.fs.

Works for local paths, ``file://``, ``s3://`` (with an optional endpoint for S3-compatible servers)
and ``gs://``. Writes are atomic on every backend: object stores get the object once under its final
key (objects appear whole); file systems get a temp file renamed into place. Readers ignore temp
files (``.tmp-<uuid>-<name>.tmp``). Where a store's files live and how they are named is
``analysis.layout`` (torch-free, shared with the analysis side).
"""
from __future__ import annotations

import io
import os
import posixpath
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs

from analysis.layout import TMP_PREFIX, atomic_write, env_endpoint, filesystem  # noqa: F401


@dataclass
class Store:
    """A results store rooted at ``uri``. Keys are '/'-separated relative paths."""

    uri: str
    endpoint_url: str | None = None

    def __post_init__(self):
        if "://" not in self.uri:
            # absolute now, in the driver: Ray Tune may run a trial in its own working directory, where
            # a relative path would silently point somewhere else
            self.uri = os.path.abspath(os.path.expanduser(self.uri))
        if self.endpoint_url is None and self.uri.startswith("s3://"):
            # Resolved here, in the process that builds the Store, so the endpoint travels with the
            # pickled Store to Ray workers on nodes whose environment does not name it. Credentials
            # never travel: each worker reads them from its own environment or instance role.
            self.endpoint_url = env_endpoint()
        self.fs, self.root = filesystem(self.uri, self.endpoint_url)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def __getstate__(self):  # pyarrow filesystems are rebuilt in each worker
        return {"uri": self.uri, "endpoint_url": self.endpoint_url}

    def __setstate__(self, state):
        self.__init__(**state)

    def path(self, key: str) -> str:
        return posixpath.join(self.root, key) if key else self.root

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(self.path(key)).type == pafs.FileType.File

    def is_dir(self) -> bool:
        """The store's root exists (a folder, or a prefix holding objects)."""
        return self.fs.get_file_info(self.root).type == pafs.FileType.Directory

    def size(self, key: str) -> int:
        return self.fs.get_file_info(self.path(key)).size

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(self.path(key)) as f:
            return f.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Atomic write: the key holds either the complete bytes or nothing."""
        atomic_write(self.fs, self.path(key), data, local=self.is_local)

    def delete(self, key: str) -> None:
        self.fs.delete_file(self.path(key))

    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        """Relative keys under prefix (recursive), temp files excluded, sorted."""
        base = self.path(prefix)
        info = self.fs.get_file_info(base)
        if info.type != pafs.FileType.Directory:
            return []
        out = []
        for fi in self.fs.get_file_info(pafs.FileSelector(base, recursive=True)):
            if fi.type != pafs.FileType.File or fi.base_name.startswith(TMP_PREFIX):
                continue
            if suffix and not fi.path.endswith(suffix):
                continue
            out.append(posixpath.relpath(fi.path, self.root))
        return sorted(out)

    def local_path(self, key: str) -> str | None:
        """A path usable by np.load(mmap_mode=...) when the store is local, else None."""
        return self.path(key) if self.is_local else None

    def check_writable(self) -> str | None:
        """Write and delete a probe object; return an error message or None."""
        key = f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
        try:
            if self.is_local:
                self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(self.path(key)) as f:
                f.write(b"ok")
            self.fs.delete_file(self.path(key))
            return None
        except Exception as exc:  # noqa: BLE001 - any failure means not writable
            return f"results store {self.uri!r} is not writable: {type(exc).__name__}: {exc}"

    def open_bytes(self, key: str):
        return io.BytesIO(self.read_bytes(key))
