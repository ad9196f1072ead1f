"""Scores, post-processing levels, paired effects, rankings, diagnostics and the gaming table on small
hand-written tables with known answers."""
import numpy as np
import pytest

from analysis.diagnostics import curve_table, fidelity_table, leakage_table, protocol_results, sanity_table
from analysis.effects import effect_table, improvement_share, overall_change, paired_differences
from analysis.gaming import gaming_rankings, gaming_table
from analysis.io import from_table
from analysis.rankings import kendall_w_fractions, method_ranks, tau_between_levels, tau_between_protocols
from analysis.scoring import PROTOCOL_SCORES, level_of
from analysis.testing import fake_results, make_rows


def _drops(spec, **common):
    """{(method, level_kwargs_key, fraction, seed, protocol): drop} -> derived rows."""
    rows = []
    for (method, pp, sigma, fraction, seed, protocol), drop in spec.items():
        rows.append({"attribution": method, "postprocess": pp, "sigma": sigma, "fraction": fraction, "seed": seed,
                     "protocol": protocol, "accuracy_drop": drop, "base_accuracy": 0.9, "accuracy": 0.9 - drop,
                     **common})
    return from_table(make_rows(rows)).ok


def test_every_protocol_score_has_a_direction_and_a_result_column():
    from analysis.schema import COLUMNS
    for name, rule in PROTOCOL_SCORES.items():
        assert rule.direction in (+1, -1) and rule.column in COLUMNS, name


@pytest.mark.parametrize("pp,sigma,size,params,label,ref", [
    ("identity", 0, 0, None, "identity", True),
    ("gaussian", 0, 0, None, "identity", True),
    ("max_filter", 0, 1, None, "identity", True),
    ("gaussian", 2, 0, None, "gaussian σ=2", False),
    ("max_filter", 0, 3, None, "max_filter 3px", False),
    ("blur_matched_random", 2, 0, None, "blur_matched_random σ=2", False),
    ("gamma", 0, 0, {"gamma": 0.5}, "gamma gamma=0.5", False),
    ("gamma", 0, 0, {"gamma": 1}, "identity", True),
    ("quantize", 0, 0, {"levels": 4}, "quantize levels=4", False),
])
def test_post_processing_levels(pp, sigma, size, params, label, ref):
    got_label, family, is_ref = level_of(pp, sigma, size, params)
    assert (got_label, is_ref) == (label, ref)
    assert family == ("identity" if ref else pp)


def test_kar_score_is_minus_the_drop():
    ok = _drops({("a", "identity", 0, 0.5, 0, "kar"): 0.3, ("a", "identity", 0, 0.5, 0, "roar"): 0.3})
    assert dict(zip(ok["protocol"], ok["score"])) == pytest.approx({"kar": -0.3, "roar": 0.3})


@pytest.fixture(scope="module")
def paired():
    spec = {}
    for seed, (a0, a2, b0, b2) in enumerate([(0.10, 0.15, 0.20, 0.18), (0.12, 0.18, 0.20, 0.19),
                                              (0.14, 0.20, 0.20, 0.17)]):
        spec.update({("a", "identity", 0, 0.5, seed, "roar"): a0, ("a", "gaussian", 2.0, 0.5, seed, "roar"): a2,
                     ("b", "identity", 0, 0.5, seed, "roar"): b0, ("b", "gaussian", 2.0, 0.5, seed, "roar"): b2})
    return _drops(spec)


def test_paired_differences_match_on_seed(paired):
    d = paired_differences(paired).sort_values(["attribution", "seed"])
    assert len(d) == 6 and set(d["level"]) == {"gaussian σ=2"}
    np.testing.assert_allclose(d["diff"], [0.05, 0.06, 0.06, -0.02, -0.01, -0.03], atol=1e-12)


def test_effect_table_share_and_overall_change(paired):
    diffs = paired_differences(paired)
    eff = effect_table(diffs).set_index("attribution")
    assert eff.loc["a", "mean_diff"] == pytest.approx(0.17 / 3) and eff.loc["b", "mean_diff"] == pytest.approx(-0.02)
    assert bool(eff.loc["a", "improved"]) and not bool(eff.loc["b", "improved"])
    assert eff.loc["a", "p"] == pytest.approx(0.25) and eff.loc["a", "p_holm"] == pytest.approx(0.5)
    assert eff.loc["a", "n_pairs"] == 3
    assert effect_table(diffs, test="sign").set_index("attribution").loc["b", "p"] == pytest.approx(0.25)
    share = improvement_share(effect_table(diffs)).iloc[0]
    assert (share.n_cells, share.n_improved, share.share_improved) == (2, 1, 0.5)
    over = overall_change(diffs).iloc[0]
    assert over.mean_diff == pytest.approx((0.015 + 0.025 + 0.015) / 3) and over.n_seeds == 3 and over.n_cells == 2
    with pytest.raises(KeyError, match="test='t'"):
        effect_table(diffs, test="t")


def _ranking_rows():
    spec = {}
    order = {"a": 0.3, "b": 0.2, "c": 0.1}
    for seed in (0, 1):
        for m, v in order.items():
            for f in (0.2, 0.8):
                spec[(m, "identity", 0, f, seed, "roar")] = v + 0.01 * f
                spec[(m, "gaussian", 1.0, f, seed, "roar")] = v + 0.05          # same order
                spec[(m, "gaussian", 4.0, f, seed, "roar")] = 0.5 - v           # reversed
                spec[(m, "identity", 0, f, seed, "kar")] = v                    # kar: less drop = better
    return _drops(spec)


def test_rankings_tau_between_levels_is_one_or_minus_one():
    ranks = method_ranks(_ranking_rows())
    roar = ranks[(ranks["protocol"] == "roar") & (ranks["level"] == "identity") & (ranks["fraction"] == 0.2)]
    assert dict(zip(roar["attribution"], roar["rank"])) == {"a": 1.0, "b": 2.0, "c": 3.0}
    tau = tau_between_levels(ranks)
    tau = tau[tau["protocol"] == "roar"].set_index(["level", "fraction"])["tau"]
    np.testing.assert_allclose(tau.loc["gaussian σ=1"], [1.0, 1.0])
    np.testing.assert_allclose(tau.loc["gaussian σ=4"], [-1.0, -1.0])


def test_kendall_w_across_fractions_and_protocol_agreement():
    ranks = method_ranks(_ranking_rows())
    w = kendall_w_fractions(ranks).set_index(["protocol", "level"])
    assert w.loc[("roar", "identity"), "W"] == pytest.approx(1.0) and w.loc[("roar", "identity"), "n_fractions"] == 2
    agree = tau_between_protocols(ranks)
    raw = agree[(agree["level"] == "identity") & (agree["fraction"] == "all")].iloc[0]
    assert (raw.protocol_a, raw.protocol_b, raw.n_methods) == ("roar", "kar", 3)
    assert raw.tau == pytest.approx(-1.0)           # kar's direction flips the order of the same drops


def test_search_rows_are_left_out_of_the_grid_analyses():
    ok = from_table(fake_results(seed=1, search=True, n_seeds=2)).ok
    assert ok["study"].notna().any()
    assert paired_differences(ok)["level"].isin(["gaussian σ=1", "gaussian σ=2", "gaussian σ=4"]).all()
    assert not method_ranks(ok)["level"].str.contains("gamma").any()
    assert not protocol_results(ok)["level"].str.contains("σ=5").any()


def test_gaming_finds_the_planted_best_transform():
    ok = from_table(fake_results(seed=3, effect=1.0, search=True, n_seeds=2)).ok
    g = gaming_table(ok)
    assert len(g) == 4 and (g["best_level"] == "gaussian σ=5").all() and (g["gain"] > 0.1).all()
    assert (g["raw_source"] == "search").all() and (g["n_transforms"] == 5).all()


def test_gaming_ranking_change_and_raw_score_from_the_sweep():
    rows = [{"attribution": "a", "seed": s, "accuracy": 0.6, "base_accuracy": 0.9} for s in (0, 1)]      # raw a: 0.3
    rows += [{"attribution": "b", "seed": s, "accuracy": 0.7, "base_accuracy": 0.9} for s in (0, 1)]     # raw b: 0.2
    rows += [{"attribution": "a", "study": "g-a", "search_trial": 0, "postprocess": "gaussian", "sigma": 1.0,
              "accuracy": 0.65, "base_accuracy": 0.9},
             {"attribution": "b", "study": "g-b", "search_trial": 0, "postprocess": "max_filter", "filter_size": 5,
              "accuracy": 0.5, "base_accuracy": 0.9},
             {"attribution": "b", "study": "g-b", "search_trial": 1, "postprocess": "gaussian", "sigma": 3.0,
              "accuracy": 0.8, "base_accuracy": 0.9}]
    g = gaming_table(from_table(make_rows(rows)).ok).set_index("attribution")
    assert g.loc["b", "best_level"] == "max_filter 5px" and g.loc["b", "best_score"] == pytest.approx(0.4)
    assert g.loc["b", "raw_source"] == "sweep" and g.loc["b", "gain"] == pytest.approx(0.2)
    assert g.loc["a", "gain"] == pytest.approx(-0.05)
    change = gaming_rankings(g.reset_index()).iloc[0]
    assert change.raw_order == "a > b" and change.gamed_order == "b > a" and bool(change.ranking_changed)
    assert change.tau == pytest.approx(-1.0)


def test_leakage_flags_masks_that_predict_the_label_next_to_scores():
    rows = [{"attribution": "a", "protocol": "leakage", "leakage_accuracy": 0.8, "chance_accuracy": 0.1,
             "n_test": 1000},
            {"attribution": "b", "protocol": "leakage", "leakage_accuracy": 0.12, "chance_accuracy": 0.1,
             "n_test": 1000},
            {"attribution": "a", "accuracy": 0.5, "base_accuracy": 0.9},
            {"attribution": "b", "accuracy": 0.8, "base_accuracy": 0.9}]
    t = leakage_table(from_table(make_rows(rows)).ok).set_index("attribution")
    assert bool(t.loc["a", "leaks"]) and not bool(t.loc["b", "leaks"])
    assert t.loc["a", "margin"] == pytest.approx(0.7) and t.loc["a", "score_roar"] == pytest.approx(0.4)
    assert leakage_table(from_table(make_rows(rows[2:])).ok).empty


def test_sanity_verdicts():
    rows = [{"attribution": "a", "protocol": "sanity", "seed": s, "sanity_rank_corr": 0.1, "sanity_passed": True}
            for s in (0, 1)]
    rows += [{"attribution": "sobel", "protocol": "sanity", "seed": s, "sanity_rank_corr": 1.0,
              "sanity_passed": False} for s in (0, 1)]
    t = sanity_table(from_table(make_rows(rows)).ok).set_index("attribution")
    assert t.loc["a", "verdict"] == "pass" and t.loc["sobel", "verdict"] == "FAIL"
    assert t.loc["sobel", "rank_corr"] == pytest.approx(1.0) and t.loc["a", "n"] == 2


def test_curves_and_fidelity_count_each_map_set_once():
    ok = from_table(fake_results(seed=4, protocols=("mif", "lif"), n_seeds=3, fractions=(0.2, 0.8),
                                 sigmas=(0.0,), methods=("a", "b"))).ok
    curves = curve_table(ok)
    assert sorted(curves["fraction"].unique()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(curves) == 2 * 2 * 5 and (curves["n_seeds"] == 3).all()
    fid = fidelity_table(ok)
    assert len(fid) == 2 and (fid["n_seeds"] == 3).all()
    # rows of both fractions and both protocols carry the one fidelity of their seed
    per_seed = ok[ok["attribution"] == "a"].groupby("seed")["fidelity"].first().mean()
    assert fid.set_index("attribution").loc["a", "fidelity"] == pytest.approx(per_seed)


def test_leakage_rows_keep_a_null_accuracy_drop():
    ok = from_table(make_rows([{"protocol": "leakage", "accuracy": 0.7, "base_accuracy": 0.9,
                                "leakage_accuracy": 0.7}])).ok
    assert ok["accuracy_drop"].isna().all() and ok["score"].isna().all()
