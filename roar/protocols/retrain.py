"""ROAR and KAR: mask train and test splits the same way, retrain, test on the masked test split.

Every retrain row also carries two leak diagnostics. The test masks are computed without the test labels,
so the retrained model has no way to be right where the base model (which made the maps) was wrong,
beyond what the remaining pixels tell it: `accuracy_base_wrong` far above the random-map row at the
same fraction says the masks carry the label. `agreement_base` is how often it repeats the base model.
"""
from __future__ import annotations

import torch

from ..train import logits_accuracy_loss, predict_logits
from .context import TrialContext


def leak_diagnostics(predicted: torch.Tensor, base_predicted: torch.Tensor, labels: torch.Tensor) -> dict:
    """Columns accuracy_base_wrong, n_base_wrong, agreement_base from three (N,) class tensors."""
    predicted, base_predicted, labels = (t.cpu().long() for t in (predicted, base_predicted, labels))
    base_wrong = base_predicted != labels
    n_wrong = int(base_wrong.sum())
    right_there = (predicted[base_wrong] == labels[base_wrong]).float().mean().item() if n_wrong else None
    return {"accuracy_base_wrong": right_there, "n_base_wrong": n_wrong,
            "agreement_base": (predicted == base_predicted).float().mean().item() if labels.numel() else None}


def retrain_protocol(order: str):
    def run(ctx: TrialContext) -> dict:
        x_train = ctx.removed_images("train", order)
        x_test = ctx.removed_images("test", order)
        model = ctx.retrain(x_train, ctx.labels("train"))
        with ctx.timed("train"):  # one pass over the test split gives the score and the leak diagnostics
            logits = predict_logits(model, x_test, ctx.device)
        accuracy, loss = logits_accuracy_loss(logits, ctx.labels("test"))
        return {"accuracy": accuracy, "loss": loss, "n_test": int(x_test.shape[0]),
                **leak_diagnostics(logits.argmax(1), ctx.base_predictions(), ctx.labels("test"))}
    run.__doc__ = f"Remove the {'most' if order == 'morf' else 'least'} important `fraction` of pixels, retrain."
    return run
