"""Datasets that need no files: scikit-learn's 8x8 digits and a synthetic set with known true pixels."""
from __future__ import annotations

import numpy as np

from .core import ImageData, check_image_size, make_image_data

DIGITS_TEST_FRACTION = 0.2


def load_digits(root=None, image_size=None, seed=0) -> ImageData:
    """scikit-learn's 1797 8x8 digits (values 0..16, scaled to 0..255), split 80/20 by a seeded permutation."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(DIGITS_TEST_FRACTION * len(y)))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return make_image_data("digits", x[train], y[train], x[test], y[test], num_classes=10,
                           class_names=tuple(str(d) for d in range(10)))


# --- synthetic ---------------------------------------------------------------------------------------

SYNTHETIC_CLASSES = 4
SYNTHETIC_SIZE = 16
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 3000, 1000
BACKGROUND_MAX = 0.5          # background noise ~ U(0, 0.5) on the [0, 1] scale
PATCH_LEVEL = (0.6, 0.9)      # per-image brightness of the label patch ~ U(0.6, 0.9) ...
PATCH_NOISE = 0.1             # ... plus per-pixel noise ~ U(0, 0.1)


def synthetic_slots(image_size: int = SYNTHETIC_SIZE) -> np.ndarray:
    """bool (4, H, W): the square patch of each class, centred in one quadrant each (class 0 top-left,
    1 top-right, 2 bottom-left, 3 bottom-right); side image_size // 4 pixels. Different positions make
    the true-pixel mask itself reveal the class, which the leakage protocol must detect."""
    side = max(2, image_size // 4)
    half = image_size // 2
    offset = (half - side) // 2
    slots = np.zeros((SYNTHETIC_CLASSES, image_size, image_size), dtype=bool)
    for k in range(SYNTHETIC_CLASSES):
        top, left = (k // 2) * half + offset, (k % 2) * half + offset
        slots[k, top:top + side, left:left + side] = True
    return slots


def make_synthetic(n_train: int = SYNTHETIC_TRAIN, n_test: int = SYNTHETIC_TEST,
                   image_size: int = SYNTHETIC_SIZE, seed: int = 0) -> ImageData:
    """1-channel images of uniform background noise; the class (0..3) is the quadrant whose patch is bright.

    train_true/test_true mark the bright patch: exactly the pixels that decide the label (a
    pixel-perfect attribution map). Everything is drawn from numpy's generator seeded with `seed`,
    train before test, so a seed always gives the same bytes.
    """
    check_image_size("synthetic", image_size, minimum=8)
    rng = np.random.default_rng(seed)
    slots = synthetic_slots(image_size)
    splits = []
    for n in (n_train, n_test):
        y = rng.integers(0, SYNTHETIC_CLASSES, size=n)
        true = slots[y]                                           # (n, H, W)
        x = rng.uniform(0.0, BACKGROUND_MAX, size=true.shape)
        level = rng.uniform(*PATCH_LEVEL, size=(n, 1, 1))
        patch = level + rng.uniform(0.0, PATCH_NOISE, size=true.shape)
        x = np.where(true, patch, x)
        splits.append((np.rint(x * 255.0).astype(np.uint8)[:, None], y.astype(np.int64), true))
    (tx, ty, ttrue), (vx, vy, vtrue) = splits
    return make_image_data("synthetic", tx, ty, vx, vy, num_classes=SYNTHETIC_CLASSES,
                           class_names=("top_left", "top_right", "bottom_left", "bottom_right"),
                           train_true=ttrue, test_true=vtrue)


def load_synthetic(root=None, image_size=None, seed=0) -> ImageData:
    return make_synthetic(image_size=image_size or SYNTHETIC_SIZE, seed=seed)
