"""Section ``store`` (issue 15): every store command on a study-sized store, today's code vs the new, side by side.

The store holds ``store_trials`` per-trial row files written by ``analysis.testing.write_rows`` (as a
sweep leaves them). Today's code (``store_today``: the modules as they were, loaded from git) reads
every file on every command, so its time is linear in the files: it is timed on the first
``store_today_sample`` files and scaled to the full count (the note says so). The new code is timed
on the whole store: once cold (the first command after a foreign writer validates every file into the
row index) and then warm (what status, resume, load and verify cost from then on). Compaction folds
``store_new_rows`` new row files into a store of ``store_compact_base`` compacted rows. With moto
installed, status and load also run against a local S3 server.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from typing import Callable

import pandas as pd

from .report import Metric

GOAL_SECONDS = 5.0          # status, resume planning, load, verify, incremental compact (issue 15 item 3)
GOAL_S3_SECONDS = 30.0      # status and load on the S3 test server
GOAL_REPORT_SECONDS = {10_800: 20.0, 100_000: 60.0}   # roar report (item 3), its fits at 100k (item 4)
GOAL_REPORT_MB = 5.0        # the HTML at 100,000 rows (item 4)
TODAY_REPORT_SECONDS = 65.0  # roar report on 10,800 compacted rows on main when issue 15 was filed


def fake_frame(n: int) -> pd.DataFrame:
    """n contract rows of a study's grid: 3 datasets x 8 methods x 5 fractions x 6 post-processings x
    3 protocols x as many seeds as needed (10,800 rows = 5 seeds)."""
    from analysis.testing import fake_results

    per_seed = 3 * 8 * 5 * 6 * 3
    df = fake_results(seed=0, n_seeds=max(1, math.ceil(n / per_seed)),
                      methods=("saliency", "integrated_gradients", "gradcam", "random", "smoothgrad",
                               "input_x_gradient", "guided_backprop", "sobel"),
                      sigmas=(0.0, 0.5, 1.0, 2.0, 4.0, 8.0), fractions=(0.1, 0.3, 0.5, 0.7, 0.9),
                      protocols=("roar", "kar", "road_morf"), datasets=("mnist", "fashion_mnist", "cifar10"))
    return df.head(n).reset_index(drop=True)


def _timed(fn: Callable) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _sample(root: str, out: str, k: int) -> int:
    """A store holding the first k row files of root (hard links: no copy)."""
    src, dst = os.path.join(root, "rows"), os.path.join(out, "rows")
    os.makedirs(dst, exist_ok=True)
    names = sorted(n for n in os.listdir(src) if n.endswith(".parquet"))[:k]
    for name in names:
        os.link(os.path.join(src, name), os.path.join(dst, name))
    return len(names)


def _commands(module_set, store, uri: str) -> dict[str, Callable]:
    """status, resume planning, load and verify of one code generation over one store."""
    return {"status": lambda: module_set["status"](store),
            "resume planning": lambda: module_set["scan"](store),
            "load": lambda: module_set["load"](uri),
            "verify": lambda: module_set["verify"](store)}


def _new_code() -> dict:
    import warnings

    from analysis.io import load
    from sweep import rows
    from sweep.status import store_status
    from sweep.verify import verify_store

    def quiet_load(uri):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load(uri)

    return {"status": store_status, "scan": lambda s: rows.scan(s, prune_bad=False), "load": quiet_load,
            "verify": verify_store}


def _today_code(today) -> dict:
    return {"status": today.status.store_status, "scan": lambda s: today.rows.scan(s, prune_bad=False),
            "load": today.io.load, "verify": today.verify.verify_store}


def store_section(settings, workdir: str, log: Callable[[str], None] = print) -> tuple[list[Metric], dict]:
    from analysis.testing import write_rows
    from roar.storage import Store

    from .store_today import load_today

    n, k = settings.store_trials, settings.store_today_sample
    try:
        today, today_error = load_today(), None
    except RuntimeError as exc:
        today, today_error = None, str(exc)
    root = os.path.join(workdir, f"store-{n}")
    log(f"[store] writing {n} row files with analysis.testing.write_rows")
    details: dict = {"trials": n, "generate_seconds": _timed(lambda: write_rows(fake_frame(n), root))}
    metrics: list[Metric] = []

    measured_today: dict[str, float] = {}
    scale = 1.0
    if today is not None:
        sample = os.path.join(workdir, "store-today-sample")
        k = _sample(root, sample, k)
        scale = n / k
        for name, fn in _commands(_today_code(today), Store(sample), sample).items():
            measured_today[name] = _timed(fn) * scale
            log(f"[store] today {name}: {measured_today[name]:.1f} s for {n} files ({k} timed, x{scale:.2f})")

    new = _commands(_new_code(), Store(root), root)
    cold = _timed(new["status"])
    log(f"[store] new status, cold (validates every file into the row index): {cold:.1f} s")
    details["new_cold_status_seconds"] = cold
    today_note = (f"today timed on {k} of {n} files, x{scale:.2f}" if scale != 1.0 else "today timed on all files")
    metrics.append(Metric("store", f"status, first read of {n} foreign row files (cold)", "s",
                          measured_today.get("status"), cold, ratio=_ratio(measured_today.get("status"), cold),
                          skipped=None, note=f"builds the row index once; {today_note}"))
    for name, fn in new.items():
        seconds = _timed(fn)
        details[f"new_{name}_seconds"] = seconds
        log(f"[store] new {name}: {seconds:.2f} s")
        metrics.append(Metric("store", f"{name}, {n} row files", "s", measured_today.get(name), seconds,
                              ratio=_ratio(measured_today.get(name), seconds), goal_on="fast", goal_op="le",
                              goal=GOAL_SECONDS, note=(today_note if today else f"no baseline: {today_error}")))
    metrics.append(_compaction(settings, workdir, today, log, details))
    metrics += _reports(settings, workdir, log, details)
    if settings.store_s3:
        metrics += _s3(settings, today, log, details)
    details["today_seconds"] = measured_today
    shutil.rmtree(root, ignore_errors=True)
    return metrics, details


def _ratio(today: float | None, new: float) -> float | None:
    return None if today is None or new <= 0 else today / new


def _write_parts(table, root: str, old_layout: bool) -> None:
    """A compacted store written directly: one part per partition, in today's layout (partition columns
    in the file too) or the new one (in the path only)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from analysis import layout
    from sweep.compact import part_bytes

    for d in pc.unique(table.column("dataset")).to_pylist():
        for p in pc.unique(table.column("protocol")).to_pylist():
            mask = pc.and_(pc.equal(table.column("dataset"), d), pc.equal(table.column("protocol"), p))
            part = table.filter(mask)
            if part.num_rows == 0:
                continue
            folder = os.path.join(root, layout.partition_dir({"dataset": d, "protocol": p}))
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, "part-base.parquet")
            if old_layout:
                pq.write_table(part, path, compression="zstd")
            else:
                with open(path, "wb") as f:
                    f.write(part_bytes(part))


def _compaction(settings, workdir, today, log, details) -> Metric:
    from analysis.schema import rows_to_table
    from analysis.testing import frame_to_rows, write_rows
    from roar.storage import Store
    from sweep.compact import compact

    base, extra = settings.store_compact_base, settings.store_new_rows
    df = fake_frame(base + extra)
    table = rows_to_table(frame_to_rows(df.head(base)))
    seconds = {}
    for who, old_layout, fn in (("today", True, today and today.compact.compact), ("new", False, compact)):
        if fn is None:
            continue
        root = os.path.join(workdir, f"compact-{who}")
        _write_parts(table, root, old_layout)
        write_rows(df.iloc[base:], root)
        seconds[who] = _timed(lambda: fn(Store(root)))
        log(f"[store] {who} compact of {extra} new rows into {base}: {seconds[who]:.1f} s")
        shutil.rmtree(root, ignore_errors=True)
    details["compact_seconds"] = seconds
    return Metric("store", f"compact {extra} new rows into {base}", "s", seconds.get("today"), seconds["new"],
                  ratio=_ratio(seconds.get("today"), seconds["new"]), goal_on="fast", goal_op="le", goal=GOAL_SECONDS,
                  note="today rewrites every partition; new adds one part per partition")


def _reports(settings, workdir, log, details) -> list[Metric]:
    """`roar report` (load, fits, figures, HTML) on compacted stores of study-sized grids: its seconds,
    the fits' share, and the HTML's size. Today's code is not loadable here: its 10,800-row time is the
    one measured when the issue was filed."""
    import tempfile

    from analysis.compute import analyze
    from analysis.io import load
    from analysis.report import write_report
    from analysis.schema import rows_to_table
    from analysis.testing import frame_to_rows

    metrics = []
    for n in settings.store_report_trials:
        root = os.path.join(workdir, f"report-{n}")
        _write_parts(rows_to_table(frame_to_rows(fake_frame(n))), root, old_layout=False)
        out = tempfile.mkdtemp(prefix="report-", dir=workdir)
        start = time.perf_counter()
        results = load(root)
        fits_start = time.perf_counter()
        analysis = analyze(results)
        fits = time.perf_counter() - fits_start
        html = write_report(analysis, out)["html"]
        seconds, mb = time.perf_counter() - start, os.path.getsize(html) / 1e6
        log(f"[store] roar report on {n} compacted rows: {seconds:.1f} s (fits {fits:.1f} s), HTML {mb:.2f} MB")
        details[f"report_{n}"] = {"seconds": seconds, "fits_seconds": fits, "html_mb": mb}
        big = n >= 100_000
        today = TODAY_REPORT_SECONDS if n == 10_800 else None
        metrics.append(Metric("store", f"report, {n} compacted rows" + (": the fits" if big else ""), "s", today,
                              fits if big else seconds, ratio=_ratio(today, seconds), goal_on="fast",
                              goal_op="le", goal=GOAL_REPORT_SECONDS.get(n),
                              note=f"all of roar report {seconds:.1f} s" if big else
                              ("today: measured at filing" if today else "")))
        if big:
            metrics.append(Metric("store", f"report HTML, {n} rows", "MB", None, mb, goal_on="fast",
                                  goal_op="le", goal=GOAL_REPORT_MB))
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    return metrics


def _s3(settings, today, log, details) -> list[Metric]:
    try:
        from moto.server import ThreadedMotoServer
        import boto3
    except ImportError as exc:
        return [Metric("store", "S3 status and load", skipped=f"moto not installed ({exc.name})")]
    import logging

    from analysis.testing import write_rows
    from roar.storage import Store

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED")}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    metrics = []
    try:
        host, port = server.get_host_and_port()
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_EC2_METADATA_DISABLED="true")
        boto3.client("s3").create_bucket(Bucket="roar-bench")
        n, k = settings.store_trials, min(settings.store_s3_today_sample, settings.store_trials)
        df = fake_frame(n)
        log(f"[store] writing {n} row files to the S3 test server")
        write_rows(df, "s3://roar-bench/store")
        write_rows(df.head(k), "s3://roar-bench/sample")
        uri = "s3://roar-bench/store"
        new = _commands(_new_code(), Store(uri), uri)
        old = _commands(_today_code(today), Store("s3://roar-bench/sample"), "s3://roar-bench/sample") if today else {}
        cold = _timed(new["status"])
        log(f"[store] S3 new status, cold: {cold:.1f} s")
        details["s3_cold_status_seconds"] = cold
        for name in ("status", "load"):
            was = _timed(old[name]) * n / k if old else None
            now = _timed(new[name])
            log(f"[store] S3 {name}: today {was} s, new {now:.2f} s")
            details[f"s3_{name}"] = {"today": was, "new": now}
            metrics.append(Metric("store", f"S3 {name}, {n} row files", "s", was, now, ratio=_ratio(was, now),
                                  goal_on="fast", goal_op="le", goal=GOAL_S3_SECONDS,
                                  note=f"moto on localhost; cold status {cold:.1f} s; today timed on {k} files"))
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return metrics


def store_notes(details: dict) -> list[str]:
    """The store rows again as today / new / ratio (the table's naive / fast columns)."""
    d = details.get("store")
    if not d:
        return []
    today = d.get("today_seconds", {})
    lines = [f"store, {d['trials']} trials (today / new / ratio, seconds):"]
    for name in ("status", "resume planning", "load", "verify"):
        new, was = d.get(f"new_{name}_seconds"), today.get(name)
        if new is not None:
            lines.append(f"  {name}: {_s(was)} / {new:.2f} / {_r(was, new)}")
    cold = d.get("new_cold_status_seconds")
    if cold is not None:
        lines.append(f"  first read of foreign row files (builds the index): {_s(today.get('status'))} / {cold:.1f} / "
                     f"{_r(today.get('status'), cold)}")
    c = d.get("compact_seconds", {})
    if "new" in c:
        lines.append(f"  incremental compact: {_s(c.get('today'))} / {c['new']:.2f} / {_r(c.get('today'), c['new'])}")
    for name in ("status", "load"):
        s3 = d.get(f"s3_{name}")
        if s3:
            lines.append(f"  S3 {name}: {_s(s3['today'])} / {s3['new']:.2f} / {_r(s3['today'], s3['new'])}")
    for key in sorted((k for k in d if k.startswith("report_")), key=lambda k: int(k.split("_")[1])):
        n, r = int(key.split("_")[1]), d[key]
        was = TODAY_REPORT_SECONDS if n == 10_800 else None
        lines.append(f"  roar report, {n} compacted rows: {_s(was)} / {r['seconds']:.1f} / {_r(was, r['seconds'])} "
                     f"(fits {r['fits_seconds']:.1f} s, HTML {r['html_mb']:.2f} MB)")
    return lines


def _s(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def _r(was, new) -> str:
    return "—" if was is None or not new else f"{was / new:.1f}×"
