"""ROAR and KAR: mask train and test splits the same way, retrain, test on the masked test split."""
from __future__ import annotations

from .context import TrialContext


def retrain_protocol(order: str):
    def run(ctx: TrialContext) -> dict:
        x_train = ctx.removed_images("train", order)
        x_test = ctx.removed_images("test", order)
        model = ctx.retrain(x_train, ctx.labels("train"))
        accuracy, loss = ctx.evaluate(model, x_test, ctx.labels("test"))
        return {"accuracy": accuracy, "loss": loss, "n_test": int(x_test.shape[0])}
    run.__doc__ = f"Remove the {'most' if order == 'morf' else 'least'} important `fraction` of pixels, retrain."
    return run
