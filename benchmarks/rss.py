"""Resident memory of this process (the sweep driver) and of its Ray trial workers, sampled from /proc.

Only processes descended from this one are looked at, so other Ray clusters on the same machine
(another engineer's sweep) never enter the figures. Linux only; elsewhere the sampler records nothing.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TRIAL_WORKER_PREFIX = "ray::ImplicitFunc"   # Ray's process title of a Tune function-trainable actor


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mib(pid: int) -> float | None:
    """Current resident set size of `pid`, MiB (None when the process is gone)."""
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident set size of `pid` since it started (VmHWM), MiB."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024


def _parents() -> dict[int, int]:
    parents = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return parents


def descendants(root: int) -> list[int]:
    """PIDs of every process below `root` in the process tree."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    out, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def process_title(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Sample:
    time: float                    # seconds since the epoch (comparable with the rows' timestamps)
    driver_mib: float
    workers_mib: dict[int, float]  # trial worker pid -> RSS, MiB


@dataclass
class RssSampler:
    """Background thread: every `interval` seconds, RSS of this process and of the trial workers below it.

    Use as a context manager; `samples` holds the series, `peak_workers_mib` each worker's VmHWM as last
    seen (the true peak, including moments between samples)."""

    interval: float = 0.2
    worker_prefix: str = TRIAL_WORKER_PREFIX
    samples: list[Sample] = field(default_factory=list)
    peak_workers_mib: dict[int, float] = field(default_factory=dict)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> Sample:
        me = os.getpid()
        workers = {}
        for pid in descendants(me):
            if process_title(pid).startswith(self.worker_prefix):
                rss, peak = rss_mib(pid), peak_rss_mib(pid)
                if rss is not None:
                    workers[pid] = rss
                if peak is not None:
                    self.peak_workers_mib[pid] = max(peak, self.peak_workers_mib.get(pid, 0.0))
        s = Sample(time.time(), rss_mib(me) or float("nan"), workers)
        self.samples.append(s)
        return s

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def rss_by_trial(samples: list[Sample], finished: list[float]) -> list[dict]:
    """RSS after each trial: for trial n (1-based, in order of finishing), the first sample taken after
    it finished and before the next one did, {'trial', 'driver_mib', 'worker_mib' (max over workers)}.
    Trials that finished between two samples share that sample; trials with no sample are left out."""
    finished = sorted(finished)
    out, i = [], 0
    samples = sorted(samples, key=lambda s: s.time)
    for n, t in enumerate(finished, start=1):
        while i < len(samples) and samples[i].time < t:
            i += 1
        if i == len(samples) or not samples[i].workers_mib:
            continue
        s = samples[i]
        out.append({"trial": n, "driver_mib": s.driver_mib, "worker_mib": max(s.workers_mib.values())})
    return out


def growth(series: list[dict], key: str, start_trial: int, window: int) -> dict:
    """RSS growth from trial `start_trial` to the last trial: max over a window of `window` trials at
    each end (samples are noisy at the scale of one trial). MiB."""
    first = [r[key] for r in series if start_trial <= r["trial"] < start_trial + window]
    last_trial = max((r["trial"] for r in series), default=0)
    last = [r[key] for r in series if r["trial"] > last_trial - window]
    if not first or not last or last_trial <= start_trial:
        return {"from_mib": None, "to_mib": None, "growth_mib": None}
    a, b = max(first), max(last)
    return {"from_mib": a, "to_mib": b, "growth_mib": b - a}
