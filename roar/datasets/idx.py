"""MNIST and Fashion-MNIST: the idx file format (gzip-compressed or raw).

idx layout: 2 zero bytes, a type code byte, the number of dimensions, then one big-endian uint32
per dimension, then the values in row-major order, big-endian.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .core import DatasetFormatError, ImageData, make_image_data
from .locate import FileSource, torchvision_download

IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

# split part -> (file stem, idx rank); both "train-images-idx3-ubyte" and the ".idx3-ubyte" spelling
# some mirrors use are accepted, each raw or gzipped.
IDX_PARTS = {"train_x": ("train-images", 3), "train_y": ("train-labels", 1),
             "test_x": ("t10k-images", 3), "test_y": ("t10k-labels", 1)}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one idx file (gzip detected from its magic bytes, not its name) into a native-endian array."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetFormatError(f"{path}: corrupt gzip data ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DatasetFormatError(f"{path}: not an idx file: magic bytes {raw[:4].hex() or '(empty)'}, "
                                 f"expected 0000 + type code in {[hex(t) for t in IDX_TYPES]} + rank")
    dtype, rank = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise DatasetFormatError(f"{path}: truncated header: rank {rank} needs {header} bytes, file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=rank, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetFormatError(f"{path}: shape {shape} of {dtype.name} needs {expected} bytes, "
                                 f"file has {len(raw)} (truncated or corrupt)")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=False)


def idx_file(folder: Path, part: str) -> Path | None:
    stem, rank = IDX_PARTS[part]
    for name in (f"{stem}-idx{rank}-ubyte", f"{stem}.idx{rank}-ubyte"):
        for ext in ("", ".gz"):
            if (folder / (name + ext)).is_file():
                return folder / (name + ext)
    return None


def has_idx_files(folder: Path) -> bool:
    return all(idx_file(folder, part) is not None for part in IDX_PARTS)


def read_idx_dataset(name: str, folder: Path, num_classes: int = 10, class_names=None) -> ImageData:
    parts = {part: read_idx(idx_file(folder, part)) for part in IDX_PARTS}
    for split in ("train", "test"):
        x, y = parts[f"{split}_x"], parts[f"{split}_y"]
        x_file, y_file = idx_file(folder, f"{split}_x"), idx_file(folder, f"{split}_y")
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DatasetFormatError(f"{x_file}: expected uint8 images (N, H, W); found {x.dtype} {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetFormatError(f"{y_file}: expected {len(x)} labels (one per image in {x_file.name}); "
                                     f"found shape {y.shape}")
        if len(y) and int(y.max()) >= num_classes:
            raise DatasetFormatError(f"{y_file}: label {int(y.max())} outside 0..{num_classes - 1}")
    return make_image_data(name, parts["train_x"][:, None], parts["train_y"], parts["test_x"][:, None],
                           parts["test_y"], num_classes=num_classes, class_names=class_names)


IDX_EXPECTED = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                "t10k-labels-idx1-ubyte (each raw or .gz)")

FASHION_MNIST = FileSource(
    name="fashion_mnist",
    probe=has_idx_files,
    expected=IDX_EXPECTED,
    how_to_get=("`apt-get install dataset-fashion-mnist` (installs /usr/share/datasets/fashion-mnist); or set "
                "ROAR_DOWNLOAD=1 to download with torchvision.datasets.FashionMNIST into the cache folder "
                "($ROAR_DATA_DIR/fashion_mnist, default ~/.cache/roar/fashion_mnist); or pass data_root "
                "pointing at a folder with those four files."),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    subdirs=("FashionMNIST/raw",),
    download=torchvision_download("FashionMNIST"),
)

MNIST = FileSource(
    name="mnist",
    probe=has_idx_files,
    expected=IDX_EXPECTED,
    how_to_get=("set ROAR_DOWNLOAD=1 to download with torchvision.datasets.MNIST into the cache folder "
                "($ROAR_DATA_DIR/mnist, default ~/.cache/roar/mnist); or pass data_root pointing at a folder "
                "with those four files."),
    system_dirs=("/usr/share/datasets/mnist",),
    subdirs=("MNIST/raw",),
    download=torchvision_download("MNIST"),
)

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot")


def load_fashion_mnist(root=None, image_size=None, seed=0) -> ImageData:
    return read_idx_dataset("fashion_mnist", FASHION_MNIST.locate(root), class_names=FASHION_CLASSES)


def load_mnist(root=None, image_size=None, seed=0) -> ImageData:
    return read_idx_dataset("mnist", MNIST.locate(root), class_names=tuple(str(d) for d in range(10)))
