"""Per-node checks of a running Ray cluster before a sweep starts (`roar run SPEC --dry-run --address`).

A spec can pass every check on the driver and still fail on a worker: the dataset files were copied to
the head only, or the store is a local folder that is not shared, so each node would write rows onto
its own disk and the driver would count them missing. One small Ray task is pinned to each alive node
(NodeAffinitySchedulingStrategy, no CPU reserved, so it runs even on a full or CPU-less node) and
checks there what the trials and stage tasks will need: the spec's dataset files, and that the store
is the driver's store (a probe object the driver wrote is visible) and writable.
"""
from __future__ import annotations

import platform
import uuid
from dataclasses import dataclass, field

from roar.storage import TMP_PREFIX, Store

from .spec import SweepSpec, projected_grid

PROBE_PREFIX = f"{TMP_PREFIX}preflight-"   # a temp name: every reader of the store skips it
ANSWER_SECONDS = 120.0        # a node whose task has not run by then is reported (runtime_env setup, a hung raylet)


def versions() -> dict[str, str]:
    """What must match between the driver and the nodes for results to be comparable."""
    import ray
    import torch

    return {"python": platform.python_version(), "ray": ray.__version__, "torch": torch.__version__}


def node_check(datasets: list[tuple[str, str | None]], store: Store, probe_key: str | None) -> dict:
    """Run on one node: what would stop a trial or stage task there. Never raises. probe_key: the
    object the driver wrote into the store (None: the driver could not write one)."""
    import socket

    from roar.datasets import dataset_available

    problems = []
    for name, root in datasets:
        try:
            message = dataset_available(name, root)
        except Exception as exc:  # noqa: BLE001 - report, do not crash the check
            message = f"{type(exc).__name__}: {exc}"
        if message:
            problems.append(f"dataset {name}: {message}")
    try:
        shared = probe_key is None or store.exists(probe_key)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"store {store.uri}: not readable from this node: {type(exc).__name__}: {exc}")
    else:
        if not shared:
            problems.append(f"store {store.uri}: the driver's probe object {probe_key} is not visible here, so "
                            f"this node would write its rows to other storage (a local folder that is not "
                            f"shared?); use a folder every node mounts at the same path, or s3:// / gs://")
    message = store.check_writable()
    if message:
        problems.append(f"store: {message}")
    return {"host": socket.gethostname(), "problems": problems, "versions": versions()}


@dataclass
class NodeReport:
    ip: str
    node_id: str
    is_head: bool
    cpus: float
    gpus: float
    fits: bool                                   # a trial or a stage task can be scheduled here
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        role = "head, " if self.is_head else ""
        head = f"  node {self.ip} ({role}{self.cpus:g} CPU, {self.gpus:g} GPU, id {self.node_id[:8]})"
        if not self.fits:
            head += ": runs no trials of this spec (too few CPUs/GPUs for a trial or stage task)"
        elif not self.problems:
            head += ": ok"
        lines = [head]
        lines += [f"    - would stop trials here: {p}" for p in (self.problems if self.fits else [])]
        lines += [f"    - note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class Preflight:
    nodes: list[NodeReport]

    @property
    def blocking(self) -> list[NodeReport]:
        return [n for n in self.nodes if n.fits and n.problems]

    def text(self) -> str:
        bad = self.blocking
        verdict = (f"{len(bad)} of {len(self.nodes)} node(s) would stop trials" if bad
                   else f"all {len(self.nodes)} node(s) ready")
        return "\n".join([f"cluster preflight: {verdict}", *(n.text() for n in self.nodes)])


def _fits(res: dict, cpus: float, gpus: float) -> bool:
    return res.get("CPU", 0) >= cpus and res.get("GPU", 0) >= gpus


def check_cluster(spec: SweepSpec, timeout: float = ANSWER_SECONDS) -> Preflight:
    """Run node_check on every alive node of the connected cluster; the driver's probe object is
    written to the store first and deleted at the end."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    res = spec.resources
    store = Store(spec.store, spec.endpoint_url)
    probe: str | None = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    reports: list[NodeReport] = []
    try:
        try:
            store.write_bytes(probe, b"roar preflight probe")
        except Exception:  # noqa: BLE001 - the nodes' own writability check says why
            probe = None
        task = ray.remote(node_check)
        pending = {}
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            total = node.get("Resources", {})
            report = NodeReport(ip=node.get("NodeManagerAddress", "?"), node_id=node["NodeID"],
                                is_head="node:__internal_head__" in total, cpus=total.get("CPU", 0),
                                gpus=total.get("GPU", 0),
                                fits=_fits(total, res.cpus_per_trial, res.gpus_per_trial)
                                or _fits(total, res.stage_cpus, res.stage_gpus))
            reports.append(report)
            strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            ref = task.options(num_cpus=0, scheduling_strategy=strategy, max_retries=0).remote(
                sorted(projected_grid(spec, ("dataset", "data_root")), key=str), store, probe)
            pending[ref] = report
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
        here = versions()
        for ref, report in pending.items():
            if ref not in ready:
                report.problems.append(f"the check did not run within {timeout:g} s (node busy setting up "
                                       f"the job's runtime_env, or unhealthy)")
                continue
            try:
                answer = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - e.g. roar not importable there, node died
                report.problems.append(f"the check failed on this node: {type(exc).__name__}: {exc}"[:500])
                continue
            report.problems += answer["problems"]
            report.notes += [f"{k} {v} here, {here[k]} on the driver: results would not be comparable"
                             for k, v in answer["versions"].items() if v != here[k]]
    finally:
        try:
            if probe:
                store.delete(probe)
        except Exception:  # noqa: BLE001 - the store became unreachable
            pass
    return Preflight(sorted(reports, key=lambda r: (not r.is_head, r.ip, r.node_id)))
