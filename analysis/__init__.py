"""Analysis of roar-sweep results: reads Parquet rows only (pyarrow, pandas, numpy, scipy, statsmodels,
matplotlib). Never imports torch or Ray, so it runs in a notebook without them.

    import analysis
    results = analysis.load("results/demo")            # store, folder, file, or s3:// URI
    a = analysis.analyze(results)                       # every table, a.tables[name]
    analysis.write_report(a, "results/demo-report")     # report.html, summary.md, tables/*.csv

Modules: io (load), scoring (score direction per protocol, post-processing levels), stats (pure
array statistics), association, effects, rankings, diagnostics, gaming, plots, summary, report, cli,
testing (fake_results for tests and docs), schema (the Parquet contract).
"""
from __future__ import annotations

from .io import Results, load

__all__ = ["Results", "load", "analyze", "write_report", "fake_results"]


def __getattr__(name):  # the heavier modules (statsmodels, matplotlib) load on first use
    if name == "analyze":
        from .compute import analyze
        return analyze
    if name == "write_report":
        from .report import write_report
        return write_report
    if name == "fake_results":
        from .testing import fake_results
        return fake_results
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
