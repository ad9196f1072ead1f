"""The `ray up` configs validate offline with Ray's own autoscaler checks, plus the checks Ray skips
(typos inside provider/node_config, commands written as a string, version pins) — RAY_NOTES."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands")
PROVIDER_KEYS = {
    "aws": {"type", "region", "availability_zone", "cache_stopped_nodes", "security_group", "use_internal_ips",
            "key_pair", "cloudwatch", "disable_launch_config_check", "foreground_node_launch"},
    "local": {"type", "head_ip", "worker_ips", "coordinator_address", "external_head_ip"},
}
# EC2 RunInstances parameters a node_config may use
AWS_NODE_CONFIG_KEYS = {"InstanceType", "ImageId", "BlockDeviceMappings", "IamInstanceProfile",
                        "InstanceMarketOptions", "SubnetIds", "SecurityGroupIds", "KeyName",
                        "TagSpecifications", "Placement", "NetworkInterfaces", "UserData",
                        "MetadataOptions", "LaunchTemplate", "CapacityReservationSpecification"}


def pinned(name: str) -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(rf'"{name}==([0-9.]+)"', text).group(1)


def extra_problems(config: dict) -> list[str]:
    """What validate_config lets through."""
    problems = []
    for key in COMMAND_KEYS:
        value = config.get(key, [])
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            problems.append(f"{key} must be a list of shell commands, got {type(value).__name__}")
    provider = config.get("provider", {})
    known = PROVIDER_KEYS.get(provider.get("type"), set())
    problems += [f"provider.{k}: unknown key for provider type {provider.get('type')!r}"
                 for k in sorted(set(provider) - known)]
    if provider.get("type") == "aws":
        for name, node in config.get("available_node_types", {}).items():
            problems += [f"available_node_types.{name}.node_config.{k}: not an EC2 RunInstances parameter"
                         for k in sorted(set(node.get("node_config", {})) - AWS_NODE_CONFIG_KEYS)]
    if provider.get("type") == "local":
        problems += [f"{k}: must not be set for the local provider" for k in ("available_node_types",
                                                                           "head_node_type") if k in config]
    return problems


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster/onprem.yaml"])
def test_config_validates_offline(name):
    raw = load(name)
    assert extra_problems(raw) == []
    validate_config(prepare_config(copy.deepcopy(raw)))


def test_aws_cluster_has_cpu_head_and_autoscaling_gpu_workers():
    raw = load("cluster.yaml")
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    workers = [t for n, t in types.items() if n != raw["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and not head["node_config"]["InstanceType"].startswith(("g", "p"))
    assert len(workers) == 1 and workers[0]["resources"]["GPU"] >= 1
    assert workers[0]["max_workers"] > workers[0]["min_workers"]


def test_setup_commands_pin_the_project_versions():
    commands = " ".join(load("cluster.yaml")["setup_commands"] + load("cluster/onprem.yaml")["setup_commands"])
    assert commands.count(f'"ray[default,tune]=={ray.__version__}"') == 2
    assert commands.count(f'"torch=={pinned("torch")}"') == 2
    assert commands.count(f'"torchvision=={pinned("torchvision")}"') == 2
    assert commands.count("roar-sweep[cluster] @ git+") == 2


def test_cluster_extra_pins_the_ray_of_the_configs():
    """`pip install -e '.[cluster]'` (ray[default]: `ray job submit`) gives the Ray the nodes run."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["cluster"] == [f"ray[default,tune]=={ray.__version__}"]


def test_onprem_installs_into_a_venv_and_starts_ray_from_it():
    """Debian 12 / Ubuntu 23.04+ refuse `pip install --user` (PEP 668); jobs find `roar` on the PATH
    the raylet was started with."""
    raw = load("cluster/onprem.yaml")
    setup = raw["setup_commands"]
    assert not any("--user" in c for c in setup)
    assert setup[0] == "test -x ~/roar-venv/bin/python || python3 -m venv ~/roar-venv"
    assert all(c.startswith("~/roar-venv/bin/pip install ") for c in setup[1:])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in raw[key] if "ray start" in c]
        assert len(start) == 1 and "export PATH=~/roar-venv/bin:$PATH; ray start" in start[0]


def test_onprem_is_a_local_provider_without_node_types():
    raw = load("cluster/onprem.yaml")
    assert raw["provider"]["type"] == "local"
    assert "available_node_types" not in raw and "head_node_type" not in raw
    assert raw["provider"]["head_ip"] and len(raw["provider"]["worker_ips"]) == raw["max_workers"]


def test_extra_checks_catch_what_ray_misses():
    raw = load("cluster.yaml")
    bad = copy.deepcopy(raw)
    bad["provider"]["regoin"] = bad["provider"].pop("region")
    bad["available_node_types"]["gpu_worker"]["node_config"]["InstanceTyp"] = "g5.xlarge"
    bad["setup_commands"] = "pip install roar-sweep"
    assert extra_problems(bad) == [
        "setup_commands must be a list of shell commands, got str",
        "provider.regoin: unknown key for provider type 'aws'",
        "available_node_types.gpu_worker.node_config.InstanceTyp: not an EC2 RunInstances parameter"]
    ray_only = copy.deepcopy(bad)
    ray_only["setup_commands"] = ["true"]
    validate_config(prepare_config(ray_only))  # Ray itself accepts both typos


def test_node_types_under_the_local_provider_are_rejected():
    raw = load("cluster/onprem.yaml")
    raw["available_node_types"] = load("cluster.yaml")["available_node_types"]
    raw["head_node_type"] = "head"
    assert extra_problems(raw) == ["available_node_types: must not be set for the local provider",
                                   "head_node_type: must not be set for the local provider"]
    with pytest.raises(Exception):
        validate_config(prepare_config(raw))
