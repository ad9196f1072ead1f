"""The progress line: counts, ETA from this run's pace, and throttled printing."""
from __future__ import annotations

from sweep.progress import SKIPPED, Progress, StoreFaultStopper, format_seconds


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_format_seconds():
    assert [format_seconds(s) for s in (None, 0, 59.6, 61, 3600, 3725)] == [
        "?", "0:00", "1:00", "1:01", "1:00:00", "1:02:05"]


def test_counts_and_eta():
    clock, lines = Clock(), []
    p = Progress(total=10, already_done=2, name="demo", out=lines.append, interval=0, clock=clock)
    assert p.line() == "[demo] 2/10 done, 2 from before, 0 running, 0 failed, elapsed 0:00, ETA ?"
    p.started("a")
    p.started("b")
    clock.t += 30
    p.ended("a", "ok")
    p.ended("b", "failed")   # a failed trial has a row: it is done
    # 2 trials in 30 s of this run, 6 left -> 90 s
    assert p.line() == "[demo] 4/10 done, 2 from before, 0 running, 1 failed, elapsed 0:30, ETA 1:30"
    p.started("c")
    p.ended("c", "error")    # no row: not done, counted apart, and not run again in this run
    # 3 trials ended in 30 s, 10 - 2 - 3 = 5 still to start -> 50 s
    assert p.line() == ("[demo] 4/10 done, 2 from before, 0 running, 1 failed, 1 without row, "
                        "elapsed 0:30, ETA 0:50")
    p.ended("d", SKIPPED)    # another sweep wrote it meanwhile
    assert p.line().startswith("[demo] 5/10 done, 3 from before,")
    assert lines[-1] == p.line()


def test_printing_is_throttled():
    clock, lines = Clock(), []
    p = Progress(total=3, name="s", out=lines.append, interval=5, clock=clock)
    p.started("a")
    p.started("b")           # within 5 s of the first line: not printed
    clock.t += 6
    p.ended("a", "ok")
    p.show(force=True)
    assert lines == ["[s] 0/3 done, 1 running, 0 failed, elapsed 0:00, ETA ?",
                     "[s] 1/3 done, 1 running, 0 failed, elapsed 0:06, ETA 0:12",
                     "[s] 1/3 done, 1 running, 0 failed, elapsed 0:06, ETA 0:12"]


def test_store_fault_stops_everything():
    stopper = StoreFaultStopper()
    assert stopper("t1", {"status": "ok"}) is False and not stopper.stop_all()
    stopper("t2", {"status": "store_error", "error": "writing rows/x.parquet failed: OSError: disk full"})
    stopper("t3", {"status": "store_error", "error": "second"})
    assert stopper.stop_all() and stopper.error == "writing rows/x.parquet failed: OSError: disk full"
