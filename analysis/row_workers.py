"""Validating many local row files in worker processes: the first read of a store the index has not seen.

Parsing a one-row Parquet file is ~0.5 ms of CPU, nearly all of it holding the GIL (threads do not help:
measured on 2 cores), so 10,000 files cost ~5 s on one core. Above ``MIN_FILES`` the keys are split
over one ``python -m analysis.row_workers`` per core: each validates its share exactly as
``store_read.validate_files`` does and streams back one Arrow IPC table (its keys in a ``_key``
column, the invalid files in the schema metadata). Plain subprocesses, not multiprocessing: spawn
would re-run an analyst's unguarded script in every worker. Any failure (no ``fork``/``exec``, a
worker that dies) returns None and the caller reads in-process: slower, same rows.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa

MIN_FILES = 2000            # below this a worker's start-up (~0.3 s) costs more than it saves
_KEY = "_key"
_INVALID = b"roar_invalid"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def validate_in_workers(root: str, keys: list[str], workers: int | None = None):
    """(valid keys, their conformed rows, invalid (key, reason)) like ``store_read.validate_files``,
    or None when worker processes cannot be used."""
    workers = workers or min(cores(), 8, max(1, len(keys) // (MIN_FILES // 2)))
    if workers < 2:
        return None
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent,
                                                                      os.environ.get("PYTHONPATH")]))}
    shares = [keys[i::workers] for i in range(workers)]
    procs: list[subprocess.Popen] = []
    try:
        for _ in shares:
            procs.append(subprocess.Popen([sys.executable, "-m", "analysis.row_workers", root], env=env,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL))
        for proc, share in zip(procs, shares):   # each worker reads all its keys before it writes
            proc.stdin.write("\n".join(share).encode())
            proc.stdin.close()
        tables = [pa.ipc.open_stream(proc.stdout).read_all() for proc in procs]
        if any(proc.wait() != 0 for proc in procs):
            return None
    except (OSError, pa.ArrowException, ValueError):
        return None
    finally:
        for proc in procs:   # none outlives the call, also when one could not start
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
    valid_keys, bodies, invalid = [], [], []
    for table in tables:
        invalid += [tuple(pair) for pair in json.loads(table.schema.metadata[_INVALID])]
        if table.num_rows:
            valid_keys += table.column(_KEY).to_pylist()
            bodies.append(table.drop_columns([_KEY]).replace_schema_metadata(None))
    return valid_keys, (pa.concat_tables(bodies) if bodies else None), invalid


def main() -> None:
    from . import store_read
    from .schema import rows_to_table

    import pyarrow.fs as pafs

    root = sys.argv[1]
    keys = [k for k in sys.stdin.read().split("\n") if k]
    valid, body, invalid = store_read.validate_files(pafs.LocalFileSystem(), root, keys, threads=1)
    if body is None:
        body = rows_to_table([])
    body = body.append_column(_KEY, pa.array(valid, pa.string()))
    body = body.replace_schema_metadata({_INVALID: json.dumps(invalid).encode()})
    with pa.ipc.new_stream(sys.stdout.buffer, body.schema) as out:
        out.write_table(body)


if __name__ == "__main__":
    main()
