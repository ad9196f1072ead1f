"""TrialContext: what a protocol gets. It hands out post-processed maps, masks and filled images,
each computed once per trial and timed, so every protocol of a trial uses the very same masks."""
from __future__ import annotations

import copy
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ..datasets import ImageData
from ..fills import apply_fill
from ..models import build_model
from ..conventions import blur_params, road_noise
from ..postprocess import POSTPROCESS, postprocess_maps
from ..removal import removal_mask
from ..spec import TrialSpec
from ..train import TrainConfig, evaluate, predict_logits, train_model

# Test images get indices after every train index, so per-image seeds (random maps, tie-breaks) differ.
TEST_INDEX_OFFSET = 10_000_000


def split_index(split: str, n: int, device) -> torch.Tensor:
    offset = 0 if split == "train" else TEST_INDEX_OFFSET
    return torch.arange(n, device=device) + offset


@dataclass
class TrialContext:
    spec: TrialSpec
    data: ImageData
    device: str
    base_model: torch.nn.Module          # trained base model in eval mode; never modified
    base_accuracy: float
    raw_maps: dict                       # split -> (N,H,W) array of attribution maps (before post-processing)
    model_factory: object = None         # callable(seed) -> fresh model (defaults to the spec's model)
    timings: dict = field(default_factory=lambda: defaultdict(float))
    _cache: dict = field(default_factory=dict)

    @contextmanager
    def timed(self, bucket: str):
        """Add the wall time of the block to timings[bucket] ('train', 'attribution', 'mask', 'io')."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[bucket] += time.perf_counter() - start

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def images(self, split: str) -> torch.Tensor:
        x = self.data.train_x if split == "train" else self.data.test_x
        return self._cached(("images", split), lambda: x.to(self.device).float().div_(255))

    def labels(self, split: str) -> torch.Tensor:
        y = self.data.train_y if split == "train" else self.data.test_y
        return self._cached(("labels", split), lambda: y.to(self.device))

    def index(self, split: str) -> torch.Tensor:
        return split_index(split, self.images(split).shape[0], self.device)

    def postprocess(self, raw: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The trial's post-processing of raw maps (N,H,W) of the images with global `index`."""
        s = self.spec
        with self.timed("mask"):
            return postprocess_maps(raw.to(self.device), s.postprocess, sigma=s.sigma, filter_size=s.filter_size,
                                    seed=s.seed, index=index.to(self.device), **self.postprocess_params)

    @property
    def postprocess_params(self) -> dict:
        s = self.spec
        taken = POSTPROCESS[s.postprocess].params if s.postprocess in POSTPROCESS else {}
        blur = {k: v for k, v in blur_params(s).items() if k in taken}
        return {**blur, **dict(s.options).get("postprocess_params", {})}

    def maps(self, split: str) -> torch.Tensor:
        """Post-processed maps (N,H,W) float32 on the device."""
        def make():
            raw = torch.from_numpy(np.asarray(self.raw_maps[split], dtype=np.float32))
            return self.postprocess(raw, self.index(split))
        return self._cached(("maps", split), make)

    def mask(self, split: str, order: str, fraction: float | None = None) -> torch.Tensor:
        """bool (N,H,W), True = removed; 'morf' removes the top `fraction`, 'lerf' the bottom."""
        fraction = self.spec.fraction if fraction is None else fraction
        def make():
            maps = self.maps(split)
            with self.timed("mask"):
                return removal_mask(maps, fraction, order=order, seed=self.spec.seed,
                                    selection=self.spec.selection, index=self.index(split))
        return self._cached(("mask", split, order, fraction), make)

    def removed_images(self, split: str, order: str, fraction: float | None = None,
                       fill: str | None = None) -> torch.Tensor:
        fill = fill or self.spec.fill
        fraction = self.spec.fraction if fraction is None else fraction
        def make():
            mask = self.mask(split, order, fraction)
            with self.timed("mask"):
                params = road_noise(self.spec) if fill == "road" else {}
                return apply_fill(self.images(split), mask, fill, self.data.mean, seed=self.spec.seed, **params)
        return self._cached(("removed", split, order, fraction, fill), make)

    def base_predictions(self) -> torch.Tensor:
        """The base model's classes (N,) on the clean test images."""
        def make():
            with self.timed("train"):
                return predict_logits(self.base_model, self.images("test"), self.device).argmax(1)
        return self._cached(("base_predictions",), make)

    # --- models ---------------------------------------------------------------------------------
    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_spec(self.spec)

    def fresh_model(self, seed: int) -> torch.nn.Module:
        """A model to retrain: from scratch (seeded init) or, in 'finetune' mode, a copy of the base."""
        if self.spec.retrain_mode == "finetune":
            return copy.deepcopy(self.base_model)
        if self.model_factory is not None:
            return self.model_factory(seed)
        d = self.data
        return build_model(self.spec.model, d.channels, d.num_classes, d.mean, d.std,
                           width=self.spec.width, seed=seed)

    def retrain(self, x: torch.Tensor, y: torch.Tensor, seed_offset: int = 1) -> torch.nn.Module:
        seed = self.spec.seed * 1000 + seed_offset
        model = self.fresh_model(seed)
        with self.timed("train"):
            return train_model(model, x, y, self.train_config, self.device, seed=seed,
                               fill=torch.tensor(self.data.mean))

    def evaluate(self, model, x, y):
        with self.timed("train"):
            return evaluate(model, x, y, self.device)
