"""Dataset registry: every on-disk format is written tiny into tmp_path and read back exactly."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from roar import datasets as ds
from roar.datasets import (DATASETS, DatasetFormatError, DatasetMissingError, ImageData, channel_stats,
                           dataset_available, load_dataset, prepare_dataset, read_idx, subset_indices,
                           synthetic_slots)

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test sees the user's cache, a download flag, or a dataset cached by another test."""
    monkeypatch.setenv("ROAR_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ROAR_DOWNLOAD", raising=False)
    ds.clear_cache()
    yield
    ds.clear_cache()


# --- writers of the real on-disk formats ------------------------------------------------------------

IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int16"): 0x0B, np.dtype("float32"): 0x0D}


def idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, IDX_CODES[a.dtype], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write_idx_set(folder: Path, arrays: dict, gz: bool, dotted: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for part, a in arrays.items():
        stem, rank = ds.idx.IDX_PARTS[part]
        name = f"{stem}{'.' if dotted else '-'}idx{rank}-ubyte"
        data = idx_bytes(a)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def tiny_idx_arrays(seed=0, n_train=6, n_test=4, h=5, w=3):
    rng = np.random.default_rng(seed)
    return {"train_x": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
            "train_y": rng.integers(0, 10, n_train).astype(np.uint8),
            "test_x": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
            "test_y": rng.integers(0, 10, n_test).astype(np.uint8)}


def write_cifar(folder: Path, per_batch=2, seed=0):
    """cifar-10-batches-py with bytes keys, as the official pickles have. Returns (train data, labels, test ...)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f)
        out[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return out


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# --- ImageData and statistics ---------------------------------------------------------------------

def test_channel_stats_exact_on_known_values():
    x = torch.zeros((2, 2, 1, 2), dtype=torch.uint8)
    x[:, 0] = torch.tensor([[0, 255]], dtype=torch.uint8)   # half 0, half 1 -> mean 0.5, std 0.5
    x[:, 1] = 51                                            # constant 0.2 -> std 0
    mean, std = channel_stats(x)
    assert mean == pytest.approx((0.5, 0.2), abs=1e-12)
    assert std == pytest.approx((0.5, 0.0), abs=1e-12)


def test_channel_stats_matches_float64_reference():
    x = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (7, 3, 5, 4), dtype=np.uint8))
    ref = x.double() / 255
    mean, std = channel_stats(x)
    assert mean == pytest.approx(tuple(ref.mean((0, 2, 3)).tolist()), abs=1e-12)
    assert std == pytest.approx(tuple(ref.std((0, 2, 3), unbiased=False).tolist()), abs=1e-12)


def test_imagedata_properties_and_float_views():
    data = ds.make_image_data("t", np.full((3, 2, 4, 4), 255, np.uint8), [0, 1, 2],
                              np.zeros((1, 2, 4, 4), np.uint8), [1], num_classes=3)
    assert (data.channels, data.image_size, data.num_classes) == (2, 4, 3)
    f = data.float_train("cpu")
    assert f.dtype == torch.float32 and f.shape == (3, 2, 4, 4) and bool((f == 1.0).all())
    assert bool((data.float_test() == 0.0).all())
    assert data.mean == (1.0, 1.0) and data.std == (0.0, 0.0)


@pytest.mark.parametrize("change, field", [
    (dict(train_x=torch.zeros((2, 1, 4, 4))), "train_x"),                          # float, not uint8
    (dict(train_y=torch.tensor([0, 1], dtype=torch.int32)), "train_y"),
    (dict(test_y=torch.tensor([5])), "test_y"),                                     # label >= num_classes
    (dict(train_true=torch.zeros((2, 4, 4))), "train_true"),
    (dict(mean=(0.1, 0.2)), "mean/std"),
])
def test_imagedata_rejects_malformed_fields(change, field):
    good = dict(train_x=torch.zeros((2, 1, 4, 4), dtype=torch.uint8), train_y=torch.tensor([0, 1]),
                test_x=torch.zeros((1, 1, 4, 4), dtype=torch.uint8), test_y=torch.tensor([1]),
                mean=(0.0,), std=(0.0,), num_classes=2, name="t")
    with pytest.raises(DatasetFormatError, match=field):
        ImageData(**{**good, **change})


# --- idx (MNIST, Fashion-MNIST) ---------------------------------------------------------------------

@pytest.mark.parametrize("gz, dotted", [(True, False), (False, False), (False, True)])
@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_idx_round_trip(tmp_path, name, gz, dotted):
    arrays = tiny_idx_arrays()
    write_idx_set(tmp_path / "idx", arrays, gz=gz, dotted=dotted)
    data = DATASETS[name](str(tmp_path / "idx"), None, 0)
    assert data.name == name and data.num_classes == 10 and data.channels == 1
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert data.train_x.shape == (6, 1, 5, 3) and data.test_x.shape == (4, 1, 5, 3)
    assert np.array_equal(data.train_x[:, 0].numpy(), arrays["train_x"])
    assert np.array_equal(data.test_x[:, 0].numpy(), arrays["test_x"])
    assert data.train_y.tolist() == arrays["train_y"].tolist()
    assert data.test_y.tolist() == arrays["test_y"].tolist()
    assert data.mean == pytest.approx((arrays["train_x"].mean() / 255,), abs=1e-12)
    assert data.std == pytest.approx((arrays["train_x"].std() / 255,), abs=1e-12)
    assert data.train_true is None


def test_idx_found_in_torchvision_raw_subfolder(tmp_path):
    arrays = tiny_idx_arrays()
    write_idx_set(tmp_path / "FashionMNIST" / "raw", arrays, gz=True)
    data = load_dataset("fashion_mnist", root=str(tmp_path))
    assert np.array_equal(data.train_x[:, 0].numpy(), arrays["train_x"])


def test_read_idx_big_endian_dims_and_values(tmp_path):
    a = (np.arange(300, dtype=np.int16) - 150).reshape(1, 300)   # 300 > 255: needs the full uint32 dim
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    out = read_idx(tmp_path / "a.idx")
    assert out.shape == (1, 300) and out.dtype == np.int16 and np.array_equal(out, a)
    f = np.array([[1.5, -2.25]], dtype=np.float32)
    (tmp_path / "f.idx.gz").write_bytes(gzip.compress(idx_bytes(f)))
    assert np.array_equal(read_idx(tmp_path / "f.idx.gz"), f)


@pytest.mark.parametrize("content, message", [
    (b"\x08\x03\x00\x00" + bytes(8), "not an idx file"),                     # wrong magic
    (bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 2, 2) + bytes(7), "needs 24 bytes, file has 23"),
    (bytes([0, 0, 0x08, 3]) + b"\x00\x00", "truncated header"),
    (gzip.compress(idx_bytes(np.zeros((4, 4), np.uint8)))[:-12], "corrupt gzip"),
], ids=["magic", "short_data", "short_header", "gzip"])
def test_read_idx_corrupt_file_names_the_path(tmp_path, content, message):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_idx_label_count_mismatch_is_reported(tmp_path):
    arrays = tiny_idx_arrays()
    arrays["train_y"] = arrays["train_y"][:5]
    write_idx_set(tmp_path, arrays, gz=False)
    with pytest.raises(DatasetFormatError, match="expected 6 labels"):
        DATASETS["mnist"](str(tmp_path))


# --- CIFAR-10, SVHN ---------------------------------------------------------------------------------

@pytest.mark.parametrize("point_at", ["batches_folder", "parent"])
def test_cifar10_round_trip(tmp_path, point_at):
    written = write_cifar(tmp_path / "cifar-10-batches-py")
    root = tmp_path / "cifar-10-batches-py" if point_at == "batches_folder" else tmp_path
    data = load_dataset("cifar10", root=str(root))
    assert data.train_x.shape == (10, 3, 32, 32) and data.test_x.shape == (2, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    train_rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    # row layout: 1024 red values, then green, then blue, each row-major 32x32
    assert np.array_equal(data.train_x.reshape(10, -1).numpy(), train_rows)
    assert data.train_x[3, 1, 2, 5] == train_rows[3, 1024 + 2 * 32 + 5]
    assert data.train_y.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert data.test_y.tolist() == written["test_batch"][1]
    assert data.class_names == tuple(f"c{i}" for i in range(10)) and data.num_classes == 10
    assert data.mean == pytest.approx(tuple(train_rows.reshape(10, 3, -1).transpose(1, 0, 2)
                                            .reshape(3, -1).mean(1) / 255), abs=1e-12)


def test_cifar_batch_with_wrong_content_is_reported(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DatasetFormatError, match="data_batch_3.*uint8 \\(N, 3072\\)"):
        load_dataset("cifar10", root=str(tmp_path))


def test_svhn_round_trip_maps_label_10_to_0(tmp_path):
    import scipy.io

    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    x_test = rng.integers(0, 256, (32, 32, 3, 2), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x_train, "y": np.array([[10], [1], [9], [10], [3]])})
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x_test, "y": np.array([[2], [10]])})
    data = load_dataset("svhn", root=str(tmp_path))
    assert data.train_x.shape == (5, 3, 32, 32) and data.test_x.shape == (2, 3, 32, 32)
    assert data.train_y.tolist() == [0, 1, 9, 0, 3] and data.test_y.tolist() == [2, 0]
    assert np.array_equal(data.train_x.numpy(), x_train.transpose(3, 2, 0, 1))
    assert np.array_equal(data.test_x.numpy(), x_test.transpose(3, 2, 0, 1))
    assert data.train_x[4, 2, 7, 1] == x_train[7, 1, 2, 4]


# --- image folders: CUB-200-2011 and imagefolder ------------------------------------------------------

def write_cub(folder: Path, size=8):
    """5 images in 3 classes (one grayscale); ids written out of order to check the join by id."""
    rng = np.random.default_rng(2)
    entries = [(1, "001.A/a1.png", 1, 1), (2, "001.A/a2.png", 1, 0), (3, "002.B/b1.png", 2, 1),
               (4, "003.C/c1.png", 3, 1), (5, "003.C/c2.png", 3, 0)]
    pixels = {}
    for i, rel, _, _ in entries:
        img = rng.integers(0, 256, (size, size) if i == 4 else (size, size, 3), dtype=np.uint8)
        write_png(folder / "images" / rel, img)
        pixels[i] = np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img
    (folder / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _, _ in reversed(entries)))
    (folder / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in entries))
    (folder / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in entries))
    (folder / "classes.txt").write_text("1 001.A\n2 002.B\n3 003.C\n")
    return pixels


@pytest.mark.parametrize("point_at", ["dataset_folder", "parent"])
def test_cub200_round_trip(tmp_path, point_at):
    pixels = write_cub(tmp_path / "CUB_200_2011")
    root = tmp_path / "CUB_200_2011" if point_at == "dataset_folder" else tmp_path
    data = load_dataset("cub200", root=str(root), image_size=8)
    assert data.train_x.shape == (3, 3, 8, 8) and data.test_x.shape == (2, 3, 8, 8)
    assert data.train_y.tolist() == [0, 1, 2] and data.test_y.tolist() == [0, 2]   # ids 1,3,4 | 2,5
    for row, i in enumerate([1, 3, 4]):
        assert np.array_equal(data.train_x[row].numpy(), pixels[i].transpose(2, 0, 1))
    for row, i in enumerate([2, 5]):
        assert np.array_equal(data.test_x[row].numpy(), pixels[i].transpose(2, 0, 1))
    assert data.num_classes == 3 and data.class_names == ("001.A", "002.B", "003.C")


def test_cub200_resizes_to_image_size(tmp_path):
    write_cub(tmp_path, size=8)
    data = load_dataset("cub200", root=str(tmp_path), image_size=4)
    assert data.train_x.shape == (3, 3, 4, 4) and data.image_size == 4


def test_cub200_missing_image_is_reported(tmp_path):
    write_cub(tmp_path)
    (tmp_path / "images" / "002.B" / "b1.png").unlink()
    with pytest.raises(DatasetFormatError, match="b1.png"):
        load_dataset("cub200", root=str(tmp_path), image_size=8)


@pytest.mark.parametrize("test_dir", ["val", "test"])
def test_imagefolder_round_trip(tmp_path, test_dir):
    rng = np.random.default_rng(4)
    imgs = {}
    for split, names in (("train", {"zebra": 2, "ant": 1}), (test_dir, {"ant": 1, "zebra": 1})):
        for cls, count in names.items():
            for k in range(count):
                imgs[(split, cls, k)] = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
                write_png(tmp_path / split / cls / f"{k}.png", imgs[(split, cls, k)])
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    data = load_dataset("imagefolder", root=str(tmp_path), image_size=6)
    assert data.class_names == ("ant", "zebra") and data.num_classes == 2     # sorted by folder name
    assert data.train_y.tolist() == [0, 1, 1] and data.test_y.tolist() == [0, 1]
    expected = [imgs[("train", "ant", 0)], imgs[("train", "zebra", 0)], imgs[("train", "zebra", 1)]]
    assert np.array_equal(data.train_x.numpy(), np.stack(expected).transpose(0, 3, 1, 2))
    assert np.array_equal(data.test_x[1].numpy(), imgs[(test_dir, "zebra", 0)].transpose(2, 0, 1))


def test_imagefolder_unknown_val_class_is_reported(tmp_path):
    write_png(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "val" / "b" / "0.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match="class 'b' has no folder in the train split"):
        load_dataset("imagefolder", root=str(tmp_path), image_size=4)


# --- missing data, availability, download ------------------------------------------------------------

@pytest.mark.parametrize("name", ["fashion_mnist", "mnist", "cifar10", "svhn", "cub200", "imagefolder"])
def test_missing_dataset_names_the_path_tried(tmp_path, name):
    root = tmp_path / "nothing-here"
    with pytest.raises(DatasetMissingError) as err:
        load_dataset(name, root=str(root))
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert repr(name) in message and str(root) in message and "How to get it" in message
    assert str(root) in err.value.tried
    assert dataset_available(name, root=str(root)) == message


def test_default_locations_include_system_folder_and_cache(tmp_path):
    message = dataset_available("mnist")
    assert "/usr/share/datasets/mnist" in message and str(tmp_path / "cache" / "mnist") in message
    assert "ROAR_DOWNLOAD=1" in message


def test_missing_fashion_mnist_message_says_how_to_install(tmp_path):
    message = dataset_available("fashion_mnist", root=str(tmp_path))
    assert "apt-get install dataset-fashion-mnist" in message and "ROAR_DOWNLOAD=1" in message


def test_dataset_available_true_cases(tmp_path):
    write_idx_set(tmp_path / "cache" / "mnist", tiny_idx_arrays(), gz=True)   # the ROAR_DATA_DIR cache
    assert dataset_available("mnist") is None
    assert dataset_available("digits") is None and dataset_available("synthetic") is None
    with pytest.raises(KeyError, match="did you mean 'mnist'"):
        dataset_available("mnsit")


def test_download_flag_fetches_with_torchvision_into_cache(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    def fake_fashion(root, download=False, **kwargs):   # stands in for the network
        calls.append((root, download))
        write_idx_set(Path(root) / "FashionMNIST" / "raw", tiny_idx_arrays(), gz=True)

    monkeypatch.setattr(tvd, "FashionMNIST", fake_fashion)
    root = tmp_path / "fresh"
    assert dataset_available("fashion_mnist", root=str(root)) is not None   # no flag: reported missing
    monkeypatch.setenv("ROAR_DOWNLOAD", "1")
    assert dataset_available("fashion_mnist", root=str(root)) is None      # will be fetched; nothing yet
    assert calls == []
    data = load_dataset("fashion_mnist", root=str(root))
    assert calls == [(str(root), True)] and data.train_x.shape == (6, 1, 5, 3)
    assert prepare_dataset("fashion_mnist", root=str(root)) == str(root / "FashionMNIST" / "raw")
    assert len(calls) == 1                                                 # present now: no second fetch
    monkeypatch.setenv("ROAR_DOWNLOAD", "1")
    with pytest.raises(DatasetMissingError):                               # no download exists for CUB
        load_dataset("cub200", root=str(tmp_path / "none"))


# --- subsets and the per-process cache ---------------------------------------------------------------

def test_subset_indices_deterministic_and_seed_dependent():
    a = subset_indices(1000, 50, seed=0)
    assert a.dtype == torch.int64 and len(a) == 50 and len(set(a.tolist())) == 50
    assert torch.equal(a, subset_indices(1000, 50, seed=0))
    assert torch.equal(a, torch.sort(a).values)
    assert not torch.equal(a, subset_indices(1000, 50, seed=1))
    assert not torch.equal(a, subset_indices(1000, 50, seed=0, stream=1))
    assert subset_indices(1000, None, seed=0) is None


def test_load_dataset_subset_matches_indices():
    full = load_dataset("synthetic")
    sub = load_dataset("synthetic", subset=100, test_subset=30, seed=5)
    idx, tidx = subset_indices(3000, 100, 5, 0), subset_indices(1000, 30, 5, 1)
    assert torch.equal(sub.train_x, full.train_x[idx]) and torch.equal(sub.train_y, full.train_y[idx])
    assert torch.equal(sub.train_true, full.train_true[idx])
    assert torch.equal(sub.test_x, full.test_x[tidx]) and torch.equal(sub.test_y, full.test_y[tidx])
    again = load_dataset("synthetic", subset=100, test_subset=30, seed=5)
    other = load_dataset("synthetic", subset=100, test_subset=30, seed=6)
    assert torch.equal(again.train_x, sub.train_x) and not torch.equal(other.train_x, sub.train_x)
    assert sub.mean == full.mean and sub.std == full.std      # statistics of the full train split


@pytest.mark.parametrize("kwargs, message", [
    (dict(subset=3001), "subset=3001 .* 1..3000"),
    (dict(subset=0), "subset=0"),
    (dict(test_subset=2.5), "test_subset=2.5 .* 1..1000"),
    (dict(image_size=-1), "image_size=-1"),
])
def test_load_dataset_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("synthetic", **kwargs)


def test_full_dataset_is_cached_per_process(tmp_path):
    write_idx_set(tmp_path, tiny_idx_arrays(), gz=False)
    a = load_dataset("mnist", root=str(tmp_path))
    for f in tmp_path.iterdir():      # files gone: only the cache can answer now
        f.unlink()
    b = load_dataset("mnist", root=str(tmp_path) + "/")
    assert a is not b and a.train_x is b.train_x
    ds.clear_cache()
    with pytest.raises(DatasetMissingError):
        load_dataset("mnist", root=str(tmp_path))


def test_unknown_dataset_suggests_closest():
    with pytest.raises(KeyError, match="unknown dataset 'fashion-mnist'; did you mean 'fashion_mnist'"):
        load_dataset("fashion-mnist")


def test_registry_keys():
    assert set(DATASETS) == {"fashion_mnist", "mnist", "cifar10", "svhn", "cub200", "imagefolder", "digits",
                             "synthetic"}
    assert all(loader.name == key for key, loader in DATASETS.items())


def test_native_datasets_resize_on_request(tmp_path):
    arrays = tiny_idx_arrays(n_train=2, n_test=1, h=4, w=4)
    arrays["train_x"][:] = 200
    write_idx_set(tmp_path, arrays, gz=True)
    data = load_dataset("mnist", root=str(tmp_path), image_size=8)
    assert data.train_x.shape == (2, 1, 8, 8) and data.test_x.shape == (1, 1, 8, 8)
    assert bool((data.train_x == 200).all())          # a constant image stays constant
    assert data.mean == pytest.approx((200 / 255,)) and data.std == (0.0,)


# --- generated datasets ------------------------------------------------------------------------------

def test_digits_split_is_fixed_and_complete():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    assert data.train_x.shape == (1438, 1, 8, 8) and data.test_x.shape == (359, 1, 8, 8)
    assert data.num_classes == 10 and data.train_x.dtype == torch.uint8
    sk = load_digits()
    # every image appears once across the two splits, scaled 0..16 -> 0..255
    both = torch.cat([data.train_x, data.test_x]).reshape(1797, 64).numpy().astype(np.int64)
    expected = np.rint(sk.data * 255 / 16).astype(np.int64)
    key = lambda rows: sorted(map(bytes, rows.astype(np.uint8)))
    assert key(both) == key(expected)
    assert int(data.train_x.max()) == 255
    assert torch.equal(DATASETS["digits"](None, None, 0).train_x, data.train_x)
    assert not torch.equal(DATASETS["digits"](None, None, 1).train_x, data.train_x)


def test_synthetic_has_planted_true_pixels():
    data = load_dataset("synthetic")
    assert data.train_x.shape == (3000, 1, 16, 16) and data.test_x.shape == (1000, 1, 16, 16)
    assert data.num_classes == 4 and data.train_true.dtype == torch.bool
    slots = torch.from_numpy(synthetic_slots(16))
    assert torch.equal(data.train_true, slots[data.train_y]) and torch.equal(data.test_true, slots[data.test_y])
    # the patch (>= 0.6 * 255) is brighter than every background pixel (<= 0.5 * 255)
    x = data.train_x[:, 0]
    assert int(x[data.train_true].min()) >= 153 and int(x[~data.train_true].max()) <= 128
    assert set(data.train_y.tolist()) == {0, 1, 2, 3}
    assert all(int(s.sum()) == 16 for s in slots)                      # 4x4 patches
    assert len({bytes(s.numpy()) for s in slots}) == 4                  # the mask shape reveals the class


def test_synthetic_deterministic_for_seed_and_size():
    a, b, c = (DATASETS["synthetic"](None, None, s) for s in (0, 0, 1))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    big = DATASETS["synthetic"](None, 28, 0)
    assert big.train_x.shape == (3000, 1, 28, 28) and big.train_true.shape == (3000, 28, 28)
    assert int(big.train_true[0].sum()) == 49                           # 28 // 4 = 7 pixel patches


# --- the installed Fashion-MNIST ---------------------------------------------------------------------

@pytest.mark.skipif(not all((SYSTEM_FASHION / f).exists() for f in (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz")), reason="dataset-fashion-mnist is not installed")
def test_system_fashion_mnist_loads():
    assert dataset_available("fashion_mnist") is None
    data = load_dataset("fashion_mnist")
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [6000] * 10
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    # published statistics of the Fashion-MNIST train split
    assert data.mean[0] == pytest.approx(0.2860, abs=1e-4) and data.std[0] == pytest.approx(0.3530, abs=1e-4)
