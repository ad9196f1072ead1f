"""Mask leakage: how much the removal mask's shape alone reveals the label.

A fresh classifier is trained on the binary MoRF mask at the trial's fraction (the very masks ROAR
uses), given as a 1-channel float image, 1 = removed, with no pixel values at all, and tested on the
test split's masks. Accuracy well above chance means a low ROAR accuracy may come from the mask's
shape (a retrained model can read the class from where the holes are) rather than from the removed
information.

Options: leakage_model (model registry key, default 'small_cnn': the probe is a fixed small network,
not the trial's model, so leakage is comparable across models), leakage_width (default 16),
leakage_epochs (default: the trial's epochs). The rest of the recipe (batch size, lr, optimiser,
schedule) is the trial's, without augmentation: flips and crops would move the mask, and moving it
is exactly the information under test.
"""
from __future__ import annotations

import dataclasses

import torch

from ..models import build_model
from ..train import evaluate, train_model
from .context import TrialContext
from .options import positive_int

DEFAULT_MODEL = "small_cnn"
DEFAULT_WIDTH = 16
PROBE_SEED_OFFSET = 2    # the trial's retrain uses offset 1; the probe gets its own init and data order


def chance_accuracy(y: torch.Tensor) -> float:
    """Share of the most frequent class: the accuracy of always predicting it."""
    return float(torch.bincount(y.cpu()).max()) / max(1, y.numel())


def mask_images(mask: torch.Tensor) -> torch.Tensor:
    """bool (N,H,W) mask -> float (N,1,H,W), 1.0 where removed."""
    return mask[:, None].float()


def run_leakage(ctx: TrialContext) -> dict:
    s = ctx.spec
    epochs = positive_int(s, "leakage_epochs", s.epochs)
    width = positive_int(s, "leakage_width", DEFAULT_WIDTH)
    x_train = mask_images(ctx.mask("train", "morf"))
    x_test = mask_images(ctx.mask("test", "morf"))
    # normalise by the train masks' own statistics, as every model normalises its input
    p = float(x_train.mean())
    std = max((p * (1 - p)) ** 0.5, 1e-3)
    seed = s.seed * 1000 + PROBE_SEED_OFFSET
    model = build_model(s.option("leakage_model", DEFAULT_MODEL), 1, ctx.data.num_classes, (p,), (std,),
                        width=width, seed=seed)
    cfg = dataclasses.replace(ctx.train_config, epochs=epochs, augment="none", removal_augment=0.0)
    y_train, y_test = ctx.labels("train"), ctx.labels("test")
    with ctx.timed("train"):
        train_model(model, x_train, y_train, cfg, ctx.device, seed=seed)
        accuracy, loss = evaluate(model, x_test, y_test, ctx.device)
    # accuracy_drop stays null: base model and mask probe answer different questions
    return {"accuracy": accuracy, "loss": loss, "n_test": int(x_test.shape[0]), "accuracy_drop": None,
            "leakage_accuracy": accuracy, "chance_accuracy": chance_accuracy(y_test)}
