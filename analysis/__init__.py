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

__all__ = ["Results", "load", "analyze", "write_report", "fake_results"]


def __getattr__(name):
    # every module loads on first use: roar and sweep import analysis.contract / analysis.schema
    # without pulling in pandas, and the heavier ones (statsmodels, matplotlib) wait until needed
    if name in ("Results", "load"):
        from . import io
        return getattr(io, name)
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
