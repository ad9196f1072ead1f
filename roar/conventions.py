"""Where this project's defaults differ from the published code, the published value is an option.

Each convention is a spec option whose value is 'ours' (the default) or 'paper'; the paper specs set
every one to 'paper'. Reading them here keeps the two values of each convention in one place:
    options: {road_noise: paper, blur_edges: paper, smoothgrad_noise: paper, crop_pad: paper}
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Convention:
    ours: object
    paper: object
    what: str
    stage: str            # the first artifact it changes: 'model' (stage A), 'maps' (stage B) or 'trial'


CONVENTIONS: dict[str, Convention] = {
    # [ours] Gaussian noise, std 0.01 of the [0, 1] image range. [paper] the published ROAD code adds
    # noise of magnitude 0.01 on the 0-255 pixel scale it works on: 255x smaller, uniform on [0, 0.01/255).
    "road_noise": Convention(("gaussian", 0.01), ("uniform", 0.01 / 255), "ROAD imputation noise (kind, scale on [0,1])",
                             "trial"),
    # [ours] mirror about the edge pixel (scipy 'mirror'), kernel radius ceil(3 sigma) (truncate None).
    # [paper] scipy.ndimage.gaussian_filter defaults: 'reflect' (the edge pixel repeated), truncate 4.
    "blur_edges": Convention(("mirror", None), ("reflect", 4.0), "Gaussian blur edge mode and truncation (sigmas)",
                             "trial"),
    # [ours] std 0.15 of the [0, 1] image range. [paper] std 0.15 on the model's normalised input, i.e.
    # 0.15 x the per-channel dataset std on the [0, 1] range (captum NoiseTunnel on normalised tensors).
    "smoothgrad_noise": Convention(("image", 0.15), ("normalised", 0.15),
                                   "SmoothGrad/VarGrad input noise (scale, std)", "maps"),
    # [ours] 2 px of reflection padding before the random crop (28 px images). [paper] 4 px (CIFAR recipe).
    "crop_pad": Convention(2, 4, "random-crop padding of flip_crop augmentation (pixels)", "model"),
}
CHOICES = ("ours", "paper")


def convention(spec, name: str):
    """The value of convention `name` that `spec` (a TrialSpec) asks for."""
    choice = spec.option(name, "ours")
    if choice not in CHOICES:
        raise ValueError(f"option {name}={choice!r}: must be one of {list(CHOICES)} "
                         f"({CONVENTIONS[name].what})")
    return getattr(CONVENTIONS[name], choice)


def keyed_options(stage: str) -> tuple[str, ...]:
    """Conventions that change the artifacts of `stage` ('model' or 'maps'): they join its cache key."""
    stages = {"model": ("model",), "maps": ("model", "maps")}[stage]
    return tuple(name for name, c in CONVENTIONS.items() if c.stage in stages)


def blur_params(spec) -> dict:
    """Extra parameters of the blurring post-processings: {} for ours, so the default call is unchanged."""
    if spec.option("blur_edges", "ours") == "ours":
        return {}
    edges, truncate = convention(spec, "blur_edges")
    return {"edges": edges, "truncate": truncate}


def road_noise(spec) -> dict:
    kind, scale = convention(spec, "road_noise")
    return {"noise_kind": kind, "noise_std": scale}


def attribution_noise_std(spec, channel_std) -> object:
    """Noise std of SmoothGrad/VarGrad on the [0, 1] image scale: a float, or per channel (C,) values."""
    scale, std = convention(spec, "smoothgrad_noise")
    return std if scale == "image" else tuple(std * float(s) for s in channel_std)
