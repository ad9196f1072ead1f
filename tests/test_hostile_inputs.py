"""Hostile and mistaken spec files: one table of inputs, each with the message `roar run` must give.

Every case goes through the real command (``roar run SPEC --dry-run``, in-process): exit code 2, one
problem that names the field, the (shortened) value and what is valid, a short message, no
traceback, before Ray starts. Then the cases that must pass with a warning, the bounded-time and
-memory cases, and the tables the checks rely on, pinned against the code they describe.
"""
from __future__ import annotations

import inspect
import re
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from sweep import cli
from sweep.option_rules import OPTION_RULES

BASE = """\
name: t
store: {store}
fixed: {dataset: synthetic, epochs: 1}
axes: {fraction: [0.1, 0.5]}
"""


def base(folder: Path) -> str:
    return BASE.replace("{store}", str(folder / "store"))


def bomb(levels: int = 9) -> str:
    """Billion laughs: 9 levels of 9 aliases each = 9**9 values once expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines)


def spec_with(**sections) -> str:
    """BASE with YAML sections appended or replaced (given as YAML text)."""
    text = BASE
    for key, value in sections.items():
        text = re.sub(rf"^{key}:.*\n", "", text, flags=re.M) + f"{key}: {value}\n"
    return text


# (id, spec text or a callable(tmp_path) -> path, expected fragment of the one problem)
CASES = [
    # --- the file itself ---
    ("alias-bomb", BASE + bomb() + "\n", "more than 100,000 values once aliases are expanded"),
    ("alias-bomb-in-axis", spec_with(axes="{seed: *a8}").replace("axes:", bomb() + "\naxes:", 1),
     "more than 100,000 values once aliases are expanded"),
    ("recursive-alias", BASE + "description: &x [*x]\n", "more than 100,000 values once aliases are expanded"),
    ("deep-nesting", BASE + "description: " + "[" * 5000 + "]" * 5000 + "\n", "nesting deeper than 32 levels"),
    ("deep-mapping", BASE + "resources:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(60)),
     "nesting deeper than 32 levels"),
    ("not-utf8", lambda p: _write(p, BASE.encode() + "description: caf\xe9\n".encode("latin-1")),
     "not UTF-8 text (byte 0xe9 at offset"),
    ("directory", lambda p: str(p), "is a directory; give the path of a YAML file"),
    ("endless-device", lambda p: "/dev/zero", "is not a regular file"),
    ("huge-file", lambda p: _write(p, (BASE + "description: |\n" + "  x\n" * 600_000).encode()),
     "larger than 1,048,576 bytes"),
    ("missing-file", lambda p: str(p / "nope.yaml"), "spec file not found:"),
    ("duplicate-key", BASE + "fixed: {dataset: mnist}\n", "duplicate key 'fixed' (first at line 3)"),
    ("duplicate-nested-key", spec_with(fixed="{dataset: synthetic, epochs: 1, epochs: 2}"),
     "duplicate key 'epochs'"),
    ("python-tag", BASE + "description: !!python/object/apply:os.system [echo]\n", "could not determine a constructor"),
    ("5000-digit-int", spec_with(fixed="{dataset: synthetic, seed: " + "9" * 5000 + "}"), "a value cannot be read"),
    ("not-a-mapping", "- just\n- a list\n", "the spec must be a YAML mapping"),
    # --- name and store ---
    ("name-trailing-newline", spec_with(name='"t\\n"'), "name: must be 1-100 characters"),
    ("name-too-long", spec_with(name="x" * 300), "name: must be 1-100 characters"),
    ("name-slash", spec_with(name="../up"), "name: must be 1-100 characters"),
    ("store-http", spec_with(store="http://example.com/x"), "store: unsupported URI scheme 'http'"),
    ("store-ftp", spec_with(store="ftp://host/x"), "store: unsupported URI scheme 'ftp'"),
    ("store-no-bucket", spec_with(store="s3://"), "store: 's3://' names no bucket"),
    ("store-nul", spec_with(store='"/tmp/a\\0b"'), "store: must be a local folder, file://path, s3://bucket/prefix or "
                                                   "gs://bucket/prefix without control characters"),
    ("data-root-nul", spec_with(fixed='{dataset: synthetic, data_root: "a\\0b"}'),
     "fixed.data_root: data_root must be a path without NUL or line breaks"),
    ("data-root-too-long", spec_with(fixed="{dataset: mnist, data_root: " + "x" * 5000 + "}"),
     "at most 4,096 characters and 255 bytes per folder name, got 'xxxx"),
    # --- numbers ---
    ("seed-beyond-64-bits", spec_with(axes="{seed: [0, 1180591620717411303424]}"),
     "axes.seed[1]: seed 1180591620717411303424 must be <= 4,294,967,295"),
    ("epochs-beyond-64-bits", spec_with(fixed="{dataset: synthetic, epochs: 100000000000000000000}"),
     "fixed.epochs: epochs 100000000000000000000 must be <= 9,223,372,036,854,775,807"),
    ("lr-huge-int", spec_with(fixed="{dataset: synthetic, lr: " + "9" * 400 + "}"),
     "fixed.lr: lr must be a finite number, got int 9999"),
    ("sigma-too-wide", spec_with(fixed="{dataset: synthetic, postprocess: gaussian, sigma: 1.0e+9}"),
     "fixed.sigma: sigma 1000000000.0 must be <= 1,024"),
    ("cpus-huge-int", BASE + "resources: {cpus_per_trial: " + "9" * 400 + "}\n", "resources.cpus_per_trial: must be a number"),
    ("max-trials-string", BASE + "max_trials: lots\n", "max_trials: must be an integer from 1 to 10**12"),
    # --- post-processing parameters (givable in YAML, checked before Ray) ---
    ("quantize-without-levels", BASE + "postprocess: [quantize]\n",
     "postprocess 'quantize' needs parameter 'levels' (an integer >= 2); found none; e.g. postprocess: "
     "[{name: quantize, levels: 8}]"),
    ("quantize-levels-float", BASE + "postprocess: [{name: quantize, levels: 2.5}]\n",
     "postprocess[0].levels[0]: levels must be an integer >= 2; found 2.5"),
    ("gamma-negative", BASE + "postprocess: [{name: gamma, gamma: -1}]\n",
     "postprocess[0].gamma[0]: gamma must be a finite number > 0; found -1"),
    ("gamma-on-gaussian", BASE + "postprocess: [{name: gaussian, sigma: 1, gamma: 2}]\n",
     "postprocess 'gaussian' takes no parameter(s) ['gamma']"),
    ("chain-bad-steps", BASE + "postprocess: [{name: chain, steps: 'gaussian,chain'}]\n",
     "steps must be comma-separated post-processing names (not chain, not seeded ones)"),
    ("chain-step-without-its-parameter", BASE + "postprocess: [{name: chain, steps: 'gamma,gaussian', sigma: 1}]\n",
     "postprocess 'chain' step 'gamma' needs parameter(s) gamma (a finite number > 0) in the chain entry"),
    ("params-in-options", spec_with(fixed="{dataset: synthetic, options: {postprocess_params: 1}}"),
     "fixed.options.postprocess_params: give post-processing parameters in a postprocess entry"),
    # --- protocol options ---
    ("option-wrong-type", spec_with(fixed="{dataset: synthetic, options: {sanity_images: many}}"),
     "fixed.options.sanity_images: option sanity_images='many': must be an integer >= 2"),
    ("option-out-of-range", spec_with(fixed="{dataset: synthetic, options: {sanity_threshold: 3}}"),
     "option sanity_threshold=3: must be a number in [-1.0, 1.0]"),
    ("option-bad-list", spec_with(fixed="{dataset: synthetic, options: {curve_fractions: '0, 2'}}"),
     "option curve_fractions='0, 2': must be a non-empty list of fractions in [0.0, 1.0]"),
    ("option-bool", spec_with(fixed="{dataset: synthetic, options: {sanity_roar: 'yes please'}}"),
     "option sanity_roar='yes please': must be true or false"),
    ("option-typo", spec_with(fixed="{dataset: synthetic, options: {leakage_epoch: 2}}"),
     "unknown option 'leakage_epoch'; did you mean 'leakage_epochs'?"),
    # --- sizes the data and models fix ---
    ("image-size-below-model", spec_with(fixed="{dataset: synthetic, image_size: 3, model: small_cnn}"),
     "image_size 3 is smaller than model 'small_cnn' accepts; valid: image_size >= 4 pixels"),
    ("image-size-below-resnet", spec_with(fixed="{dataset: cifar10, image_size: 7, model: fast_resnet}"),
     "image_size 7 is smaller than model 'fast_resnet' accepts; valid: image_size >= 8 pixels"),
    ("subset-above-dataset", spec_with(fixed="{dataset: synthetic, subset: 5000}"),
     "fixed.subset: subset 5,000 is larger than the train split of 'synthetic' (3,000 images); valid: 1..3000"),
    ("test-subset-above-dataset", spec_with(fixed="{epochs: 1}", datasets="[{name: mnist, test_subset: 20000}]"),
     "test_subset 20,000 is larger than the test split of 'mnist' (10,000 images)"),
    # --- grid size ---
    ("grid-too-large", spec_with(axes="{seed: [" + ", ".join(map(str, range(400))) + "], fraction: ["
                                  + ", ".join(f"0.{i:03d}" for i in range(1, 400)) + "]}"),
     "grid: the grid has 159,600 points (axes.seed 400 x axes.fraction 399), more than max_trials=100,000"),
    ("entry-too-large", BASE + "postprocess: [{name: chain, steps: 'gaussian,max_filter', sigma: ["
     + ", ".join(map(str, range(400))) + "], filter_size: [" + ", ".join(map(str, range(400))) + "]}]\n",
     "postprocess[0]: crosses 160,000 combinations, more than max_trials=100,000"),
    # --- axes that cannot change a result ---
    ("sigma-on-identity", spec_with(axes="{sigma: [1, 2]}"),
     "axes.sigma: sigma takes 2 values [1.0, 2.0] with postprocess 'identity', which ignores sigma"),
    ("filter-size-on-gaussian", BASE + "postprocess: [{name: gaussian, sigma: 1, filter_size: [3, 5]}]\n",
     "filter_size takes 2 values [3, 5] with postprocess 'gaussian', which ignores filter_size"),
    ("retrain-mode-on-road", BASE + "protocols: [{name: road_morf, retrain_mode: [scratch, finetune]}]\n",
     "retrain_mode takes 2 values ['finetune', 'scratch'] with protocol 'road_morf', which ignores retrain_mode"),
    ("fill-on-road", spec_with(fixed="{dataset: synthetic, protocol: road_lerf}", axes="{fill: [mean, zero]}"),
     "fill takes 2 values ['mean', 'zero'] with protocol 'road_lerf', which ignores fill"),
    ("target-on-random", spec_with(fixed="{dataset: synthetic, attribution: random}", axes="{target: [label, predicted]}"),
     "target takes 2 values ['label', 'predicted'] with attribution 'random', which ignores target"),
    # --- an included recipe ---
    ("recipe-endless", BASE + "recipe: /dev/zero\n", "recipe: cannot use '/dev/zero'"),
    ("recipe-directory", lambda p: _write(p, (base(p) + f"recipe: {p}\n").encode()), "is a directory"),
    ("recipe-huge", lambda p: _write(p, (base(p) + f"recipe: {_write(p, b'fixed: {lr: 0.1}' + b' ' * 2_000_000, 'r.yaml')}\n")
                                     .encode()), "larger than 1,048,576 bytes"),
    ("recipe-duplicate-key", lambda p: _write(p, (base(p) + f"recipe: {_write(p, b'fixed: {lr: 0.1, lr: 0.2}', 'r.yaml')}\n")
                                              .encode()), "duplicate key 'lr'"),
]


def _write(folder: Path, data: bytes, name: str = "spec.yaml") -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _spec_path(case, tmp_path: Path) -> str:
    if callable(case):
        return case(tmp_path)
    return _write(tmp_path, case.replace("{store}", str(tmp_path / "store")).encode())


def run_cli(path: str, capsys, *extra) -> tuple[int, str, str]:
    code = cli.main(["run", path, "--dry-run", *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_spec_is_refused_with_one_clear_message(case, expected, tmp_path, capsys):
    path = _spec_path(case, tmp_path)
    start = time.monotonic()
    code, out, err = run_cli(path, capsys)
    assert code == 2, (out, err)
    assert out == ""
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, err
    assert expected in problems[0], problems[0]
    assert "Traceback" not in err and len(err) < 1500, err[:3000]
    assert time.monotonic() - start < 30


# --- allowed, with a warning -----------------------------------------------------------------------
def test_absurd_sizes_pass_with_a_warning_and_the_cost_estimate(tmp_path, capsys):
    text = base(tmp_path)
    path = _write(tmp_path, text.replace("epochs: 1}", "epochs: 1000000000000000000, width: 100000000}").encode())
    code, out, err = run_cli(path, capsys)
    assert code == 0, err
    assert "warning: fixed.epochs: epochs 1000000000000000000 is unusually large (above 1,000); is it a typo?" in err
    assert "warning: fixed.width: width 100000000 is unusually large (above 1,024)" in err
    estimate = re.search(r"warning: estimated cost of this sweep: about ([\d.e+]+) years wall", err)
    assert estimate and float(estimate.group(1)) > 1e9, err


def test_postprocess_parameters_from_yaml_reach_the_trial(tmp_path, capsys):
    from sweep.grid import expand
    from sweep.spec import load_spec

    text = base(tmp_path)
    path = _write(tmp_path, (text + "postprocess: [identity, {name: gamma, gamma: [0.5, 2]}, "
                                    "{name: chain, steps: 'quantize,gaussian', levels: 4, sigma: 1}]\n").encode())
    trials = expand(load_spec(path, check_environment=False))
    params = [(t.postprocess, t.sigma, t.option("postprocess_params")) for t in trials if t.fraction == 0.1]
    assert params == [("identity", 0.0, None), ("gamma", 0.0, {"gamma": 0.5}), ("gamma", 0.0, {"gamma": 2}),
                      ("chain", 1.0, {"steps": "quantize,gaussian", "levels": 4})]
    # where `roar search` puts them too, so the trial reads them (TrialContext.postprocess)
    gamma = [t for t in trials if t.postprocess == "gamma" and t.fraction == 0.1][0]
    assert gamma.options == (("postprocess_params", {"gamma": 0.5}),)
    assert len({t.trial_id for t in trials}) == len(trials) == 8
    # and the trial's own post-processing step applies them
    from roar.postprocess import postprocess_maps
    from roar.protocols.context import TrialContext
    raw = torch.rand(2, 8, 8)
    for t in trials[:4]:
        ctx = TrialContext(spec=t, data=None, device="cpu", base_model=None, base_accuracy=0.0, raw_maps={})
        got = ctx.postprocess(raw, torch.arange(2))
        if t.postprocess == "gamma":
            assert torch.allclose(got, raw ** t.option("postprocess_params")["gamma"])
        if t.postprocess == "chain":
            quantized = postprocess_maps(raw, "quantize", levels=4)
            assert torch.equal(got, postprocess_maps(quantized, "gaussian", sigma=1.0))


# --- bounded time and memory --------------------------------------------------------------------------
def test_alias_bomb_is_refused_in_bounded_memory(tmp_path, capsys):
    text = base(tmp_path)
    path = _write(tmp_path, (bomb(12) + "\n" + text.replace("axes: {fraction: [0.1, 0.5]}", "axes: {seed: *a11}")).encode())
    tracemalloc.start()
    try:
        code, _, err = run_cli(path, capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2 and "more than 100,000 values once aliases are expanded" in err
    assert peak < 20 * 2 ** 20, peak   # 9**12 values would need terabytes


def test_dry_run_of_a_huge_grid_counts_without_expanding(tmp_path, capsys):
    axes = {"seed": range(100), "fraction": [f"0.{i:03d}" for i in range(1, 101)],
            "lr": [f"0.{i:03d}" for i in range(1, 101)], "batch_size": range(1, 101)}
    text = base(tmp_path)
    text = text.replace("axes: {fraction: [0.1, 0.5]}", "axes:\n" + "".join(
        f"  {k}: [{', '.join(map(str, v))}]\n" for k, v in axes.items()))
    path = _write(tmp_path, text.encode())
    code, _, err = run_cli(path, capsys)
    assert code == 2 and "the grid has 100,000,000 points" in err and "roar run --max-trials" in err
    start = time.monotonic()
    code, out, err = run_cli(path, capsys, "--max-trials", str(10 ** 9))
    assert code == 0, err
    assert time.monotonic() - start < 20
    assert "grid points:        100,000,000 (counted, not expanded" in out
    assert "stage A (models):   1,000,000 needed" in out   # seed x lr x batch_size: fraction is no model field


# --- the tables the checks rely on, pinned against the code ---------------------------------------------
def test_every_option_a_protocol_reads_has_a_rule():
    import roar.protocols as protocols
    folder = Path(inspect.getfile(protocols)).parent
    read = set()
    for path in folder.glob("*.py"):
        text = path.read_text()
        read |= set(re.findall(r"(?:number_list|positive_int|boolean|number)\((?:ctx\.spec|spec|s), [\"'](\w+)", text))
        read |= set(re.findall(r"\.option\([\"'](\w+)", text))
    assert read and read <= set(OPTION_RULES), read - set(OPTION_RULES)


@pytest.mark.parametrize("model", ["small_cnn", "fast_resnet", "resnet18_small"])
def test_min_image_size_table_matches_the_models(model):
    from roar.models import build_model
    from sweep.spec_checks import MIN_IMAGE_SIZE

    least = MIN_IMAGE_SIZE.get(model, 1)
    net = build_model(model, 1, 3, (0.5,), (0.25,), width=4).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, least, least)).shape == (2, 3)
        if least > 1:
            with pytest.raises(RuntimeError):
                net(torch.rand(2, 1, least - 1, least - 1))


@pytest.mark.parametrize("dataset", ["synthetic", "digits"])
def test_split_and_native_sizes_match_the_generated_datasets(dataset):
    from roar.datasets import DATASETS, load_dataset

    data = load_dataset(dataset)
    assert (data.train_x.shape[0], data.test_x.shape[0]) == DATASETS[dataset].split_sizes
    assert data.train_x.shape[-1] == DATASETS[dataset].native_size


def test_postprocessings_said_to_ignore_sigma_or_filter_size_do():
    from roar.postprocess import POSTPROCESS, postprocess_maps
    from sweep.spec_checks import RELEVANCE

    params = {"gamma": {"gamma": 0.5}, "quantize": {"levels": 4}, "chain": {"steps": "gaussian,max_filter"}}
    maps = torch.rand(3, 12, 12)
    rules = {r.field: r for r in RELEVANCE if r.context == "postprocess"}
    for name in POSTPROCESS:
        kw = params.get(name, {})
        for field, values in (("sigma", (0.0, 2.0)), ("filter_size", (0, 5))):
            outs = [postprocess_maps(maps, name, **{field: v}, **kw) for v in values]
            changed = not torch.equal(outs[0], outs[1])
            assert changed == rules[field].matters(name), (name, field)
