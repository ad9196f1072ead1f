"""Multi-node behaviour with ray.cluster_utils.Cluster (simulated nodes on this machine): a sweep spreads
over the nodes, and killing a worker node mid-sweep still ends with every row present exactly once.

Runs in a subprocess with its own Ray temp folder so the session's local cluster is not disturbed.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from roar.storage import Store
from analysis import store_read

SMOKE = Path(__file__).resolve().parent.parent / "specs" / "smoke.yaml"

SCRIPT = r'''
import sys, threading, time
import ray
from ray.cluster_utils import Cluster
from roar.storage import Store
from sweep import rows
from sweep.runner import ray_cluster_info, run
from sweep.spec import load_spec

spec_path, store_uri = sys.argv[1], sys.argv[2]
MB = 1024 ** 2
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * MB,
                                                        "include_dashboard": False})
workers = [cluster.add_node(num_cpus=1, object_store_memory=100 * MB) for _ in range(2)]
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
spec = load_spec(spec_path, store=store_uri, cluster=ray_cluster_info("the test cluster"))
store = Store(store_uri)

def kill_a_node():
    while len(rows.scan(store, prune_bad=False).done) < 3:
        time.sleep(0.1)
    cluster.remove_node(workers[0], allow_graceful=False)
    print("KILLED_AT", len(rows.scan(store, prune_bad=False).done), flush=True)

threading.Thread(target=kill_a_node, daemon=True).start()
result = run(spec, progress_interval=2)
print("RESULT", result.ok, result.failed, result.missing, result.nodes, result.recovered, flush=True)
ray.shutdown()
cluster.shutdown()
'''


@pytest.mark.slow
def test_node_kill_mid_sweep(tmp_path, sweep_process):
    data = yaml.safe_load(SMOKE.read_text())
    data.update(name="nodes")
    data["resources"] = {"cpus_per_trial": 1, "max_concurrent_trials": 3, "device": "cpu", "max_failures": 3}
    data["axes"] = {"attribution": ["saliency", "random"], "fraction": [0.2, 0.4, 0.6, 0.8]}
    spec = tmp_path / "nodes.yaml"
    spec.write_text(yaml.safe_dump(data))
    script = tmp_path / "cluster_sweep.py"
    script.write_text(SCRIPT)
    store_dir = tmp_path / "store"

    p = sweep_process([str(spec), str(store_dir)], script=script)  # killed at teardown, with its nodes
    assert p.wait(timeout=500) == 0, p.output()
    out = p.output()
    killed_at = int(next(line.split()[1] for line in out.splitlines() if line.startswith("KILLED_AT")))
    ok, failed, missing, nodes, recovered = map(
        int, next(line.split()[1:] for line in out.splitlines() if line.startswith("RESULT")))
    assert killed_at < 16, out                    # the node died mid-sweep
    assert (ok, failed, missing) == (16, 0, 0), out
    assert nodes >= 2, out                        # the trials spread over the simulated nodes
    store = Store(str(store_dir))
    # every trial stored exactly once, in rows/ or (the sweep compacts at its end) compacted/
    table = store_read.read_store(store.fs, store.root, ["trial_id"], dedupe=False).table
    assert table.num_rows == 16 and len(set(table.column("trial_id").to_pylist())) == 16
