"""Ground truth (datasets with known true pixels only, e.g. 'synthetic'): does the map rank the pixels
that decide the label on top?

groundtruth_precision is the R-precision of the post-processed test maps: for each image with k true
pixels, the share of true pixels among its k top-ranked pixels (ties broken by the same seeded key as
removal), averaged over images. k is the image's own count of true pixels rather than the trial's
fraction, so the score does not depend on the fraction (1 = perfect, k / (H*W) = chance) and rows of a
method are comparable across fractions. detail_json adds the precision and recall of the trial's own
MoRF mask at its fraction. No model is evaluated: the accuracy column is null.
"""
from __future__ import annotations

import json

import torch

from ..removal import ascending_order
from .context import TrialContext


def topk_true_share(maps: torch.Tensor, true: torch.Tensor, seed: int = 0, index=None) -> torch.Tensor:
    """Per image, the share of true pixels among its k top-ranked pixels, k = its number of true pixels.

    maps: float (N,H,W); true: bool (N,H,W). Returns float64 (N,); NaN for an image without true pixels.
    Ranks use removal.ascending_order, so ties fall as in the removal masks.
    """
    if maps.shape != true.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and true pixels {tuple(true.shape)} must have the same shape")
    n = maps.shape[0]
    order = ascending_order(maps, seed, index)                       # (N, P) pixel ids, ascending
    p = order.shape[1]
    position = torch.empty_like(order).scatter_(1, order, torch.arange(p, device=order.device).expand(n, p))
    flat_true = true.reshape(n, -1).to(order.device)
    k = flat_true.sum(1)
    top = position >= (p - k)[:, None]                                # the k largest of each image
    hits = (top & flat_true).sum(1).double()
    return torch.where(k > 0, hits / k.clamp_min(1).double(), torch.full_like(hits, float("nan")))


def run_groundtruth(ctx: TrialContext) -> dict:
    true = ctx.data.test_true
    if true is None:
        raise ValueError(f"protocol 'groundtruth' needs a dataset with known true pixels (ImageData.test_true); "
                         f"dataset {ctx.spec.dataset!r} has none; use dataset 'synthetic'")
    true = true.to(ctx.device).bool()
    maps = ctx.maps("test")
    with ctx.timed("mask"):
        share = topk_true_share(maps, true, ctx.spec.seed, ctx.index("test"))
        valid = ~torch.isnan(share)
        if not bool(valid.any()):
            raise ValueError(f"protocol 'groundtruth': no test image of dataset {ctx.spec.dataset!r} has a true pixel")
        mask = ctx.mask("test", "morf").reshape(true.shape[0], -1)
        flat_true = true.reshape(true.shape[0], -1)
        hit = (mask & flat_true).sum(1).double()
        removed = mask.sum(1).double()
        mask_precision = (hit / removed.clamp_min(1))[removed > 0]
        mask_recall = (hit / flat_true.sum(1).double().clamp_min(1))[valid]
    detail = {"images": int(valid.sum()), "k": "true pixels per image (R-precision)",
              "chance": float((flat_true.sum(1).double() / flat_true.shape[1])[valid].mean()),
              "mask_precision": float(mask_precision.mean()) if mask_precision.numel() else None,
              "mask_recall": float(mask_recall.mean())}
    return {"accuracy": None, "loss": None, "n_test": int(valid.sum()),
            "groundtruth_precision": float(share[valid].mean()), "detail_json": json.dumps(detail)}
