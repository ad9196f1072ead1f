"""Seeded, contract-valid synthetic result rows with a planted blurriness effect, for tests and docs.

The generating model of ``fake_results`` (for a protocol with score direction d, see
``analysis.contract.PROTOCOL_SCORES``)::

    score = quality[method, protocol] + 0.1 * fraction + effect * blurriness + u[dataset, method, seed] + e
    blurriness = -blur_spectral_centroid          (cycles/pixel, higher = blurrier)
    accuracy_drop = d * score ;  accuracy = base_accuracy - accuracy_drop

with e ~ N(0, noise) per row and u ~ N(0, cluster_sd) per maps artifact (dataset, method, seed). So the
pooled OLS ``score ~ blurriness + fraction + C(attribution) + C(dataset)`` has true slope ``effect``
(score fraction per cycle/pixel of centroid) and its interval across seeds should cover it.

Leak diagnostics of retrain rows (roar, kar): ``accuracy_base_wrong`` (accuracy on the test images the
base model got wrong) is low (~0.08) for every method when the test maps explain the base model's
prediction; with ``target='label_leaky'`` the test masks carry the label, so methods that use the model
reach 0.6-0.9 while random maps (which ignore the target) stay low.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid

import numpy as np
import pandas as pd

from .io import filesystem
from .schema import COLUMNS, SCHEMA_VERSION, encode_row_file, rows_to_table
from .contract import PROTOCOL_SCORES

DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam", "random")
# Methods that ignore the model: unchanged by model randomisation (they fail the sanity check).
MODEL_FREE = ("random", "sobel", "center")
CURVE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)   # fractions of the fake mif/lif curves
_KEY_COLUMNS = {"model", "width", "target", "reduction", "fill", "selection", "sign", "retrain_mode", "epochs",
                "subset"}   # trial-key fields stored as columns besides the analysed axes
_INT_COLUMNS = {"subset", "width", "filter_size", "seed", "epochs", "search_trial", "n_test", "schema_version"}


def _trial_id(row: dict) -> str:
    key = {k: row.get(k) for k in ("dataset", "attribution", "postprocess", "sigma", "filter_size", "fraction",
                                   "protocol", "seed", "study", "search_trial", "config_json")}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


# Requested target -> (class the train maps explain, class the test maps explain); see analysis.schema.
TARGETS = {"predicted": ("predicted", "predicted"), "label": ("label", "predicted"),
           "label_leaky": ("label", "label")}
# Trial-key fields that are not result columns (stored only in config_json), with the sweep defaults.
CONFIG_DEFAULTS = {"lr": 0.1, "batch_size": 32, "test_subset": None, "optimizer": "sgd"}


def _row(dataset, method, protocol, postprocess, sigma, size, fraction, seed, options=None,
         config=None, target="predicted") -> dict:
    """One ok row; ``config`` overrides trial-key fields (columns such as selection or fill, and fields
    kept only in config_json such as lr or test_subset)."""
    ident = {"dataset": dataset, "model": "small_cnn", "width": 16, "attribution": method, "target": target,
             "reduction": "abs_sum", "sign": "abs", "postprocess": postprocess, "sigma": float(sigma),
             "filter_size": int(size), "fraction": float(fraction), "protocol": protocol, "fill": "mean",
             "selection": "topk", "seed": int(seed), "retrain_mode": "scratch", "epochs": 3}
    extra = dict(config or {})
    ident.update({k: v for k, v in extra.items() if k in ident})
    key = {**CONFIG_DEFAULTS, **ident, **extra, "options": options or {}}
    train, test = TARGETS.get(ident["target"], (None, None))
    return {**ident, "target_train": train, "target_test": test, "sweep": "fake",
            "config_json": json.dumps(key, sort_keys=True),
            "schema_version": SCHEMA_VERSION, "status": "ok", "device": "cpu", "roar_version": "0.0.0",
            "code_version": "fake", "torch_version": "none", "host": "fake"}


class _Planted:
    """The latent quantities shared by every row of one fake sweep."""

    def __init__(self, rng, methods, datasets, n_seeds, protocols, cluster_sd):
        self.rng = rng
        self.quality = {(m, p): 0.15 + 0.08 * i + 0.02 * rng.standard_normal()
                        for i, m in enumerate(methods) for p in protocols}
        self.sharpness = {m: 0.20 + 0.05 * i for i, m in enumerate(methods)}   # centroid of the raw map
        self.dataset_shift = {d: 0.03 * i for i, d in enumerate(datasets)}
        self.u = {(d, m, s): cluster_sd * rng.standard_normal()
                  for d in datasets for m in methods for s in range(n_seeds)}
        self.base = {(d, s): 0.90 + 0.01 * rng.standard_normal() for d in datasets for s in range(n_seeds)}
        self._centroid = {}

    def centroid(self, dataset, method, seed, sigma, size):
        """Measured spectral centroid (cycles/pixel) of the post-processed map, one value per map set."""
        key = (dataset, method, seed, float(sigma), int(size))
        if key not in self._centroid:
            shrink = np.exp(-0.35 * float(sigma)) * (1.0 / max(1, int(size))) ** 0.5
            self._centroid[key] = self.sharpness[method] * shrink * (1 + 0.05 * self.rng.standard_normal())
        return self._centroid[key]


RETRAIN = ("roar", "kar")   # protocols that retrain and so record the leak diagnostics


def _leak_diagnostics(rng, base: float, n_test: int, fraction: float, reads_label: bool) -> dict:
    n_wrong = int(round((1 - base) * n_test))
    rate = 0.6 + 0.3 * fraction if reads_label else 0.08
    k = int(rng.binomial(n_wrong, rate)) if n_wrong else 0
    agree = 0.7 - 0.2 * fraction if reads_label else 0.85 - 0.1 * fraction
    return {"accuracy_base_wrong": k / n_wrong if n_wrong else None, "n_base_wrong": n_wrong,
            "agreement_base": float(np.clip(agree + 0.01 * rng.standard_normal(), 0, 1))}


def _metrics(c: float, rng) -> dict:
    return {"blur_spectral_centroid": c, "blur_total_variation": 0.8 * c + 0.005 * rng.standard_normal(),
            "blur_hf_energy": min(1.0, 2.0 * c) * (1 + 0.02 * rng.standard_normal()),
            "mask_perimeter_area": 3.0 * c + 0.2, "mask_components": 1 + 40 * c, "mask_morans_i": 1 - 2 * c,
            "map_gini": 0.3 + c}


def fake_results(seed: int = 0, effect: float = 0.0, n_seeds: int = 3, methods=DEFAULT_METHODS,
                 sigmas=(0.0, 1.0, 2.0, 4.0), fractions=(0.1, 0.5, 0.9), protocols=("roar",),
                 datasets=("synthetic",), noise: float = 0.01, cluster_sd: float = 0.005,
                 max_filter_sizes=(), leakage: bool = False, sanity: bool = False, search: bool = False,
                 n_failed: int = 0, target: str = "predicted", config: dict | None = None,
                 n_test: int = 1000) -> pd.DataFrame:
    """Contract rows (every column of analysis.schema, in order) of a fake sweep.

    effect: planted slope of the score on blurriness = -blur_spectral_centroid (score fraction per
        cycle/pixel); see the module docstring for the full model.
    sigmas / max_filter_sizes: post-processing levels (gaussian sigma in pixels; max filter size in px).
    protocols: scored protocols to generate (keys of analysis.contract.PROTOCOL_SCORES).
    leakage / sanity: add 'leakage' rows (gradient methods' masks leak the label) and 'sanity' rows
        (model-free methods fail). search: add Optuna gaming-search rows (study 'gaming-<method>').
    n_failed: add this many status='failed' rows.
    target: 'predicted', 'label' or 'label_leaky' (the test masks carry the label: leak diagnostics of
        model-using methods far above the random maps'). config: trial-key fields shared by every row,
        e.g. {"lr": 0.05} or {"selection": "percentile"} (a different setup). n_test: test images per row.
    """
    unknown = sorted(set(protocols) - set(PROTOCOL_SCORES))
    if unknown:
        raise ValueError(f"protocols={unknown} have no score; valid: {sorted(PROTOCOL_SCORES)}")
    if target not in TARGETS:
        raise ValueError(f"target={target!r} unknown; valid: {sorted(TARGETS)}")
    leaky = TARGETS[target][1] == "label"

    def _base_row(*args, options=None):
        return _row(*args, options=options, config=config, target=target)

    rng = np.random.default_rng(seed)
    lat = _Planted(rng, methods, datasets, n_seeds, protocols, cluster_sd)
    levels = [("gaussian", s, 0) for s in sigmas] + [("max_filter", 0.0, k) for k in max_filter_sizes]
    rows = []

    def scored_row(d, m, p, pp, sigma, size, f, s, options=None):
        c = lat.centroid(d, m, s, sigma, size)
        score = (lat.quality[m, p] + lat.dataset_shift[d] + 0.1 * f + effect * (-c) + lat.u[d, m, s]
                 + noise * rng.standard_normal())
        if PROTOCOL_SCORES[p].direction < 0:   # LeRF scores are minus a drop: keep accuracies below 1
            score -= 0.6
        drop = PROTOCOL_SCORES[p].direction * score
        base = lat.base[d, s]
        row = _base_row(d, m, p, pp, sigma, size, f, s, options=options)
        reads_label = leaky and m not in MODEL_FREE and p in RETRAIN
        if reads_label:   # the retrained model reads the label from the holes: above the base model
            drop -= 0.35
        acc = base - drop
        row.update(accuracy=acc, base_accuracy=base, accuracy_drop=drop, loss=2.0 * (1 - acc), n_test=n_test,
                   removed_fraction_actual=f, seconds_train=1.0, seconds_total=1.5, **_metrics(c, rng))
        if p in RETRAIN:
            row.update(_leak_diagnostics(rng, base, n_test, f, reads_label))
        if p in ("mif", "lif"):  # curve protocols: fidelity and the whole curve, the same for every fraction
            row["fidelity"] = 0.05 + lat.sharpness[m] - 0.2 * c
            curve = [[g, base - PROTOCOL_SCORES[p].direction * (lat.quality[m, p] + 0.1 * g - effect * c)]
                     for g in CURVE_GRID]
            row["curve_json"] = json.dumps(curve)
        return row

    for d in datasets:
        for p in protocols:
            for m in methods:
                for pp, sigma, size in levels:
                    for f in fractions:
                        for s in range(n_seeds):
                            rows.append(scored_row(d, m, p, pp, sigma, size, f, s))
        for m in methods:
            leak = 0.0 if m in MODEL_FREE else 0.5
            for s in range(n_seeds):
                if sanity:
                    row = _base_row(d, m, "sanity", "identity", 0, 0, fractions[0], s)
                    corr = 1.0 if m in MODEL_FREE else 0.1 + 0.05 * rng.random()
                    row.update(sanity_rank_corr=corr, sanity_ssim=corr, sanity_passed=bool(corr < 0.9))
                    rows.append(row)
                if not leakage:
                    continue
                for pp, sigma, size in levels:
                    for f in fractions:
                        row = _base_row(d, m, "leakage", pp, sigma, size, f, s)
                        acc = 0.1 + leak * (1 - 0.1 * sigma) + 0.01 * rng.standard_normal()
                        row.update(leakage_accuracy=float(np.clip(acc, 0, 1)), chance_accuracy=0.1, n_test=1000)
                        rows.append(row)
        if search:
            f = fractions[len(fractions) // 2]
            transforms = [("identity", 0, 0, None), ("gaussian", 1.5, 0, None), ("gaussian", 5.0, 0, None),
                          ("max_filter", 0, 3, None), ("gamma", 0, 0, {"postprocess_params": {"gamma": 0.5}})]
            for m in methods:
                for i, (pp, sigma, size, options) in enumerate(transforms):
                    # like sweep.search.trial.with_study: the study name is an option of the trial key
                    row = scored_row(d, m, protocols[0], pp, sigma, size, f, 0,
                                     {"search_study": f"gaming-{m}", **(options or {})})
                    row.update(study=f"gaming-{m}", search_trial=i, sweep="fake-search")
                    rows.append(row)
    for i in range(n_failed):
        row = _base_row(datasets[0], methods[0], protocols[0], "gaussian", 99.0 + i, 0, fractions[0], 0)
        row.update(status="failed", error="RuntimeError: planted failure")
        rows.append(row)
    for row in rows:
        row["trial_id"] = _trial_id(row)
    table = rows_to_table(rows)
    return table.to_pandas()


def make_rows(rows: list[dict]) -> pd.DataFrame:
    """Hand-written rows for exact tests: each dict overrides the defaults of a successful ROAR row
    (dataset 'synthetic', identity post-processing, fraction 0.5, seed 0); trial_id is derived unless
    given, and accuracy_drop = base_accuracy - accuracy for scored protocols when both are given.
    Overridden trial-key columns (selection, fill, ...) also enter config_json; ``config`` adds fields
    kept only there (lr, test_subset, ...)."""
    out = []
    for r in rows:
        config = {**{k: v for k, v in r.items() if k in _KEY_COLUMNS}, **(r.get("config") or {})}
        row = _row(r.get("dataset", "synthetic"), r.get("attribution", "saliency"), r.get("protocol", "roar"),
                   r.get("postprocess", "identity"), r.get("sigma", 0.0), r.get("filter_size", 0),
                   r.get("fraction", 0.5), r.get("seed", 0), r.get("options"), config=config,
                   target=r.get("target", "predicted"))
        row.update({k: v for k, v in r.items() if k not in ("options", "config")})
        if ("accuracy_drop" not in r and row["protocol"] in PROTOCOL_SCORES and row.get("accuracy") is not None
                and row.get("base_accuracy") is not None):
            row["accuracy_drop"] = row["base_accuracy"] - row["accuracy"]
        row.setdefault("trial_id", None)
        row["trial_id"] = row["trial_id"] or _trial_id(row)
        out.append(row)
    return rows_to_table(out).to_pandas()


def _clean(value, column):
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if column in _INT_COLUMNS:
        return int(value)
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def frame_to_rows(df: pd.DataFrame) -> list[dict]:
    """Contract columns of a DataFrame as row dicts ready for analysis.schema.rows_to_table."""
    cols = [c for c in COLUMNS if c in df.columns]
    return [{c: _clean(v, c) for c, v in zip(cols, values)} for values in df[cols].itertuples(index=False)]


def write_rows(df: pd.DataFrame, store: str) -> list[str]:
    """Write each row as ``STORE/rows/<trial_id>.parquet`` (temp file then rename, like the sweep).

    Returns the written paths. ``store`` is a local folder or a URI (s3:// honours AWS_ENDPOINT_URL).
    """
    fs, root = filesystem(store)
    base = posixpath.join(root, "rows")
    is_local = fs.type_name == "local"
    if is_local:
        fs.create_dir(base, recursive=True)
    paths = []
    for row in frame_to_rows(df):
        final = posixpath.join(base, f"{row['trial_id']}.parquet")
        target = posixpath.join(base, f".tmp-{uuid.uuid4().hex}") if is_local else final
        with fs.open_output_stream(target) as out:
            out.write(encode_row_file(row))   # the sweep's encoding, so benchmarks read what a sweep leaves
        if is_local:
            os.replace(target, final)
        paths.append(final)
    return paths
