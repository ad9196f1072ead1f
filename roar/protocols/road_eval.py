"""ROAD (Rong et al., ICML 2022): remove and debias, without retraining.

The base model is evaluated on the whole test split with the removed pixels filled by noisy linear
imputation (fill 'road'), which hides the mask's shape better than a constant fill and so keeps the
modified images closer to the training distribution. The masks are the trial's (the same as ROAR/KAR
for the same maps, post-processing, fraction and seed); `spec.fill` is ignored: ROAD is its fill.

road_morf removes the most important `fraction` of pixels, road_lerf the least important `fraction`
(the same mask as kar), so each ROAD row pairs cell by cell with a roar or kar row.
"""
from __future__ import annotations

from .context import TrialContext

ROAD_FILL = "road"


def road_protocol(order: str):
    def run(ctx: TrialContext) -> dict:
        x_test = ctx.removed_images("test", order, fill=ROAD_FILL)
        accuracy, loss = ctx.evaluate(ctx.base_model, x_test, ctx.labels("test"))
        return {"accuracy": accuracy, "loss": loss, "n_test": int(x_test.shape[0])}
    run.__doc__ = (f"Fill the {'most' if order == 'morf' else 'least'} important `fraction` of test pixels by "
                   "noisy linear imputation and evaluate the base model on the whole test split.")
    return run
