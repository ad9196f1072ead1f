"""CIFAR-10 in the "python version" layout: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}.

Each batch is a pickle of a dict with b'data' (uint8, N x 3072: 1024 red, 1024 green, 1024 blue values,
row-major) and b'labels' (N ints). Pickle can run code, so these files are read only from the user's
own folder (the one they downloaded or pointed data_root at), never from a URL.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .core import DatasetFormatError, ImageData, make_image_data
from .locate import FileSource, all_exist, torchvision_download

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _field(d: dict, key: str):
    # the official files have bytes keys; a batch re-saved under Python 3 may have str keys
    return d[key.encode()] if key.encode() in d else d.get(key)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DatasetFormatError(f"{path}: not a CIFAR pickle batch ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or _field(d, "data") is None or _field(d, "labels") is None:
        found = sorted(map(str, d)) if isinstance(d, dict) else type(d).__name__
        raise DatasetFormatError(f"{path}: expected a dict with b'data' and b'labels'; found {found}")
    data = np.asarray(_field(d, "data"))
    labels = np.asarray(_field(d, "labels"), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetFormatError(f"{path}: expected b'data' uint8 (N, 3072) and N labels; found data "
                                 f"{data.dtype} {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root=None, image_size=None, seed=0) -> ImageData:
    folder = CIFAR10.locate(root)
    train = [read_cifar_batch(folder / b) for b in TRAIN_BATCHES]
    test_x, test_y = read_cifar_batch(folder / TEST_BATCH)
    names = CIFAR_CLASSES
    if (folder / "batches.meta").is_file():
        with open(folder / "batches.meta", "rb") as f:
            meta = pickle.load(f, encoding="bytes")
        listed = _field(meta, "label_names") if isinstance(meta, dict) else None
        if listed:
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in listed)
    return make_image_data("cifar10", np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                           test_x, test_y, num_classes=len(names), class_names=names)


CIFAR10 = FileSource(
    name="cifar10",
    probe=all_exist(*TRAIN_BATCHES, TEST_BATCH),
    expected="data_batch_1..data_batch_5 and test_batch (the CIFAR-10 python version)",
    how_to_get=("set ROAR_DOWNLOAD=1 to download with torchvision.datasets.CIFAR10 into the cache folder "
                "($ROAR_DATA_DIR/cifar10, default ~/.cache/roar/cifar10); or extract cifar-10-python.tar.gz "
                "and pass data_root pointing at cifar-10-batches-py or its parent."),
    subdirs=("cifar-10-batches-py",),
    download=torchvision_download("CIFAR10"),
)
