"""Planning without Ray: what a run would skip and do, the dry-run report and the CLI around it."""
from __future__ import annotations

from pathlib import Path

import pytest

from roar.storage import Store
from sweep import cli, rows
from sweep.runner import describe_plan, make_plan
from sweep.spec import ClusterInfo, load_spec

ROOT_SPECS = Path(__file__).resolve().parent.parent / "specs"

SMOKE = str(Path(__file__).resolve().parent.parent / "specs" / "smoke.yaml")
CPU2 = ClusterInfo(cpus=2, gpus=0)


def ok_row(spec, sweep="smoke"):
    row = rows.failed_row(spec, sweep, "")
    row.update(status="ok", error=None, accuracy=0.5)
    return row


@pytest.fixture
def smoke(tmp_path):
    return load_spec(SMOKE, store=str(tmp_path / "store"), cluster=CPU2)


def test_plan_of_an_empty_store(smoke):
    plan = make_plan(smoke)
    assert (plan.points, len(plan.trials), len(plan.done), len(plan.todo)) == (8, 8, 0, 8)
    assert (len(plan.jobs.base_models), len(plan.jobs.maps)) == (1, 2)
    text = describe_plan(plan, CPU2)
    assert "grid points:        8 (8 unique trials)" in text
    assert "already done:       0" in text and "to run:             8" in text
    assert "stage A (models):   1 needed, 1 to train" in text
    assert "stage B (maps):     2 needed, 2 to compute" in text
    assert "2 trials at once on this machine" in text


def test_plan_skips_stored_rows_and_redoes_damaged_ones(smoke, tmp_path):
    store = Store(smoke.store)
    trials = make_plan(smoke).trials
    for t in trials[:3]:
        rows.write_row(store, ok_row(t))
    (tmp_path / "store" / "rows" / f"{trials[3].trial_id}.parquet").write_bytes(b"")  # crash leftover
    plan = make_plan(smoke)
    assert plan.done == {t.trial_id for t in trials[:3]}
    assert [t.trial_id for t in plan.todo] == [t.trial_id for t in trials[3:]]
    assert plan.pruned == [rows.row_key(trials[3].trial_id)]
    assert not store.exists(rows.row_key(trials[3].trial_id))


def test_plan_needs_only_the_stages_of_missing_trials(smoke):
    store = Store(smoke.store)
    plan = make_plan(smoke)
    saliency = [t for t in plan.trials if t.attribution == "saliency"]
    for t in saliency:
        rows.write_row(store, ok_row(t))
    plan = make_plan(smoke)
    assert len(plan.todo) == 4 and {t.attribution for t in plan.todo} == {"random"}
    assert (len(plan.jobs.base_models), len(plan.jobs.maps)) == (1, 1)


def test_retry_failed_reruns_failed_rows_only(smoke):
    store = Store(smoke.store)
    trials = make_plan(smoke).trials
    rows.write_row(store, ok_row(trials[0]))
    rows.write_row(store, rows.failed_row(trials[1], "smoke", "RuntimeError: nan"))
    assert len(make_plan(smoke).todo) == 6                       # a failed row counts as done
    plan = make_plan(smoke, retry_failed=True)
    assert plan.retry == [trials[1].trial_id]
    assert len(plan.todo) == 7 and trials[1].trial_id in {t.trial_id for t in plan.todo}
    assert not store.exists(rows.row_key(trials[1].trial_id))


def test_cli_dry_run(tmp_path, capsys):
    store = tmp_path / "s"
    assert cli.main(["run", SMOKE, "--dry-run", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"sweep 'smoke' -> {store}" in out and "to run:             8" in out
    assert not (store / "rows").exists()   # a dry run writes no rows


def test_cli_bad_spec_exits_2(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"name: bad\nstore: {tmp_path}/s\naxes: {{fraction: [0.5, 1.5], attribution: [salency]}}\n")
    assert cli.main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"{spec}: 2 problems in the sweep spec"
    assert "did you mean 'saliency'?" in err and "fraction 1.5 must be strictly between 0 and 1" in err


def test_cli_status_and_compact(smoke, capsys):
    store = Store(smoke.store)
    trials = make_plan(smoke).trials
    rows.write_row(store, ok_row(trials[0]))
    rows.write_row(store, ok_row(trials[1]))
    rows.write_row(store, rows.failed_row(trials[2], "smoke", "RuntimeError: loss is nan\ntraceback..."))
    assert cli.main(["status", smoke.store, "--spec", SMOKE]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{smoke.store}: 2 ok, 1 failed, 5 missing of 8 in the spec"
    assert "sweep=smoke dataset=synthetic protocol=roar: 2 ok, 1 failed" in out
    assert "1 x RuntimeError: loss is nan" in out
    assert cli.main(["compact", smoke.store]) == 0
    assert "3 row file(s) folded into 1 new part(s) in 1 partition(s); 3 trials stored" in capsys.readouterr().out
    assert cli.main(["status", smoke.store]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{smoke.store}: 2 ok, 1 failed"


def test_cli_delegate_missing_module(monkeypatch, capsys):
    monkeypatch.setitem(cli.DELEGATES, "verify", ("sweep.not_written_yet", "main", "x"))
    assert cli.main(["verify", "somewhere"]) == 2
    assert "`roar verify` is not available: module sweep.not_written_yet" in capsys.readouterr().err


def test_cli_delegate_passes_arguments(monkeypatch):
    import types
    import sys
    seen = []
    fake = types.ModuleType("fake_report_cli")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "fake_report_cli", fake)
    monkeypatch.setitem(cli.DELEGATES, "report", ("fake_report_cli", "main", "x"))
    assert cli.main(["report", "results/demo", "-o", "out"]) == 0
    assert seen == [["results/demo", "-o", "out"]]


def test_estimate_uses_the_seconds_of_finished_trials(smoke):
    from sweep.runner import estimate
    store = Store(smoke.store)
    trials = make_plan(smoke).trials
    for seconds, t in zip((8.0, 10.0, 12.0), trials):
        row = ok_row(t)
        row["seconds_total"] = seconds
        rows.write_row(store, row)
    est = estimate(make_plan(smoke), CPU2)
    assert est["measured_trials"] == 5 and est["trial_seconds"] == 5 * 10.0
    assert est["parallel_trials"] == 2       # max_concurrent_trials 2, 2 CPUs at 1 per trial
    assert est["wall_seconds"] == est["stage_a_seconds"] / 2 + est["stage_b_seconds"] / 2 + 50.0 / 2


def test_dry_run_of_a_gpu_spec_plans_on_a_cpu_machine_and_warns(tmp_path, capsys):
    from sweep.cli import main

    rc = main(["run", str(ROOT_SPECS / "paper-cifar10.yaml"), "--dry-run", "--store", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "240 unique trials" in out and "stage B (maps):     8 needed" in out
    assert "warning (a real run would stop here): dataset cifar10" in err
