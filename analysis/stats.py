"""Statistics as pure functions over NumPy arrays (no pandas): the kernels under the table layer.

Every function takes plain arrays and returns floats or arrays, NaN where the statistic is undefined
(too few values, a constant input), never an exception for small or degenerate data: a report over a
half-finished sweep must still render.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as _st


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r}: a confidence level must lie strictly between 0 and 1, e.g. 0.95")
    return float(_st.norm.ppf(0.5 + level / 2.0))


def wilson_ci(successes, n, level: float = 0.95):
    """Wilson score interval of a binomial proportion. Arrays broadcast; n = 0 gives (NaN, NaN)."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    z = _z(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low, high = centre - half, centre + half
    bad = n <= 0
    low = np.where(bad, np.nan, np.clip(low, 0.0, 1.0))
    high = np.where(bad, np.nan, np.clip(high, 0.0, 1.0))
    return (float(low), float(high)) if low.ndim == 0 else (low, high)


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error). NaN entries stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def mean_ci(values, level: float = 0.95):
    """(mean, low, high): Student-t interval of the mean; fewer than two finite values give NaN bounds."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, np.nan, np.nan
    half = float(_st.t.ppf(0.5 + level / 2.0, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half


# Intervals across seeds (independent replicates: base model, maps, retrain). Fewer than this many seeds
# give no interval: with two, a t interval has one degree of freedom (half-width 12.7 standard errors)
# and a bootstrap has three distinct resamples.
MIN_SEEDS_FOR_INTERVAL = 3


def _t_interval(v: np.ndarray, level: float, seed: int) -> tuple[float, float]:
    half = float(_st.t.ppf(0.5 + level / 2.0, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return v.mean() - half, v.mean() + half


def _bootstrap_interval(v: np.ndarray, level: float, seed: int, n_boot: int = 4000) -> tuple[float, float]:
    means = v[np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


# How an interval across seeds is computed, keyed by the name accepted by analyze(..., interval=...);
# the description is what the report prints.
SEED_INTERVALS = {"t": _t_interval, "bootstrap": _bootstrap_interval}
INTERVAL_DESCRIPTIONS = {
    "t": "Student-t interval of the mean across seeds (exact when seed-to-seed variation is normal)",
    "bootstrap": "percentile bootstrap of the mean across seeds (4,000 resamples; reliable from about 10 seeds)",
}
assert set(SEED_INTERVALS) == set(INTERVAL_DESCRIPTIONS)


def seed_ci(values, level: float = 0.95, method: str = "t", bounds=(-np.inf, np.inf), seed: int = 0):
    """(mean, low, high) of one value per seed, the interval clipped to the quantity's range ``bounds``
    (e.g. (0, 1) for an accuracy). Fewer than MIN_SEEDS_FOR_INTERVAL finite values give NaN bounds."""
    if method not in SEED_INTERVALS:
        raise KeyError(f"interval={method!r} unknown; valid: {sorted(SEED_INTERVALS)}")
    _z(level)
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(v.mean())
    if v.size < MIN_SEEDS_FOR_INTERVAL:
        return mean, np.nan, np.nan
    low, high = SEED_INTERVALS[method](v, level, seed)
    return mean, float(np.clip(low, *bounds)), float(np.clip(high, *bounds))


def seed_ci_groups(values, groups, level: float = 0.95, method: str = "t", bounds=(-np.inf, np.inf),
                   seed: int = 0):
    """seed_ci for many groups at once: ``groups`` labels each value with its group (integer codes
    0..G-1). Returns (mean, low, high, n) arrays of length G; the t interval is vectorised, a bootstrap
    loops over the groups."""
    if method not in SEED_INTERVALS:
        raise KeyError(f"interval={method!r} unknown; valid: {sorted(SEED_INTERVALS)}")
    _z(level)
    v = np.asarray(values, dtype=float)
    g = np.asarray(groups, dtype=int)
    size = int(g.max()) + 1 if g.size else 0
    ok = np.isfinite(v)
    n = np.bincount(g[ok], minlength=size).astype(float)
    total = np.bincount(g[ok], weights=v[ok], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        dev = np.bincount(g[ok], weights=(v[ok] - mean[g[ok]]) ** 2, minlength=size)
        sd = np.sqrt(dev / (n - 1))
    low = np.full(size, np.nan)
    high = np.full(size, np.nan)
    enough = n >= MIN_SEEDS_FOR_INTERVAL
    if method == "t" and enough.any():
        half = _st.t.ppf(0.5 + level / 2.0, n[enough] - 1) * sd[enough] / np.sqrt(n[enough])
        low[enough], high[enough] = mean[enough] - half, mean[enough] + half
    elif enough.any():
        for i in np.flatnonzero(enough):
            low[i], high[i] = SEED_INTERVALS[method](v[ok & (g == i)], level, seed)
    return mean, np.clip(low, *bounds), np.clip(high, *bounds), n.astype(int)


def spearman(x, y) -> float:
    """Spearman rank correlation; NaN when fewer than three pairs or a constant input."""
    x, y = _finite_pairs(x, y)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(_st.spearmanr(x, y).statistic)


def spearman_p(x, y) -> float:
    """Two-sided p of Spearman's rho assuming independent pairs (rows within a seed are not: see docs)."""
    x, y = _finite_pairs(x, y)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(_st.spearmanr(x, y).pvalue)


def _finite_pairs(x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, found {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _weighted_midranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Midranks of x in the sample that repeats row i w[b, i] times, for every row b of w.

    Equal to scipy's average ranks of the expanded sample, without materialising it, so a bootstrap
    over groups is one matrix operation.
    """
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    tie_id = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    group_w = np.add.reduceat(w[:, order], starts, axis=1)
    below = np.cumsum(group_w, axis=1) - group_w
    ranks_sorted = (below + (group_w + 1.0) / 2.0)[:, tie_id]
    ranks = np.empty_like(ranks_sorted)
    ranks[:, order] = ranks_sorted
    return ranks


def _weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1, keepdims=True)
    ma = (w * a).sum(axis=1, keepdims=True) / total
    mb = (w * b).sum(axis=1, keepdims=True) / total
    cov = (w * (a - ma) * (b - mb)).sum(axis=1)
    va = (w * (a - ma) ** 2).sum(axis=1)
    vb = (w * (b - mb) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(va * vb)


def spearman_bootstrap(x, y, groups, n_boot: int = 1000, level: float = 0.95, seed: int = 0):
    """Spearman rho with a percentile bootstrap CI that resamples whole groups (seeds) with replacement.

    Rows of one seed share a base model and its maps, so they are resampled together. Returns
    (rho, low, high, n_groups); the CI is NaN with fewer than MIN_SEEDS_FOR_INTERVAL groups.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    g = np.asarray(groups)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, g = x[keep], y[keep], g[keep]
    rho = spearman(x, y)
    labels, gidx = np.unique(g, return_inverse=True) if g.size else (np.array([]), np.array([], int))
    n_groups = int(labels.size)
    if n_groups < MIN_SEEDS_FOR_INTERVAL or not np.isfinite(rho):
        return rho, np.nan, np.nan, n_groups
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot).astype(float)
    w = counts[:, gidx]
    boot = _weighted_pearson(_weighted_midranks(x, w), _weighted_midranks(y, w), w)
    boot = boot[np.isfinite(boot)]
    if boot.size < max(10, n_boot // 10):
        return rho, np.nan, np.nan, n_groups
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return rho, float(low), float(high), n_groups


def kendall_tau(a, b) -> float:
    """Kendall tau-b between two scorings of the same items (1 identical order, -1 reversed).

    NaN with fewer than two items or a constant scoring.
    """
    a, b = _finite_pairs(a, b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return np.nan
    return float(_st.kendalltau(a, b).statistic)


def average_ranks(scores, higher_is_better: bool = True) -> np.ndarray:
    """Ranks along the last axis, 1 = best, ties share the average rank."""
    s = np.asarray(scores, dtype=float)
    return _st.rankdata(-s if higher_is_better else s, axis=-1, method="average")


def kendall_w(scores) -> float:
    """Kendall's coefficient of concordance of m raters (rows) scoring n items (columns), tie-corrected.

    1 = every rater orders the items the same way, 0 = no agreement. Rows with a NaN are dropped;
    NaN when fewer than two raters or two items remain.
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (raters x items), found shape {s.shape}")
    s = s[np.all(np.isfinite(s), axis=1)]
    m, n = s.shape
    if m < 2 or n < 2:
        return np.nan
    ranks = _st.rankdata(s, axis=1, method="average")
    spread = ((ranks.sum(axis=0) - m * (n + 1) / 2.0) ** 2).sum()
    ties = 0.0
    for row in s:  # m raters, tiny: tie groups per rater
        _, t = np.unique(row, return_counts=True)
        ties += float((t ** 3 - t).sum())
    denom = m * m * (n ** 3 - n) - m * ties
    return float(12.0 * spread / denom) if denom > 0 else np.nan


def sign_test(diffs) -> float:
    """Two-sided exact sign test of median difference 0; zeros are dropped. NaN when nothing is left."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return np.nan
    return float(_st.binomtest(int((d > 0).sum()), int(d.size), 0.5).pvalue)


def wilcoxon_test(diffs) -> float:
    """Two-sided Wilcoxon signed-rank p (exact for small n); zeros dropped. NaN when nothing is left."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return np.nan
    return float(_st.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


# Paired tests across seeds, keyed by the name used in write_report(..., test=...).
PAIRED_TESTS = {"wilcoxon": wilcoxon_test, "sign": sign_test}
