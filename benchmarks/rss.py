"""Resident memory and CPU time of this process (the sweep driver) and of its Ray trial workers, and
the machine's busy CPU time, sampled from /proc.

Only processes descended from this one are looked at, so other Ray clusters on the same machine
(another engineer's sweep) never enter the per-process figures; the machine's busy time shows how
much of the CPUs the rest of the machine took meanwhile. Linux only; elsewhere nothing is recorded.
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


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of `pid` so far, seconds."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15 of stat)
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU time all CPUs of the machine spent busy (not idle or iowait) since boot, seconds."""
    try:
        values = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICK


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
    workers_cpu: dict[int, float] = field(default_factory=dict)  # trial worker pid -> CPU seconds so far
    machine_busy: float | None = None                             # machine's busy CPU seconds since boot


@dataclass
class RssSampler:
    """Background thread: every `interval` seconds, RSS of this process and of the trial workers below it.

    Use as a context manager; `samples` holds the series, `peak_workers_mib` each worker's VmHWM as last
    seen (the true peak, including moments between samples). Workers that already existed when the
    sampler started (idle actors of an earlier sweep) are left out."""

    interval: float = 0.2
    worker_prefix: str = TRIAL_WORKER_PREFIX
    samples: list[Sample] = field(default_factory=list)
    peak_workers_mib: dict[int, float] = field(default_factory=dict)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._earlier: set[int] = set()

    def _workers(self) -> list[int]:
        return [pid for pid in descendants(os.getpid())
                if pid not in self._earlier and process_title(pid).startswith(self.worker_prefix)]

    def sample(self) -> Sample:
        workers, cpu = {}, {}
        for pid in self._workers():
            rss, peak, seconds = rss_mib(pid), peak_rss_mib(pid), cpu_seconds(pid)
            if rss is not None:
                workers[pid] = rss
            if seconds is not None:
                cpu[pid] = seconds
            if peak is not None:
                self.peak_workers_mib[pid] = max(peak, self.peak_workers_mib.get(pid, 0.0))
        s = Sample(time.time(), rss_mib(os.getpid()) or float("nan"), workers, cpu, machine_busy_seconds())
        self.samples.append(s)
        return s

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self._earlier = set(self._workers())
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def rss_by_trial(samples: list[Sample], finished: list[float]) -> list[dict]:
    """RSS after each trial: for trial n (1-based, in order of finishing), the first sample taken after
    it finished, {'trial', 'driver_mib', 'workers_mib' {pid: MiB}}. Trials that finished between two
    samples share that sample; trials with no later sample holding a worker are left out."""
    finished = sorted(finished)
    out, i = [], 0
    samples = sorted(samples, key=lambda s: s.time)
    for n, t in enumerate(finished, start=1):
        while i < len(samples) and samples[i].time < t:
            i += 1
        if i == len(samples) or not samples[i].workers_mib:
            continue
        s = samples[i]
        out.append({"trial": n, "driver_mib": s.driver_mib, "workers_mib": dict(s.workers_mib)})
    return out


def _window(series: list[dict], start_trial: int, window: int) -> tuple[list[dict], list[dict]]:
    last_trial = max((r["trial"] for r in series), default=0)
    if last_trial <= start_trial:
        return [], []
    first = [r for r in series if start_trial <= r["trial"] < start_trial + window]
    last = [r for r in series if r["trial"] > last_trial - window]
    return first, last


def driver_growth(series: list[dict], start_trial: int, window: int) -> dict:
    """Driver RSS growth from trial `start_trial` to the last trial: max over a window of `window`
    trials at each end (one sample is noisy at the scale of one trial). MiB."""
    first, last = _window(series, start_trial, window)
    if not first or not last:
        return {"from_mib": None, "to_mib": None, "growth_mib": None}
    a, b = max(r["driver_mib"] for r in first), max(r["driver_mib"] for r in last)
    return {"from_mib": a, "to_mib": b, "growth_mib": b - a}


def worker_growth(series: list[dict], start_trial: int, window: int) -> dict:
    """The same per trial worker (a reused actor runs many trials); reports the worker that grew most
    among those alive at both ends, with its pid."""
    first, last = _window(series, start_trial, window)
    best = {"from_mib": None, "to_mib": None, "growth_mib": None, "pid": None}
    pids = {p for r in first for p in r["workers_mib"]} & {p for r in last for p in r["workers_mib"]}
    for pid in sorted(pids):
        a = max(r["workers_mib"][pid] for r in first if pid in r["workers_mib"])
        b = max(r["workers_mib"][pid] for r in last if pid in r["workers_mib"])
        if best["growth_mib"] is None or b - a > best["growth_mib"]:
            best = {"from_mib": a, "to_mib": b, "growth_mib": b - a, "pid": pid}
    return best


def cores_used(samples: list[Sample], start: float, end: float) -> dict:
    """Mean CPU cores used between two times (epoch seconds) by the trial workers and by the whole
    machine; None where /proc gave nothing. A worker counts from its first to its last sample inside
    the span (an actor may start after the span began), so its figure can be short by one interval."""
    inside = sorted((s for s in samples if start <= s.time <= end), key=lambda s: s.time)
    if len(inside) < 2 or inside[-1].time <= inside[0].time:
        return {"trial_workers": None, "machine": None, "seconds": 0.0}
    a, b = inside[0], inside[-1]
    span = b.time - a.time
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for s in inside:
        for pid, seconds in s.workers_cpu.items():
            first.setdefault(pid, seconds)
            last[pid] = seconds
    workers = sum(last[p] - first[p] for p in last) / span if last else None
    machine = None if a.machine_busy is None or b.machine_busy is None else (b.machine_busy - a.machine_busy) / span
    return {"trial_workers": workers, "machine": machine, "seconds": span}
