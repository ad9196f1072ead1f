"""Model-randomisation sanity check (Adebayo et al., 2018), cascading from the output layer down.

After each step, one more parameterised layer of a copy of the base model is re-initialised (from the
top), and the maps of a fixed test subset are recomputed with the trial's attribution settings and
post-processing. A method whose maps barely change when the model's weights are destroyed does not
explain the model: its rank correlation with the original maps stays high and the check fails.

Also reported: the ROAR score of the fully randomised model's maps (its maps for both splits, MoRF mask
at the trial's fraction, retrain, evaluate), as the `accuracy` column: if maps that no longer depend on
the trained model score as well as the real ones, the ROAR score is not measuring the explanation.

Options: sanity_images (test images compared, default 256), sanity_threshold (rank correlation below
which the check passes, default 0.5), sanity_roar (compute the ROAR score, default true).
"""
from __future__ import annotations

import copy
import json

import torch
from torch import nn

from ..attribution import resolve_targets
from ..fills import apply_fill
from ..removal import removal_mask
from .context import TrialContext
from .map_change import MapProbe, image_mean, probe_subset, rank_correlation, ssim, trial_maps
from .options import boolean, number, positive_int

DEFAULT_IMAGES = 256
DEFAULT_THRESHOLD = 0.5
RANDOMISATION_SEED_OFFSET = 7919   # keeps the re-initialisation stream apart from retrain seeds


def parameterised_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module that owns parameters directly, in registration order (input
    first). Buffers-only modules (the Normalize layer) are not layers of the learned function."""
    return [(name, m) for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def reinitialise(module: nn.Module, generator_seed: int) -> None:
    """Re-draw a layer's parameters from its own initialiser (seeded), on the CPU.

    `reset_parameters` is torch's initialiser of the layer type (BatchNorm also resets its running
    statistics). A layer without one gets N(0, std²) with the std of its current parameters, so its
    scale stays that of a trained layer of that shape.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            return
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                p.copy_(torch.randn_like(p) * p.std().clamp_min(1e-8) if p.numel() > 1 else torch.randn_like(p))


def cascading_randomisations(model: nn.Module, seed: int):
    """Yield (layer name, layer type, model) with the top 1, 2, ... parameterised layers re-initialised.

    Works on one CPU copy of `model` (the base model is never touched); each yielded model is a fresh
    copy, so a caller may move it to any device.
    """
    randomised = copy.deepcopy(model).cpu()
    layers = parameterised_layers(randomised)
    if not layers:
        raise ValueError(f"protocol 'sanity': model {type(model).__name__} has no parameterised layer to randomise")
    for step, (name, module) in enumerate(reversed(layers)):
        reinitialise(module, seed * 1_000_003 + RANDOMISATION_SEED_OFFSET + step)
        yield name, type(module).__name__, copy.deepcopy(randomised)


def randomised_roar(ctx: TrialContext, model: nn.Module) -> tuple[float, float]:
    """(accuracy, loss) of a model retrained on MoRF-masked images, masks from `model`'s maps of both
    splits (fraction, fill, selection, tie-break seed and retrain seed as the trial's own ROAR)."""
    s = ctx.spec
    filled = {}
    for split in ("train", "test"):
        x, index = ctx.images(split), ctx.index(split)
        with ctx.timed("attribution"):
            target = resolve_targets(ctx.base_model, x, ctx.labels(split).cpu(), s.target, ctx.device,
                                     split=split)
        maps = trial_maps(ctx, model, x, target, index.cpu())
        with ctx.timed("mask"):
            mask = removal_mask(maps, s.fraction, order="morf", seed=s.seed, selection=s.selection, index=index)
            filled[split] = apply_fill(x, mask, s.fill, ctx.data.mean, seed=s.seed)
    retrained = ctx.retrain(filled["train"], ctx.labels("train"))
    return ctx.evaluate(retrained, filled["test"], ctx.labels("test"))


def run_sanity(ctx: TrialContext) -> dict:
    threshold = number(ctx.spec, "sanity_threshold", DEFAULT_THRESHOLD, -1.0, 1.0)
    with_roar = boolean(ctx.spec, "sanity_roar", True)
    rows = probe_subset(ctx.images("test").shape[0], positive_int(ctx.spec, "sanity_images", DEFAULT_IMAGES, 2))
    probe = MapProbe(ctx, rows)
    original = probe.maps(ctx.base_model)
    steps = []
    model = None
    for name, kind, model in cascading_randomisations(ctx.base_model, ctx.spec.seed):
        model = model.to(ctx.device).eval()
        maps = probe.maps(model)
        steps.append({"layer": name, "type": kind, "rank_corr": image_mean(rank_correlation(original, maps)),
                      "ssim": image_mean(ssim(original, maps))})
    final = steps[-1]
    passed = final["rank_corr"] < threshold
    out = {"sanity_rank_corr": final["rank_corr"], "sanity_ssim": final["ssim"], "sanity_passed": passed,
           "accuracy": None, "loss": None, "n_test": int(ctx.images("test").shape[0])}
    if with_roar:
        out["accuracy"], out["loss"] = randomised_roar(ctx, model)
    out["detail_json"] = json.dumps({
        "images": int(rows.numel()), "threshold": threshold, "order": "top (output) layer first, cumulative",
        "steps": steps,
        "verdict": ("passed: maps change when the model is randomised" if passed else
                    f"FAILED: maps of the fully randomised model keep rank correlation {final['rank_corr']:.3f}"
                    f" >= {threshold} with the trained model's maps"),
        "roar_accuracy_randomised": out["accuracy"]})
    return out
