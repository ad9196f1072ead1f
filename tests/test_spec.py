"""Sweep spec parsing and validation: malformed specs are reported all at once, with where and what.

Every malformed case checks the message: the location in the spec, the bad value and what is valid.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from roar.spec import TrialSpec
from sweep.grid import expand, grid_points, stage_jobs
from sweep.spec import ClusterInfo, SpecError, load_spec, parse_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"
CPU_ONLY = ClusterInfo(cpus=2, gpus=0, where="this machine")


def spec_dict(tmp_path, **changes) -> dict:
    d = {
        "name": "t",
        "store": str(tmp_path / "store"),
        "fixed": {"dataset": "synthetic", "epochs": 1},
        "axes": {"attribution": ["saliency", "random"], "fraction": [0.1, 0.5]},
    }
    d.update(copy.deepcopy(changes))
    return d


def problems_of(data, *, env: bool = False, cluster: ClusterInfo = CPU_ONLY) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="s.yaml", cluster=cluster, check_environment=env)
    return info.value.problems


def only_problem(data, **kw) -> str:
    problems = problems_of(data, **kw)
    assert len(problems) == 1, problems
    return problems[0]


# --- malformed specs ----------------------------------------------------------------------------
# One row per spec rule: (changes to the base spec, the one problem it must give). A message ending in
# "..." is a prefix (the rest lists the valid names).
SIGMA = {"name": "gaussian", "sigma": 2}
MALFORMED = {
    "unknown dataset in a datasets entry": (
        {"fixed": {"epochs": 1}, "datasets": [{"name": "fashion_mnst", "subset": 100}]},
        "datasets[0].name[0]: unknown dataset 'fashion_mnst'; did you mean 'fashion_mnist'?..."),
    "negative sigma": (
        {"postprocess": [{"name": "identity"}, {"name": "gaussian", "sigma": [1, -0.5]}]},
        "postprocess[1].sigma[1]: sigma -0.5 must be >= 0 (a Gaussian blur sigma in pixels)"),
    **{f"fraction {bad}": ({"axes": {"fraction": [0.5, bad]}},
                           f"axes.fraction[1]: fraction {float(bad)!r} must be strictly between 0 and 1 "
                           f"(a fraction of the image's pixels)") for bad in (0, 1, 1.5, -0.2)},
    "empty axis": ({"axes": {"seed": []}}, "axes.seed: seed axis is empty; give at least one value"),
    "duplicate axis values": (
        {"axes": {"attribution": ["saliency", "random", "saliency"]}},
        "axes.attribution: duplicate value 'saliency' (positions 0 and 2); each value may appear once"),
    "duplicates after normalising numbers": (   # the same float once normalised
        {"axes": {"sigma": [1, 1.0]}},
        "axes.sigma: duplicate value 1.0 (positions 0 and 1); each value may appear once"),
    "unknown trial field": (
        {"fixed": {"dataset": "synthetic", "epoch": 2}},
        "fixed.epoch: unknown trial field 'epoch'; did you mean 'epochs'?..."),
    "string for an integer": (
        {"fixed": {"dataset": "synthetic", "epochs": "two"}}, "fixed.epochs: epochs must be an integer, got str 'two'"),
    "bool is not an integer": (
        {"axes": {"seed": [0, True]}}, "axes.seed[1]: seed must be an integer, got bool True"),
    "float for an integer field": (
        {"fixed": {"dataset": "synthetic", "subset": 100.5}},
        "fixed.subset: subset must be an integer or null, got float 100.5"),
    "axis given a scalar": (
        {"axes": {"fraction": 0.5}},
        "axes.fraction: an axis must be a list of values, got float 0.5; put a single value under fixed"),
    "fixed given a list": (
        {"fixed": {"dataset": "synthetic", "seed": [0, 1]}},
        "fixed.seed: is a list [0, 1]; a list of values belongs under axes"),
    "field in fixed and axes": (
        {"fixed": {"dataset": "synthetic", "fraction": 0.3}},
        "axes.fraction: fraction is also given in fixed; set each field in one place"),
    "postprocess entry conflicts with the sigma axis": (
        {"axes": {"sigma": [0, 1]}, "postprocess": [SIGMA]},
        "postprocess: sigma is also given in axes.sigma; set each field in one place"),
    "dataset in fixed and datasets": (
        {"datasets": [{"name": "synthetic"}]}, "datasets: dataset is also given in fixed; set each field in one place"),
    "postprocess entry without a name": (
        {"postprocess": [{"sigma": [1, 2]}]},
        "postprocess[0]: needs a 'name'; keys are ['edges', 'filter_size', 'gamma', 'levels', 'name', 'sigma', "
        "'steps', 'truncate']"),
    "postprocess entry unknown key": (
        {"postprocess": [{"name": "gaussian", "sigmas": [1, 2]}]},
        "postprocess[0].sigmas: unknown postprocess key 'sigmas'; did you mean 'sigma'?..."),
    "unknown postprocess name": (
        {"postprocess": [{"name": "gausian", "sigma": 1}]},
        "postprocess[0].name[0]: unknown postprocess 'gausian'; did you mean 'gaussian'?..."),
    "negative gpus": (
        {"resources": {"gpus_per_trial": -0.5}},
        "resources.gpus_per_trial: must be a number >= 0 (fractions allowed), got -0.5"),
    "zero cpus": ({"resources": {"cpus_per_trial": 0}}, "resources.cpus_per_trial: must be a number > 0, got 0"),
    "max_concurrent_trials zero": (
        {"resources": {"max_concurrent_trials": 0}},
        "resources.max_concurrent_trials: must be an integer >= 1, got 0"),
    "unknown device": (
        {"resources": {"device": "gpu"}},
        "resources.device: unknown device 'gpu'; did you mean 'cpu'? valid: auto, cpu, cuda"),
    "cuda without a gpu reservation": (
        {"resources": {"device": "cuda"}},
        "resources.device: cuda needs resources.gpus_per_trial > 0: Ray hides GPUs from trials that reserve none"),
    "option values must be scalars": (
        {"fixed": {"dataset": "synthetic", "options": {"input_noise": [1, 2]}}},
        "fixed.options.input_noise: option values must be scalars (string, number, bool, null), got list [1, 2]"),
}


@pytest.mark.parametrize("changes,expected", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_spec_gives_one_problem(tmp_path, changes, expected):
    msg = only_problem(spec_dict(tmp_path, **changes))
    if expected.endswith("..."):
        assert msg.startswith(expected[:-3]), msg
    else:
        assert msg == expected


def test_unknown_attribution_lists_the_valid_names(tmp_path):
    d = spec_dict(tmp_path, axes={"attribution": ["salency"]})
    msg = only_problem(d)
    assert msg.startswith("axes.attribution[0]: unknown attribution 'salency'; did you mean 'saliency'?")
    assert "integrated_gradients" in msg  # the valid names are listed


def test_unknown_top_level_key(tmp_path):
    d = spec_dict(tmp_path)
    d["axis"] = d.pop("axes")
    msg = only_problem(d)
    assert msg.startswith("axis: unknown top-level key 'axis'; did you mean 'axes'?")


def test_resources_unknown_key(tmp_path):
    d = spec_dict(tmp_path, resources={"gpu_per_trial": 1, "cpus": 1})
    assert problems_of(d) == [
        "resources.gpu_per_trial: unknown resources key 'gpu_per_trial'; did you mean 'gpus_per_trial'? valid: "
        "cpus_per_stage, cpus_per_trial, device, gpus_per_stage, gpus_per_trial, max_concurrent_trials, max_failures",
        "resources.cpus: unknown resources key 'cpus'; valid: cpus_per_stage, cpus_per_trial, device, "
        "gpus_per_stage, gpus_per_trial, max_concurrent_trials, max_failures"]


def test_gpu_requested_but_none_present(tmp_path):
    d = spec_dict(tmp_path, resources={"gpus_per_trial": 0.25})
    assert only_problem(d, env=True) == ("resources: gpus_per_trial=0.25, gpus_per_stage=0.25 but this machine "
                                         "has 0 GPU(s); set them to 0 to run on CPU")


def test_gpu_check_against_connected_cluster(tmp_path):
    d = spec_dict(tmp_path, resources={"gpus_per_trial": 0.5, "gpus_per_stage": 1})
    cluster = ClusterInfo(cpus=8, gpus=4, where="the Ray cluster at x:6379")
    assert parse_spec(d, cluster=cluster).resources.stage_gpus == 1.0


def test_more_cpus_per_trial_than_the_machine_has(tmp_path):
    d = spec_dict(tmp_path, resources={"cpus_per_trial": 4})
    problems = problems_of(d, env=True)
    assert problems == [
        "resources.cpus_per_trial: 4 exceeds the 2 CPU(s) of this machine; no trial could ever start",
        "resources.cpus_per_stage: 4 exceeds the 2 CPU(s) of this machine; no trial could ever start"]


def test_missing_dataset_files(tmp_path):
    root = tmp_path / "nowhere"
    d = spec_dict(tmp_path, fixed={"epochs": 1}, datasets=[{"name": "fashion_mnist", "root": str(root)}])
    msg = only_problem(d, env=True)
    assert msg.startswith("dataset fashion_mnist: dataset 'fashion_mnist' not found")
    assert str(root) in msg


def test_unwritable_store(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    d = spec_dict(tmp_path, store=str(blocker / "store"))
    msg = only_problem(d, env=True)
    assert msg.startswith(f"store: results store '{blocker / 'store'}' is not writable:")


def test_bad_name_and_missing_store(tmp_path):
    d = spec_dict(tmp_path, name="my sweep!")
    del d["store"]
    assert problems_of(d) == ["name: must be 1-100 characters of letters, digits, '-', '_', '.' (starting with a "
                              "letter or digit; it names folders), got 'my sweep!'",
                              "store: must be a local folder, file://path, s3://bucket/prefix or gs://bucket/prefix, "
                              "got None"]


def test_credentials_do_not_belong_in_the_spec(tmp_path):
    d = spec_dict(tmp_path, storage={"endpoint_url": "http://localhost:9000", "aws_secret_access_key": "x"})
    msg = only_problem(d)
    assert msg.startswith("storage.aws_secret_access_key: unknown storage key 'aws_secret_access_key'")
    assert msg.endswith("(credentials come from the environment, never from the spec)")


def test_every_problem_in_one_message(tmp_path):
    d = spec_dict(tmp_path, axes={"attribution": ["salency"], "fraction": [2.0], "seed": []},
                  resources={"device": "tpu"}, extra=1)
    with pytest.raises(SpecError) as info:
        parse_spec(d, source="bad.yaml", check_environment=False)
    text = str(info.value)
    assert text.splitlines()[0] == "bad.yaml: 5 problems in the sweep spec"
    for fragment in ("extra: unknown top-level key", "resources.device: unknown device 'tpu'",
                     "axes.attribution[0]: unknown attribution 'salency'", "axes.fraction[0]: fraction 2.0",
                     "axes.seed: seed axis is empty"):
        assert sum(fragment in line for line in text.splitlines()) == 1, fragment


def test_yaml_syntax_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\naxes: {attribution: [saliency\n")
    with pytest.raises(SpecError) as info:
        load_spec(str(path), check_environment=False)
    assert info.value.problems[0].startswith("not valid YAML:")


def test_spec_file_missing(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(str(tmp_path / "nope.yaml"))
    assert info.value.problems == [f"spec file not found: {tmp_path / 'nope.yaml'}"]


def test_spec_must_be_a_mapping():
    with pytest.raises(SpecError) as info:
        parse_spec(["name", "x"], check_environment=False)
    assert info.value.problems[0].startswith("the spec must be a YAML mapping")


# --- well-formed specs --------------------------------------------------------------------------
def test_numbers_are_normalised_so_ids_are_stable(tmp_path):
    fixed = {"dataset": "synthetic", "epochs": 1, "postprocess": "gaussian"}  # identity would ignore sigma
    a = parse_spec(spec_dict(tmp_path, fixed=fixed, axes={"sigma": [1, 2]}), check_environment=False)
    b = parse_spec(spec_dict(tmp_path, fixed=fixed, axes={"sigma": [1.0, 2.0]}), check_environment=False)
    ids_a, ids_b = [t.trial_id for t in expand(a)], [t.trial_id for t in expand(b)]
    assert ids_a == ids_b and len(set(ids_a)) == 2
    assert [t.sigma for t in expand(a)] == [1.0, 2.0]
    assert all(isinstance(t.sigma, float) for t in expand(a))


def test_grid_is_the_product_in_spec_order(tmp_path):
    d = spec_dict(tmp_path, axes={"attribution": ["saliency", "random"], "seed": [0, 1]},
                  postprocess=[{"name": "identity"}, {"name": "gaussian", "sigma": [1, 2]},
                               {"name": "max_filter", "filter_size": 3}])
    spec = parse_spec(d, check_environment=False)
    trials = expand(spec)
    assert grid_points(spec) == len(trials) == 2 * 2 * 4
    assert [(t.postprocess, t.sigma, t.filter_size) for t in trials[:4]] == [
        ("identity", 0.0, 0), ("gaussian", 1.0, 0), ("gaussian", 2.0, 0), ("max_filter", 0.0, 3)]
    assert [(t.attribution, t.seed) for t in trials[::4]] == [("saliency", 0), ("saliency", 1), ("random", 0),
                                                              ("random", 1)]
    assert all(t.dataset == "synthetic" and t.epochs == 1 for t in trials)
    jobs = stage_jobs(trials)
    assert len(jobs.base_models) == 2          # one per seed
    assert len(jobs.maps) == 4                 # seed x attribution; post-processing is not in the key
    assert sorted(len(v) for v in jobs.trials_of_maps.values()) == [4, 4, 4, 4]


def test_datasets_entries_take_defaults_from_fixed(tmp_path):
    d = spec_dict(tmp_path, fixed={"epochs": 1, "subset": 300, "test_subset": 100},
                  datasets=[{"name": "synthetic"}, {"name": "digits", "subset": [50, 60]}])
    trials = expand(parse_spec(d, check_environment=False))
    assert sorted({(t.dataset, t.subset, t.test_subset) for t in trials}) == [
        ("digits", 50, 100), ("digits", 60, 100), ("synthetic", 300, 100)]


def test_identical_grid_points_are_run_once(tmp_path):
    d = spec_dict(tmp_path, fixed={"epochs": 1}, axes={"fraction": [0.5]},
                  datasets=[{"name": "synthetic"}, {"name": "synthetic", "subset": None}])
    spec = parse_spec(d, check_environment=False)
    assert grid_points(spec) == 2 and len(expand(spec)) == 1


def test_options_axis(tmp_path):
    d = spec_dict(tmp_path, axes={"fraction": [0.5], "options": [{}, {"fail_for_test": "raise"}]})
    trials = expand(parse_spec(d, check_environment=False))
    assert [t.options for t in trials] == [(), (("fail_for_test", "raise"),)]
    assert trials[1].option("fail_for_test") == "raise"
    assert trials[0].maps_key() == trials[1].maps_key()  # options never invalidate cached stages


def test_same_spec_same_ids(tmp_path):
    d = spec_dict(tmp_path)
    first = [t.trial_id for t in expand(parse_spec(d, check_environment=False))]
    second = [t.trial_id for t in expand(parse_spec(copy.deepcopy(d), check_environment=False))]
    assert first == second
    assert first[0] == TrialSpec(dataset="synthetic", epochs=1, attribution="saliency", fraction=0.1).trial_id


def test_store_override(tmp_path):
    spec = parse_spec(spec_dict(tmp_path), store=str(tmp_path / "other"), cluster=CPU_ONLY)
    assert spec.store == str(tmp_path / "other")
    assert (tmp_path / "other").is_dir()  # the writability probe created it


def test_shipped_specs_parse():
    counts = {}
    for name in ("smoke", "demo", "cifar10", "svhn", "cub200"):
        spec = load_spec(str(SPECS / f"{name}.yaml"), check_environment=False)
        counts[name] = (len(expand(spec)), spec.resources.gpus_per_trial > 0)
    assert counts["smoke"] == (8, False)
    assert counts["demo"] == (4 * 3 * 3 * 3 * 2, False)  # methods x sigmas x fractions x seeds x (roar + leakage)
    for name in ("cifar10", "svhn", "cub200"):
        assert counts[name][1], f"{name} should ask for GPUs"


def test_local_specs_pass_the_environment_checks(tmp_path):
    for name in ("smoke", "demo"):
        spec = load_spec(str(SPECS / f"{name}.yaml"), store=str(tmp_path / name), cluster=CPU_ONLY)
        assert spec.resources.gpus_per_trial == 0


def test_true_pixel_protocols_and_oracle_need_a_dataset_with_true_pixels():
    from sweep.spec import SpecError, parse_spec

    data = {"name": "gt", "store": "/tmp/unused",
            "fixed": {"dataset": "digits"},
            "axes": {"protocol": ["roar", "groundtruth"], "attribution": ["saliency", "true_pixels"]}}
    with pytest.raises(SpecError) as err:
        parse_spec(data, check_environment=False)
    message = str(err.value)
    assert "protocol: 'groundtruth' needs a dataset with known true pixels (synthetic)" in message
    assert "attribution: 'true_pixels' needs a dataset with known true pixels (synthetic)" in message
    assert "dataset 'digits'" in message
    data["fixed"]["dataset"] = "synthetic"
    assert parse_spec(data, check_environment=False).name == "gt"


def test_protocols_spec_crosses_every_protocol_of_the_issue():
    spec = load_spec(str(Path(__file__).resolve().parent.parent / "specs" / "protocols-fmnist.yaml"),
                     check_environment=False)
    trials = expand(spec)
    assert {t.protocol for t in trials} == {"roar", "road_morf", "road_lerf", "mif", "lif", "sanity", "leakage"}
    assert len(trials) == 3 * 2 * 2 * 7
    # ROAD imputes; the other protocols fill with the dataset mean
    assert {t.fill for t in trials if t.protocol.startswith("road")} == {"road"}


def test_recipe_file_fields_join_fixed_and_conflicts_are_reported(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("fixed: {lr: 0.034, epochs: 5, width: 8, weight_decay: 0.0002}\n")
    data = {"name": "r", "store": str(tmp_path / "store"), "recipe": "recipe.yaml",
            "fixed": {"dataset": "synthetic"}, "axes": {"fraction": [0.3, 0.7]}}
    spec_file = tmp_path / "spec.yaml"
    import yaml
    spec_file.write_text(yaml.safe_dump(data))
    trials = expand(load_spec(str(spec_file), check_environment=False))  # recipe found beside the spec
    assert {(t.lr, t.epochs, t.width, t.weight_decay) for t in trials} == {(0.034, 5, 8, 0.0002)}
    data["fixed"]["epochs"] = 3
    data["recipe"] = str(recipe)
    with pytest.raises(SpecError, match="recipe: epochs is set by the recipe and in fixed"):
        parse_spec(data, check_environment=False)
    data["recipe"] = str(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="recipe: cannot use"):
        parse_spec(data, check_environment=False)
