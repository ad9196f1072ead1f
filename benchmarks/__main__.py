"""``python -m benchmarks`` / ``roar bench``: run the throughput benchmarks, print the table, write JSON.

    python -m benchmarks [--quick] [--out FILE.json] [--sections retrain,gpu,sweep,memory,store]
                         [--threads N] [--workdir DIR] [--verbose] [--store-trials N]

Sections (docs in each module): retrain (item 1, no Ray), gpu (item 4), sweep (items 2 and 3, Ray;
GPU packing too on a CUDA machine), memory (item 5, Ray); store (issue 15: store commands today vs new,
about 8 minutes at 10,800 trials; asked for by name, not part of the default run). The full run takes 3-4 minutes on the
2-core CPU machine (its budget is 10); --quick about 30 s, and is what the test suite runs.

Exit status: 0 when every section ran (whether or not its goals were met), 1 when a section failed,
2 for bad arguments.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

from .report import Metric, format_table, write_json
from .settings import FULL, QUICK, BenchSettings

SECTIONS = ("retrain", "gpu", "sweep", "memory")
OPTIONAL_SECTIONS = ("store",)   # run only when named in --sections
DEFAULT_OUT = os.path.join("results", "bench.json")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roar bench", description="Throughput of the roar-sweep path as ratios "
                                                               "against a naive loop, measured side by side.")
    p.add_argument("--quick", action="store_true", help="tiny version (seconds): checks that every path runs")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON results file (default: {DEFAULT_OUT})")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS + OPTIONAL_SECTIONS)} (default: "
                        f"{','.join(SECTIONS)}; {','.join(OPTIONAL_SECTIONS)} only when named)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per retrain in this process (default 1: what each sweep trial gets "
                        "with cpus_per_trial=1)")
    p.add_argument("--workdir", help="folder for the benchmark stores (default: a temporary folder, deleted)")
    p.add_argument("--verbose", action="store_true", help="print the sweeps' own progress lines")
    p.add_argument("--store-trials", type=int, help="row files in the store section's store (default 10800)")
    return p


def parse_sections(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    valid = SECTIONS + OPTIONAL_SECTIONS
    bad = [s for s in names if s not in valid]
    if bad or not names:
        raise ValueError(f"--sections: unknown section(s) {bad or text!r}; valid: {', '.join(valid)}")
    return [s for s in valid if s in names]


def machine_info() -> dict:
    import ray
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    cuda = torch.cuda.is_available()
    return {"host": platform.node(), "cpu": cpu,
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if cuda else None, "torch": torch.__version__,
            "ray": ray.__version__, "python": platform.python_version(), "code_version": commit or "unknown"}


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def run_sections(sections: list[str], settings: BenchSettings, workdir: str, log) -> tuple[list[Metric], dict, list]:
    """Run the chosen sections in order; a failing section is recorded and the others still run."""
    import torch

    from roar.storage import Store

    from .gpu import QUICK_RECIPE, CifarRecipe, gpu_section
    from .retrain import retrain_section
    from .sweep_bench import gpu_packing_section, memory_section, ray_cluster, sweep_section

    cuda = "cuda:0" if torch.cuda.is_available() else None
    store = Store(os.path.join(workdir, "retrain"))
    metrics: list[Metric] = []
    details: dict = {}
    errors: list[dict] = []

    def attempt(name: str, fn):
        start = time.perf_counter()
        try:
            m, d = fn()
            metrics.extend(m)
            details[name] = {**d, "section_seconds": time.perf_counter() - start}
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others' figures
            errors.append({"section": name, "error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc(limit=6)})
            metrics.append(Metric(name, f"section {name}", skipped=f"error: {type(exc).__name__}: {exc}"[:160]))
            log(f"[{name}] FAILED: {type(exc).__name__}: {exc}")

    if "retrain" in sections:
        attempt("retrain", lambda: retrain_section(settings, store, "cpu", log))
    if "store" in sections:
        from .store_bench import store_section
        attempt("store", lambda: store_section(settings, workdir, log))
    if "gpu" in sections:
        recipe = QUICK_RECIPE if settings.gpu_quick else CifarRecipe()
        attempt("gpu", lambda: gpu_section(recipe, cuda, log))
    ray_sections = [s for s in ("sweep", "memory") if s in sections]
    if ray_sections:
        with ray_cluster(num_gpus=1 if cuda else 0):
            if "sweep" in sections:
                attempt("sweep", lambda: sweep_section(settings, workdir, log))
                attempt("gpu_packing", lambda: gpu_packing_section(settings, workdir, log, cuda))
            if "memory" in sections:
                attempt("memory", lambda: memory_section(settings, workdir, log))
    return metrics, details, errors


def closing_notes(details: dict) -> list[str]:
    """Where the time goes, for the figures that need it (printed under the table)."""
    notes = []
    for method, d in details.get("retrain", {}).items():
        if not isinstance(d, dict) or "naive" not in d:
            continue
        n, f = d["naive"]["phases"], d["fast"]["phases"]
        notes.append(f"retrain {method}: naive {d['naive']['seconds_per_retrain']:.1f} s = attribution "
                     f"{n['seconds_attribution']:.1f} + train incl. per-sample masking {n['seconds_train']:.1f} + "
                     f"test {n['seconds_test']:.1f}; fast {d['fast']['seconds_per_retrain']:.1f} s = train "
                     f"{f['seconds_train']:.1f} + masks/metrics {f['seconds_mask']:.2f} + io {f['seconds_io']:.2f}; "
                     f"one-time stage A {d['one_time']['seconds_stage_a']:.1f} s, stage B "
                     f"{d['one_time']['seconds_stage_b']:.1f} s")
    shares = details.get("sweep", {}).get("shares")
    if shares:
        p = shares["percent"]
        notes.append("sweep slot-seconds: " + ", ".join(f"{k} {p[k]:.1f}%" for k in
                                                       ("training", "attribution_stage_b", "attribution_in_trials",
                                                        "masking", "io", "orchestration")))
        t = shares["trial_phase_percent"]
        notes.append(f"sweep fixed start-up {shares['fixed_seconds']:.1f} s; trial phase only: "
                     + ", ".join(f"{k} {v:.1f}%" for k, v in t.items()))
    from .store_bench import store_notes
    return notes + store_notes(details)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sections = parse_sections(args.sections)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    settings = QUICK if args.quick else FULL
    if args.threads is not None:
        if args.threads < 1:
            print(f"--threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        settings = dataclasses.replace(settings, threads=args.threads)
    if args.store_trials is not None:
        if args.store_trials < 1:
            print(f"--store-trials must be >= 1, got {args.store_trials}", file=sys.stderr)
            return 2
        settings = dataclasses.replace(settings, store_trials=args.store_trials)

    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    log = (lambda line: print(line, file=sys.stderr, flush=True))
    quiet = log if args.verbose else (lambda line: None if line.startswith("    ") else log(line))
    workdir = args.workdir or tempfile.mkdtemp(prefix="roar-bench-")
    os.makedirs(workdir, exist_ok=True)
    started, load_before = time.perf_counter(), _load()
    try:
        metrics, details, errors = run_sections(sections, settings, workdir, quiet)
    finally:
        torch.set_num_threads(threads_before)  # main() also runs inside other processes (tests, roar)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - started
    table = format_table(metrics)
    notes = closing_notes(details)
    print(table)
    for m in metrics:
        if m.note:
            print(f"  {m.metric.strip()}: {m.note}")
    for line in notes:
        print(f"  {line}")
    print(f"  {settings.name} run, {seconds:.0f} s; load average {load_before} → {_load()}")
    payload = {"preset": settings.name, "settings": dataclasses.asdict(settings), "sections": sections,
               "machine": machine_info(), "seconds": seconds, "load_average": {"start": load_before, "end": _load()},
               "metrics": [m.to_dict() for m in metrics], "details": details, "notes": notes, "errors": errors,
               "table": table}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_json(args.out, payload)
    print(f"  results: {os.path.abspath(args.out)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
