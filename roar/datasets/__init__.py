"""The dataset registry: the string a spec names -> a loader returning an ImageData.

    data = load_dataset("fashion_mnist", subset=2000, test_subset=1000, seed=0)
    x = data.float_train(device)        # float32 (N, 1, 28, 28) in [0, 1]

Full datasets are cached per process (sweeps load the same one for many trials); `seed` only picks
the random subsets. The full data never depends on it: generated data (synthetic, the digits split)
is always drawn with FULL_DATA_SEED, so two trials that differ in data_seed see the same dataset,
sampled differently.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..registry import lookup
from .cifar import CIFAR10, load_cifar10
from .core import (DatasetFormatError, DatasetMissingError, ImageData, channel_stats, check_image_size,
                   make_image_data, resize_uint8, to_float)
from .folders import CUB200, IMAGEFOLDER, load_cub200, load_imagefolder
from .generated import load_digits, load_synthetic, make_synthetic, synthetic_slots
from .idx import FASHION_MNIST, MNIST, load_fashion_mnist, load_mnist, read_idx
from .locate import FileSource, cache_base, download_enabled
from .svhn import SVHN, load_svhn

__all__ = ["DATASETS", "DatasetLoader", "ImageData", "DatasetMissingError", "DatasetFormatError", "load_dataset",
           "dataset_available", "prepare_dataset", "clear_cache", "subset_indices", "channel_stats",
           "make_image_data", "make_synthetic", "synthetic_slots", "read_idx", "to_float", "cache_base",
           "FULL_DATA_SEED"]

FULL_DATA_SEED = 0
CACHE_SIZE = 4  # full datasets kept per process; CUB at 224 px is ~1.8 GB, so keep this small


@dataclass(frozen=True)
class DatasetLoader:
    """A registry entry. Call it as loader(root, image_size, seed) -> the full ImageData.

    source: where the files are looked for (None: generated, needs no files).
    sizes_itself: the loader decodes or generates at image_size; otherwise the native images are
        resized afterwards (antialiased bilinear) when image_size differs from the native size.
    has_true_pixels: ImageData carries train_true/test_true (the pixels that decide the label), which
        the groundtruth protocol and the true_pixels oracle need.
    native_size: image side in pixels when image_size is null (None: only the files know).
    split_sizes: (train, test) images when fixed (None: the files decide). Spec checks read both.
    """

    name: str
    load: Callable[..., ImageData]
    source: FileSource | None = None
    sizes_itself: bool = False
    has_true_pixels: bool = False
    native_size: int | None = None
    split_sizes: tuple[int, int] | None = None

    @property
    def on_disk(self) -> bool:
        return self.source is not None

    @property
    def downloadable(self) -> bool:
        return self.source is not None and self.source.download is not None

    def __call__(self, root: str | None = None, image_size: int | None = None, seed: int = 0) -> ImageData:
        check_image_size(self.name, image_size)
        data = self.load(root, image_size, seed)
        if image_size is not None and not self.sizes_itself and data.image_size != image_size:
            data = resized(data, image_size)
        return data


def resized(data: ImageData, size: int) -> ImageData:
    """Both splits resized to size x size; mean/std recomputed (interpolation changes them)."""
    train_x = resize_uint8(data.train_x, size)
    mean, std = channel_stats(train_x)
    return dataclasses.replace(data, train_x=train_x, test_x=resize_uint8(data.test_x, size), mean=mean, std=std)


# keyed by each loader's own name, so a key can never drift from the name it reports
DATASETS: dict[str, DatasetLoader] = {loader.name: loader for loader in (
    DatasetLoader("fashion_mnist", load_fashion_mnist, FASHION_MNIST, native_size=28, split_sizes=(60000, 10000)),
    DatasetLoader("mnist", load_mnist, MNIST, native_size=28, split_sizes=(60000, 10000)),
    DatasetLoader("cifar10", load_cifar10, CIFAR10, native_size=32, split_sizes=(50000, 10000)),
    DatasetLoader("svhn", load_svhn, SVHN, native_size=32, split_sizes=(73257, 26032)),
    DatasetLoader("cub200", load_cub200, CUB200, sizes_itself=True, native_size=224),
    DatasetLoader("imagefolder", load_imagefolder, IMAGEFOLDER, sizes_itself=True, native_size=64),
    DatasetLoader("digits", load_digits, native_size=8, split_sizes=(1438, 359)),
    DatasetLoader("synthetic", load_synthetic, sizes_itself=True, has_true_pixels=True, native_size=16,
                  split_sizes=(3000, 1000)),
)}


def dataset_available(name: str, root: str | None = None) -> str | None:
    """None when `name` can be loaded, else the DatasetMissingError message. Checks files only
    (cheap: no decoding). A missing dataset that torchvision can fetch counts as available when
    ROAR_DOWNLOAD=1; call prepare_dataset on the driver to fetch it once before workers start.
    Unknown names raise KeyError like every registry lookup."""
    loader = lookup(DATASETS, name, "dataset")
    if loader.source is None:
        return None
    error = loader.source.missing(root)
    if error is None or (loader.downloadable and download_enabled()):
        return None
    return str(error)


def prepare_dataset(name: str, root: str | None = None) -> str | None:
    """Make sure the files are on disk (downloading when ROAR_DOWNLOAD=1) and return their folder
    (None for generated datasets). Raises DatasetMissingError otherwise."""
    loader = lookup(DATASETS, name, "dataset")
    return None if loader.source is None else str(loader.source.locate(root))


def subset_indices(n: int, size: int | None, seed: int, stream: int = 0) -> torch.Tensor | None:
    """Sorted int64 indices of `size` distinct rows out of n, fixed by (seed, stream); None = all rows.
    Streams keep the train (0) and test (1) draws independent for the same seed."""
    if size is None:
        return None
    order = np.random.default_rng([int(seed), int(stream)]).permutation(n)[:size]
    return torch.from_numpy(np.sort(order)).to(torch.int64)


def _check_subset(field: str, value, n: int, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= n:
        raise ValueError(f"{field}={value!r} for dataset {name!r}: must be an integer in 1..{n} "
                         f"(the {'train' if field == 'subset' else 'test'} split has {n} images) or None for all")


def load_dataset(name: str, root: str | None = None, subset: int | None = None, test_subset: int | None = None,
                 seed: int = 0, image_size: int | None = None) -> ImageData:
    """The dataset `name`, with a random `subset` of train images and `test_subset` of test images
    (None = the whole split), both fixed by `seed`. Rows keep their original order. mean/std are
    those of the full train split. The full dataset is cached per process."""
    loader = lookup(DATASETS, name, "dataset")
    check_image_size(name, image_size)
    root_key = None if root is None else os.path.abspath(os.path.expanduser(str(root)))
    # the cache base is part of the key: with no root, ROAR_DATA_DIR decides which files are read
    base_key = str(cache_base()) if loader.on_disk and root is None else None
    full = _load_full(name, root_key, image_size, base_key)
    _check_subset("subset", subset, full.train_x.shape[0], name)
    _check_subset("test_subset", test_subset, full.test_x.shape[0], name)
    # a new ImageData either way, so a caller rebinding its fields never alters the cached one
    return full.take(subset_indices(full.train_x.shape[0], subset, seed, 0),
                     subset_indices(full.test_x.shape[0], test_subset, seed, 1))


@functools.lru_cache(maxsize=CACHE_SIZE)
def _load_full(name: str, root: str | None, image_size: int | None, base_key: str | None) -> ImageData:
    return DATASETS[name](root, image_size, FULL_DATA_SEED)


def clear_cache() -> None:
    """Forget the per-process dataset cache (tests; after files changed on disk)."""
    _load_full.cache_clear()
