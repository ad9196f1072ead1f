"""SVHN cropped digits: train_32x32.mat and test_32x32.mat (MATLAB files, read with scipy.io.loadmat).

X is (32, 32, 3, N) uint8 and y is (N, 1) with digit 0 stored as label 10. The extra split is not used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .core import DatasetFormatError, ImageData, make_image_data
from .locate import FileSource, all_exist, torchvision_download

SPLIT_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One .mat file -> (uint8 images (N, 3, 32, 32), int64 labels (N,) with 0..9)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises several unrelated types for a damaged file
        raise DatasetFormatError(f"{path}: cannot read MATLAB file ({type(e).__name__}: {e})") from None
    if "X" not in mat or "y" not in mat:
        raise DatasetFormatError(f"{path}: expected variables 'X' and 'y'; found "
                                 f"{sorted(k for k in mat if not k.startswith('__'))}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise DatasetFormatError(f"{path}: expected X uint8 of shape (H, W, 3, N) with N = {len(y)} labels; "
                                 f"found {x.dtype} {x.shape}")
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise DatasetFormatError(f"{path}: labels {y.min()}..{y.max()}; SVHN uses 1..10 (10 = digit 0)")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def load_svhn(root=None, image_size=None, seed=0) -> ImageData:
    folder = SVHN.locate(root)
    train_x, train_y = read_svhn_mat(folder / SPLIT_FILES["train"])
    test_x, test_y = read_svhn_mat(folder / SPLIT_FILES["test"])
    return make_image_data("svhn", train_x, train_y, test_x, test_y, num_classes=10,
                           class_names=tuple(str(d) for d in range(10)))


SVHN = FileSource(
    name="svhn",
    probe=all_exist(*SPLIT_FILES.values()),
    expected="train_32x32.mat and test_32x32.mat",
    how_to_get=("set ROAR_DOWNLOAD=1 to download with torchvision.datasets.SVHN into the cache folder "
                "($ROAR_DATA_DIR/svhn, default ~/.cache/roar/svhn); or pass data_root pointing at a folder "
                "with those two files."),
    download=torchvision_download("SVHN", {"split": "train"}, {"split": "test"}),
)
