"""Terminal progress of a sweep: done / running / failed / total and an ETA, instead of Ray's table.

``Progress`` is the plain counter and formatter; ``TuneProgress`` feeds it from Ray Tune's callback
hooks; ``StoreFaultStopper`` ends the whole sweep when a trial could not write its row.
"""
from __future__ import annotations

import time
from typing import Callable

from ray import tune
from ray.tune.stopper import Stopper

# Statuses a trial reports (sweep.trainable): the row's own status, or why no row was written.
STORE_ERROR = "store_error"
SKIPPED = "skipped"  # another sweep wrote the row first


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts of this run plus the trials found done beforehand; prints at most every `interval` s."""

    def __init__(self, total: int, already_done: int = 0, name: str = "sweep",
                 out: Callable[[str], None] = print, interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.already_done, self.name = total, already_done, name
        self.out, self.interval, self.clock = out, interval, clock
        self.start = clock()
        self.running: set[str] = set()
        self.ok = self.failed = self.errored = 0
        self._last_print = -float("inf")
        self._last_line = ""

    @property
    def finished(self) -> int:
        """Trials of this run that ended (with a row or with a Tune error)."""
        return self.ok + self.failed + self.errored

    def eta(self) -> float | None:
        """Seconds left: this run's wall time per finished trial × trials left."""
        if self.finished == 0:
            return None
        left = self.total - self.already_done - self.finished
        return (self.clock() - self.start) / self.finished * max(left, 0)

    def line(self) -> str:
        done = self.already_done + self.ok + self.failed
        parts = [f"[{self.name}] {done}/{self.total} done"]
        if self.already_done:
            parts.append(f"{self.already_done} from before")
        parts.append(f"{len(self.running)} running")
        parts.append(f"{self.failed} failed")
        if self.errored:
            parts.append(f"{self.errored} without row")
        parts.append(f"elapsed {format_seconds(self.clock() - self.start)}")
        parts.append(f"ETA {format_seconds(self.eta())}")
        return ", ".join(parts)

    def show(self, force: bool = False) -> None:
        now = self.clock()
        line = self.line()
        if force or now - self._last_print >= self.interval:
            if line != self._last_line or force:
                self.out(line)
                self._last_line = line
            self._last_print = now

    def started(self, trial_id: str) -> None:
        self.running.add(trial_id)
        self.show()

    def ended(self, trial_id: str, status: str | None) -> None:
        """status: 'ok' / 'failed' (a row was written), anything else: no row from this run."""
        self.running.discard(trial_id)
        if status == "ok":
            self.ok += 1
        elif status == "failed":
            self.failed += 1
        elif status == SKIPPED:
            self.already_done += 1
        else:
            self.errored += 1
        self.show()


class TuneProgress(tune.Callback):
    """Ray Tune callback -> Progress. Tune's own trial ids are mapped to ours via the config."""

    def __init__(self, progress: Progress, out: Callable[[str], None] = print):
        self.progress = progress
        self.out = out
        self.last_status: dict[str, str] = {}
        self.nodes: set[str] = set()   # Ray node ids that ran trials
        self.recovered = 0

    @staticmethod
    def _id(trial) -> str:
        return trial.config.get("trial_id", trial.trial_id)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.progress.started(self._id(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.last_status[self._id(trial)] = result.get("status")
        if result.get("node_id"):
            self.nodes.add(result["node_id"])

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.progress.ended(self._id(trial), self.last_status.get(self._id(trial)))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress.ended(self._id(trial), "error")

    def on_trial_recover(self, iteration, trials, trial, **info):
        # the trial's worker or node died; Tune restarts it (FailureConfig.max_failures)
        self.recovered += 1
        self.out(f"[{self.progress.name}] trial {self._id(trial)} lost its worker; retrying")

    def on_step_end(self, iteration, trials, **info):
        self.progress.show()


class StoreFaultStopper(Stopper):
    """Stops every trial once one reports that its row could not be written: the store is broken,
    and running on would only burn compute whose results are lost."""

    def __init__(self):
        self.error: str | None = None

    def __call__(self, trial_id, result) -> bool:
        if result.get("status") == STORE_ERROR and self.error is None:
            self.error = result.get("error") or "unknown store error"
        return False

    def stop_all(self) -> bool:
        return self.error is not None
