"""Datasets stored as image files: CUB-200-2011 and a generic class-per-folder layout.

Every image is decoded with PIL, converted to RGB (CUB has a few grayscale JPEGs) and resized to a
square image_size x image_size (plain bilinear resize, no crop), so both splits stack into one uint8
tensor. Decoding is the only per-image loop; it runs in a thread pool (PIL releases the GIL while
decoding) and happens once per process because load_dataset caches the result.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .core import DatasetFormatError, ImageData, check_image_size, make_image_data
from .locate import FileSource, all_exist

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
CUB_DEFAULT_SIZE = 224
IMAGEFOLDER_DEFAULT_SIZE = 64


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image file -> uint8 (size, size, 3)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except OSError as e:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise DatasetFormatError(f"{path}: cannot decode image ({e})") from None


def decode_images(paths: list[Path], size: int) -> np.ndarray:
    """Image files -> uint8 (N, 3, size, size), in the order given."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    if not paths:
        return out

    def put(i: int) -> None:
        out[i] = decode_image(paths[i], size).transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(put, range(len(paths))))
    return out


# --- CUB-200-2011 -----------------------------------------------------------------------------------

CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "images")


def _read_id_table(path: Path, columns: int) -> dict[int, list[str]]:
    """'id value ...' lines -> {id: [value, ...]}; the last column may contain no spaces."""
    table = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=columns - 1)
        if len(parts) != columns or not parts[0].isdigit():
            raise DatasetFormatError(f"{path}:{lineno}: expected {columns} columns '<id> ...'; found {line!r}")
        table[int(parts[0])] = parts[1:]
    return table


def load_cub200(root=None, image_size=None, seed=0) -> ImageData:
    check_image_size("cub200", image_size)
    size = image_size or CUB_DEFAULT_SIZE
    folder = CUB200.locate(root)
    images = _read_id_table(folder / "images.txt", 2)
    labels = _read_id_table(folder / "image_class_labels.txt", 2)
    is_train = _read_id_table(folder / "train_test_split.txt", 2)
    ids = sorted(images)
    for table, fname in ((labels, "image_class_labels.txt"), (is_train, "train_test_split.txt")):
        absent = [i for i in ids if i not in table]
        if absent:
            raise DatasetFormatError(f"{folder / fname}: no entry for image id(s) {absent[:5]} listed in images.txt")
    y = np.array([int(labels[i][0]) - 1 for i in ids], dtype=np.int64)  # file is 1-based
    train = np.array([is_train[i][0] == "1" for i in ids])
    paths = [folder / "images" / images[i][0] for i in ids]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise DatasetFormatError(f"CUB images listed in {folder / 'images.txt'} are missing: {absent[:5]}"
                                 f"{' ...' if len(absent) > 5 else ''} ({len(absent)} in all)")
    x = decode_images(paths, size)
    class_names = None
    if (folder / "classes.txt").is_file():
        classes = _read_id_table(folder / "classes.txt", 2)
        class_names = tuple(classes[k][0] for k in sorted(classes))
    return make_image_data("cub200", x[train], y[train], x[~train], y[~train],
                           num_classes=len(class_names) if class_names else None, class_names=class_names)


CUB200 = FileSource(
    name="cub200",
    probe=all_exist(*CUB_FILES),
    expected="the CUB_200_2011 layout: images.txt, image_class_labels.txt, train_test_split.txt, images/",
    how_to_get=("download CUB_200_2011.tgz (Caltech-UCSD Birds-200-2011, data.caltech.edu), extract it and pass "
                "data_root pointing at CUB_200_2011 or its parent (or extract it into $ROAR_DATA_DIR/cub200, "
                "default ~/.cache/roar/cub200). There is no automatic download."),
    subdirs=("CUB_200_2011",),
)


# --- generic image folder -----------------------------------------------------------------------------

def _test_split_dir(folder: Path) -> Path | None:
    for name in ("val", "test"):
        if (folder / name).is_dir():
            return folder / name
    return None


def _has_image_folder(folder: Path) -> bool:
    return (folder / "train").is_dir() and _test_split_dir(folder) is not None


def _list_split(split_dir: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if class_dir.name not in index:
            raise DatasetFormatError(f"{class_dir}: class {class_dir.name!r} has no folder in the train split; "
                                     f"train classes: {classes}")
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        paths += files
        labels += [index[class_dir.name]] * len(files)
    return paths, np.array(labels, dtype=np.int64)


def load_imagefolder(root=None, image_size=None, seed=0) -> ImageData:
    check_image_size("imagefolder", image_size)
    size = image_size or IMAGEFOLDER_DEFAULT_SIZE
    folder = IMAGEFOLDER.locate(root)
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    train_paths, train_y = _list_split(folder / "train", classes)
    test_paths, test_y = _list_split(_test_split_dir(folder), classes)
    for split, paths in (("train", train_paths), ("val/test", test_paths)):
        if not paths:
            raise DatasetFormatError(f"{folder}: the {split} split holds no images "
                                     f"({', '.join(sorted(IMAGE_SUFFIXES))} inside one folder per class)")
    return make_image_data("imagefolder", decode_images(train_paths, size), train_y,
                           decode_images(test_paths, size), test_y, num_classes=len(classes), class_names=classes)


IMAGEFOLDER = FileSource(
    name="imagefolder",
    probe=_has_image_folder,
    expected="train/ and val/ (or test/), each with one sub-folder of .jpg/.png images per class",
    how_to_get=("pass data_root pointing at a folder laid out as <root>/train/<class>/<image>.jpg and "
                "<root>/val/<class>/<image>.jpg (an ImageNet-style layout; classes are sorted by folder name)."),
)
