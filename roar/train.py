"""The trainer: data resident as tensors on the device, shuffled index batches, no DataLoader.

Reproducible on CPU: the same seed gives the same weights (init seed and data-order seed are derived
from `seed` separately). On CUDA it uses channels_last and bf16 autocast.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .conventions import convention
from .registry import lookup


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.1                  # peak learning rate
    optimizer: str = "sgd"           # sgd | adam
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"       # onecycle | step | constant
    augment: str = "none"            # none | flip_crop
    removal_augment: float = 0.0     # max fraction of random pixels removed per image (0 = off)
    label_smoothing: float = 0.0
    crop_pad: int = 2                # pixels of reflection padding before the random crop (flip_crop)

    @classmethod
    def from_spec(cls, spec) -> "TrainConfig":
        return cls(epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, optimizer=spec.optimizer,
                   momentum=spec.momentum, weight_decay=spec.weight_decay, schedule=spec.schedule,
                   augment=spec.augment, removal_augment=spec.removal_augment,
                   crop_pad=convention(spec, "crop_pad"))


def _sgd(params, cfg):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.momentum > 0)


def _adam(params, cfg):
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


OPTIMIZERS = {"sgd": _sgd, "adam": _adam}


def _onecycle(step, total):
    warm = max(1, int(0.2 * total))
    return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))


def _step(step, total):
    # x0.1 at 50% and 75% of training (the ROAR papers' schedule)
    return 1.0 if step < 0.5 * total else (0.1 if step < 0.75 * total else 0.01)


SCHEDULES = {"onecycle": _onecycle, "step": _step, "constant": lambda step, total: 1.0}


def flip_crop(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random horizontal flip and random crop after `pad` pixels of reflection padding, per sample,
    as one batched gather."""
    n, c, h, w = x.shape
    dev = x.device
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    oh = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    ow = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    rows = (oh[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (ow[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    return xp[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
              rows, cols]


def random_removal(x: torch.Tensor, fill: torch.Tensor, max_fraction: float, generator: torch.Generator):
    """Perturbation-augmented training: remove a uniform random share (0..max_fraction) of pixels per
    image, filled with `fill` (per-channel mean), so removal is not out of distribution at test time."""
    n, c, h, w = x.shape
    share = torch.rand(n, 1, 1, generator=generator, device=x.device) * max_fraction
    mask = torch.rand(n, h, w, generator=generator, device=x.device) < share
    return torch.where(mask[:, None], fill.view(1, c, 1, 1), x)


AUGMENTATIONS = {"none": None, "flip_crop": flip_crop}


def _autocast(device):
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, device="cpu",
                seed: int = 0, fill: torch.Tensor | None = None, progress: bool = False,
                on_epoch=None) -> nn.Module:
    """Train `model` in place on float images x (N,C,H,W) in [0,1] and labels y; returns the model.

    `fill` (per-channel values) is needed only when cfg.removal_augment > 0. `on_epoch(epoch, model)` is
    called after each epoch (1-based) with the model in eval mode, e.g. to report validation accuracy
    to a pruner; an exception it raises stops training.
    """
    optimizer_fn = lookup(OPTIMIZERS, cfg.optimizer, "optimizer")
    schedule_fn = lookup(SCHEDULES, cfg.schedule, "schedule")
    augment_fn = lookup(AUGMENTATIONS, cfg.augment, "augment")
    device = torch.device(device)
    # channels_last on every device: oneDNN's CPU convolutions are ~1.5x faster with it too
    model.to(device, memory_format=torch.channels_last)
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if fill is not None:
        fill = torch.as_tensor(fill, dtype=x.dtype, device=device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed * 1_000_003 + 17)  # data order and augmentation; init was seeded by build_model
    n = x.shape[0]
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    opt = optimizer_fn(model.parameters(), cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule_fn(s, total))
    model.train()
    start = time.perf_counter()
    finite = torch.ones((), dtype=torch.bool, device=device)
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen, device=device)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb, yb = x[idx], y[idx]
            if augment_fn is not None:
                xb = augment_fn(xb, gen, cfg.crop_pad)
            if cfg.removal_augment > 0:
                xb = random_removal(xb, fill, cfg.removal_augment, gen)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            # checked once per epoch: a per-step check waits for the GPU after every step
            finite &= torch.isfinite(loss.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if not finite:
            raise FloatingPointError(f"training loss became non-finite during epoch {epoch + 1} "
                                     f"(lr={cfg.lr}); lower the learning rate")
        if progress:
            print(f"  epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f} "
                  f"({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(epoch + 1, model.eval())
            model.train()
    model.eval()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, device="cpu", batch_size: int = 1024) -> torch.Tensor:
    device = torch.device(device)
    model.eval().to(device)
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            out.append(model(xb).float())
    return torch.cat(out) if out else torch.empty(0)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device="cpu", batch_size: int = 1024):
    """(accuracy, mean cross-entropy) of the final model on the whole split."""
    return logits_accuracy_loss(predict_logits(model, x, device, batch_size), y)


def logits_accuracy_loss(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of logits (N, classes) against labels y (N,)."""
    y = y.to(logits.device)
    acc = (logits.argmax(1) == y).float().mean().item()
    loss = F.cross_entropy(logits, y).item()
    return acc, loss
