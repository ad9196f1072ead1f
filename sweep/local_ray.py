"""A private, throwaway local Ray cluster (tests, benchmarks): no token authentication, its own short
temp folder (Ray's unix socket paths are length-limited), RAY_ADDRESS ignored, everything restored after."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile

OBJECT_STORE_BYTES = 100 * 1024 ** 2


@contextlib.contextmanager
def private_local_cluster(num_cpus: int | None = None, num_gpus: int | None = None, prefix: str = "rt-"):
    """Yield the ray module connected to a new local cluster; reuse the one this process already has."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    tmp = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_AUTH_MODE", "RAY_ADDRESS")}
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.update(RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled")
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, object_store_memory=OBJECT_STORE_BYTES)
    try:
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)
