"""The statistics kernels of analysis.stats against hand-computed values and looped references."""
import numpy as np
import pytest
from scipy import stats as st

from analysis import stats


def test_holm_matches_hand_computation():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    got = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02])


def test_holm_keeps_nan_out_of_the_family_and_caps_at_one():
    got = stats.holm([0.02, np.nan, 0.5])
    np.testing.assert_allclose(got, [0.04, np.nan, 0.5])
    np.testing.assert_allclose(stats.holm([0.6, 0.7]), [1.0, 1.0])
    assert np.isnan(stats.holm([np.nan])).all()


def test_wilson_interval_known_values():
    low, high = stats.wilson_ci(5, 10)
    assert low == pytest.approx(0.23659, abs=1e-4) and high == pytest.approx(0.76341, abs=1e-4)
    low, high = stats.wilson_ci(0, 20)
    assert low == 0.0 and high == pytest.approx(0.16113, abs=1e-4)
    lows, highs = stats.wilson_ci(np.array([5, 1]), np.array([10, 0]))
    assert lows[0] == pytest.approx(0.23659, abs=1e-4) and np.isnan(lows[1]) and np.isnan(highs[1])


def test_wilson_rejects_a_bad_level():
    with pytest.raises(ValueError, match="level"):
        stats.wilson_ci(1, 2, level=95)


def test_kendall_tau_identical_reversed_and_degenerate():
    a = np.array([0.3, 0.1, 0.5, 0.2])
    assert stats.kendall_tau(a, a * 2 + 1) == pytest.approx(1.0)
    assert stats.kendall_tau(a, -a) == pytest.approx(-1.0)
    assert np.isnan(stats.kendall_tau([1.0], [2.0]))
    assert np.isnan(stats.kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_kendall_w_identical_opposite_and_ties():
    identical = np.array([[0.9, 0.5, 0.1, 0.3]] * 3)
    assert stats.kendall_w(identical) == pytest.approx(1.0)
    opposite = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    assert stats.kendall_w(opposite) == pytest.approx(0.0)
    # tie-corrected: identical rankings with a tie are still in perfect agreement
    tied = np.array([[1.0, 1.0, 2.0, 3.0]] * 4)
    assert stats.kendall_w(tied) == pytest.approx(1.0)
    assert np.isnan(stats.kendall_w(np.array([[1.0, 2.0]])))


def test_kendall_w_against_formula_on_a_small_case():
    # raters x items; rank sums R = [4, 5, 9] for m=3, n=3: S = sum (R - 6)^2 = 4 + 1 + 9 = 14
    scores = np.array([[1, 2, 3], [1, 2, 3], [2, 1, 3]], dtype=float)
    assert stats.kendall_w(scores) == pytest.approx(12 * 14 / (9 * 24))


def test_sign_and_wilcoxon_exact_p():
    assert stats.sign_test([1, 2, 3, -1]) == pytest.approx(0.625)
    assert stats.wilcoxon_test([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)
    assert stats.sign_test([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)
    assert np.isnan(stats.wilcoxon_test([0.0, 0.0])) and np.isnan(stats.sign_test([]))


def test_mean_ci_student_t():
    mean, low, high = stats.mean_ci([1.0, 2.0, 3.0])
    half = st.t.ppf(0.975, 2) / np.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    mean, low, high = stats.mean_ci([4.0, np.nan])
    assert mean == 4.0 and np.isnan(low) and np.isnan(high)


def test_weighted_midranks_equal_ranks_of_the_expanded_sample():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=12).astype(float)          # many ties
    w = rng.integers(0, 3, size=(6, 12)).astype(float)
    w[:, 0] = 1                                            # no empty sample
    got = stats._weighted_midranks(x, w)
    for b in range(w.shape[0]):
        reps = w[b].astype(int)
        expanded = st.rankdata(np.repeat(x, reps))
        starts = np.r_[0, np.cumsum(reps)[:-1]]
        for i in np.flatnonzero(reps):
            assert got[b, i] == pytest.approx(expanded[starts[i]])


def test_bootstrap_rho_equals_spearman_of_the_resampled_rows():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=30), rng.normal(size=30)
    groups = np.repeat(np.arange(5), 6)
    rho, low, high, n = stats.spearman_bootstrap(x, y, groups, n_boot=300, seed=3)
    assert rho == pytest.approx(st.spearmanr(x, y).statistic) and n == 5
    # looped reference for the first resample
    counts = np.random.default_rng(3).multinomial(5, np.full(5, 0.2), size=300)[0]
    idx = np.concatenate([np.flatnonzero(groups == g).repeat(1) for g in range(5) for _ in range(counts[g])])
    w = counts[groups].astype(float)[None]
    fast = stats._weighted_pearson(stats._weighted_midranks(x, w), stats._weighted_midranks(y, w), w)[0]
    assert fast == pytest.approx(st.spearmanr(x[idx], y[idx]).statistic)
    assert low < rho < high


def test_bootstrap_degenerate_inputs_give_nan_ci():
    x = np.arange(10.0)
    rho, low, high, n = stats.spearman_bootstrap(x, x, np.zeros(10), n_boot=50)
    assert rho == pytest.approx(1.0) and n == 1 and np.isnan(low) and np.isnan(high)
    rho, low, high, n = stats.spearman_bootstrap(x, 2 * x, np.arange(10) % 5, n_boot=50)
    assert (rho, low, high) == pytest.approx((1.0, 1.0, 1.0))
    assert np.isnan(stats.spearman([1.0, 2.0], [1.0, 2.0]))
