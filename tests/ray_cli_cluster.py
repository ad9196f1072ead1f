"""A real multi-node Ray cluster on this one machine, started with the `ray` CLI (tests only).

Every node is a `ray start` in its own process session, with its own ports and its own `--temp-dir`,
and every node's IP is 127.0.0.1, so nothing is shared with another Ray instance on the machine. It is
stopped by the PIDs of those sessions, never by `ray stop` (which kills every Ray process on the
machine, other users' clusters included: RAY_NOTES).

`--node-ip-address=127.0.0.1` alone does not keep a node on loopback: Ray 2.60 replaces 127.0.0.1 and
localhost by the machine's network address (ray._private.services.resolve_ip_for_localhost), for the
head's own IP and for the head address a worker is given. The head therefore runs with
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (Ray's single-machine mode: loopback is kept), and workers reach
it through a host name that resolves to 127.0.0.1 but that Ray does not rewrite (loopback_alias).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import kill_session, session_pids

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent            # the venv's `ray` and `roar`


def loopback_alias() -> str | None:
    """A host name for 127.0.0.1 that Ray does not rewrite. `ray start --address=127.0.0.1:PORT` (or
    localhost) is swapped for the machine's network address (ray._private.services.resolve_ip_for_localhost),
    which a head bound to loopback does not answer on; the machine's own name, where /etc/hosts maps it
    to 127.0.0.1, passes through, and the worker then takes 127.0.0.1 as its node IP."""
    from ray._raylet import is_localhost

    for name in (socket.gethostname(), socket.getfqdn()):
        try:
            if name and not is_localhost(name) and socket.gethostbyname(name) == LOOPBACK:
                return name
        except OSError:
            continue
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def node_env(tmp: str) -> dict:
    """The environment of every `ray` / `roar` command: no token auth, a private temp folder, the venv
    first on PATH (the job's `roar` entrypoint is looked up there), no inherited cluster address."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    env.update(RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def listening_addresses(pids: list[int]) -> set[str]:
    """The IP addresses the processes `pids` accept TCP connections on (from /proc/net/tcp{,6})."""
    by_inode = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # LISTEN
                continue
            raw = bytes.fromhex(f[1].split(":")[0])
            # the kernel prints each 32-bit word in host (little-endian) order
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            by_inode[f[9]] = socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)
    found = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        found |= {by_inode[x[8:-1]] for x in links if x.startswith("socket:[") and x[8:-1] in by_inode}
    return found


@dataclass
class Node:
    name: str
    sid: int                      # session id of its `ray start`: every process of the node keeps it
    ports: dict[str, int]

    def pids(self) -> list[int]:
        return session_pids(self.sid)

    def raylet_pid(self) -> int | None:
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
            except OSError:
                continue
        return None


@dataclass
class CliCluster:
    """Head + workers. `address` is the GCS, `dashboard` the job server's URL."""

    tmp: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    nodes: list[Node] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.env = node_env(self.tmp)
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.address = f"{LOOPBACK}:{self.gcs_port}"
        self.dashboard = f"http://{LOOPBACK}:{self.dashboard_port}"

    def _start(self, name: str, args: list[str], env: dict, timeout: float = 60) -> Node:
        ports = {k: free_port() for k in ("node-manager-port", "object-manager-port", "metrics-export-port",
                                          "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                          "runtime-env-agent-port")}
        # one temp folder per node, as on separate machines: nodes sharing one would share
        # runtime_resources/, where each node's runtime-env agent unpacks and garbage-collects the
        # job's working_dir (a job then found files of its working_dir missing)
        node_tmp = os.path.join(self.tmp, name)
        os.makedirs(node_tmp, exist_ok=True)
        env = dict(env, RAY_TMPDIR=node_tmp)
        cmd = [str(BIN / "ray"), "start", *args, f"--temp-dir={node_tmp}",
               "--disable-usage-stats", "--object-store-memory=100000000",
               *(f"--{k}={v}" for k, v in ports.items())]
        log = Path(node_tmp) / "start.log"  # a file, not a pipe: the daemons inherit it
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        node = Node(name, proc.pid, ports)
        self.nodes.append(node)  # before waiting: stop() ends it even when the start fails
        try:
            proc.wait(timeout=timeout)
        finally:
            out = log.read_text()
            self.log.append(f"$ {' '.join(cmd)}\n{out}")
        if proc.returncode != 0:
            raise RuntimeError(f"`ray start` of {name} failed ({proc.returncode}):\n{out}")
        return node

    def start_head(self, num_cpus: int = 1) -> Node:
        # Ray turns --node-ip-address=127.0.0.1 into the machine's own address unless "clusters" are
        # switched off for the head (ray._private.services.resolve_ip_for_localhost); workers then
        # take 127.0.0.1 from the head's address they connect to.
        env = dict(self.env, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
        return self._start("head", ["--head", f"--node-ip-address={LOOPBACK}", f"--port={self.gcs_port}",
                                    f"--num-cpus={num_cpus}",
                                    "--include-dashboard=true", f"--dashboard-host={LOOPBACK}",
                                    f"--dashboard-port={self.dashboard_port}",
                                    f"--ray-client-server-port={free_port()}"], env)

    def add_worker(self, num_cpus: int = 1) -> Node:
        return self._start(f"w{len(self.nodes)}", [f"--address={loopback_alias()}:{self.gcs_port}", f"--num-cpus={num_cpus}"],
                           self.env)

    def ray(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        """`ray ARGS` against this cluster (the job CLI reads RAY_ADDRESS = the dashboard URL)."""
        env = dict(self.env, RAY_ADDRESS=self.dashboard)
        result = subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True,
                                timeout=timeout, cwd=ROOT)
        self.log.append(f"$ ray {' '.join(args)}\n{result.stdout}{result.stderr}")
        if check and result.returncode != 0:
            raise RuntimeError(f"`ray {' '.join(args)}` failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}")
        return result

    def list_nodes(self) -> list[dict]:
        return json.loads(self.ray("list", "nodes", "--format=json", "--address", self.dashboard).stdout)

    def alive_nodes(self) -> int:
        return sum(1 for n in self.list_nodes() if n.get("state") == "ALIVE")

    def wait_for_nodes(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.alive_nodes() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} Ray nodes not alive after {timeout} s")
            time.sleep(1)

    def stop(self) -> int:
        """SIGKILL every process of every node (workers first), by PID; remove the temp folder."""
        killed = sum(kill_session(node.sid) for node in reversed(self.nodes))
        shutil.rmtree(self.tmp, ignore_errors=True)
        return killed


ROOT = Path(__file__).resolve().parent.parent


def roar(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`roar ARGS` run from outside the cluster (no Ray address), with this checkout's code."""
    env = dict(env or node_env(tempfile.gettempdir()), PYTHONPATH=str(ROOT))
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "sweep.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
