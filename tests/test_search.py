"""`roar search`: search specs validated like sweep specs, gaming and recipe searches on the synthetic
dataset (plain Optuna, and once through Ray Tune's OptunaSearch), studies stored in the results store
and resumed, rows written with study and trial number.

The gaming searches run on a planted case: the stored 'random' maps of the synthetic dataset are
replaced by 0.6 x (true patch) + U(0, 1) noise, so a raw map's top pixels are half patch, half noise,
and a blur concentrates the mask on the patch. Protocol road_morf (no retraining) keeps trials fast:
removing the patch takes the base model's accuracy from 1.0 towards chance.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import optuna
import pytest
import yaml

from roar import pipeline
from roar.artifacts import save_maps
from roar.spec import TrialSpec
from roar.storage import Store
from sweep import search as search_mod
from sweep.rows import read_all
from sweep.search.recipe import read_recipe, recipe_key
from sweep.search.spec import parse_search_spec
from sweep.search.storage import StudySetupError, StudyStore, open_study
from sweep.spec import SpecError

BASE = {"dataset": "synthetic", "subset": 512, "test_subset": 256, "model": "small_cnn", "width": 8, "epochs": 1,
        "batch_size": 64, "lr": 0.05, "protocol": "road_morf", "fraction": 0.0625, "seed": 0, "attribution": "random"}
SIGMA_SPACE = {"transform": ["gaussian"], "sigma": {"low": 0.0, "high": 3.0, "step": 0.5}}
RESOURCES = {"cpus_per_trial": 1, "max_concurrent_trials": 2, "device": "cpu"}


def gaming(store, name, trials, space=None, **search) -> dict:
    return {"name": name, "store": str(store), "resources": RESOURCES, "fixed": dict(BASE),
            "search": {"kind": "gaming", "trials": trials, "seed": 0, "startup_trials": 10,
                       "space": space or SIGMA_SPACE, **search}}


def recipe(store, name, trials) -> dict:
    fixed = {k: BASE[k] for k in ("dataset", "subset", "test_subset", "model", "batch_size", "seed")}
    return {"name": name, "store": str(store), "resources": RESOURCES, "fixed": fixed,
            "search": {"kind": "recipe", "trials": trials, "seed": 0, "startup_trials": 10, "target_accuracy": 0.9,
                       "space": {"lr": {"low": 0.02, "high": 0.2, "log": True}, "epochs": {"low": 2, "high": 3},
                                 "width": [4, 8], "weight_decay": {"low": 1e-5, "high": 1e-3, "log": True}}}}


def parse(data, check_environment=False):
    return parse_search_spec(copy.deepcopy(data), source="test.yaml", check_environment=check_environment)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A store with the base model of BASE trained and its 'random' maps replaced by planted maps."""
    root = tmp_path_factory.mktemp("search-store")
    cell = parse(gaming(root, "plant", 1)).cells()[0].spec
    store = Store(str(root))
    pipeline.ensure_base_model(cell, store)
    data = pipeline.load_data(cell)
    rng = np.random.default_rng(0)

    def planted(true):
        true = np.asarray(true, dtype=np.float32)
        return 0.6 * true + rng.uniform(0.0, 1.0, size=true.shape).astype(np.float32)

    save_maps(store, cell.maps_key(), {"train": planted(data.train_true), "test": planted(data.test_true)},
              {"planted": "0.6 * true patch + U(0, 1)",  # fields: the key they hash to is checked on load
               "fields": cell.maps_key_fields()})
    return root


def study_of(root, search_name, study_name):
    return optuna.load_study(study_name=study_name, storage=f"sqlite:///{root}/search/{search_name}.db")


def rows_of(root, study_name) -> list[dict]:
    return [r for r in read_all(Store(str(root))).to_pylist() if r["study"] == study_name]


# --- gaming, plain Optuna ----------------------------------------------------------------------------
def test_gaming_search_finds_blur_on_planted_case_and_writes_rows(store_dir):
    spec = parse(gaming(store_dir, "blur", trials=6))
    result = search_mod.run_search(spec, local=True, out=lambda line: None)
    assert result.exit_code == 0
    study = study_of(store_dir, "blur", "blur")
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert trials[0].params == {"transform": "identity"}   # the raw map is always trial 0
    raw = trials[0].value
    best = study.best_trial
    assert best.params["transform"] == "gaussian" and best.params["sigma"] > 0
    assert best.value >= raw + 0.1                           # blur concentrates the mask on the patch
    rows = {r["trial_id"]: r for r in rows_of(store_dir, "blur")}
    # every trial's value is its row's score; a point drawn twice shares one row
    for t in trials:
        row = rows[t.user_attrs["trial_id"]]
        assert row["status"] == "ok" and row["sweep"] == "blur"
        assert row["accuracy_drop"] == pytest.approx(t.value)
        assert json.loads(row["config_json"])["options"]["search_study"] == "blur"
    assert {r["search_trial"] for r in rows.values()} <= {t.number for t in trials}
    by_sigma = {(r["postprocess"], r["sigma"]) for r in rows.values()}
    assert ("identity", 0.0) in by_sigma and len(by_sigma) == len(rows)


def test_resume_adds_trials_to_the_same_study(store_dir):
    data = gaming(store_dir, "resume", trials=3)
    search_mod.run_search(parse(data), local=True, out=lambda line: None)
    first = [(t.number, t.params, t.value) for t in study_of(store_dir, "resume", "resume").trials]
    assert len(first) == 3
    again = search_mod.run_search(parse(data), local=True, out=lambda line: None)   # budget reached: nothing runs
    assert again.exit_code == 0 and len(study_of(store_dir, "resume", "resume").trials) == 3
    data["search"]["trials"] = 5
    search_mod.run_search(parse(data), local=True, out=lambda line: None)
    trials = study_of(store_dir, "resume", "resume").trials
    assert len(trials) == 5
    assert [(t.number, t.params, t.value) for t in trials[:3]] == first


def test_resume_completes_an_interrupted_trial_from_its_row(store_dir):
    """A process that died after writing a trial's row left the trial RUNNING: resuming takes its value
    from the row instead of failing it (and a trial without a row is marked failed)."""
    data = gaming(store_dir, "orphan", trials=1)
    search_mod.run_search(parse(data), local=True, out=lambda line: None)
    study = study_of(store_dir, "orphan", "orphan")
    raw = study.trials[0].value
    dist = optuna.distributions.CategoricalDistribution(["identity", "gaussian"])
    study.enqueue_trial({"transform": "identity"})
    orphan = study.ask({"transform": dist})            # left RUNNING, as by a killed process
    study.enqueue_trial({"transform": "gaussian", "sigma": 2.5})
    lost = study.ask({"transform": dist, "sigma": optuna.distributions.FloatDistribution(0, 3)})  # no row
    spec = parse(data)
    cell = spec.cells()[0]
    store = Store(str(store_dir))
    env = search_mod.TrialEnv(store=store, sweep_name="orphan", settings=spec.settings, space=spec.space)
    lines = []
    study2, n_new = search_mod.prepare_study(spec, cell, StudyStore(store, "orphan"), env, lines.append)
    resumed = study2.trials[orphan.number]
    assert resumed.state.name == "COMPLETE" and resumed.value == raw
    assert study2.trials[lost.number].state.name == "FAIL"
    assert "1 interrupted trial(s) completed from their rows, 1 marked failed" in lines[0]
    assert n_new == 0  # trials: 1 is reached by trial 0 and the completed orphan; the lost one is not counted


def test_changed_setup_is_refused(store_dir, tmp_path):
    study_store = StudyStore(Store(str(tmp_path)), "setup")
    open_study(study_store, "s", {"cell": {"fraction": 0.1}})
    open_study(study_store, "s", {"cell": {"fraction": 0.1}})       # same setup: resumes
    with pytest.raises(StudySetupError, match=r"different cell \(cell.fraction: was 0.1, now 0.2\)"):
        open_study(study_store, "s", {"cell": {"fraction": 0.2}})


def test_object_store_keeps_the_journal_in_the_store(tmp_path):
    store = Store("mock:///bucket/prefix")  # pyarrow's in-memory file system: not local, like s3
    store.fs.create_dir(store.path("search"), recursive=True)  # s3 needs no folders; the mock does
    first = StudyStore(store, "remote", work_dir=str(tmp_path / "a"))
    study = open_study(first, "s", {"kind": "gaming"})
    study.enqueue_trial({"x": 1})
    trial = study.ask({"x": optuna.distributions.IntDistribution(0, 3)})
    study.tell(trial, 0.5)
    first.sync()
    assert store.exists("search/remote.journal")
    second = StudyStore(store, "remote", work_dir=str(tmp_path / "b"))   # another machine: downloads it
    resumed = open_study(second, "s", {"kind": "gaming"})
    assert [(t.params, t.value) for t in resumed.trials] == [({"x": 1}, 0.5)]


# --- recipe ------------------------------------------------------------------------------------------
def test_recipe_search_writes_rows_and_a_recipe_that_sweeps_can_read(store_dir, monkeypatch):
    """With a per-epoch hook in the trainer, every epoch but the last is reported before the row."""
    import roar.train

    real = roar.train.train_model

    def epoch_by_epoch(model, x, y, cfg, device="cpu", seed=0, fill=None, progress=False, on_epoch=None):
        for epoch in range(1, cfg.epochs + 1):  # constant lr per epoch: a stand-in for the real hook
            real(model, x, y, roar.train.TrainConfig(**{**cfg.__dict__, "epochs": 1, "schedule": "constant"}),
                 device, seed=seed * 100 + epoch, fill=fill)
            on_epoch(epoch, model)
            model.train()
        return model.eval()

    monkeypatch.setattr(roar.train, "train_model", epoch_by_epoch)
    spec = parse(recipe(store_dir, "recipe", trials=2))
    spec.settings["pruning"] = False
    result = search_mod.run_search(spec, local=True, out=lambda line: None)
    assert result.exit_code == 0
    study = study_of(store_dir, "recipe", "recipe")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:
        assert sorted(t.intermediate_values) == list(range(1, t.params["epochs"]))
    rows = rows_of(store_dir, "recipe")
    assert sorted(r["search_trial"] for r in rows) == [0, 1]
    assert {r["protocol"] for r in rows} == {"clean"}
    for r in rows:
        detail = json.loads(r["detail_json"])
        assert len(detail["validation_curve"]) == json.loads(r["config_json"])["epochs"]
        assert r["accuracy"] == r["base_accuracy"]
    fields = read_recipe(str(store_dir / recipe_key("recipe")))
    assert sorted(fields) == ["epochs", "lr", "weight_decay", "width"]
    chosen = yaml.safe_load((store_dir / recipe_key("recipe")).read_text())["evidence"]
    values = {t.number: t for t in study.trials}
    assert fields["width"] == values[chosen["search_trial"]].params["width"]


# --- Ray Tune ----------------------------------------------------------------------------------------
def test_tune_backend_runs_the_same_study(store_dir, ray_session, monkeypatch):
    """Through OptunaSearch, two trials at once; a relative store path still means the driver's folder
    (Tune runs every trial in its own working folder)."""
    monkeypatch.chdir(store_dir.parent)
    spec = parse(gaming(store_dir.name, "tune", trials=4))
    result = search_mod.run_search(spec, out=lambda line: None)
    assert result.exit_code == 0
    study = study_of(store_dir, "tune", "tune")
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert study.trials[0].params == {"transform": "identity"}
    rows = rows_of(store_dir, "tune")
    scores = {(r["postprocess"], r["sigma"]): r["accuracy_drop"] for r in rows}
    for t in study.trials:
        key = ("identity", 0.0) if t.params.get("sigma", 0) == 0 else ("gaussian", t.params["sigma"])
        assert scores[key] == pytest.approx(t.value)


# --- validation --------------------------------------------------------------------------------------
def _with(data, path: str, value):
    """A copy of `data` with the dotted `path` set to `value` (or deleted for _DELETE)."""
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()
G = gaming("/tmp/unused", "g", 3, space={"transform": ["gaussian", "max_filter"], "sigma": {"low": 0.5, "high": 2.0},
                                           "filter_size": {"low": 2, "high": 5}})
SP = "search.space"


@pytest.mark.parametrize("path, value, message", [
    (f"{SP}.sigmma", {"low": 0, "high": 1},
     "search.space.sigmma: unknown gaming search parameter 'sigmma'; did you mean 'sigma'?"),
    (f"{SP}.sigma", {"low": 3.0, "high": 1.0}, "search.space.sigma: low 3.0 > high 1.0; low must be <= high"),
    (f"{SP}.sigma", {"choices": []}, "search.space.sigma.choices: must be a non-empty list of values, got []"),
    (f"{SP}.sigma", {"low": -1.0, "high": 1.0}, "search.space.sigma.low: sigma -1.0 must be >= 0"),
    (f"{SP}.filter_size", {"low": 2.5, "high": 5}, "search.space.filter_size.low: filter_size must be an integer"),
    (f"{SP}.transform", ["gausian"], "unknown transform 'gausian'; did you mean 'gaussian'?"),
    (f"{SP}.transform", ["blur_matched_random"], "null model, not a transform of the method's map"),
    (f"{SP}.transform", ["gaussian", "gamma+gamma"],
     "combination 'gamma+gamma' must list distinct transforms other than identity"),
    (f"{SP}.transform", ["gaussian"],
     "search.space.filter_size: no transform in search.space.transform reads filter_size"),
    (f"{SP}.transform", ["gaussian", "max_filter", "quantize"],
     "search.space.levels: missing: transform 'quantize' reads levels"),
    (f"{SP}.sigma", {"low": 0.0, "high": 1.0, "log": True}, "log: true needs low > 0"),
    (f"{SP}.sigma", {"low": 0.5, "high": 1.0, "scale": 2},
     "search.space.sigma.scale: unknown distribution key 'scale'"),
    ("search.kind", "gamming", "search.kind: unknown search kind 'gamming'; did you mean 'gaming'?"),
    ("search.trials", 0, "search.trials: must be an integer >= 1, got 0"),
    ("search.trails", 3, "search.trails: unknown key of a gaming search 'trails'; did you mean 'trials'?"),
    ("search.target_accuracy", 0.9, "search.target_accuracy: unknown key of a gaming search"),
    ("fixed.sigma", 1.0, "fixed: sigma is set here but the search sets the post-processing; remove it"),
    ("fixed.protocol", "leakage", "protocol: 'leakage' has no score to maximise"),
    ("fixed.attribution", "salency", "fixed.attribution: unknown attribution 'salency'; did you mean 'saliency'?"),
    ("postprocess", [{"name": "gaussian", "sigma": [1]}],
     "postprocess: a gaming search chooses the post-processing itself"),
    ("search", _DELETE, "search: missing: a search spec needs a search section"),
])
def test_invalid_gaming_specs_name_the_field(path, value, message):
    with pytest.raises(SpecError) as err:
        parse(_with(G, path, value))
    assert message in str(err.value)


R = recipe("/tmp/unused", "r", 3)


@pytest.mark.parametrize("path, value, message", [
    ("search.target_accuracy", _DELETE, "search.target_accuracy: missing: the validation accuracy"),
    ("search.target_accuracy", 1.5, "search.target_accuracy: must be a fraction in (0, 1], got 1.5"),
    (f"{SP}.lr", {"low": 0.0, "high": 0.1}, "search.space.lr.low: lr 0.0 must be > 0"),
    (f"{SP}.epochs", {"low": 3, "high": 1}, "search.space.epochs: low 3 > high 1"),
    (f"{SP}.width", [], "search.space.width.choices: must be a non-empty list"),
    (f"{SP}.optimizer", ["sgd", "adamw"], "unknown optimizer 'adamw'; did you mean 'adam'?"),
    (f"{SP}.sigma", {"low": 0, "high": 1}, "search.space.sigma: unknown recipe search parameter 'sigma'"),
    ("search.pruning", {"grace_epochs": 0}, "search.pruning.grace_epochs: must be an integer >= 1, got 0"),
    ("fixed.lr", 0.1, "fixed: lr is set here but it is in search.space; remove it"),
])
def test_invalid_recipe_specs_name_the_field(path, value, message):
    with pytest.raises(SpecError) as err:
        parse(_with(R, path, value))
    assert message in str(err.value)


def test_every_problem_is_reported_at_once():
    data = _with(_with(G, "search.trials", -1), "fixed.fraction", 1.5)
    data = _with(data, f"{SP}.sigma", {"low": 2.0, "high": 1.0})
    with pytest.raises(SpecError) as err:
        parse(data)
    text = str(err.value)
    assert "3 problems" in text
    assert "fixed.fraction" in text and "search.trials" in text and "search.space.sigma" in text


def test_cli_exits_2_on_a_bad_spec_and_runs_nothing(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(gaming(tmp_path / "store", "bad", 3), "search.seed", -2)))
    assert search_mod.main([str(path), "--local"]) == 2
    assert "search.seed: must be an integer >= 0, got -2" in capsys.readouterr().err
    assert not (tmp_path / "store" / "search").exists() and not (tmp_path / "store" / "rows").exists()


def test_space_is_conditional_and_studies_are_named_per_method():
    data = _with(G, "axes", {"attribution": ["saliency", "random"]})
    data["fixed"].pop("attribution")
    spec = parse(data)
    assert [c.study for c in spec.cells()] == ["g-saliency", "g-random"]
    assert spec.space[0].choices == ("identity", "gaussian", "max_filter")   # the raw map is always a candidate
    fixed = optuna.trial.FixedTrial({"transform": "max_filter", "filter_size": 3})
    assert search_mod.suggest(spec.space, "gaming", fixed) == {"transform": "max_filter", "filter_size": 3}
