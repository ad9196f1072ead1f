"""The smoke sweep against a real S3-compatible server (moto on localhost) through `roar run`: rows and
artifacts land in the bucket, a rerun skips everything, analysis.load("s3://…") reads the rows back,
`roar verify` passes, `roar report` writes its report from the bucket, and the secret key appears in no
object, no output line, no Ray log and no report file.

The sweep runs as a subprocess with its own local Ray cluster, as a user would start it: its workers
get the credentials from the environment they inherit and the endpoint only from the spec's
`storage.endpoint_url` (AWS_ENDPOINT_URL is not set for it), which reaches them inside the pickled Store.

The slow test runs the whole smoke spec, loses two rows and resumes, and runs the same spec into a local
folder: identical rows apart from the provenance and timing columns (analysis.schema.PROVENANCE_COLUMNS).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import yaml
from s3_server import SECRET_KEY, moto_server, s3  # noqa: F401  (fixtures)

import analysis
from analysis.schema import COLUMNS, PROVENANCE_COLUMNS
from roar.storage import Store
from sweep import rows
from sweep.cli import main as cli_main
from sweep.grid import expand
from sweep.runner import run
from sweep.spec import load_spec
from sweep.verify_cli import main as verify_main

SMOKE = Path(__file__).resolve().parent.parent / "specs" / "smoke.yaml"
# Every column but where/when/how long a trial ran must be equal between two backends.
COMPARED = [c for c in COLUMNS if c not in PROVENANCE_COLUMNS]


def spec_file(tmp_path: Path, store: str, endpoint: str, small: bool) -> Path:
    data = yaml.safe_load(SMOKE.read_text())
    data.update(store=store, storage={"endpoint_url": endpoint})
    if small:  # one base model, one map set, two trials: the fast-suite version
        data["axes"] = {"attribution": ["saliency"], "fraction": [0.2]}
    path = tmp_path / "smoke-s3.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rows_by_id(store: Store) -> dict[str, dict]:
    return {r["trial_id"]: r for r in rows.read_all(store).to_pylist()}


def differing(a: dict, b: dict) -> list[str]:
    def same(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
    return [c for c in COMPARED if not same(a[c], b[c])]


def files_containing(folder: str, needle: bytes) -> list[str]:
    hits = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    if needle in f.read():
                        hits.append(path)
            except OSError:
                pass  # sockets and files that vanished
    return hits


def sweep_to_s3(tmp_path, s3, sweep_process, monkeypatch, capsys, small: bool):
    """`roar run` into the bucket, then every check that needs no second sweep; returns (spec path, uri)."""
    uri = s3.uri("sweeps/smoke")
    path = spec_file(tmp_path, uri, s3.endpoint, small)
    proc = sweep_process(["run", str(path)])
    assert proc.wait(timeout=900) == 0, proc.output()
    out = proc.output()
    spec = load_spec(str(path))
    ids = {t.trial_id for t in expand(spec)}
    n = len(ids)
    assert f"[smoke] {n} ok, 0 failed, 0 missing of {n} trials" in out

    # everything went to the bucket, each object under its final key; nothing was left in temp folders
    objects = s3.objects("sweeps/smoke/")
    keys = sorted(k[len("sweeps/smoke/"):] for k in objects if not k.endswith("/"))
    assert [k for k in keys if k.startswith("rows/")] == []              # compacted at the end of the sweep
    parts = [k for k in keys if k.startswith("compacted/")]
    stored_ids = rows.read_rows(Store(uri, s3.endpoint), parts, ["trial_id"]).column("trial_id").to_pylist()
    assert sorted(stored_ids) == sorted(ids)                             # every trial exactly once
    assert not [k for k in keys if ".tmp-" in k or k.startswith("_tune")]
    n_maps = 1 if small else 2
    assert sum(k.endswith("meta.json") for k in keys) == n_maps and sum(k.endswith(".pt") for k in keys) == 1

    # the secret key is in no object, no line of output and no Ray log file (Ray Tune would copy it into
    # the trial actors' runtime_env, which Ray logs: sweep.runner turns that copy off)
    assert [k for k, v in objects.items() if SECRET_KEY.encode() in v] == []
    assert SECRET_KEY not in out
    assert files_containing(proc.tmp, SECRET_KEY.encode()) == []

    # resume: the same spec again runs nothing (in this process: the plan alone decides, Ray never starts)
    lines: list[str] = []
    again = run(spec, out=lines.append)
    assert (again.ran, again.ok, again.missing) == (0, n, 0)
    assert lines == [f"[smoke] all {n} trials already done in {uri}; nothing to run"]

    # analysis reads the bucket with nothing but pyarrow and AWS_ENDPOINT_URL
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    res = analysis.load(uri)
    assert (len(res.ok), len(res.failed), res.skipped) == (n, 0, [])
    assert set(res.ok["trial_id"]) == ids and res.ok["config_json"].str.contains(SECRET_KEY).sum() == 0
    assert all(res.ok["accuracy"].between(0, 1)) and set(res.ok["n_test"]) == {256}

    assert verify_main([uri, "--spec", str(path), "--strict"]) == 0
    report = tmp_path / "report"
    assert cli_main(["report", uri, "-o", str(report)]) == 0
    assert (report / "report.html").is_file() and files_containing(str(report), SECRET_KEY.encode()) == []
    printed = capsys.readouterr()
    assert "verify OK: 0 problem(s), 0 warning(s)" in printed.out
    assert SECRET_KEY not in printed.out + printed.err
    return path, uri, ids


def test_small_smoke_sweep_on_s3_resumes_loads_verifies_and_reports(tmp_path, s3, sweep_process, monkeypatch,
                                                                    capsys):
    sweep_to_s3(tmp_path, s3, sweep_process, monkeypatch, capsys, small=True)


def forget(store: Store, trial_ids) -> None:
    """Remove these trials' rows from the store, wherever they are: their row files, or (the sweep
    compacts at its end) their rows in the compacted parts, which are rewritten without them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for trial_id in trial_ids:
        if store.exists(rows.row_key(trial_id)):
            store.delete(rows.row_key(trial_id))
    for key in store.list("compacted", ".parquet"):
        with store.fs.open_input_file(store.path(key)) as f:
            table = pq.read_table(f)
        kept = table.filter(pc.invert(pc.is_in(table.column("trial_id"), pa.array(list(trial_ids)))))
        if kept.num_rows < table.num_rows:
            with store.fs.open_output_stream(store.path(key)) as out:
                pq.write_table(kept, out)


@pytest.mark.slow
def test_full_smoke_sweep_on_s3_resumes_and_matches_a_local_folder(tmp_path, s3, sweep_process, monkeypatch,
                                                                    capsys):
    path, uri, ids = sweep_to_s3(tmp_path, s3, sweep_process, monkeypatch, capsys, small=False)
    store = Store(uri)
    before = rows_by_id(store)

    # two rows lost (as if the sweep died before writing them): a rerun runs exactly those two
    lost = sorted(ids)[:2]
    forget(store, lost)
    proc = sweep_process(["run", str(path)])
    assert proc.wait(timeout=900) == 0, proc.output()
    assert f"[smoke] {len(ids)} trials, {len(ids) - 2} already done, 2 to run" in proc.output()
    after = rows_by_id(store)
    assert set(after) == ids
    kept = ids - set(lost)
    assert {t: after[t]["finished_at"] for t in kept} == {t: before[t]["finished_at"] for t in kept}  # not rerun
    assert {t: differing(after[t], before[t]) for t in lost} == {t: [] for t in lost}   # redone, same result

    # the same sweep into a local folder: identical rows apart from provenance and timing
    local = tmp_path / "local"
    proc = sweep_process(["run", str(path), "--store", str(local)])
    assert proc.wait(timeout=900) == 0, proc.output()
    local_rows = rows_by_id(Store(str(local)))
    assert set(local_rows) == ids
    assert {t: differing(after[t], local_rows[t]) for t in ids} == {t: [] for t in ids}
    with capsys.disabled():
        print(f"\nsmoke sweep: {len(ids)} trials on s3 and in a local folder; all equal on {len(COMPARED)} "
              f"columns: {', '.join(COMPARED)}; not compared: {', '.join(PROVENANCE_COLUMNS)}")
