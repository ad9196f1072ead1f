"""TrialSpec: every field that changes a result, frozen. Its canonical JSON is the trial's identity.

The sweep uses it as its TrialKey; stage A and stage B caches are keyed by the subsets of fields that
determine a base model and a set of attribution maps, so a change of, say, blur sigma reuses both.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .conventions import keyed_options


@dataclass(frozen=True)
class TrialSpec:
    # data
    dataset: str = "synthetic"
    subset: int | None = None          # train images (None = all), drawn with `data_seed`
    test_subset: int | None = None     # test images (None = all)
    data_seed: int = 0
    data_root: str | None = None       # local path or None for the default location
    image_size: int | None = None      # resize (cub200/imagefolder); None = native
    # model and training (base model and retrain share the recipe)
    model: str = "small_cnn"
    width: int = 16
    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"         # onecycle | step | constant
    augment: str = "none"              # none | flip_crop
    removal_augment: float = 0.0       # perturbation-augmented base training: max random-removal fraction
    # attribution (stage B)
    attribution: str = "saliency"
    target: str = "predicted"          # predicted | label (train only; test: predicted) | label_leaky
    reduction: str = "abs_sum"         # sum | abs_sum | max | mean
    sign: str = "abs"                  # abs | positive | raw
    # post-processing of the map (per trial, cheap)
    postprocess: str = "identity"
    sigma: float = 0.0                 # pixels, for gaussian
    filter_size: int = 0               # pixels, for max/mean filters
    # removal and protocol
    fraction: float = 0.5
    protocol: str = "roar"
    fill: str = "mean"
    selection: str = "topk"            # topk | percentile
    retrain_mode: str = "scratch"      # scratch | finetune
    seed: int = 0
    # protocol-specific options (JSON-able mapping, sorted into the key)
    options: tuple = field(default=())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrialSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown trial field(s) {unknown}; valid: {sorted(names)}")
        d = dict(d)
        if "options" in d:
            d["options"] = tuple(sorted(dict(d["options"]).items()))
        return cls(**d)

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)

    def canonical_json(self) -> str:
        return canonical_json(self.to_dict())

    @property
    def trial_id(self) -> str:
        return content_key(self._keyed(self.to_dict()))

    def _keyed(self, d: dict) -> dict:
        # 'label' used to explain the test label too (a leak). Its keys carry the test split's target
        # now, so rows and maps written with the old meaning are never taken as done or reused.
        if d.get("target") == "label":
            d = {**d, "target_test": "predicted"}
        return d

    # --- cache keys of the shared stages -------------------------------------------------------
    DATA_FIELDS = ("dataset", "subset", "test_subset", "data_seed", "data_root", "image_size")
    MODEL_FIELDS = DATA_FIELDS + ("model", "width", "epochs", "batch_size", "lr", "optimizer", "momentum",
                                  "weight_decay", "schedule", "augment", "removal_augment", "seed")
    MAPS_FIELDS = MODEL_FIELDS + ("attribution", "target", "reduction", "sign")

    def model_key_fields(self) -> dict:
        """What the base model's key is the hash of (stored in its meta file, checked on every load)."""
        return {**{k: getattr(self, k) for k in self.MODEL_FIELDS}, **self._stage_options("model")}

    def maps_key_fields(self) -> dict:
        """What the maps' key is the hash of (stored in their meta file, checked on every load)."""
        fields = {k: getattr(self, k) for k in self.MAPS_FIELDS}
        return self._keyed({**fields, **self._stage_options("maps")})

    def base_model_key(self) -> str:
        return content_key(self.model_key_fields(), kind="model")

    def maps_key(self) -> str:
        return content_key(self.maps_key_fields(), kind="maps")

    def _stage_options(self, stage: str) -> dict:
        # only options that are set join the key, so keys of specs without them stay as they were
        options = dict(self.options)
        return {name: options[name] for name in keyed_options(stage) if name in options}

    def replace(self, **changes) -> "TrialSpec":
        return dataclasses.replace(self, **changes)


def canonical_json(obj) -> str:
    """Sorted keys, no whitespace, floats as repr: the same spec always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(obj, kind: str = "trial") -> str:
    digest = hashlib.sha256(canonical_json({"kind": kind, **obj}).encode()).hexdigest()
    return digest[:20]
