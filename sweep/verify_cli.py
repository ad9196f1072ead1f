"""`roar verify STORE [--spec SPEC] [--strict] [--full]`: the command line of sweep.verify."""
from __future__ import annotations

import argparse
import sys

from roar.storage import Store

from .cli import load_store_spec
from .grid import expand
from .verify import verify_store


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="roar verify", description="Check a results store: row schemas, "
                                "duplicates, truncated files, artifacts against their keys, orphans.")
    p.add_argument("store", help="results store: a folder, s3://bucket/prefix or gs://bucket/prefix")
    p.add_argument("--spec", help="sweep spec whose trials' artifacts are not orphans (and whose "
                                  "storage.endpoint_url is used)")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings (orphans, temp files) too")
    p.add_argument("--full", action="store_true", help="re-read every row file instead of trusting the row index "
                                                       "(which holds each file's validated row, keyed by size and time)")
    args = p.parse_args(argv)
    spec, failed = load_store_spec(args.spec)
    if failed:
        return failed
    try:
        report = verify_store(Store(args.store, spec.endpoint_url if spec else None),
                              expand(spec) if spec else (), full=args.full)
    except (FileNotFoundError, OSError) as exc:
        print(f"roar verify: cannot read {args.store!r}: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    return report.exit_code(args.strict)


if __name__ == "__main__":
    sys.exit(main())
