"""Keeps a store's row index current while a sweep runs (a Ray Tune callback in the driver).

A row file is validated into ``_index/`` the first time a command reads it (~0.5 ms a file). Without
this, the first ``roar status`` during a 10,000-trial sweep, or after the driver was killed, would pay
that for every file at once; with it, the driver pays it a minute's worth of trials at a time, and a
kill leaves at most that minute unindexed. The index is a cache: a failed refresh is reported once
and never stops the sweep.
"""
from __future__ import annotations

import time
from typing import Callable

import pyarrow as pa
from ray import tune

from analysis import store_read


class RowIndexer(tune.Callback):
    def __init__(self, store, interval_s: float = 60.0, out: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic):
        self.store, self.interval_s, self.out, self.clock = store, interval_s, out, clock
        self.last = clock()
        self.pending = 0          # trials ended since the last refresh
        self.refreshes = 0
        self.error: str | None = None

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.pending += 1

    def on_trial_error(self, iteration, trials, trial, **info):
        self.pending += 1         # a trial that errored may still have written a failed row

    def on_step_end(self, iteration, trials, **info):
        if self.pending and self.clock() - self.last >= self.interval_s:
            self.refresh()

    def refresh(self) -> None:
        self.pending, self.last = 0, self.clock()
        try:
            scan = store_read.scan_rows(self.store.fs, self.store.root, ["trial_id", "status"])
        except (OSError, pa.ArrowException) as exc:
            scan, reason = None, store_read.first_line(exc)
        else:
            reason = scan.index_error
        self.refreshes += 1
        if reason and self.error is None:
            self.error = reason
            self.out(f"[index] the row index could not be updated ({reason}); later commands read the "
                     f"row files instead, which is slower but loses nothing")
