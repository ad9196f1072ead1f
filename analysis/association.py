"""How strongly does the blurriness of the maps predict the benchmark score? Tidy DataFrames.

Blurriness is a blur measure turned so that higher = blurrier (``analysis.scoring.BLUR_DIRECTION``):
for the spectral centroid, blurriness = -centroid in cycles/pixel. A positive rho or slope therefore
means blurrier maps get better scores. All fits are per protocol, because the score means something
different under each protocol.

Inference is across seeds only. Every row of one seed shares that seed's base models, so the rows of a
seed are one replicate of the whole design, never independent observations: the OLS slope is fitted
once per seed and its interval is taken across the per-seed slopes (analysis.stats.seed_ci; none below
3 seeds); the Spearman CI resamples whole seeds. Fits are per setup and protocol: different setups are
never pooled (datasets enter the OLS as fixed effects, as the design asks). The mixed model is a point
estimate only: its model-based interval would treat methods that share a base model as independent.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from .schema import BLUR_COLUMNS
from .scoring import blurriness, protocol_order, scored
from .stats import MIN_SEEDS_FOR_INTERVAL, seed_ci, spearman_bootstrap

DEFAULT_MEASURE = "blur_spectral_centroid"
CELL = ["dataset", "setup", "protocol", "fraction"]


def available_measures(df: pd.DataFrame) -> list[str]:
    """Blur columns with at least three finite values among scored rows."""
    s = scored(df)
    return [c for c in BLUR_COLUMNS if c in s and np.isfinite(s[c].astype(float)).sum() >= 3]


def spearman_table(df: pd.DataFrame, measures=None, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0) -> pd.DataFrame:
    """Spearman rho between blurriness and score per (dataset, setup, protocol, fraction, measure).

    CI: percentile bootstrap resampling seeds (all rows of a seed together), from 3 seeds. No p-value:
    the rows of one seed are not independent, and a test that treated them so would be optimistic.
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
                        "n_rows": int(np.isfinite(x).sum()), "n_seeds": n_groups})
    cols = CELL + ["measure", "rho", "ci_low", "ci_high", "n_rows", "n_seeds"]
    return pd.DataFrame(out, columns=cols)


def _design(df: pd.DataFrame, measure: str) -> tuple[pd.DataFrame, str]:
    """Model frame and formula: only terms that vary are included (a constant term is singular)."""
    # only the model's columns: formula handling scans every column of the frame it is given
    d = df[["score", "fraction", "attribution", "dataset", "setup", "seed"]].assign(blurriness=blurriness(df, measure))
    d = d[np.isfinite(d["blurriness"]) & np.isfinite(d["score"].astype(float))].copy()
    terms = ["blurriness"]
    if d["fraction"].nunique() > 1:
        terms.append("fraction")
    for col in ("attribution", "dataset"):
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


_OLS_COLUMNS = ["setup", "protocol", "measure", "slope", "se", "ci_low", "ci_high", "p", "sd_blurriness",
                "slope_per_sd", "ci_low_per_sd", "ci_high_per_sd", "r2", "n_rows", "n_seeds", "interval",
                "formula", "error"]


def _nan_row(setup, protocol, measure, interval, error, n_rows=0, formula="", n_seeds=0) -> dict:
    row = {c: np.nan for c in _OLS_COLUMNS}
    row.update(setup=setup, protocol=protocol, measure=measure, interval=interval, error=error, n_rows=n_rows,
               formula=formula, n_seeds=n_seeds)
    return row


def _fits(s: pd.DataFrame):
    """(setup, protocol, rows) of every separate fit, protocols in registry order."""
    if s.empty:
        return
    for setup in sorted(s["setup"].astype(str).unique()):
        part = s[s["setup"].astype(str) == setup]
        for protocol in protocol_order(part["protocol"].unique()):
            yield setup, protocol, part[part["protocol"] == protocol]


def _seed_slope(d: pd.DataFrame, formula: str) -> tuple[float, float]:
    """(slope, R²) of one seed's OLS fit; NaN when that seed's rows cannot identify the slope."""
    if _degenerate(d):
        return np.nan, np.nan
    try:
        fit = smf.ols(formula, d).fit()
    except (ValueError, np.linalg.LinAlgError):
        return np.nan, np.nan
    slope = float(fit.params.get("blurriness", np.nan))
    return (slope, float(fit.rsquared)) if np.isfinite(slope) else (np.nan, np.nan)


def ols_association(df: pd.DataFrame, measure: str = DEFAULT_MEASURE, level: float = 0.95,
                    interval: str = "t") -> pd.DataFrame:
    """OLS ``score ~ blurriness + fraction + C(attribution) + C(dataset)`` per setup and protocol, fitted
    separately in each seed.

    ``slope``: mean over seeds of the per-seed slope: score change per unit of blurriness (the measure's
    unit, sign turned); ``slope_per_sd`` the same per standard deviation of blurriness among the rows.
    ``ci_low``/``ci_high``: analysis.stats.seed_ci of the per-seed slopes (``interval`` names the
    method); ``p``: one-sample t test of the per-seed slopes. Both need 3 seeds; with fewer the row has
    the slope and says why there is no interval in ``error``.
    """
    from scipy import stats as st

    s = scored(df)
    out = []
    for setup, protocol, rows in _fits(s):
        d, formula = _design(rows, measure)
        problem = _degenerate(d)
        n_seeds = int(d["seed"].nunique())
        if problem:
            out.append(_nan_row(setup, protocol, measure, interval, problem, len(d), formula, n_seeds))
            continue
        fits = [_seed_slope(part, formula) for _, part in d.groupby("seed", sort=True)]
        slopes = np.array([f[0] for f in fits])
        good = np.isfinite(slopes)
        if not good.any():
            out.append(_nan_row(setup, protocol, measure, interval, "singular fit: no seed identifies the slope",
                                len(d), formula, n_seeds))
            continue
        slope, low, high = seed_ci(slopes[good], level, interval)
        n_good = int(good.sum())
        se = float(slopes[good].std(ddof=1) / np.sqrt(n_good)) if n_good >= MIN_SEEDS_FOR_INTERVAL else np.nan
        p = float(st.ttest_1samp(slopes[good], 0.0).pvalue) if n_good >= MIN_SEEDS_FOR_INTERVAL and se > 0 \
            else np.nan
        sd = float(d["blurriness"].std(ddof=1))
        note = "" if n_good >= MIN_SEEDS_FOR_INTERVAL else (
            f"no interval: {n_good} seed(s); an interval across seeds needs {MIN_SEEDS_FOR_INTERVAL}")
        out.append({"setup": setup, "protocol": protocol, "measure": measure, "slope": slope, "se": se,
                    "ci_low": low, "ci_high": high, "p": p, "sd_blurriness": sd, "slope_per_sd": slope * sd,
                    "ci_low_per_sd": low * sd, "ci_high_per_sd": high * sd,
                    "r2": float(np.nanmean([f[1] for f in fits])), "n_rows": int(len(d)), "n_seeds": n_good,
                    "interval": interval, "formula": formula, "error": note})
    return pd.DataFrame(out, columns=_OLS_COLUMNS)


_MIXED_COLUMNS = ["setup", "protocol", "measure", "slope", "group_var", "n_rows", "n_groups", "converged",
                  "formula", "warning", "error"]


def mixed_association(df: pd.DataFrame, measure: str = DEFAULT_MEASURE) -> pd.DataFrame:
    """Mixed model ``score ~ blurriness + fraction (+ C(dataset))`` with a random intercept per
    method x dataset, per setup and protocol, fitted by REML: a point estimate of the slope, as a check
    of the OLS slope. No interval: its standard error treats methods that share a base model as
    independent.

    Failures (singular fits, too few groups, non-convergence) give a row with a NaN slope and the
    reason in ``error`` / ``warning`` instead of an exception. A random-intercept variance of ~0 is a
    boundary fit and is flagged in ``warning``.
    """
    out = []
    for setup, protocol, rows in _fits(scored(df)):
        d, _ = _design(rows, measure)
        terms = ["blurriness"] + (["fraction"] if d["fraction"].nunique() > 1 else [])
        terms += ["C(dataset)"] if d["dataset"].nunique() > 1 else []
        formula = "score ~ " + " + ".join(terms)
        groups = d["attribution"].astype(str) + "|" + d["dataset"].astype(str)
        row = {c: np.nan for c in _MIXED_COLUMNS}
        row.update(setup=setup, protocol=protocol, measure=measure, n_rows=len(d), n_groups=int(groups.nunique()),
                   formula=formula, warning="", error="", converged=False)
        problem = _degenerate(d)
        if problem or row["n_groups"] < 2:
            row["error"] = problem or f"too little data: {len(d)} rows in {row['n_groups']} method x dataset groups"
            out.append(row)
            continue
        se = np.nan
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fit = smf.mixedlm(formula, d, groups=groups.to_numpy()).fit(reml=True, method=["lbfgs", "powell"])
                se = float(fit.bse_fe["blurriness"])
                row.update(slope=float(fit.fe_params["blurriness"]), group_var=float(np.asarray(fit.cov_re)[0, 0]),
                           converged=bool(fit.converged))
            except (ValueError, np.linalg.LinAlgError, IndexError, KeyError) as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
        notes = sorted({type(w.message).__name__ + ": " + str(w.message).splitlines()[0] for w in caught})
        if np.isfinite(row["group_var"]) and row["group_var"] < 1e-10:
            notes.append("boundary fit: random-intercept variance is ~0")
        if not row["error"] and not (np.isfinite(se) and se > 0):
            row.update(slope=np.nan, error=f"singular fit: standard error of the slope is {se}")
        row["warning"] = " | ".join(notes)[:500]
        out.append(row)
    return pd.DataFrame(out, columns=_MIXED_COLUMNS)
