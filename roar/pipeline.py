"""One trial end to end, without Ray: stage A (base model), stage B (maps), the protocol, one row.

Each stage is cached in the Store by content key and, within a worker process, in small LRU caches,
so a reused Ray actor loads data, models and maps once.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import socket
import subprocess
import time
import traceback
import warnings
from collections import OrderedDict

import numpy as np
import torch
from analysis.stats import wilson_ci

from . import __version__
from .artifacts import (ArtifactMismatch, ArtifactMissing, check_artifact, load_maps, load_model_state, save_maps,
                        save_model)
from .attribution import compute_maps, resolve_targets, split_target
from .conventions import attribution_noise_std
from .datasets import ImageData, load_dataset
from .metrics import map_metrics, mask_metrics
from .models import build_model
from .protocols import PROTOCOLS, TrialContext
from .protocols.context import split_index
from .registry import lookup
from .spec import TrialSpec
from .storage import Store
from .train import TrainConfig, evaluate, train_model


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of an accuracy over n images (analysis.stats owns the formula)."""
    low, high = wilson_ci(round(accuracy * n), n)
    return float(low), float(high)


def pick_device(prefer: str = "auto") -> str:
    if prefer == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if prefer.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {prefer!r} requested but torch sees no CUDA device; use 'cpu' or 'auto'")
    return prefer


def device_label(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


class _LRU(OrderedDict):
    """Tiny per-process cache: bounded so a long-lived Ray actor's memory stays flat."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    def get_or_make(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


_DATA = _LRU(2)
_MODELS = _LRU(2)
_MAPS = _LRU(4)


def clear_caches():
    for cache in (_DATA, _MODELS, _MAPS):
        cache.clear()


def load_data(spec: TrialSpec) -> ImageData:
    key = tuple(getattr(spec, f) for f in TrialSpec.DATA_FIELDS)
    return _DATA.get_or_make(key, lambda: load_dataset(
        spec.dataset, root=spec.data_root, subset=spec.subset, test_subset=spec.test_subset,
        seed=spec.data_seed, image_size=spec.image_size))


def _new_model(spec: TrialSpec, data: ImageData, seed: int):
    return build_model(spec.model, data.channels, data.num_classes, data.mean, data.std, width=spec.width,
                       seed=seed)


# --- stage A -------------------------------------------------------------------------------------
def ensure_base_model(spec: TrialSpec, store: Store, device: str = "cpu", progress: bool = False,
                      force: bool = False) -> str:
    """Train the base model unless the store has it, verified (roar.artifacts.check_artifact); a
    damaged or edited one is trained again and overwritten. force: train even when it verifies."""
    key = spec.base_model_key()
    if not force and check_artifact(store, "model", key) is None:
        return key
    data = load_data(spec)
    start = time.perf_counter()
    x_train = data.train_x.to(device).float().div_(255)
    model = _new_model(spec, data, seed=spec.seed)
    train_model(model, x_train, data.train_y, TrainConfig.from_spec(spec), device, seed=spec.seed,
                fill=torch.tensor(data.mean), progress=progress)
    accuracy, loss = evaluate(model, data.test_x.to(device).float().div_(255), data.test_y, device)
    meta = {"base_accuracy": accuracy, "base_loss": loss, "n_test": int(data.test_x.shape[0]),
            "seconds": time.perf_counter() - start, "device": device_label(device),
            "fields": spec.model_key_fields()}
    save_model(store, key, model, meta)
    return key


def load_base_model(spec: TrialSpec, store: Store, device: str = "cpu"):
    """(model in eval mode on device, meta dict); trains it first when missing. A model already in this
    worker's cache is returned without touching the store (artifacts are content-keyed, so it is the same)."""
    key = spec.base_model_key()

    def make():
        state, meta = _load_verified(lambda: load_model_state(store, key),
                                     lambda force: ensure_base_model(spec, store, device, force=force))
        model = _new_model(spec, load_data(spec), seed=0)
        model.load_state_dict(state)
        return model.to(device).eval(), meta
    return _MODELS.get_or_make((key, device), make)


def _load_verified(load, make):
    """load() a verified artifact. Missing: make(force=False) then load. Failing its checks: make it
    again (force=True) and load the new one; a second mismatch fails the trial with both reasons.
    Bytes that failed a check are never returned."""
    try:
        return load()
    except ArtifactMissing:
        make(False)
        return load()
    except ArtifactMismatch as first:
        warnings.warn(f"cached artifact rejected and recomputed: {first}", RuntimeWarning, stacklevel=3)
        make(True)
        try:
            return load()
        except ArtifactMismatch as second:
            raise ArtifactMismatch(f"recomputed artifact still fails its checks: {second} (first: {first})") from None


# --- stage B -------------------------------------------------------------------------------------
def ensure_maps(spec: TrialSpec, store: Store, device: str = "cpu", progress: bool = False,
                batch_size: int = 256, force: bool = False) -> str:
    """Compute attribution maps of the train and test split unless the store has them, verified; a
    damaged or edited set is computed again. force: compute even when they verify."""
    key = spec.maps_key()
    if not force and check_artifact(store, "maps", key) is None:
        return key
    model, _ = load_base_model(spec, store, device)
    data = load_data(spec)
    start = time.perf_counter()
    maps = {}
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        # uint8 in: compute_maps scales per batch, so the split is never held as float32 twice
        target = resolve_targets(model, x, y, spec.target, device, split=split)
        maps[split] = compute_maps(model, x, target, spec.attribution, reduction=spec.reduction,
                                   sign=spec.sign, seed=spec.seed, batch_size=batch_size, device=device,
                                   index=split_index(split, x.shape[0], "cpu"), progress=progress,
                                   noise_std=attribution_noise_std(spec, data.std))
    meta = {"seconds": time.perf_counter() - start, "device": device_label(device),
            "fields": spec.maps_key_fields()}
    save_maps(store, key, maps, meta)
    return key


def get_maps(spec: TrialSpec, store: Store, device: str = "cpu") -> dict:
    """Maps of the train and test split; cached per worker, so a trial only reads the store on a miss."""
    def make():
        return _load_verified(lambda: load_maps(store, spec.maps_key()),
                              lambda force: ensure_maps(spec, store, device, force=force))
    return _MAPS.get_or_make(spec.maps_key(), make)


# --- the trial -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _provenance() -> dict:
    try:
        code = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        code = ""
    return {"roar_version": __version__, "code_version": os.environ.get("ROAR_CODE_VERSION", code or "unknown"),
            "torch_version": torch.__version__, "host": socket.gethostname() or platform.node()}


IDENTITY_FIELDS = ("dataset", "subset", "model", "width", "attribution", "target", "reduction", "sign",
                   "postprocess", "sigma", "filter_size", "fraction", "protocol", "fill", "selection", "seed",
                   "retrain_mode", "epochs")


def identity_columns(spec: TrialSpec, sweep_name: str) -> dict:
    row = {f: getattr(spec, f) for f in IDENTITY_FIELDS}
    row.update(trial_id=spec.trial_id, sweep=sweep_name, config_json=spec.canonical_json(),
               target_train=split_target(spec.target, "train"), target_test=split_target(spec.target, "test"))
    return row


def _now():
    return dt.datetime.now(dt.timezone.utc)


def run_trial(spec: TrialSpec, store: Store, device: str = "cpu", sweep_name: str = "adhoc",
              extra: dict | None = None) -> dict:
    """Run one grid point and return its result row. A trial error gives a status='failed' row."""
    started = _now()
    t0 = time.perf_counter()
    row = identity_columns(spec, sweep_name)
    row.update(extra or {})
    row.update(_provenance(), device=device_label(device), started_at=started)  # schema_version: sweep.rows
    timings = {"train": 0.0, "attribution": 0.0, "mask": 0.0, "io": 0.0}
    try:
        row.update(_run(spec, store, device, timings))
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - the row records any failure; the sweep goes on
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"[:4000])
    row.update({f"seconds_{k}": v for k, v in timings.items()})
    row.update(seconds_total=time.perf_counter() - t0, finished_at=_now())
    return row


def _run(spec: TrialSpec, store: Store, device: str, timings: dict) -> dict:
    if spec.option("fail_for_test") == "raise":
        raise RuntimeError("failure requested by option fail_for_test (used by the test suite)")
    protocol = lookup(PROTOCOLS, spec.protocol, "protocol")
    t = time.perf_counter()
    data = load_data(spec)
    model, meta = load_base_model(spec, store, device)
    timings["io"] += time.perf_counter() - t
    t = time.perf_counter()
    maps = get_maps(spec, store, device)
    timings["attribution"] += time.perf_counter() - t
    ctx = TrialContext(spec=spec, data=data, device=device, base_model=model,
                       base_accuracy=meta["base_accuracy"], raw_maps=maps,
                       model_factory=lambda seed: _new_model(spec, data, seed))
    out = protocol.run(ctx)
    with ctx.timed("mask"):
        metrics = {**map_metrics(ctx.maps("test")), **mask_metrics(ctx.mask("test", protocol.order))}
    for k, v in ctx.timings.items():
        timings[k] += v
    result = {"base_accuracy": meta["base_accuracy"], **{k: float(v) for k, v in metrics.items()}, **out}
    if result.get("accuracy") is not None:
        acc, n = result["accuracy"], result.get("n_test") or int(data.test_x.shape[0])
        if not np.isfinite(acc):
            raise FloatingPointError(f"accuracy is {acc}")
        result.setdefault("accuracy_drop", meta["base_accuracy"] - acc)
        result["ci_low"], result["ci_high"] = accuracy_interval(acc, n)
        result["n_test"] = n
    return result


def estimate_seconds(spec: TrialSpec) -> dict:
    """Rough single-core CPU cost per stage (seconds) for the dry run: images × epochs × a per-image
    rate measured on a 2-core laptop (small_cnn width 8: ~0.4 ms per image-epoch incl. evaluation).
    Sweeps with finished rows use their measured times instead."""
    n_train = spec.subset or 60000
    n_test = spec.test_subset or 10000
    rate = {"small_cnn": 4e-4, "fast_resnet": 1e-2, "resnet18_small": 3e-2}.get(spec.model, 5e-2)
    if spec.model == "small_cnn":
        rate *= max(spec.width, 4) / 8
    train = (n_train * spec.epochs + n_test) * rate
    # stage B: one gradient pass ~ 2 forward passes; IG/SmoothGrad/VarGrad multiply it by their samples
    passes = {"integrated_gradients": 25, "smoothgrad": 15, "vargrad": 15, "gradient_shap": 15,
              "occlusion": 50, "feature_ablation": 50, "shapley_sampling": 400, "kernel_shap": 200}
    attribution = (n_train + n_test) * rate * passes.get(spec.attribution, 1)
    protocol = PROTOCOLS.get(spec.protocol)
    trial = train if (protocol is None or protocol.retrains) else n_test * rate * 10
    return {"stage_a": train, "stage_b": attribution, "trial": trial}
