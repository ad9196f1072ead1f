"""``roar report STORE -o DIR``: write the report of a results store and print its key sentences.

sweep/cli.py dispatches the ``report`` subcommand here; ``python -m analysis STORE -o DIR`` does the
same without the sweep package.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import pyarrow as pa

from .io import SkippedFileWarning
from .schema import SCHEMA
from .stats import INTERVAL_DESCRIPTIONS, PAIRED_TESTS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roar report", description="Analyse result rows and write an HTML report.")
    p.add_argument("store", help="results store (folder or s3://…/gs://… URI), a folder of .parquet files or one file")
    p.add_argument("-o", "--out", help="output folder (default: <store>-report next to a local store, else ./report)")
    p.add_argument("--filter", action="append", default=[], metavar="COLUMN=VALUE[,VALUE…]",
                   help="keep rows whose COLUMN has one of the values; repeatable, e.g. --filter protocol=roar")
    p.add_argument("--measure", default=None, help="blur column for the pooled fits (default blur_spectral_centroid)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the Spearman CIs (default 1000)")
    p.add_argument("--test", choices=sorted(PAIRED_TESTS), default="wilcoxon", help="paired test across seeds")
    p.add_argument("--interval", choices=sorted(INTERVAL_DESCRIPTIONS), default="t",
                   help="intervals across seeds (none below 3 seeds): " +
                        "; ".join(f"{k}: {v}" for k, v in INTERVAL_DESCRIPTIONS.items()))
    p.add_argument("-q", "--quiet", action="store_true", help="print only the report path")
    return p


def _typed(column: str, text: str):
    """A filter value converted to the column's Parquet type, so 'fraction=0.5' matches 0.5."""
    t = SCHEMA.field(column).type if column in SCHEMA.names else pa.string()
    if pa.types.is_floating(t):
        return float(text)
    if pa.types.is_integer(t):
        return int(text)
    if pa.types.is_boolean(t):
        return text.lower() in ("1", "true", "yes")
    return text


def parse_filters(items: list[str]) -> dict:
    filters = {}
    for item in items:
        column, sep, values = item.partition("=")
        if not sep or not column or not values:
            raise ValueError(f"--filter {item!r}: expected COLUMN=VALUE[,VALUE…], e.g. protocol=roar")
        try:
            filters[column] = [_typed(column, v) for v in values.split(",")]
        except ValueError as exc:
            raise ValueError(f"--filter {item!r}: value does not fit column {column!r} "
                             f"({SCHEMA.field(column).type}): {exc}") from None
    return filters


def accuracy_tables(ok) -> dict:
    """protocol -> DataFrame of mean accuracy over seeds, index (attribution, post-processing level),
    columns fraction; one table per protocol and setup (keyed 'protocol (setup)') when the rows hold
    several setups, which are never averaged together."""
    from .scoring import derive, one_per_replicate

    if ok.empty:
        return {}
    df = one_per_replicate(derive(ok[ok["accuracy"].notna() & ok["study"].isna()]))
    many = df["setup"].nunique() > 1
    return {(f"{protocol} ({setup})" if many else protocol):
            g.pivot_table(index=["attribution", "level"], columns="fraction", values="accuracy", aggfunc="mean")
            for (protocol, setup), g in df.groupby(["protocol", "setup"], sort=True)}


def _default_out(store: str) -> str:
    if "://" in store and not store.startswith("file://"):
        return "report"
    return os.path.abspath(store).rstrip("/") + "-report"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:  # called as `roar report …` with the subcommand still in argv
        argv = argv[1:]
    args = _parser().parse_args(argv)
    from .compute import analyze   # imported late: `--help` stays fast
    from .report import write_report
    from .summary import key_sentences
    out = args.out or _default_out(args.store)
    try:
        filters = parse_filters(args.filter)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SkippedFileWarning)
            a = analyze(args.store, measure=args.measure, n_boot=args.n_boot, test=args.test, interval=args.interval,
                        filters=filters)
        for w in caught:
            if issubclass(w.category, SkippedFileWarning):
                print(f"warning: {w.message}", file=sys.stderr)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        paths = write_report(a, out)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"roar report: error: {msg}", file=sys.stderr)
        return 2
    print(f"Report: {paths['html']}")
    if not args.quiet:
        print(f"Summary: {paths['summary']}")
        for sentence in key_sentences(a):
            print(f"- {sentence}")
        for protocol, table in accuracy_tables(a.results.ok).items():
            print(f"\nMean test accuracy (%) under {protocol} (rows: method, post-processing; columns: fraction "
                  f"removed; mean over seeds):")
            print((100 * table).to_string(float_format=lambda v: f"{v:.1f}"))
    if a.results.ok.empty:
        print(f"roar report: no successful result rows under {args.store}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
