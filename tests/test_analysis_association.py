"""Blurriness-score association: planted slopes are recovered, intervals across seeds cover, null data
rejects at about the nominal rate, no interval below 3 seeds, and degenerate fits give NaN rows instead
of exceptions."""
import warnings

import numpy as np
import pytest

from analysis.association import mixed_association, ols_association, spearman_table
from analysis.io import from_table
from analysis.testing import fake_results, make_rows

SMALL = dict(n_seeds=4, sigmas=(0.0, 2.0), fractions=(0.2, 0.8), noise=0.02, methods=("a", "b", "c", "d"))


def _ok(**kw):
    return from_table(fake_results(**kw)).ok


def test_ols_recovers_the_planted_slope_within_its_ci():
    r = ols_association(_ok(seed=0, effect=0.8, n_seeds=5)).iloc[0]
    assert r.protocol == "roar" and r.interval == "t" and r.n_seeds == 5 and r.error == ""
    assert r.ci_low <= 0.8 <= r.ci_high and r.ci_high - r.ci_low < 0.2
    assert r.slope_per_sd == pytest.approx(r.slope * r.sd_blurriness)
    assert "C(attribution)" in r.formula and "fraction" in r.formula


def test_ols_ci_covers_the_truth_in_about_95_percent_of_replicates():
    covered = [(lambda r: r.ci_low <= 0.5 <= r.ci_high)(ols_association(_ok(seed=s, effect=0.5, **SMALL)).iloc[0])
               for s in range(50)]
    assert np.mean(covered) >= 0.88


def test_null_data_is_significant_at_about_the_nominal_rate():
    p = [ols_association(_ok(seed=100 + s, effect=0.0, **SMALL)).iloc[0].p for s in range(60)]
    assert np.mean(np.array(p) < 0.05) <= 0.15
    # and the p-values are not degenerate: a real spread over (0, 1)
    assert 0.2 < np.median(p) < 0.8


def test_ols_per_protocol_and_with_two_datasets():
    ok = _ok(seed=1, effect=1.0, protocols=("roar", "kar"), datasets=("d1", "d2"), n_seeds=3)
    t = ols_association(ok)
    assert list(t["protocol"]) == ["roar", "kar"]
    assert all("C(dataset)" in f for f in t["formula"])
    # KAR scores are minus the accuracy drop; the planted slope is on the score in both protocols
    assert (abs(t["slope"] - 1.0) < 3 * t["se"]).all() and (t["se"] < 0.05).all()


def test_ols_bootstrap_interval_and_unknown_interval():
    ok = _ok(seed=3, effect=1.0, n_seeds=5)
    r = ols_association(ok, interval="bootstrap").iloc[0]
    t = ols_association(ok).iloc[0]
    assert r.interval == "bootstrap" and r.slope == pytest.approx(t.slope) and r.ci_low <= r.slope <= r.ci_high
    # a bootstrap of 5 per-seed slopes stays inside their range; the t interval need not
    assert t.ci_low <= r.ci_low and r.ci_high <= t.ci_high
    with pytest.raises(KeyError, match="interval='bogus'"):
        ols_association(ok, interval="bogus")


@pytest.mark.parametrize("n_seeds", [1, 2])
def test_ols_below_three_seeds_has_a_slope_but_no_interval(n_seeds):
    r = ols_association(_ok(seed=8, effect=0.8, n_seeds=n_seeds)).iloc[0]
    assert abs(r.slope - 0.8) < 0.1 and r.n_seeds == n_seeds
    assert np.isnan(r.ci_low) and np.isnan(r.ci_high) and np.isnan(r.p) and np.isnan(r.se)
    assert f"no interval: {n_seeds} seed(s)" in r.error


def test_ols_slope_is_the_mean_of_the_per_seed_slopes():
    ok = _ok(seed=9, effect=0.5, n_seeds=3)
    per_seed = [ols_association(ok[ok["seed"] == s]).iloc[0].slope for s in range(3)]
    r = ols_association(ok).iloc[0]
    assert r.slope == pytest.approx(np.mean(per_seed))
    assert r.se == pytest.approx(np.std(per_seed, ddof=1) / np.sqrt(3))


def test_ols_with_too_little_data_gives_a_nan_row():
    ok = from_table(make_rows([{"seed": s, "accuracy": 0.5, "base_accuracy": 0.9, "blur_spectral_centroid": 0.1}
                               for s in range(2)])).ok
    r = ols_association(ok).iloc[0]
    assert np.isnan(r.slope) and "too little data" in r.error


def test_mixed_model_recovers_the_slope():
    r = mixed_association(_ok(seed=4, effect=0.8, n_seeds=4)).iloc[0]
    assert r.error == "" and r.n_groups == 4 and abs(r.slope - 0.8) < 0.1
    assert "ci_low" not in r.index     # no model-based interval: methods share a base model


def test_mixed_model_failures_are_rows_not_exceptions():
    one_method = _ok(seed=5, effect=0.5, methods=("only",))
    r = mixed_association(one_method).iloc[0]
    assert np.isnan(r.slope) and "method x dataset groups" in r.error
    # constant blurriness within every group and no variation of the score: singular, must not raise
    ok = _ok(seed=6, effect=0.0, noise=0.0, cluster_sd=0.0, sigmas=(0.0,))
    ok["score"] = 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # no warning may escape the fit
        t = mixed_association(ok)
        o = ols_association(ok)
    assert len(t) == 1 and np.isnan(t["slope"].iloc[0]) and "singular" in t["error"].iloc[0]
    assert np.isnan(o["slope"].iloc[0]) and "singular" in o["error"].iloc[0]


def test_spearman_per_cell_has_bootstrap_cis_over_seeds():
    ok = _ok(seed=7, effect=3.0, n_seeds=5, noise=0.005, cluster_sd=0.0, methods=("a",))
    t = spearman_table(ok, n_boot=200)
    assert set(t["measure"]) == {"blur_spectral_centroid", "blur_total_variation", "blur_hf_energy"}
    cent = t[t["measure"] == "blur_spectral_centroid"]
    assert len(cent) == 3 and (cent["n_seeds"] == 5).all() and (cent["n_rows"] == 5 * 4).all()
    # one method, a strong planted effect: blurrier maps score higher in every fraction
    assert (cent["rho"] > 0.8).all() and (cent["ci_low"] > 0.5).all()
    assert "p" not in t and "p_holm" not in t       # rows of a seed are not independent: no row-level test


def test_spearman_has_no_interval_below_three_seeds():
    ok = _ok(seed=7, effect=3.0, n_seeds=2, noise=0.005, cluster_sd=0.0, methods=("a",))
    t = spearman_table(ok, n_boot=200)
    assert (t["n_seeds"] == 2).all() and t["rho"].notna().all() and t["ci_low"].isna().all()
