"""The ``roar`` command line.

    roar run SPEC [--dry-run] [--address ADDR] [--store URI] [--retry-failed] [--verbose] [--max-trials N]
    roar status STORE [--spec SPEC]
    roar compact STORE
    roar report STORE -o DIR        (analysis.cli)
    roar search SPEC ...            (sweep.search)
    roar bench ...                  (benchmarks)
    roar verify STORE               (sweep.verify_cli)

Exit codes: 0 success, 1 trials missing or failed to run (or every trial of the sweep failed), 2 a bad spec
or arguments, 3 the results store failed mid-sweep, 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

from roar.storage import Store

# subcommand -> (module, function, help): implemented elsewhere, imported only when used
DELEGATES = {
    "report": ("analysis.cli", "main", "tables, plots and an HTML report from a store"),
    "search": ("sweep.search", "main", "Optuna search over a spec's space"),
    "bench": ("benchmarks.__main__", "main", "throughput benchmarks"),
    "verify": ("sweep.verify_cli", "main", "check a store: schemas, duplicates, truncated files, artifacts"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roar", description="Audit removal-based attribution benchmarks "
                                                         "(ROAR/KAR/ROAD) as a Ray Tune sweep.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run (or resume) a sweep spec")
    run.add_argument("spec", help="sweep spec YAML, e.g. specs/demo.yaml")
    run.add_argument("--dry-run", action="store_true",
                     help="print grid size, trials done, stage A/B jobs and a cost estimate; run nothing. With "
                          "--address (or $RAY_ADDRESS): also check each node of the cluster (datasets, store); "
                          "exit 1 if a node would stop trials")
    run.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local cluster)")
    run.add_argument("--store", help="results store overriding the spec's `store`")
    run.add_argument("--retry-failed", action="store_true", help="run trials whose stored row failed again")
    run.add_argument("--verbose", action="store_true", help="show Ray's logs and Tune's trial table")
    run.add_argument("--max-trials", type=int, metavar="N",
                     help="allow a grid of up to N points (overrides the spec's max_trials, default 100000)")

    st = sub.add_parser("status", help="ok / failed / missing trials in a store")
    st.add_argument("store")
    st.add_argument("--spec", help="count the trials of this spec that are still missing")
    st.add_argument("--failed", action="store_true", help="list the failed trial ids")

    cp = sub.add_parser("compact", help="merge per-trial rows into compacted/dataset=…/protocol=… files")
    cp.add_argument("store")

    for name, (_, _, help_text) in DELEGATES.items():
        d = sub.add_parser(name, help=help_text, add_help=False)
        d.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _endpoint() -> str | None:
    from analysis.layout import env_endpoint

    return env_endpoint()


def cmd_run(args, argv: list[str]) -> int:
    from .spec import SpecError, load_spec

    resume = "roar " + " ".join(shlex.quote(a) for a in argv if a != "--retry-failed")
    remote = args.address or os.environ.get("RAY_ADDRESS")
    cluster = None
    try:
        if remote:  # a dry run against a cluster checks its nodes too (sweep.preflight)
            # torch before Ray's threads start: loaded after ray.init() in a `ray job submit` driver,
            # torch's MKL failed now and then ("Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so")
            import torch  # noqa: F401
            from .runner import connect, ray_cluster_info
            connect(args.address, args.verbose)
            cluster = ray_cluster_info(f"the Ray cluster at {remote}")
        # a dry run plans anywhere (a GPU spec on a laptop): environment problems become warnings
        spec = load_spec(args.spec, store=args.store, cluster=cluster, check_environment=not args.dry_run,
                         max_trials=args.max_trials)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    _warn_leaky_target(spec)
    from . import runner
    from .grid_count import warning_lines
    from .spec import local_cluster_info
    for line in warning_lines(spec, cluster or local_cluster_info()):
        print(line, file=sys.stderr)
    if args.dry_run:
        code = _dry_run(spec, cluster)
        if cluster is not None:
            from .preflight import check_cluster
            report = check_cluster(spec)
            print(report.text())
            code = code or (1 if report.blocking else 0)
        return code
    result = runner.run(spec, address=args.address, retry_failed=args.retry_failed, verbose=args.verbose,
                        resume_command=resume)
    return result.exit_code


def _warn_leaky_target(spec) -> None:
    """Say loudly when a spec puts the test labels into the test inputs (target 'label_leaky')."""
    from roar.attribution import LEAKY_TARGETS

    from .spec_checks import projected_grid

    leaky = sorted(target for (target,) in projected_grid(spec, ("target",)) if target in LEAKY_TARGETS)
    if leaky:
        print(f"warning: target {', '.join(leaky)} computes the TEST maps from the TEST labels, so the test "
              "masks carry the label and ROAR measures that leak, not removed information. Use it only to "
              "study the leak; 'label' (train: true label, test: prediction) or 'predicted' are label-free.",
              file=sys.stderr)


def _dry_run(spec, cluster) -> int:
    import dataclasses
    import tempfile

    from . import runner
    from .spec import environment_problems, local_cluster_info

    problems = environment_problems(spec, cluster or local_cluster_info())
    for problem in problems:
        print(f"warning (a real run would stop here): {problem}", file=sys.stderr)
    from .grid import grid_points
    from .grid_count import LARGE_GRID, describe_counts
    if grid_points(spec) > LARGE_GRID:  # count, do not expand: stays fast at any size
        print(describe_counts(spec, cluster or local_cluster_info()))
        return 0
    if any(p.startswith("store:") for p in problems):
        # plan against an empty folder: counts and estimate without reading the unreachable store
        spec = dataclasses.replace(spec, store=tempfile.mkdtemp(prefix="roar-dry-run-"))
    print(runner.describe_plan(runner.make_plan(spec, prune_bad=False), cluster))
    return 0


def load_store_spec(path: str | None):
    """(spec, None) for a store command's --spec (spec is None when none is given), or (None, 2) after
    printing the spec's problems: status and verify read it the same way."""
    from .spec import SpecError, load_spec

    if not path:
        return None, None
    try:
        return load_spec(path, check_environment=False), None
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return None, 2


def cmd_status(args) -> int:
    from .status import store_status

    spec, failed = load_store_spec(args.spec)
    if failed:
        return failed
    try:
        status = store_status(Store(args.store, _endpoint()), spec)
    except FileNotFoundError as exc:
        print(f"roar status: {exc}", file=sys.stderr)
        return 2
    print(status.text(args.store))
    if args.failed:
        print("\n".join(status.failed_ids))
    return 0


def cmd_compact(args) -> int:
    from .compact import CompactBusy, CompactError, compact

    try:
        report = compact(Store(args.store, _endpoint()))
    except FileNotFoundError as exc:
        print(f"roar compact: {exc}", file=sys.stderr)
        return 2
    except CompactBusy as exc:
        print(f"roar compact: {exc}; nothing was changed", file=sys.stderr)
        return 1
    except CompactError as exc:
        print(f"compaction stopped: {exc}\nwhat it did before stopping:\n{exc.report.text(args.store)}",
              file=sys.stderr)
        return 1
    print(report.text(args.store))
    return 0


def cmd_delegate(name: str, rest: list[str]) -> int:
    module_name, func, _ = DELEGATES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"`roar {name}` is not available: module {module_name} is not installed in this "
                  f"checkout yet", file=sys.stderr)
            return 2
        raise
    return getattr(module, func)(rest) or 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATES:  # pass everything through untouched, --help included
        return cmd_delegate(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args, argv)
    if args.command == "status":
        return cmd_status(args)
    return cmd_compact(args)


if __name__ == "__main__":
    sys.exit(main())
