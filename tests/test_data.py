import gzip
import struct

import numpy as np
import pytest
import torch

from mrl.data import (
    BatchLoader,
    InMemoryDataset,
    LabeledDataset,
    load_dataset,
    read_idx,
)
from mrl.data.datasets import FASHION_MNIST_DIR
from mrl.errors import FormatError


def write_idx(path, array):
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def make_idx_folder(folder, n_train=30, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte{suffix}",
            rng.integers(0, 256, (n, 6, 5), dtype=np.uint8),
        )
        write_idx(
            folder / f"{prefix}-labels-idx1-ubyte{suffix}", (np.arange(n) % 3).astype(np.uint8)
        )


def write_npy(folder, train_y=None, test_y=None, train_x=None):
    rng = np.random.default_rng(0)
    np.save(
        folder / "train_x.npy",
        rng.normal(size=(20, 7)).astype(np.float32) if train_x is None else train_x,
    )
    np.save(folder / "train_y.npy", np.arange(20) % 4 if train_y is None else train_y)
    np.save(folder / "test_x.npy", rng.normal(size=(6, 7)).astype(np.float32))
    np.save(folder / "test_y.npy", np.arange(6) % 4 if test_y is None else test_y)


@pytest.mark.parametrize(
    "name, sizes, in_shape",
    [("digits", (1437, 360), (1, 8, 8)), ("mnist5k", (4000, 1000), (1, 28, 28))],
)
def test_bundled_sets_split_shape_and_dtypes(name, sizes, in_shape):
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert (len(train), len(test)) == sizes
    assert train.in_shape == test.in_shape == in_shape
    assert train.num_classes == test.num_classes == 10
    assert train.labels.dtype == np.int64 and set(np.unique(test.labels)) == set(range(10))
    x, y = train[0]
    assert x.dtype == torch.float32 and x.shape == in_shape
    assert y.dtype == torch.int64 and y.ndim == 0
    # standardised with the training split's statistics; the split is seeded
    assert abs(float(train.x.mean())) < 1e-4 and abs(float(train.x.std()) - 1) < 1e-3
    np.testing.assert_array_equal(load_dataset(name, "test").labels, test.labels)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package():
    test = load_dataset("fashion-mnist", "test")
    assert len(test) == 10_000 and test.in_shape == (1, 28, 28) and test.num_classes == 10
    assert np.bincount(test.labels).tolist() == [1000] * 10


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "train", root=str(tmp_path))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_round_trip(tmp_path, gz):
    make_idx_folder(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    images = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert images.shape == (30, 6, 5) and images.dtype == np.uint8
    train, test = (
        load_dataset("idx", "train", str(tmp_path)),
        load_dataset("idx", "test", str(tmp_path)),
    )
    assert (len(train), len(test), train.in_shape, train.num_classes) == (30, 10, (1, 6, 5), 3)
    expected = (images.astype(np.float32) - images.mean()) / images.std()
    np.testing.assert_allclose(train.x[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_idx_reader_rejects_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "a.idx", np.zeros((4, 3), dtype=np.uint8))
    (tmp_path / "b.idx").write_bytes((tmp_path / "a.idx").read_bytes()[:-2])
    with pytest.raises(FormatError, match=r"b.idx is truncated: its header says shape \(4, 3\)"):
        read_idx(tmp_path / "b.idx")
    (tmp_path / "c.idx").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="is not an IDX file"):
        read_idx(tmp_path / "c.idx")


def test_idx_missing_files_name_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        load_dataset("idx", "train", str(tmp_path))
    with pytest.raises(ValueError, match="dataset 'idx' needs data_root"):
        load_dataset("idx", "train")


def test_npy_arrays(tmp_path):
    write_npy(tmp_path)
    test = load_dataset("npy", "test", str(tmp_path))
    assert (len(test), test.in_shape, test.num_classes) == (6, (7,), 4)
    np.testing.assert_array_equal(test.x.numpy(), np.load(tmp_path / "test_x.npy"))  # as given


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"train_y": np.arange(20) % 4 * 1.0},
            r"train_y.npy must be integer class ids \(int64\), got dtype float64",
        ),
        (
            {"test_y": np.array([0, 1, 2, 3, 4, 0])},
            r"label 4 is out of range for 4 classes \(0..3\)",
        ),
        ({"test_y": np.array([0, 1, -1, 3, 0, 0])}, "label -1 is negative"),
        (
            {"train_x": np.where(np.arange(140).reshape(20, 7) == 50, np.nan, 0.0)},
            "npy train features contain NaN or inf; first bad row is 7",
        ),
    ],
)
def test_npy_bad_labels_and_features(tmp_path, kwargs, match):
    write_npy(tmp_path, **kwargs)
    split = "test" if "test_y" in kwargs else "train"
    with pytest.raises(ValueError, match=match):
        load_dataset("npy", split, str(tmp_path))


def test_npy_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_x.npy does not exist"):
        load_dataset("npy", "train", str(tmp_path))


def test_imagefolder(tmp_path):
    from PIL import Image

    for split, classes in (("train", ("cat", "dog")), ("test", ("dog",))):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20, 12), (i * 40, 0, 0)).save(tmp_path / split / c / f"{i}.png")
    test = load_dataset("imagefolder", "test", str(tmp_path), image_size=16)
    assert test.num_classes == 2 and test.in_shape == (3, 16, 16)
    assert test.labels.tolist() == [1, 1, 1]  # "dog" keeps its training id
    x, y = test[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    (tmp_path / "test" / "bird").mkdir()
    with pytest.raises(ValueError, match=r"has classes not in .*train: \['bird'\]"):
        load_dataset("imagefolder", "test", str(tmp_path))


def test_unknown_dataset_and_split():
    with pytest.raises(
        ValueError, match="unknown dataset 'mnist5' \\(did you mean 'mnist5k'\\?\\)"
    ):
        load_dataset("mnist5", "train")
    with pytest.raises(ValueError, match="split must be one of train, test, got 'val'"):
        load_dataset("digits", "val")


def toy(n=23):
    return InMemoryDataset(
        torch.arange(n, dtype=torch.float32)[:, None], np.arange(n) % 5, name="toy"
    )


def test_loader_order_is_seeded_per_epoch_and_resumable():
    loader = BatchLoader(toy(), 4, shuffle=True, drop_last=True, seed=3)
    assert len(loader) == 5
    e0 = [y.tolist() for _, y in loader.iter_batches(0)]
    assert e0 == [
        y.tolist()
        for _, y in BatchLoader(toy(), 4, shuffle=True, drop_last=True, seed=3).iter_batches(0)
    ]
    assert e0 != [y.tolist() for _, y in loader.iter_batches(1)]
    assert [y.tolist() for _, y in loader.iter_batches(0, start=2)] == e0[2:]


@pytest.mark.parametrize("drop_last", [True, False])
def test_loader_shards_union_is_the_single_process_batch(drop_last):
    single = [
        x[:, 0].tolist()
        for x, _ in BatchLoader(toy(), 6, shuffle=True, drop_last=drop_last).iter_batches(2)
    ]
    ranks = [
        [
            x[:, 0].tolist()
            for x, _ in BatchLoader(
                toy(), 6, shuffle=True, drop_last=drop_last, rank=r, world_size=3
            ).iter_batches(2)
        ]
        for r in range(3)
    ]
    for i, batch in enumerate(single):
        assert sorted(batch) == sorted(sum((shard[i] for shard in ranks), []))
    if drop_last:
        assert all(len(b) == 2 for shard in ranks for b in shard)
    with pytest.raises(
        ValueError, match="batch_size 6 \\(the global batch\\) must be divisible by the 4"
    ):
        BatchLoader(toy(), 6, drop_last=True, world_size=4)


class Lazy(LabeledDataset):
    """A non-in-memory dataset, to exercise the DataLoader path."""

    def __init__(self, base):
        self.base, self.labels, self.num_classes, self.in_shape = base, base.labels, 5, (1,)

    def __getitem__(self, i):
        return self.base[i]


def test_lazy_and_in_memory_paths_agree():
    fast = BatchLoader(toy(), 5, shuffle=True, rank=1, world_size=2)
    slow = BatchLoader(Lazy(toy()), 5, shuffle=True, rank=1, world_size=2)
    for (xa, ya), (xb, yb) in zip(fast.iter_batches(1), slow.iter_batches(1), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
