"""No pooling of different setups, the raw map counted once in every fit, intervals only across seeds,
and the retrain leak check (issue 13, analysis side)."""
import numpy as np
import pandas as pd
import pytest

from analysis.association import ols_association, spearman_table
from analysis.compute import analyze
from analysis.diagnostics import leakage_table, protocol_results
from analysis.effects import effect_table, improvement_share, overall_change, paired_differences
from analysis.io import from_table
from analysis.leaks import LABEL_LEAK_MARGIN, label_leak_table, leak_warning
from analysis.rankings import method_ranks
from analysis.stats import seed_ci
from analysis.summary import effect_sentences, key_sentences
from analysis.testing import fake_results, make_rows

SMALL = dict(n_seeds=3, sigmas=(0.0, 2.0), fractions=(0.2, 0.8), methods=("a", "b", "random"))


def _ok(df):
    return from_table(df).ok


def _two_setups(config):
    """Two sweeps in one store that differ only in `config` (and their planted effect)."""
    first = fake_results(seed=0, effect=1.0, leakage=True, **SMALL)
    second = fake_results(seed=1, effect=-1.0, leakage=True, config=config, **SMALL)
    return first, second


def _label_of(ok, config):
    (key, value), = config.items()
    labels = [s for s in ok["setup"].unique() if f"{key}={value}" in s]
    assert len(labels) == 1, ok["setup"].unique()
    return labels[0]


@pytest.mark.parametrize("config", [{"lr": 0.05}, {"selection": "percentile"}, {"test_subset": 500},
                                    {"batch_size": 64}])
def test_two_sweeps_that_differ_in_one_trial_key_field_never_merge(config):
    first, second = _two_setups(config)
    ok = _ok(pd.concat([first, second]))
    assert ok["setup"].nunique() == 2 and _label_of(ok, config)


def test_an_option_kept_only_in_config_json_is_a_setup_but_post_processing_parameters_are_not():
    first, second = fake_results(seed=0, **SMALL), fake_results(seed=1, **SMALL)
    second["config_json"] = second["config_json"].str.replace('"options": {}', '"options": {"probe_epochs": 9}')
    second["trial_id"] = second["trial_id"].str[:-4] + "opt9"
    ok = _ok(pd.concat([first, second]))
    assert sorted(ok["setup"].unique()) == ["options.probe_epochs=9", "options.probe_epochs=null"]
    gamma = make_rows([{"postprocess": "gamma", "options": {"postprocess_params": {"gamma": g}}, "accuracy": 0.5,
                        "base_accuracy": 0.9} for g in (0.5, 2.0)])
    assert set(_ok(gamma)["setup"]) == {"all"}


@pytest.mark.parametrize("config", [{"lr": 0.05}, {"selection": "percentile"}])
def test_no_pooling_in_the_leakage_table_the_fits_and_the_effects(config):
    first, second = _two_setups(config)
    both = _ok(pd.concat([first, second]))
    alone = _ok(second)
    label = _label_of(both, config)
    key = ["attribution", "level", "fraction"]

    def same(table_both, table_alone, cols, keys=key):
        got = table_both[table_both["setup"] == label].drop(columns="setup").set_index(keys).sort_index()
        want = table_alone.drop(columns="setup").set_index(keys).sort_index()
        assert len(got) == len(want) > 0
        np.testing.assert_allclose(got[cols].to_numpy(float), want[cols].to_numpy(float), rtol=1e-9)

    # leakage: one row per setup and cell, its seeds only (n_seeds is 3, not 6)
    leak = leakage_table(both)
    assert set(leak["setup"]) == set(both["setup"]) and (leak["n_seeds"] == 3).all()
    same(leak, leakage_table(alone), ["leakage_accuracy", "wilson_low", "score_roar"])
    # the effects of post-processing, per cell and overall
    same(effect_table(paired_differences(both)), effect_table(paired_differences(alone)), ["mean_diff", "ci_low"],
         ["attribution", "level", "fraction"])
    over = overall_change(paired_differences(both))
    assert len(over) == 2
    want = overall_change(paired_differences(alone)).iloc[0]
    assert over[over["setup"] == label].iloc[0].mean_diff == pytest.approx(want.mean_diff)
    # the fits: one per setup; the planted slopes have opposite signs, so pooling would show
    ols = ols_association(both).set_index("setup")
    assert len(ols) == 2 and ols.loc[label, "slope"] == pytest.approx(ols_association(alone).iloc[0].slope)
    assert ols.loc[label, "slope"] < 0 < ols.drop(index=label)["slope"].iloc[0]
    sp = spearman_table(both, ["blur_spectral_centroid"], n_boot=50)
    same(sp, spearman_table(alone, ["blur_spectral_centroid"], n_boot=50), ["rho", "ci_low", "n_rows"],
         ["protocol", "fraction"])
    same(protocol_results(both), protocol_results(alone), ["score", "score_ci_low", "accuracy_base_wrong"])


def _with_identity_copies(df, shift=0.0):
    """Add, for every gaussian sigma=0 row, the identity row of the same maps (score moved by `shift`)."""
    raw = df[(df["postprocess"] == "gaussian") & (df["sigma"] == 0)].copy()
    raw["postprocess"] = "identity"
    raw["config_json"] = raw["config_json"].str.replace('"postprocess": "gaussian"', '"postprocess": "identity"')
    raw["trial_id"] = raw["trial_id"].str[:10] + "identity00"
    raw["accuracy_drop"] = raw["accuracy_drop"] + shift
    raw["accuracy"] = raw["accuracy"] - shift
    return pd.concat([df, raw], ignore_index=True)


def test_the_raw_map_counts_once_in_every_fit_and_mean():
    df = fake_results(seed=4, effect=1.0, **SMALL)
    once, twice = _ok(df), _ok(_with_identity_copies(df))
    assert len(twice) == len(once) + len(once) // 2       # the copies are really there
    a, b = ols_association(once).iloc[0], ols_association(twice).iloc[0]
    assert b.n_rows == a.n_rows and b.slope == pytest.approx(a.slope) and b.ci_low == pytest.approx(a.ci_low)
    sa, sb = spearman_table(once, n_boot=50), spearman_table(twice, n_boot=50)
    np.testing.assert_array_equal(sb["n_rows"], sa["n_rows"])
    np.testing.assert_allclose(sb["rho"], sa["rho"])
    ra, rb = protocol_results(once), protocol_results(twice)
    assert (rb["n_seeds"] == 3).all() and len(rb) == len(ra)
    np.testing.assert_allclose(rb["score_ci_low"], ra["score_ci_low"])
    np.testing.assert_allclose(method_ranks(twice)["mean_score"], method_ranks(once)["mean_score"])


def test_identity_and_sigma_zero_rows_of_one_seed_are_averaged_into_one_observation():
    df = fake_results(seed=5, effect=1.0, **SMALL)
    ok = _ok(_with_identity_copies(df, shift=0.02))
    res = protocol_results(ok).set_index(["attribution", "level", "fraction"])
    raw = _ok(df)
    raw = raw[(raw["attribution"] == "a") & (raw["fraction"] == 0.2) & raw["is_reference"]]
    assert res.loc[("a", "identity", 0.2), "score"] == pytest.approx(raw["score"].mean() + 0.01)
    assert res.loc[("a", "identity", 0.2), "n_seeds"] == 3


def test_seed_interval_needs_three_seeds_and_stays_in_range():
    assert np.isnan(seed_ci([0.5, 0.6])[1]) and seed_ci([0.5, 0.6])[0] == pytest.approx(0.55)
    mean, low, high = seed_ci([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and high - mean == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    _, low, high = seed_ci([0.97, 0.99, 1.0], bounds=(0.0, 1.0))
    assert high == 1.0 and low > 0.9
    _, low, high = seed_ci([0.1, 0.2, 0.3, 0.5], method="bootstrap")
    assert 0.1 <= low < high <= 0.5
    with pytest.raises(KeyError, match="interval='wald'"):
        seed_ci([1, 2, 3], method="wald")


def test_share_of_improved_cells_has_an_interval_across_seeds_not_cells():
    ok = _ok(fake_results(seed=6, effect=0.2, noise=0.02, **SMALL))
    diffs = paired_differences(ok)
    share = improvement_share(effect_table(diffs), diffs).iloc[0]
    per_seed = diffs.assign(up=diffs["diff"] > 0).groupby("seed")["up"].mean().to_numpy()
    _, low, high = seed_ci(per_seed, bounds=(0, 1))
    assert share.n_seeds == 3 and share.ci_low == pytest.approx(low) and share.ci_high == pytest.approx(high)
    two = _ok(fake_results(seed=6, effect=0.2, **{**SMALL, "n_seeds": 2}))
    d2 = paired_differences(two)
    s2 = improvement_share(effect_table(d2), d2).iloc[0]
    assert s2.n_seeds == 2 and np.isnan(s2.ci_low) and np.isnan(s2.ci_high)


def test_one_seed_summary_reports_effect_sizes_and_says_there_is_no_interval():
    a = analyze(fake_results(seed=3, effect=2.0, n_seeds=1, sigmas=(0.0, 2.0), noise=0.001), n_boot=50)
    (sentence,) = effect_sentences(a)
    assert sentence.startswith("Gaussian blur changed the ROAR score by +")
    assert "This is an effect size, not evidence of an effect: with 1 seed no interval across seeds exists" in sentence
    assert "improved the ROAR score" not in sentence and "CI" not in sentence
    keys = key_sentences(a)
    assert any(s.startswith("Uncertainty: with 1 seed no interval across seeds exists") for s in keys)
    assert not a.table("improvement_share")["ci_low"].notna().any()
    assert not a.table("protocol_results")[["score_ci_low", "acc_ci_low"]].notna().any().any()


def test_three_seed_summary_names_the_interval_method():
    a = analyze(fake_results(seed=3, effect=2.0, **SMALL), n_boot=50, interval="bootstrap")
    text = " ".join(key_sentences(a))
    assert "percentile bootstrap of the mean across seeds" in text and "over 3 seeds" in text


def test_leak_check_flags_leaky_masks_and_not_honest_ones():
    leaky = label_leak_table(_ok(fake_results(seed=1, target="label_leaky", protocols=("roar", "kar"), **SMALL)))
    assert leaky[leaky["attribution"] != "random"]["flagged"].all()
    assert not leaky[leaky["attribution"] == "random"]["flagged"].any()
    honest = label_leak_table(_ok(fake_results(seed=1, protocols=("roar", "kar"), **SMALL)))
    assert len(honest) == len(leaky) and not honest["flagged"].any()


def _leak_rows(method_acc, random_acc, n, levels=("identity",)):
    rows = []
    for seed in (0, 1, 2):
        for method, acc in (("a", method_acc), ("random", random_acc)):
            for pp in levels if method == "a" else ("identity",):
                rows.append({"attribution": method, "seed": seed, "postprocess": pp, "sigma": 2.0 * (pp != "identity"),
                             "accuracy": 0.6, "base_accuracy": 0.9, "accuracy_base_wrong": acc, "n_base_wrong": n,
                             "agreement_base": 0.8})
    return _ok(make_rows(rows))


@pytest.mark.parametrize("method_acc,random_acc,n,flagged", [
    (0.50, 0.10, 100, True),                      # 40 points above, intervals far apart
    (0.10 + LABEL_LEAK_MARGIN - 0.02, 0.10, 1000, False),   # apart, but less than the margin
    (0.30, 0.10, 20, False),                      # 20 points above, but 20 images: intervals overlap
])
def test_leak_check_rule(method_acc, random_acc, n, flagged):
    t = label_leak_table(_leak_rows(method_acc, random_acc, n)).set_index("attribution")
    assert bool(t.loc["a", "flagged"]) is flagged and not t.loc["random", "flagged"]
    assert t.loc["a", "excess"] == pytest.approx(method_acc - random_acc)


def test_leak_check_falls_back_to_the_random_maps_raw_row():
    t = label_leak_table(_leak_rows(0.5, 0.1, 100, levels=("identity", "gaussian"))).set_index(["attribution", "level"])
    assert t.loc[("a", "gaussian σ=2"), "random_accuracy_base_wrong"] == pytest.approx(0.1)
    assert bool(t.loc[("a", "gaussian σ=2"), "flagged"])


def test_leaky_rows_open_the_summary_with_a_warning():
    df = pd.concat([fake_results(seed=0, **SMALL), fake_results(seed=1, target="label_leaky", **SMALL)])
    a = analyze(df, n_boot=20)
    assert a.results.ok["setup"].nunique() == 2
    warning = leak_warning(a.results.ok)
    assert warning.startswith(f"{len(df) // 2} of {len(df)} rows (setup target=label_leaky) used target 'label_leaky'")
    assert key_sentences(a)[0] == "WARNING: " + leak_warning(a.results.ok, a.table("label_leaks"))
    assert leak_warning(_ok(fake_results(seed=0, **SMALL))) == ""


def test_the_printed_accuracy_tables_keep_setups_apart():
    from analysis.cli import accuracy_tables
    first, second = _two_setups({"lr": 0.05})
    tables = accuracy_tables(pd.concat([first, second]))
    assert sorted(tables) == ["roar (lr=0.05)", "roar (lr=0.1)"]
    want = accuracy_tables(second)["roar"]
    pd.testing.assert_frame_equal(tables["roar (lr=0.05)"], want)


def test_rows_written_before_per_split_targets_with_target_label_are_warned_about():
    old = fake_results(seed=0, **SMALL)
    old[["target_train", "target_test"]] = None
    old["target"] = "label"
    warning = leak_warning(_ok(old))
    assert warning.startswith(f"{len(old)} of {len(old)} rows used target 'label' and were written before")
    old["target"] = "predicted"
    assert leak_warning(_ok(old)) == ""
    new = fake_results(seed=0, target="label", **SMALL)      # label on train, prediction on test: no leak
    assert leak_warning(_ok(new)) == ""


def test_search_rows_share_the_setup_of_their_sweep_cells():
    ok = _ok(fake_results(seed=1, search=True, **SMALL))
    assert ok["study"].notna().any() and set(ok["setup"]) == {"all"}
    from analysis.gaming import gaming_table
    g = gaming_table(ok)
    assert len(g) and g["raw_score"].notna().all()
