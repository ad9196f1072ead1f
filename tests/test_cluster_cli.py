"""The cluster path end to end with the `ray` CLI (issue 14): a head and a worker node started with
`ray start`, the smoke sweep submitted with `ray job submit --working-dir .`, the store checked from
outside the cluster with `roar status` / `roar verify`, then the worker node's raylet SIGKILLed
mid-sweep and the same job submitted again: no row lost, none duplicated, none rewritten.

Everything stays on 127.0.0.1 and in the cluster's own temp folder and ports; every process the test
started is killed by PID at the end, also when it fails. `make cluster-test` runs it.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import time
from pathlib import Path

import pytest
import yaml

from ray_cli_cluster import ROOT, CliCluster, listening_addresses, loopback_alias, roar

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SPEC = "specs/smoke.yaml"
TRIALS = 8                    # smoke: 2 attributions x 2 fractions x 2 sigmas
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@pytest.fixture(scope="module")
def cluster():
    if loopback_alias() is None:
        pytest.skip("needs a host name other than `localhost` that resolves to 127.0.0.1 (see ray_cli_cluster)")
    c = CliCluster()
    try:
        c.start_head(num_cpus=1)
        c.add_worker(num_cpus=1)
        c.wait_for_nodes(2)
        yield c
    except BaseException:
        print("\n".join(c.log)[-20000:])
        raise
    finally:
        c.stop()
        left = [pid for node in c.nodes for pid in node.pids()]
        assert left == [], f"processes of the test cluster still alive: {left}"


def submit(c: CliCluster, job_id: str, *entrypoint: str, wait: bool = True):
    args = ["job", "submit", "--submission-id", job_id, "--working-dir", ".", *([] if wait else ["--no-wait"]),
            "--", *entrypoint]
    return c.ray(*args, timeout=900, check=False)


def job_status(c: CliCluster, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient  # the job server's REST API (ray[default])

    return str(JobSubmissionClient(c.dashboard).get_job_status(job_id).value)


def job_logs(c: CliCluster, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(c.dashboard).get_job_logs(job_id)


def wait_job(c: CliCluster, job_id: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while (state := job_status(c, job_id)) not in TERMINAL:
        assert time.monotonic() < deadline, f"job {job_id} still {state} after {timeout} s"
        time.sleep(2)
    return state


def trial_actors_on(c: CliCluster, node_id: str) -> int:
    from ray.util.state import list_actors

    return len(list_actors(address=c.dashboard, filters=[("node_id", "=", node_id), ("state", "=", "ALIVE"),
                                                         ("class_name", "=", "ImplicitFunc")]))


def row_files(store: Path) -> dict[str, str]:
    """rows/<trial_id>.parquet -> sha256 of the bytes (temp files excluded, as every reader does)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((store / "rows").glob("*.parquet")) if not p.name.startswith(".tmp-")}


def store_files(store: Path) -> dict[str, str]:
    """Every Parquet file of rows/ and compacted/ -> sha256 (a sweep compacts its rows at its end)."""
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("rows", "compacted") for p in sorted((store / folder).rglob("*.parquet"))
            if not p.name.startswith(".tmp-")}


def stored_rows(store: Path) -> dict[str, tuple]:
    """trial_id -> (status, finished_at, accuracy) of every stored row, in rows/ or compacted/."""
    from roar.storage import Store
    from sweep import rows

    table = rows.read_all(Store(str(store)), ["trial_id", "status", "finished_at", "accuracy"])
    return {r["trial_id"]: (r["status"], r["finished_at"], r["accuracy"]) for r in table.to_pylist()}


def rows_in_files(store: Path, names) -> dict[str, tuple]:
    """stored_rows for the given row files only (read before compaction moves them)."""
    import pyarrow.parquet as pq

    out = {}
    for name in names:
        r = pq.read_table(store / "rows" / name, columns=["trial_id", "status", "finished_at", "accuracy"])
        r = r.to_pylist()[0]
        out[r["trial_id"]] = (r["status"], r["finished_at"], r["accuracy"])
    return out


def assert_every_trial_once(store: Path) -> None:
    status = roar("status", str(store), "--spec", SPEC)
    assert status.returncode == 0, status.stderr
    assert f"{TRIALS} ok, 0 failed, 0 missing of {TRIALS}" in status.stdout, status.stdout
    verify = roar("verify", str(store), "--spec", SPEC)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"{TRIALS} trial(s)" in verify.stdout and "verify OK" in verify.stdout, verify.stdout
    assert len(stored_rows(store)) == TRIALS


def test_job_runs_this_checkout_on_two_nodes(cluster):
    out = submit(cluster, "which-code", "python", "-c",
                 "import ray, roar; ray.init(); print('ROAR', roar.__file__); "
                 "print('NODES', sorted({n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']}), "
                 "len([n for n in ray.nodes() if n['Alive']]))")
    assert out.returncode == 0, out.stdout + out.stderr
    path = re.search(r"ROAR (\S+)", out.stdout).group(1)
    # the uploaded copy of this working tree, inside the cluster's temp folder: not an installed roar
    assert path.startswith(cluster.tmp) and "working_dir_files" in path, path
    assert "NODES ['127.0.0.1'] 2" in out.stdout, out.stdout
    # and no process of the cluster accepts connections from outside the machine
    pids = [pid for node in cluster.nodes for pid in node.pids()]
    assert listening_addresses(pids) <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening_addresses(pids)


def test_dry_run_checks_every_node(cluster, tmp_path):
    store = tmp_path / "store"
    out = submit(cluster, "dry-ok", "roar", "run", SPEC, "--dry-run", "--store", str(store))
    assert out.returncode == 0 and "cluster preflight: all 2 node(s) ready" in out.stdout, out.stdout + out.stderr
    # a dataset whose files no node has: each node says so, and the job fails (exit 1) before any trial
    spec = yaml.safe_load((ROOT / SPEC).read_text())
    spec["fixed"].update(dataset="cifar10", data_root=str(tmp_path / "no-cifar"))
    (tmp_path / "no-cifar").mkdir()
    (tmp_path / "cifar.yaml").write_text(yaml.safe_dump(spec))
    out = submit(cluster, "dry-missing", "roar", "run", str(tmp_path / "cifar.yaml"), "--dry-run",
                 "--store", str(store))
    assert wait_job(cluster, "dry-missing") == "FAILED"
    logs = job_logs(cluster, "dry-missing")  # `ray job submit` prints a failed job's log twice
    assert "2 of 2 node(s) would stop trials" in logs, logs
    assert logs.count("would stop trials here: dataset cifar10") == 2, logs
    assert not (store / "rows").exists()


def test_submitted_sweep_stores_every_trial_once(cluster, tmp_path):
    store = tmp_path / "store"
    out = submit(cluster, "smoke-1", "roar", "run", SPEC, "--store", str(store))
    assert out.returncode == 0, out.stdout + out.stderr
    assert wait_job(cluster, "smoke-1") == "SUCCEEDED"
    assert_every_trial_once(store)
    # the same job again is a no-op: resume skips every stored trial, nothing is rewritten
    before = store_files(store)
    out = submit(cluster, "smoke-1-again", "roar", "run", SPEC, "--store", str(store))
    assert out.returncode == 0 and "nothing to run" in out.stdout, out.stdout + out.stderr
    assert store_files(store) == before


def test_worker_node_lost_mid_sweep_then_resubmitted(cluster, tmp_path):
    store = tmp_path / "store"
    worker = next(n for n in cluster.nodes if n.name != "head")
    raylet = worker.raylet_pid()
    assert raylet, "the worker node has no raylet"
    out = submit(cluster, "smoke-2", "roar", "run", SPEC, "--store", str(store), wait=False)
    assert out.returncode == 0, out.stdout + out.stderr
    worker_id = next(n["node_id"] for n in cluster.list_nodes() if not n["is_head_node"])
    deadline = time.monotonic() + 600
    # mid-sweep: the first rows are in, the sweep still runs, and a trial actor lives on the worker node
    while not (row_files(store) and trial_actors_on(cluster, worker_id)):
        assert time.monotonic() < deadline, "no row written in 600 s"
        assert job_status(cluster, "smoke-2") not in TERMINAL, job_logs(cluster, "smoke-2")[-5000:]
        time.sleep(0.2)
    os.kill(raylet, signal.SIGKILL)
    at_kill = rows_in_files(store, row_files(store))
    assert len(at_kill) < TRIALS, "the sweep finished before the worker node was killed"
    first = wait_job(cluster, "smoke-2")
    # the GCS marks a node dead after its health checks fail (seconds); the job may end sooner
    deadline = time.monotonic() + 120
    nodes = cluster.list_nodes()
    while sorted(n["state"] for n in nodes) != ["ALIVE", "DEAD"]:
        assert time.monotonic() < deadline, nodes
        time.sleep(1)
        nodes = cluster.list_nodes()
    out = submit(cluster, "smoke-3", "roar", "run", SPEC, "--store", str(store))
    assert out.returncode == 0, out.stdout + out.stderr
    assert wait_job(cluster, "smoke-3") == "SUCCEEDED"
    assert_every_trial_once(store)
    after = stored_rows(store)
    # 0 lost, 0 rewritten: every row present at the kill is still stored with the same values and time
    # (the sweep that finished compacted them from rows/ into compacted/)
    assert {k: after.get(k) for k in at_kill} == at_kill
    summary = [line for line in job_logs(cluster, "smoke-2").splitlines() if "[smoke]" in line][-3:]
    print(f"worker raylet {raylet} killed with {len(at_kill)}/{TRIALS} rows stored; job {first}:", *summary,
          sep="\n  ")
