"""`roar run SPEC --dry-run --address`: per-node checks (sweep.preflight) on the session's local Ray
cluster, and node_check's findings on their own (the cases one machine cannot stage: a store the
driver wrote to but a node does not see)."""
from __future__ import annotations

import pytest
import yaml

from roar.storage import Store
from sweep import cli
from sweep.preflight import check_cluster, node_check
from sweep.spec import parse_spec

SMOKE = yaml.safe_load(open("specs/smoke.yaml"))


def spec_for(tmp_path, store, **fixed):
    data = {**SMOKE, "store": str(store), "fixed": {**SMOKE["fixed"], **fixed}}
    return parse_spec(data, source="test", check_environment=False)


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    monkeypatch.delenv("ROAR_DOWNLOAD", raising=False)   # a downloadable dataset would count as present


def test_node_check_sees_the_drivers_probe_and_missing_dataset_files(tmp_path):
    store = Store(str(tmp_path / "store"))
    store.write_bytes("probe", b"x")
    empty = tmp_path / "no-cifar"
    empty.mkdir()
    assert node_check([("synthetic", None)], store, "probe")["problems"] == []
    problems = node_check([("synthetic", None), ("cifar10", str(empty))], store, "probe")["problems"]
    assert len(problems) == 1 and problems[0].startswith("dataset cifar10: ") and str(empty) in problems[0]


def test_node_check_reports_a_store_that_is_not_the_drivers(tmp_path):
    # what a worker sees when the store is a local folder that is not shared: no probe from the driver
    problems = node_check([], Store(str(tmp_path / "store")), "probe-written-elsewhere")["problems"]
    assert len(problems) == 1 and "probe object probe-written-elsewhere is not visible here" in problems[0]


def test_node_check_reports_an_unwritable_store(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    problems = node_check([], Store(str(tmp_path / "a-file" / "store")), "probe")["problems"]
    assert any(p.startswith("store: results store") and "not writable" in p for p in problems), problems


def test_an_unwritable_store_is_reported_once_per_node(ray_session, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    report = check_cluster(spec_for(tmp_path, tmp_path / "a-file" / "store"))
    for node in report.nodes:   # not also "probe not visible": the driver could not write one
        assert len(node.problems) == 1 and node.problems[0].startswith("store: results store"), node.problems


def test_every_node_ready(ray_session, tmp_path):
    report = check_cluster(spec_for(tmp_path, tmp_path / "store"))
    assert len(report.nodes) == len([n for n in ray_session.nodes() if n["Alive"]]) >= 1
    assert report.blocking == [] and all(n.fits and n.problems == [] for n in report.nodes)
    assert report.text().startswith(f"cluster preflight: all {len(report.nodes)} node(s) ready")
    assert list((tmp_path / "store").iterdir()) == []   # the driver's probe is removed again


def test_missing_dataset_on_a_node_blocks(ray_session, tmp_path):
    empty = tmp_path / "no-cifar"
    empty.mkdir()
    report = check_cluster(spec_for(tmp_path, tmp_path / "store", dataset="cifar10", data_root=str(empty)))
    assert len(report.blocking) == len(report.nodes)
    assert all(any(p.startswith("dataset cifar10: ") for p in n.problems) for n in report.nodes)
    assert "would stop trials here: dataset cifar10" in report.text()


def test_a_node_too_small_for_a_trial_is_not_blocking(ray_session, tmp_path):
    empty = tmp_path / "no-cifar"
    empty.mkdir()
    spec = spec_for(tmp_path, tmp_path / "store", dataset="cifar10", data_root=str(empty))
    spec.resources = type(spec.resources)(cpus_per_trial=1000)   # fits no node of the local cluster
    report = check_cluster(spec)
    assert report.blocking == [] and not any(n.fits for n in report.nodes)
    assert "runs no trials of this spec" in report.text()


def test_dry_run_with_address_prints_the_node_report(ray_session, tmp_path, capsys):
    empty = tmp_path / "no-cifar"
    empty.mkdir()
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({**SMOKE, "store": str(tmp_path / "store"),
                                         "fixed": {**SMOKE["fixed"], "dataset": "cifar10",
                                                   "data_root": str(empty)}}))
    address = ray_session.get_runtime_context().gcs_address
    assert cli.main(["run", str(spec_path), "--dry-run", "--address", address]) == 1
    out = capsys.readouterr().out
    assert "grid points:" in out and "cluster preflight: " in out
    assert "would stop trials here: dataset cifar10" in out
    assert not (tmp_path / "store" / "rows").exists()   # a dry run runs nothing

    spec_path.write_text(yaml.safe_dump({**SMOKE, "store": str(tmp_path / "store")}))
    assert cli.main(["run", str(spec_path), "--dry-run", "--address", address]) == 0
    assert "node(s) ready" in capsys.readouterr().out
