"""Shared fixtures: one private local Ray cluster per test session, and helpers for sweep subprocesses.

Ray runs without token authentication and under its own temp folder, so tests never touch ~/.ray or
/tmp/ray of the user (RAY_NOTES). The folder path is kept short: Ray's unix sockets live under it and
socket paths are limited to ~107 characters.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of small-tensor tests: intra-op threads gain nothing there, and on a
    shared 2-core machine spinning threads make them several times slower. Restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray cluster (2 CPUs) shared by every test that needs one; shut down at the end."""
    from sweep.local_ray import private_local_cluster

    with private_local_cluster(num_cpus=2) as ray:
        yield ray


def session_pids(sid: int) -> list[int]:
    """PIDs of the processes in session `sid` (a subprocess started with start_new_session=True and
    every Ray process it spawned: raylet, GCS, workers keep the session even in their own groups)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int) -> int:
    """SIGKILL every process of session `sid`, by PID; returns how many were signalled."""
    pids = session_pids(sid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(pids)


class SweepProcess:
    """`roar ARGS` (or `python SCRIPT ARGS`) in its own session with a private Ray temp folder."""

    def __init__(self, args: list[str], log: Path, script: Path | None = None):
        self.tmp = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
        env.update(RAY_TMPDIR=self.tmp, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
        self.log_path = log
        self.log = open(log, "w")
        command = [sys.executable, str(script)] if script else [sys.executable, "-m", "sweep.cli"]
        self.proc = subprocess.Popen([*command, *args], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def kill(self) -> int:
        """SIGKILL the sweep and every Ray process it started."""
        n = kill_session(self.proc.pid)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return n

    def close(self) -> None:
        kill_session(self.proc.pid)  # orphans of a finished run too (Ray helpers may linger)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def sweep_process(tmp_path):
    """Start subprocesses: sweep_process([...roar args], script=None) -> SweepProcess; every process
    they started is killed at teardown."""
    started: list[SweepProcess] = []

    def start(args: list[str], script: Path | None = None) -> SweepProcess:
        p = SweepProcess(args, tmp_path / f"roar-{len(started)}.log", script)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()
