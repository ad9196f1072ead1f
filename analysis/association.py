"""How strongly does the blurriness of the maps predict the benchmark score? Tidy DataFrames.

Blurriness is a blur measure turned so that higher = blurrier (``analysis.scoring.BLUR_DIRECTION``):
for the spectral centroid, blurriness = -centroid in cycles/pixel. A positive rho or slope therefore
means blurrier maps get better scores. All fits are per protocol, because the score means something
different under each protocol.

Clustering: rows that share a maps artifact (dataset, setup, method, seed) share one base model and one
set of attribution maps, so their errors are correlated; that artifact is the cluster of the
cluster-robust OLS errors (``CLUSTERS['maps']``). It is finer than method x dataset (which gives too few
clusters for a sandwich estimator with a handful of methods) and coarser than a row. Inference uses a
t distribution with G - 1 degrees of freedom (G clusters).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from .schema import BLUR_COLUMNS
from .scoring import blurriness, protocol_order, scored
from .stats import holm, spearman_bootstrap, spearman_p

# Cluster definitions for the robust OLS errors, keyed by the name accepted by ols_association.
CLUSTERS: dict[str, list[str]] = {
    "maps": ["dataset", "setup", "attribution", "seed"],
    "method_dataset": ["dataset", "setup", "attribution"],
    "seed": ["dataset", "setup", "seed"],
}
DEFAULT_MEASURE = "blur_spectral_centroid"
CELL = ["dataset", "setup", "protocol", "fraction"]


def available_measures(df: pd.DataFrame) -> list[str]:
    """Blur columns with at least three finite values among scored rows."""
    s = scored(df)
    return [c for c in BLUR_COLUMNS if c in s and np.isfinite(s[c].astype(float)).sum() >= 3]


def spearman_table(df: pd.DataFrame, measures=None, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0) -> pd.DataFrame:
    """Spearman rho between blurriness and score per (dataset, setup, protocol, fraction, measure).

    CI: percentile bootstrap resampling seeds (all rows of a seed together). ``p`` treats rows as
    independent (optimistic; the CI does not); ``p_holm`` adjusts it over the whole table.
    """
    s = scored(df)
    measures = available_measures(df) if measures is None else list(measures)
    out = []
    for keys, cell in s.groupby(CELL, dropna=False, sort=True):
        for m in measures:
            x = blurriness(cell, m).to_numpy()
            y = cell["score"].to_numpy(float)
            rho, low, high, n_groups = spearman_bootstrap(x, y, cell["seed"].to_numpy(), n_boot, level, seed)
            out.append({**dict(zip(CELL, keys)), "measure": m, "rho": rho, "ci_low": low, "ci_high": high,
                        "p": spearman_p(x, y), "n_rows": int(np.isfinite(x).sum()), "n_seeds": n_groups})
    cols = CELL + ["measure", "rho", "ci_low", "ci_high", "p", "p_holm", "n_rows", "n_seeds"]
    table = pd.DataFrame(out, columns=[c for c in cols if c != "p_holm"])
    table.insert(table.columns.get_loc("p") + 1, "p_holm", holm(table["p"].to_numpy(float)))
    return table[cols]


def _design(df: pd.DataFrame, measure: str) -> tuple[pd.DataFrame, str]:
    """Model frame and formula: only terms that vary are included (a constant term is singular)."""
    # only the model's columns: formula handling scans every column of the frame it is given
    d = df[["score", "fraction", "attribution", "dataset", "setup", "seed"]].assign(blurriness=blurriness(df, measure))
    d = d[np.isfinite(d["blurriness"]) & np.isfinite(d["score"].astype(float))].copy()
    terms = ["blurriness"]
    if d["fraction"].nunique() > 1:
        terms.append("fraction")
    for col in ("attribution", "dataset", "setup"):
        if d[col].nunique() > 1:
            d[col] = d[col].astype(str)
            terms.append(f"C({col})")
    return d, "score ~ " + " + ".join(terms)


def _degenerate(d: pd.DataFrame) -> str:
    """Why a fit on d would be meaningless, or '' when it is fine."""
    if len(d) < 5:
        return f"too little data: {len(d)} rows with a finite score and blurriness"
    if d["blurriness"].nunique() < 2:
        return "too little data: blurriness is constant"
    if float(d["score"].std()) <= 1e-12 * max(1.0, float(d["score"].abs().max())):
        return "singular fit: the score is constant"
    return ""


_OLS_COLUMNS = ["protocol", "measure", "slope", "se", "ci_low", "ci_high", "p", "sd_blurriness",
                "slope_per_sd", "ci_low_per_sd", "ci_high_per_sd", "r2", "n_rows", "n_clusters", "cluster",
                "formula", "error"]


def _nan_row(protocol, measure, cluster, error, n_rows=0, formula="") -> dict:
    row = {c: np.nan for c in _OLS_COLUMNS}
    row.update(protocol=protocol, measure=measure, cluster=cluster, error=error, n_rows=n_rows,
               formula=formula, n_clusters=0)
    return row


def ols_association(df: pd.DataFrame, measure: str = DEFAULT_MEASURE, cluster: str = "maps",
                    level: float = 0.95) -> pd.DataFrame:
    """Pooled OLS ``score ~ blurriness + fraction + C(attribution) + C(dataset)`` per protocol.

    ``slope``: score change per unit of blurriness (the measure's unit, sign turned); ``slope_per_sd``
    the same per standard deviation of blurriness among the rows fitted. Errors are cluster-robust
    over ``CLUSTERS[cluster]``; with fewer than two clusters the row reports the error instead.
    """
    if cluster not in CLUSTERS:
        raise KeyError(f"cluster={cluster!r} unknown; valid: {sorted(CLUSTERS)}")
    s = scored(df)
    out = []
    for protocol in protocol_order(s["protocol"].unique()) if not s.empty else []:
        d, formula = _design(s[s["protocol"] == protocol], measure)
        groups = d.groupby(CLUSTERS[cluster], dropna=False, sort=False).ngroup().to_numpy()
        n_clusters = int(np.unique(groups).size)
        problem = _degenerate(d)
        if problem or n_clusters < 2:
            out.append(_nan_row(protocol, measure, cluster, problem or f"too little data: {n_clusters} cluster",
                                len(d), formula))
            continue
        try:
            fit = smf.ols(formula, d).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
            low, high = fit.conf_int(alpha=1 - level).loc["blurriness"]
        except (ValueError, np.linalg.LinAlgError) as exc:
            out.append(_nan_row(protocol, measure, cluster, f"{type(exc).__name__}: {exc}", len(d), formula))
            continue
        if not (np.isfinite(fit.bse["blurriness"]) and fit.bse["blurriness"] > 0):
            out.append(_nan_row(protocol, measure, cluster, "singular fit: standard error of the slope is "
                                f"{fit.bse['blurriness']}", len(d), formula))
            continue
        sd = float(d["blurriness"].std(ddof=1))
        slope = float(fit.params["blurriness"])
        out.append({"protocol": protocol, "measure": measure, "slope": slope, "se": float(fit.bse["blurriness"]),
                    "ci_low": float(low), "ci_high": float(high), "p": float(fit.pvalues["blurriness"]),
                    "sd_blurriness": sd, "slope_per_sd": slope * sd, "ci_low_per_sd": float(low) * sd,
                    "ci_high_per_sd": float(high) * sd, "r2": float(fit.rsquared), "n_rows": int(len(d)),
                    "n_clusters": n_clusters, "cluster": cluster, "formula": formula, "error": ""})
    return pd.DataFrame(out, columns=_OLS_COLUMNS)


_MIXED_COLUMNS = ["protocol", "measure", "slope", "se", "ci_low", "ci_high", "p", "group_var", "n_rows",
                  "n_groups", "converged", "formula", "warning", "error"]


def mixed_association(df: pd.DataFrame, measure: str = DEFAULT_MEASURE, level: float = 0.95) -> pd.DataFrame:
    """Mixed model ``score ~ blurriness + fraction (+ C(dataset))`` with a random intercept per
    method x dataset (x setup), per protocol, fitted by REML.

    Failures (singular fits, too few groups, non-convergence) give a row with NaN estimates and the
    reason in ``error`` / ``warning`` instead of an exception. A random-intercept variance of ~0 is a
    boundary fit and is flagged in ``warning``.
    """
    from scipy import stats as st

    s = scored(df)
    out = []
    for protocol in protocol_order(s["protocol"].unique()) if not s.empty else []:
        d, _ = _design(s[s["protocol"] == protocol], measure)
        terms = ["blurriness"] + (["fraction"] if d["fraction"].nunique() > 1 else [])
        terms += [f"C({c})" for c in ("dataset", "setup") if d[c].nunique() > 1]
        formula = "score ~ " + " + ".join(terms)
        groups = d["attribution"].astype(str) + "|" + d["dataset"].astype(str) + "|" + d["setup"].astype(str)
        row = {c: np.nan for c in _MIXED_COLUMNS}
        row.update(protocol=protocol, measure=measure, n_rows=len(d), n_groups=int(groups.nunique()),
                   formula=formula, warning="", error="", converged=False)
        problem = _degenerate(d)
        if problem or row["n_groups"] < 2:
            row["error"] = problem or f"too little data: {len(d)} rows in {row['n_groups']} method x dataset groups"
            out.append(row)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fit = smf.mixedlm(formula, d, groups=groups.to_numpy()).fit(reml=True, method=["lbfgs", "powell"])
                slope, se = float(fit.fe_params["blurriness"]), float(fit.bse_fe["blurriness"])
                z = st.norm.ppf(0.5 + level / 2)
                row.update(slope=slope, se=se, ci_low=slope - z * se, ci_high=slope + z * se,
                           p=float(fit.pvalues["blurriness"]), group_var=float(np.asarray(fit.cov_re)[0, 0]),
                           converged=bool(fit.converged))
            except (ValueError, np.linalg.LinAlgError, IndexError, KeyError) as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
        notes = sorted({type(w.message).__name__ + ": " + str(w.message).splitlines()[0] for w in caught})
        if np.isfinite(row["group_var"]) and row["group_var"] < 1e-10:
            notes.append("boundary fit: random-intercept variance is ~0")
        if not row["error"] and not (np.isfinite(row["se"]) and row["se"] > 0):
            row.update(slope=np.nan, ci_low=np.nan, ci_high=np.nan, p=np.nan,
                       error=f"singular fit: standard error of the slope is {row['se']}")
        row["warning"] = " | ".join(notes)[:500]
        out.append(row)
    return pd.DataFrame(out, columns=_MIXED_COLUMNS)
