"""What a row means: its score (higher = better method, per protocol), its post-processing level and
its setup. One registry per concept, keyed by the strings stored in the Parquet columns.

Derived columns added to every loaded row (``derive``):
- ``score``: the benchmark's verdict on the method, oriented so that higher = better method
  (fraction units, e.g. 0.12 = 12 points of accuracy); NaN for diagnostic protocols.
- ``level``: readable label of the post-processing level, e.g. ``identity``, ``gaussian σ=2``,
  ``max_filter 3px``; every reference variant (identity, sigma 0, size <= 1) is ``identity``.
- ``is_reference``: the row used the raw map (the ``identity`` level).
- ``family``: the post-processing registry key of the level (``identity`` for the reference).
- ``setup``: the trial-key fields other than dataset/method/post-processing/fraction/protocol/seed
  (columns and every other field of config_json: lr, batch_size, test_subset, options, ...) that vary
  within the loaded rows (``fill=zero; lr=0.05``), or ``all`` when none vary. Rows are only averaged,
  paired or fitted within one setup.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .contract import POSTPROCESS_FACTS, PROTOCOL_FACTS, PROTOCOL_SCORES, STRENGTH_OFF, ScoreRule, is_reference  # noqa: F401 (ScoreRule re-exported)
from .schema import BLUR_COLUMNS


# Score rules and readable names of the protocols: analysis.contract.PROTOCOL_FACTS (shared with roar).
# Protocols without a score (leakage, sanity, robustness) are diagnostics.
PROTOCOL_NAMES = {k: f.name for k, f in PROTOCOL_FACTS.items()}

# Multiplier that turns each blur measure into "blurriness" (higher = blurrier map). All three
# schema measures fall as a map gets blurrier.
BLUR_DIRECTION: dict[str, int] = {"blur_spectral_centroid": -1, "blur_total_variation": -1, "blur_hf_energy": -1}
assert set(BLUR_DIRECTION) == set(BLUR_COLUMNS), "every schema blur column needs a direction"

# Post-processing facts (strength field, reference values, label format): analysis.contract.
IDENTITY_NAMES = ("identity", "none", "")
REFERENCE_LEVEL = "identity"

# Identity columns that define the experimental setup a score belongs to (besides dataset, method,
# post-processing, fraction, protocol and seed, which the analysis handles explicitly). Every other field
# of the trial key in config_json (lr, batch_size, test_subset, options, ...) is part of the setup too.
SETUP_COLUMNS = ["subset", "model", "width", "target", "reduction", "sign", "fill", "selection",
                 "retrain_mode", "epochs"]
# Trial-key fields the analysis handles as axes; every other field of config_json is setup.
ANALYSED_AXES = ("dataset", "attribution", "postprocess", "sigma", "filter_size", "fraction", "protocol", "seed")
LEVEL_OPTIONS = ("postprocess_params",)   # options that are part of the post-processing level
# Options that name the Optuna study of a search row (sweep.search.trial.STUDY_OPTION): the row's
# ``study`` column carries it, search rows are analysed apart (analysis.gaming), and a search must
# find its cell's sweep rows in the same setup.
SEARCH_OPTIONS = ("search_study",)
# One replicate of one cell: rows sharing these keys (e.g. identity and gaussian sigma=0, both the raw
# map) are one observation and are averaged into one row before any fit or mean.
REPLICATE_KEYS = ["dataset", "setup", "protocol", "attribution", "level", "fraction", "seed"]


def protocol_name(protocol) -> str:
    return PROTOCOL_NAMES.get(protocol, str(protocol))


def score_meaning(protocol) -> str:
    rule = PROTOCOL_SCORES.get(protocol)
    return rule.meaning if rule else "no score (diagnostic protocol)"


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if np.isfinite(f) else 0.0


def _params(config_json) -> dict:
    """Extra post-processing parameters stored in the trial key's options (gamma, levels, ...)."""
    if not isinstance(config_json, str) or not config_json:
        return {}
    try:
        options = json.loads(config_json).get("options") or {}
    except (ValueError, AttributeError):
        return {}
    params = options.get("postprocess_params") if isinstance(options, dict) else None
    return params if isinstance(params, dict) else {}


def level_of(postprocess, sigma, filter_size, params: dict | None = None) -> tuple[str, str, bool]:
    """(label, family, is_reference) of one post-processing level."""
    name = postprocess if isinstance(postprocess, str) else ""
    sigma, size = _num(sigma), _num(filter_size)
    params = params or {}
    if (name in IDENTITY_NAMES and not params) or is_reference(name, sigma, size, params):
        return REFERENCE_LEVEL, REFERENCE_LEVEL, True
    facts = POSTPROCESS_FACTS.get(name)
    strength = facts.strength if facts else None
    parts = [name or "?"]
    value = {"sigma": sigma, "filter_size": size}
    if strength is not None and (facts.reference is not None or value[strength] > STRENGTH_OFF[strength]):
        parts.append(facts.label_format.format(value[strength]))
    elif strength is None:  # a transform without a strength field: show whichever generic field is set
        parts += [f"σ={sigma:g}"] if sigma > 0 else []
        parts += [f"{size:g}px"] if size > 0 else []
    parts += [f"{k}={params[k]}" for k in sorted(params)]
    return " ".join(parts), name or "?", False


def _level_sort_key(label: str, family: str, sigma: float, size: float):
    return (label != REFERENCE_LEVEL, family, sigma, size, label)


def level_order(df: pd.DataFrame) -> list[str]:
    """Level labels in display order: the reference first, then by family and strength."""
    if df.empty or "level" not in df:
        return []
    firsts = df.drop_duplicates("level")
    keys = {r.level: _level_sort_key(r.level, r.family, _num(r.sigma), _num(r.filter_size))
            for r in firsts.itertuples()}
    return sorted(keys, key=keys.get)


def _setup_projection(config_json) -> dict:
    """The setup fields of one trial key: every field of config_json except the analysed axes, with
    options flattened to ``options.<name>`` (post-processing parameters belong to the level)."""
    if not isinstance(config_json, str) or not config_json:
        return {}
    try:
        config = json.loads(config_json)
    except ValueError:
        return {}
    if not isinstance(config, dict):
        return {}
    out = {k: v for k, v in config.items() if k not in ANALYSED_AXES and k != "options"}
    options = config.get("options")
    if isinstance(options, dict):
        out.update({f"options.{k}": v for k, v in options.items() if k not in LEVEL_OPTIONS + SEARCH_OPTIONS})
    return out


def _text(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA:
        return "null"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    return _fmt(v.item() if hasattr(v, "item") else v)


def _setup_labels(df: pd.DataFrame) -> pd.Series:
    """One label per row naming the setup fields that vary among the rows (``lr=0.05; selection=topk``),
    or ``all``. A setup field is every trial-key field that is not an analysed axis: the
    SETUP_COLUMNS (read from the columns) and every other field of config_json (lr, batch_size,
    test_subset, options, ...). So two sweeps written to one store never merge."""
    # the work is done once per distinct (protocol, setup) combination, not per row: a store of 100,000
    # rows holds a handful of setups
    configs = df["config_json"] if "config_json" in df else pd.Series(None, index=df.index, dtype=object)
    projection = configs.map(lambda c: json.dumps(_setup_projection(c), sort_keys=True, default=str))
    columns = [c for c in SETUP_COLUMNS if c in df]
    keys = pd.DataFrame({"_protocol": df["protocol"].astype(object) if "protocol" in df else "",
                         "_config": projection, **{c: df[c].map(_text) for c in columns}}, index=df.index)
    combos = keys.drop_duplicates().reset_index(drop=True)
    fields = pd.DataFrame([json.loads(p) for p in combos["_config"]], index=combos.index)
    if not fields.empty:   # Series.map per column: DataFrame.map needs pandas >= 2.1
        fields = fields.drop(columns=[c for c in columns if c in fields]).apply(lambda col: col.map(_text))
    fields = pd.concat([combos[columns], fields], axis=1).fillna("null")
    # a setting that differs only between protocols (ROAD's own imputation fill, say) is part of the
    # protocol, not a separate setup: protocols stay comparable cell by cell
    by_protocol = fields.groupby(combos["_protocol"], dropna=False)
    varying = [c for c in fields.columns if by_protocol[c].nunique(dropna=False).gt(1).any()]
    if not varying:
        return pd.Series("all", index=df.index, dtype=object)
    labels = fields[varying].apply(lambda r: "; ".join(f"{c}={v}" for c, v in r.items()), axis=1)
    code = keys.groupby(list(keys.columns), dropna=False, sort=False).ngroup()   # numbered like combos
    return pd.Series(labels.to_numpy(object)[code.to_numpy()], index=df.index, dtype=object)


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of contract rows with score, level, family, is_reference and setup added."""
    out = df.copy()
    if out.empty:
        for col, dtype in (("score", float), ("level", object), ("family", object), ("is_reference", bool),
                           ("setup", object)):
            out[col] = pd.Series(dtype=dtype)
        return out
    # Writers that left accuracy_drop out of a scored row: derive it. Not for diagnostics: a leakage
    # row's accuracy is the mask probe's, and base minus probe accuracy means nothing.
    drop = out["accuracy_drop"].astype(float)
    fallback = out["base_accuracy"].astype(float) - out["accuracy"].astype(float)
    fill = drop.isna() & out["protocol"].isin([p for p, r in PROTOCOL_SCORES.items() if r.column == "accuracy_drop"])
    out["accuracy_drop"] = drop.where(~fill, fallback)
    score = pd.Series(np.nan, index=out.index)
    for protocol, rule in PROTOCOL_SCORES.items():
        rows = out["protocol"] == protocol
        if rows.any():
            score[rows] = rule.direction * out.loc[rows, rule.column].astype(float)
    out["score"] = score
    params = out["config_json"].map(_params) if "config_json" in out else pd.Series([{}] * len(out))
    levels = [level_of(p, s, f, q) for p, s, f, q in
              zip(out["postprocess"], out["sigma"], out["filter_size"], params)]
    out["level"] = [lv[0] for lv in levels]
    out["family"] = [lv[1] for lv in levels]
    out["is_reference"] = [lv[2] for lv in levels]
    out["setup"] = _setup_labels(out)
    return out


def blurriness(df: pd.DataFrame, measure: str) -> pd.Series:
    """The measure turned so that higher = blurrier (see BLUR_DIRECTION), in the measure's unit."""
    if measure not in BLUR_DIRECTION:
        raise KeyError(f"blur measure {measure!r} unknown; valid: {sorted(BLUR_DIRECTION)}")
    return BLUR_DIRECTION[measure] * df[measure].astype(float)


def scored(df: pd.DataFrame, search: bool = False) -> pd.DataFrame:
    """Rows of protocols with a score and a finite score value.

    search=False (the default) leaves out rows of Optuna searches (``study`` set): the grid analyses
    use the designed sweep only; analysis.gaming passes search=True.
    """
    if df.empty:
        return df
    keep = df["protocol"].isin(list(PROTOCOL_SCORES)) & np.isfinite(df["score"].astype(float))
    if not search and "study" in df:
        keep &= df["study"].isna()
    return df[keep] if search else one_per_replicate(df[keep])


def one_per_replicate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per REPLICATE_KEYS: rows that are the same observation (identity and gaussian sigma=0 of
    the same maps, or one trial run under two names) are averaged (numeric columns) into the first of
    them, so no fit, mean or interval counts the raw map twice."""
    keys = [k for k in REPLICATE_KEYS if k in df]
    if df.empty or len(keys) < len(REPLICATE_KEYS):
        return df
    dup = df.duplicated(keys, keep=False)
    if not dup.any():
        return df
    multi = df[dup]
    groups = multi.groupby(keys, dropna=False, sort=False)
    numeric = [c for c in multi.columns if c not in keys and pd.api.types.is_float_dtype(multi[c])]
    first = groups.head(1).copy()
    first[numeric] = groups[numeric].transform("mean").loc[first.index]
    return pd.concat([df[~dup], first]).sort_index()


def sort_protocols(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sort by `by`, with the 'protocol' column in registry order instead of alphabetical."""
    if df.empty or "protocol" not in by:
        return df.sort_values(by, kind="stable").reset_index(drop=True) if not df.empty else df
    pos = {p: i for i, p in enumerate(protocol_order(df["protocol"].dropna().unique()))}
    key = ["_p" if b == "protocol" else b for b in by]
    return (df.assign(_p=df["protocol"].map(pos)).sort_values(key, kind="stable").drop(columns="_p")
            .reset_index(drop=True))


def protocol_order(protocols) -> list[str]:
    """Registry order first (roar, kar, road…), unknown names after, alphabetically."""
    known = [p for p in PROTOCOL_NAMES if p in set(protocols)]
    return known + sorted(set(protocols) - set(known))
