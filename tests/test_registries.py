"""Tables over the registries (issue 17): every post-processing with its parameters and every protocol
is checked against the same invariants, so a new entry is tested the moment it is registered.

Post-processings: the roar records and the torch-free facts (analysis.contract) name the same keys; each
is the identity at its declared reference; its case level changes the map; rank-preserving ones leave
every mask unchanged; all are information-free (a map's output depends on that map and its (seed,
index) only); every declared parameter is given in YAML, reaches the trial and is rejected out of range
before Ray starts. Protocols: facts consistent with the schema, and a tiny run on synthetic data whose
training calls, masks and result columns agree with the facts.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.contract import (BLUR_EDGES, POSTPROCESS_FACTS, PROTOCOL_FACTS, STRENGTH_FIELDS, param_names)
from analysis.schema import COLUMNS
from analysis.scoring import REFERENCE_LEVEL, level_of
from registry_cases import INVALID_PARAM_VALUES, POSTPROCESS_CASES
from roar.blur import EDGE_INDEX
from roar.postprocess import POSTPROCESS, postprocess_maps
from roar.removal import removal_mask

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = sorted(POSTPROCESS)
MAPS = torch.from_numpy(np.random.default_rng(0).standard_normal((5, 12, 12)).astype(np.float32))
INDEX = torch.tensor([7, 2, 11, 0, 4])


def _run(name, maps, sigma, size, params, index=INDEX, seed=3):
    return postprocess_maps(maps, name, sigma=sigma, filter_size=size, seed=seed, index=index, **params)


# --- one source of truth ------------------------------------------------------------------------------
def test_roar_records_and_contract_facts_have_the_same_keys():
    from roar.protocols import PROTOCOLS

    assert set(POSTPROCESS) == set(POSTPROCESS_FACTS)
    assert all(POSTPROCESS[n].facts is POSTPROCESS_FACTS[n] for n in POSTPROCESS)   # pointed at, not copied
    assert set(PROTOCOLS) == set(PROTOCOL_FACTS)
    assert all(PROTOCOLS[n].facts is PROTOCOL_FACTS[n] for n in PROTOCOLS)
    assert set(EDGE_INDEX) == set(BLUR_EDGES)


def test_every_post_processing_has_a_case():
    assert sorted(POSTPROCESS_CASES) == NAMES
    assert sorted(INVALID_PARAM_VALUES) == sorted(param_names())


# --- post-processings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in NAMES if POSTPROCESS_FACTS[n].reference is not None])
def test_identity_at_its_reference(name):
    facts = POSTPROCESS_FACTS[name]
    strength = {f: facts.reference.get(f, 0) for f in STRENGTH_FIELDS}
    params = {k: v for k, v in facts.reference.items() if k not in STRENGTH_FIELDS}
    out = _run(name, MAPS, strength["sigma"], strength["filter_size"], params)
    assert torch.equal(out, MAPS)
    assert level_of(name, strength["sigma"], strength["filter_size"], params) == (REFERENCE_LEVEL, REFERENCE_LEVEL,
                                                                                  True)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "identity"])
def test_case_level_changes_the_map_and_is_labelled(name):
    sigma, size, params = POSTPROCESS_CASES[name]
    out = _run(name, MAPS, sigma, size, params)
    assert out.shape == MAPS.shape and not torch.equal(out, MAPS)
    label, family, is_reference = level_of(name, sigma, size, params)
    assert (family, is_reference) == (name, False)
    strength = POSTPROCESS_FACTS[name].strength
    if strength:   # the strength is in the label, in the record's format
        value = sigma if strength == "sigma" else size
        assert POSTPROCESS_FACTS[name].label_format.format(value) in label


@pytest.mark.parametrize("name", [n for n in NAMES if POSTPROCESS_FACTS[n].rank_preserving])
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_rank_preserving_post_processing_leaves_masks_unchanged(name, order):
    sigma, size, params = POSTPROCESS_CASES[name]
    out = _run(name, MAPS, sigma, size, params)
    for fraction in (0.1, 0.5, 0.9):
        assert torch.equal(removal_mask(out, fraction, order, seed=1, index=INDEX),
                           removal_mask(MAPS, fraction, order, seed=1, index=INDEX))


def test_some_post_processing_is_not_rank_preserving():
    """The mask check above can fail: a blur moves the top pixels."""
    out = _run("gaussian", MAPS, 1.5, 0, {})
    assert not torch.equal(removal_mask(out, 0.1, "morf", index=INDEX), removal_mask(MAPS, 0.1, "morf", index=INDEX))


@pytest.mark.parametrize("name", NAMES)
def test_information_free_each_map_depends_on_itself_and_its_index_only(name):
    assert POSTPROCESS_FACTS[name].information_free
    sigma, size, params = POSTPROCESS_CASES[name]
    batch = _run(name, MAPS, sigma, size, params)
    for i in range(len(MAPS)):   # one by one equals the batch: no map reads another
        alone = _run(name, MAPS[i:i + 1], sigma, size, params, index=INDEX[i:i + 1])
        assert torch.allclose(alone[0], batch[i], atol=1e-6)
    if POSTPROCESS_FACTS[name].seeded:   # a null model: the map's values do not matter, (seed, index) do
        assert torch.equal(_run(name, MAPS.flip(0), sigma, size, params), batch)
        assert not torch.equal(_run(name, MAPS, sigma, size, params, seed=4), batch)


# --- every parameter from YAML, validated before Ray starts ------------------------------------------
def _entry(name, sigma, size, params) -> dict:
    entry = {"name": name, **params}
    entry.update({"sigma": sigma} if sigma else {})
    entry.update({"filter_size": size} if size else {})
    return entry


def _spec(tmp_path, entry) -> dict:
    return {"name": "t", "store": str(tmp_path / "store"), "fixed": {"dataset": "synthetic", "epochs": 1},
            "postprocess": [entry]}


@pytest.mark.parametrize("name", NAMES)
def test_yaml_entry_reaches_the_trial_and_runs(tmp_path, name):
    from sweep.grid import expand
    from sweep.spec import parse_spec

    sigma, size, params = POSTPROCESS_CASES[name]
    (trial,) = expand(parse_spec(_spec(tmp_path, _entry(name, sigma, size, params)), check_environment=False))
    given = dict(trial.options).get("postprocess_params", {})
    assert (trial.postprocess, trial.sigma, trial.filter_size, given) == (name, sigma, size, params)
    assert torch.equal(_run(name, MAPS, trial.sigma, trial.filter_size, given), _run(name, MAPS, sigma, size, params))


@pytest.mark.parametrize("param", sorted(INVALID_PARAM_VALUES))
def test_invalid_parameter_is_a_spec_problem(tmp_path, param):
    from sweep.spec import SpecError, parse_spec

    name = next(n for n in NAMES if param in POSTPROCESS_FACTS[n].params and n in POSTPROCESS_CASES)
    sigma, size, params = POSTPROCESS_CASES[name]
    bad = {**params, param: INVALID_PARAM_VALUES[param]}
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(tmp_path, _entry(name, sigma, size, bad)), check_environment=False)
    what = POSTPROCESS_FACTS[name].params[param].what()
    assert any(f"{param} must be {what}" in p for p in info.value.problems), info.value.problems
    with pytest.raises(ValueError, match=f"{param} must be"):   # and roar refuses it too
        _run(name, MAPS, sigma, size, bad)


@pytest.mark.parametrize("name", [n for n in NAMES if any(p.required for p in POSTPROCESS_FACTS[n].params.values())])
def test_missing_required_parameter_is_a_spec_problem(tmp_path, name):
    import yaml
    from analysis.contract import example_entry
    from sweep.spec import SpecError, parse_spec

    sigma, size, params = POSTPROCESS_CASES[name]
    required = [k for k, p in POSTPROCESS_FACTS[name].params.items() if p.required]
    less = {k: v for k, v in params.items() if k != required[0]}
    with pytest.raises(SpecError, match=f"needs parameter {required[0]!r}"):
        parse_spec(_spec(tmp_path, _entry(name, sigma, size, less)), check_environment=False)
    hint = yaml.safe_load(example_entry(name))   # the hint in that error is itself a valid entry
    parse_spec(_spec(tmp_path, hint), check_environment=False)


# --- protocols ----------------------------------------------------------------------------------------
PROTOCOLS_SORTED = sorted(PROTOCOL_FACTS)


@pytest.mark.parametrize("protocol", PROTOCOLS_SORTED)
def test_protocol_facts(protocol):
    facts = PROTOCOL_FACTS[protocol]
    assert facts.order in ("morf", "lerf")
    assert facts.name and facts.description
    if facts.score is not None:
        assert facts.score.column in COLUMNS
        if facts.score.column == "accuracy_drop":   # MoRF: a large drop is good; LeRF: a small one
            assert facts.score.direction == (+1 if facts.order == "morf" else -1)
        else:
            assert facts.score.direction in (+1, -1)
    assert len({f.name for f in PROTOCOL_FACTS.values()}) == len(PROTOCOL_FACTS)


N_TRAIN, N_TEST, FRACTION = 64, 32, 0.25


@pytest.fixture(scope="module")
def tiny():
    from roar.datasets import load_dataset
    from roar.models import build_model

    data = load_dataset("synthetic", subset=N_TRAIN, test_subset=N_TEST, seed=0)
    model = build_model("small_cnn", data.channels, data.num_classes, data.mean, data.std, width=4, seed=0).eval()
    rng = np.random.default_rng(0)
    maps = {s: rng.random((n, 16, 16), dtype=np.float32) for s, n in (("train", N_TRAIN), ("test", N_TEST))}
    return data, model, maps


@pytest.mark.parametrize("protocol", PROTOCOLS_SORTED)
def test_protocol_tiny_run_agrees_with_its_facts(tiny, protocol, monkeypatch):
    """Training is stubbed (counted, not run): the facts say whether a trial trains, which mask it uses
    at the trial's fraction, and which column holds its score."""
    from roar.protocols import PROTOCOLS, TrialContext
    from roar.protocols import context, leakage
    from roar.spec import TrialSpec

    calls = []

    def counted(model, *args, **kw):
        calls.append(1)
        return model

    monkeypatch.setattr(context, "train_model", counted)
    monkeypatch.setattr(leakage, "train_model", counted)
    data, model, maps = tiny
    spec = TrialSpec(dataset="synthetic", subset=N_TRAIN, test_subset=N_TEST, model="small_cnn", width=4, epochs=1,
                     batch_size=32, attribution="saliency", fraction=FRACTION, protocol=protocol,
                     options=(("robustness_images", 4), ("sanity_images", 4)))
    ctx = TrialContext(spec=spec, data=data, device="cpu", base_model=model, base_accuracy=0.5, raw_maps=maps)
    row = PROTOCOLS[protocol].run(ctx)
    facts = PROTOCOL_FACTS[protocol]
    assert bool(calls) == facts.retrains
    assert row["n_test"] > 0 and set(row) <= set(COLUMNS)
    orders = {key[2] for key in ctx._cache if key[0] == "mask" and key[3] == FRACTION}
    assert orders <= {facts.order}, orders
    if facts.score is not None:
        assert orders == {facts.order}   # every scored protocol masks at the trial's fraction
        if facts.score.column != "accuracy_drop":   # the pipeline derives the drop; other scores are the run's
            assert np.isfinite(row[facts.score.column])
