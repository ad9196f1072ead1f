"""The in-memory form every dataset loader returns, and the batched helpers that build it.

Images are kept as uint8 (N, C, H, W) tensors: four times smaller than float32, so a whole dataset
stays resident on the device, and converted to float on the [0, 1] scale only where a model needs it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


class DatasetMissingError(FileNotFoundError):
    """The files of an on-disk dataset were not found. The message names the dataset, every path
    that was tried and how to get the data; `dataset` and `tried` carry the same as attributes."""

    def __init__(self, dataset: str, tried: list[str], expected: str, how_to_get: str):
        self.dataset = dataset
        self.tried = list(tried)
        places = "\n".join(f"  {p}" for p in self.tried) or "  (no location: data_root is required)"
        super().__init__(
            f"dataset {dataset!r} not found: looked for {expected} in\n{places}\n"
            f"How to get it: {how_to_get}"
        )


class DatasetFormatError(ValueError):
    """A dataset file exists but does not hold what its format promises (bad magic number, truncated
    data, inconsistent counts). The message names the file, what was expected and what was found."""


@dataclass
class ImageData:
    """One dataset, both splits, resident in memory.

    train_x, test_x: uint8 (N, C, H, W), pixel values 0..255.
    train_y, test_y: int64 (N,), class indices 0..num_classes-1.
    mean, std: per channel, on the [0, 1] scale, population statistics of the full train split.
    train_true, test_true: optional bool (N, H, W), True at the pixels that decide the label
        (only known for generated data).
    class_names: optional, one per class index.

    Tensors may be shared with the per-process dataset cache: treat them as read-only and build new
    tensors (masking, filling) instead of writing into them.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    name: str
    train_true: torch.Tensor | None = None
    test_true: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        # A loader bug or a malformed user folder should fail here, with the field named, rather than
        # as a shape error deep inside training.
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise DatasetFormatError(f"{self.name}: {split}_x must be uint8 (N, C, H, W); "
                                         f"found {x.dtype} with shape {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise DatasetFormatError(f"{self.name}: {split}_y must be int64 of shape ({x.shape[0]},); "
                                         f"found {y.dtype} with shape {tuple(y.shape)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DatasetFormatError(f"{self.name}: {split}_y holds labels {int(y.min())}..{int(y.max())}; "
                                         f"valid: 0..{self.num_classes - 1}")
            true = getattr(self, f"{split}_true")
            if true is not None and (true.dtype != torch.bool or true.shape != (x.shape[0], *x.shape[2:])):
                raise DatasetFormatError(f"{self.name}: {split}_true must be bool of shape "
                                         f"{(x.shape[0], *x.shape[2:])}; found {true.dtype} {tuple(true.shape)}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DatasetFormatError(f"{self.name}: train images {tuple(self.train_x.shape[1:])} and test images "
                                     f"{tuple(self.test_x.shape[1:])} differ in (C, H, W)")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DatasetFormatError(f"{self.name}: mean/std need one value per channel ({self.channels}); "
                                     f"found {len(self.mean)} and {len(self.std)}")

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Height in pixels (every registered dataset is square)."""
        return int(self.train_x.shape[2])

    def float_train(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """train_x as float32 in [0, 1] on `device` (moved as uint8 first: 4x less to transfer)."""
        return to_float(self.train_x, device)

    def float_test(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """test_x as float32 in [0, 1] on `device`."""
        return to_float(self.test_x, device)

    def take(self, train_index: torch.Tensor | None, test_index: torch.Tensor | None) -> "ImageData":
        """A new ImageData holding the given rows of each split (None keeps the split whole).
        mean/std stay those of the full train split, so every subset is normalised alike."""
        changes = {}
        for split, index in (("train", train_index), ("test", test_index)):
            if index is None:
                continue
            for part in ("x", "y", "true"):
                value = getattr(self, f"{split}_{part}")
                if value is not None:
                    changes[f"{split}_{part}"] = value[index]
        return dataclasses.replace(self, **changes)


def to_float(x: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] on `device`."""
    return x.to(device).float().div_(255.0)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std (ddof=0) of uint8 images (N, C, H, W), on the [0, 1] scale.

    Exact and cheap in memory: a 256-bin histogram per channel replaces a float copy of the data
    (60000 MNIST images would otherwise need 376 MB in float64).
    """
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / n
        means.append(float(mean / 255.0))
        stds.append(float(var.sqrt() / 255.0))
    return tuple(means), tuple(stds)


def make_image_data(name: str, train_x, train_y, test_x, test_y, num_classes: int | None = None,
                    class_names=None, train_true=None, test_true=None) -> ImageData:
    """Build an ImageData from numpy or torch arrays; statistics come from the train split.
    num_classes defaults to len(class_names), else to the largest label + 1."""
    tx, vx = _as_tensor(train_x, torch.uint8), _as_tensor(test_x, torch.uint8)
    ty, vy = _as_tensor(train_y, torch.int64), _as_tensor(test_y, torch.int64)
    if num_classes is None:
        num_classes = len(class_names) if class_names else int(max(ty.max(), vy.max())) + 1
    mean, std = channel_stats(tx)
    return ImageData(
        train_x=tx, train_y=ty, test_x=vx, test_y=vy, mean=mean, std=std, num_classes=int(num_classes),
        name=name,
        train_true=None if train_true is None else _as_tensor(train_true, torch.bool),
        test_true=None if test_true is None else _as_tensor(test_true, torch.bool),
        class_names=None if class_names is None else tuple(str(c) for c in class_names),
    )


def _as_tensor(a, dtype: torch.dtype) -> torch.Tensor:
    if not isinstance(a, torch.Tensor):
        a = np.ascontiguousarray(a)
        # arrays parsed straight from file bytes are read-only; torch needs its own writable copy
        a = torch.from_numpy(a if a.flags.writeable else a.copy())
    t = a
    return t.to(dtype).contiguous()


def resize_uint8(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 images (N, C, H, W) to (N, C, size, size) with antialiased bilinear interpolation,
    in chunks so that the float copy never exceeds `chunk` images. Returns x itself if already sized."""
    if tuple(x.shape[2:]) == (size, size):
        return x
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, x.shape[0], chunk):
        block = x[start:start + chunk].float()
        block = F.interpolate(block, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out


def check_image_size(name: str, image_size, minimum: int = 1) -> None:
    if image_size is None:
        return
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < minimum:
        raise ValueError(f"image_size={image_size!r} for dataset {name!r}: must be an integer >= {minimum} "
                         f"(pixels) or None for the native size")
