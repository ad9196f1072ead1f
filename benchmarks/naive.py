"""The naive baseline: one ROAR/KAR retrain written the way a typical PyTorch script does it.

What makes it "naive" is the structure, not artificial slowness:
- a torchvision-style ``Dataset`` whose ``__getitem__`` masks one image: argsort of that image's map,
  fill of the top (or bottom) k pixels, every time the image is read (so once per epoch);
- a ``torch.utils.data.DataLoader`` that collates those samples into batches;
- the attribution maps recomputed inside every trial with captum, batch by batch from a DataLoader.

Everything else is the same as the roar fast path, so the comparison measures the pipeline and
nothing else: the same network (``roar.models``, same seeded init), the same data, epochs, batch size,
optimizer, learning-rate schedule and base model; the same attribution method, sign (abs) and channel
reduction (sum); exactly k = round(p * H * W) pixels removed per image.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, Saliency
from torch import nn
from torch.utils.data import DataLoader, Dataset

from roar.attribution import IG_STEPS, resolve_targets
from roar.datasets import ImageData
from roar.models import build_model
from roar.registry import lookup
from roar.removal import pixels_removed
from roar.spec import TrialSpec
from roar.train import OPTIMIZERS, SCHEDULES, TrainConfig


# --- attribution, recomputed per trial --------------------------------------------------------------
def _saliency(model, xb, yb):
    return Saliency(model).attribute(xb, target=yb, abs=False)


def _integrated_gradients(model, xb, yb):
    return IntegratedGradients(model).attribute(xb, baselines=torch.zeros_like(xb), target=yb, n_steps=IG_STEPS)


# The methods the naive path knows; the same captum calls and settings as roar.attribution.
NAIVE_ATTRIBUTIONS = {"saliency": _saliency, "integrated_gradients": _integrated_gradients}


class ImageFolderLike(Dataset):
    """Unmodified images as float (C, H, W) on [0, 1], converted per sample like ToTensor()."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float() / 255.0, int(self.labels[i])


def naive_maps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, method: str, batch_size: int,
               device="cpu") -> np.ndarray:
    """float32 (N, H, W) maps: |attribution| summed over channels, batch by batch from a DataLoader."""
    fn = lookup(NAIVE_ATTRIBUTIONS, method, "attribution")
    model.eval().to(device)
    out = []
    for xb, yb in DataLoader(ImageFolderLike(images, labels), batch_size=batch_size, shuffle=False):
        attr = fn(model, xb.to(device), yb.to(device))
        out.append(attr.detach().abs().sum(dim=1).cpu().numpy())
    return np.concatenate(out)


# --- per-sample masking -----------------------------------------------------------------------------
def _most_relevant(order: np.ndarray, k: int) -> np.ndarray:
    return order[len(order) - k:]


def _least_relevant(order: np.ndarray, k: int) -> np.ndarray:
    return order[:k]


ORDERS = {"morf": _most_relevant, "lerf": _least_relevant}
FILL_VALUES = {"mean": lambda mean: np.asarray(mean, dtype=np.float32),
               "zero": lambda mean: np.zeros(len(mean), np.float32)}
PROTOCOL_ORDERS = {"roar": "morf", "kar": "lerf"}


class MaskedImages(Dataset):
    """One image per ``__getitem__``: ranks that image's map, replaces k pixels by the fill value.

    images uint8 (N, C, H, W); labels (N,); maps float (N, H, W); fraction of pixels removed per image;
    order 'morf' (remove the largest map values) or 'lerf'; fill_value one value per channel on [0, 1].
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, maps: np.ndarray, fraction: float,
                 order: str, fill_value: np.ndarray):
        self.images = images.numpy()
        self.labels = labels.numpy()
        self.maps = np.asarray(maps, dtype=np.float32)
        self.select = lookup(ORDERS, order, "order")
        self.k = pixels_removed(fraction, self.maps.shape[1] * self.maps.shape[2], order)
        self.fill_value = np.asarray(fill_value, dtype=np.float32)[:, None]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        c, h, w = self.images.shape[1:]
        image = self.images[i].astype(np.float32).reshape(c, h * w) / 255.0
        ranked = np.argsort(self.maps[i].reshape(-1))
        image[:, self.select(ranked, self.k)] = self.fill_value
        return torch.from_numpy(image.reshape(c, h, w)), int(self.labels[i])


# --- train and test ---------------------------------------------------------------------------------
def _train(model: nn.Module, loader: DataLoader, cfg: TrainConfig, device) -> None:
    opt = lookup(OPTIMIZERS, cfg.optimizer, "optimizer")(model.parameters(), cfg)
    schedule = lookup(SCHEDULES, cfg.schedule, "schedule")
    total = len(loader) * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule(s, total))
    model.to(device).train()
    for _ in range(cfg.epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


@torch.no_grad()
def _test(model: nn.Module, loader: DataLoader, device) -> tuple[float, float]:
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        logits = model(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
        n += len(yb)
    return correct / n, loss_sum / n


def check_supported(spec: TrialSpec) -> None:
    """The naive path implements ROAR/KAR with mean or zero fill on raw maps; say so for anything else."""
    lookup(PROTOCOL_ORDERS, spec.protocol, "protocol")
    lookup(FILL_VALUES, spec.fill, "fill")
    lookup(NAIVE_ATTRIBUTIONS, spec.attribution, "attribution")
    if spec.postprocess != "identity" or spec.augment != "none" or spec.retrain_mode != "scratch":
        raise ValueError(f"the naive baseline has no post-processing, augmentation or fine-tuning: got "
                         f"postprocess={spec.postprocess!r}, augment={spec.augment!r}, "
                         f"retrain_mode={spec.retrain_mode!r}; valid: 'identity', 'none', 'scratch'")


def naive_trial(spec: TrialSpec, data: ImageData, base_model: nn.Module, device="cpu",
                num_workers: int = 0) -> dict:
    """One retrain the naive way; returns accuracy, loss and seconds per phase (wall clock).

    base_model: the trained stage-A model the maps explain (trained once, like the fast path's).
    num_workers: DataLoader worker processes (0: load in the training process, the best choice on a
    2-core machine where workers would compete with the training threads).
    """
    check_supported(spec)
    device = torch.device(device)
    cfg = TrainConfig.from_spec(spec)
    start = time.perf_counter()
    # the maps explain the same classes as the fast path's: no test map is computed from a test label
    targets = {split: resolve_targets(base_model, x, y, spec.target, device, split=split)
               for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y))}
    train_maps = naive_maps(base_model, data.train_x, targets["train"], spec.attribution, spec.batch_size, device)
    test_maps = naive_maps(base_model, data.test_x, targets["test"], spec.attribution, spec.batch_size, device)
    t_attr = time.perf_counter()

    order = PROTOCOL_ORDERS[spec.protocol]
    fill_value = FILL_VALUES[spec.fill](data.mean)
    train_set = MaskedImages(data.train_x, data.train_y, train_maps, spec.fraction, order, fill_value)
    test_set = MaskedImages(data.test_x, data.test_y, test_maps, spec.fraction, order, fill_value)
    # the same init seed as roar.protocols.context.TrialContext.retrain, so both paths start equal
    seed = spec.seed * 1000 + 1
    model = build_model(spec.model, data.channels, data.num_classes, data.mean, data.std, width=spec.width, seed=seed)
    shuffle = torch.Generator().manual_seed(seed)
    _train(model, DataLoader(train_set, batch_size=spec.batch_size, shuffle=True, generator=shuffle,
                             num_workers=num_workers), cfg, device)
    t_train = time.perf_counter()
    accuracy, loss = _test(model, DataLoader(test_set, batch_size=spec.batch_size, num_workers=num_workers), device)
    end = time.perf_counter()
    return {"accuracy": accuracy, "loss": loss, "n_test": len(test_set),
            "steps": math.ceil(len(train_set) / spec.batch_size) * cfg.epochs,
            "seconds_attribution": t_attr - start, "seconds_train": t_train - t_attr,
            "seconds_test": end - t_train, "seconds_total": end - start}
