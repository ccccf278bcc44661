"""Hostile inputs to mrl.data: each class of bad file is a named error naming file and fix."""

import gzip
import struct

import numpy as np
import pytest

from mrl.data import BatchLoader, load_dataset, load_npy, read_idx
from mrl.errors import FormatError, InputError, MissingPathError, PathError

# --- image folders ------------------------------------------------------------------------


def image_folder(root, classes=("cat", "dog"), per_class=2):
    from PIL import Image

    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (9, 9), (40 * i, 0, 0)).save(root / split / c / f"{i}.png")
    return root


def test_corrupt_image_is_named_when_read(tmp_path):
    root = image_folder(tmp_path)
    (root / "test" / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    ds = load_dataset("imagefolder", "test", str(root), image_size=8)
    ds[0]  # the good files still load
    with pytest.raises(
        FormatError, match=r"dog/1\.png is not a readable image .*replace or delete"
    ):
        ds[3]


def test_corrupt_image_read_by_a_worker_is_the_same_one_line_error(tmp_path):
    root = image_folder(tmp_path, classes=("cat",))
    (root / "train" / "cat" / "0.png").write_bytes(b"garbage")
    loader = BatchLoader(
        load_dataset("imagefolder", "train", str(root), image_size=8), 2, num_workers=1
    )
    with pytest.raises(FormatError) as info:
        next(iter(loader))
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("imagefolder: ") and "cat/0.png is not a readable image" in message


@pytest.mark.parametrize(
    "make, error, fragments",
    [
        (
            lambda root: (root / "train").mkdir() or (root / "train" / "a.png").touch(),
            InputError,
            ["has no class folders", "/train/<class>/<image>", ".png", ".jpg"],
        ),
        (
            lambda root: [(root / s / "cat").mkdir(parents=True) for s in ("train", "test")],
            InputError,
            ["no images in the class folders of", "(cat)", "/test/<class>/<image>", ".jpeg"],
        ),
        (
            lambda root: (root / "train").write_text("x"),
            PathError,
            ["train is a file, not a folder", "/train/<class>/<image>"],
        ),
        (lambda root: None, MissingPathError, ["train does not exist", "<class>/<image>"]),
    ],
    ids=["no-classes", "no-images", "train-is-a-file", "missing"],
)
def test_image_folder_layout_errors_say_what_was_expected(tmp_path, make, error, fragments):
    make(tmp_path)
    with pytest.raises(error) as info:
        load_dataset("imagefolder", "test", str(tmp_path))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "batch_size" not in str(info.value)


# --- IDX files ----------------------------------------------------------------------------


def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize(
    "name, data, match",
    [
        ("cut-header", idx_bytes(np.zeros((4, 3, 2)))[:9], r"cut IDX header: 3 dimensions need 16"),
        (
            "short-body",
            idx_bytes(np.zeros((4, 3, 2)))[:-5],
            r"truncated: its header says shape \(4, 3, 2\) \(24 data bytes\) but 19 bytes follow",
        ),
        (
            "long-body",
            idx_bytes(np.zeros((4, 3))) + b"xx",
            r"longer than its header says: .* \(12 data bytes\) but 14",
        ),
        ("empty", b"", r"is not an IDX file \(bad magic number none: empty file\)"),
        ("foreign", b"PK\x03\x04zip", "is not an IDX file"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 12 else "",
)
def test_damaged_idx_files_are_named_with_sizes(tmp_path, name, data, match):
    path = tmp_path / f"{name}-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(FormatError, match=f"{name}-idx3-ubyte (is|has) .*{match}|{match}"):
        read_idx(path)


def test_truncated_gzip_idx_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 4, 4))))[:-20])
    with pytest.raises(FormatError, match=r"idx3-ubyte.gz is not a readable gzipped IDX file"):
        read_idx(path)


def test_idx_images_and_labels_of_different_lengths(tmp_path):
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((5, 2, 2))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4)))
    with pytest.raises(InputError, match=r"holds 5 images but .*labels-idx1-ubyte holds 4"):
        load_dataset("idx", "train", str(tmp_path))


# --- npy folders --------------------------------------------------------------------------


def npy_folder(root, **override):
    """train/test _x/_y .npy files; `override` maps a file stem to an array or raw bytes."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.normal(size=(12, 3)).astype(np.float32),
        "train_y": np.arange(12) % 3,
        "test_x": rng.normal(size=(4, 3)).astype(np.float32),
        "test_y": np.arange(4) % 3,
    }
    for stem, value in {**arrays, **override}.items():
        if isinstance(value, bytes):
            (root / f"{stem}.npy").write_bytes(value)
        else:
            np.save(root / f"{stem}.npy", value, allow_pickle=True)
    return root


def truncated_npy(tmp_path):
    np.save(tmp_path / "full.npy", np.ones((4, 3), np.float32))
    return (tmp_path / "full.npy").read_bytes()[:-7]


@pytest.mark.parametrize(
    "override, error, match",
    [
        ({"test_x": np.zeros((0, 3), np.float32), "test_y": np.zeros(0, np.int64)}, InputError,
         r"test_x.npy holds an empty array \(0, 3\); the split needs items"),
        ({"train_y": np.zeros(0, np.int64)}, InputError,
         "train_y.npy holds an empty array; the train split needs labels"),
        ({"test_x": np.zeros(4, np.float32)}, InputError,
         r"test_x.npy holds features of shape \(4,\); expected \[N, D\].*x.reshape\(-1, 1\)"),
        ({"test_x": b"1.0 2.0 3.0\n4.0 5.0 6.0\n"}, FormatError,
         r"test_x.npy is not a NumPy .npy file \(it starts with b'1.0 2.0 '.*numpy.save"),
        ({"test_x": "truncated"}, FormatError,
         r"test_x.npy is truncated: its header says shape \(4, 3\) float32 \(\d+ bytes\) but "
         r"the file has \d+ bytes"),
        ({"test_x": np.array([[1, "a"]] * 4, dtype=object)}, FormatError,
         r"test_x.npy holds Python objects \(dtype object\), which mrl never unpickles"),
        ({"test_x": np.array([["a", "b"]] * 4)}, InputError,
         r"test_x.npy holds dtype <U1; save real-valued features"),
        ({"test_y": np.arange(3)}, InputError,
         r"test_x.npy holds 4 rows but .*test_y.npy holds 3 labels"),
        ({"test_y": np.array([0.0, 1.0, 2.0, 0.0])}, InputError,
         r"test_y.npy must be integer class ids \(int64\), got dtype float64"),
        ({"test_y": np.array([0, -1, 2, 0])}, InputError,
         r"test_y.npy: label -1 is negative; class ids start at 0"),
        ({"test_y": np.array([0, 1, 3, 0])}, InputError,
         r"test_y.npy: label 3 is out of range for 3 classes \(0..2\)"),
        ({"test_y": np.zeros((4, 1), np.int64)}, InputError,
         r"test_y.npy must be a 1-D array of class ids, got shape \(4, 1\)"),
        ({"test_x": np.where(np.eye(4, 3) > 0, np.inf, 0).astype(np.float32)}, InputError,
         "npy test features contain NaN or inf; first bad row is 0"),
    ],
    ids=["empty-x", "empty-train-y", "1d-x", "text", "truncated", "object", "strings",
         "length", "float-y", "negative-y", "y-out-of-range", "2d-y", "inf"],
)  # fmt: skip
def test_bad_npy_datasets_are_named_errors(tmp_path, override, error, match):
    if isinstance(override.get("test_x"), str):
        override["test_x"] = truncated_npy(tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    npy_folder(root, **override)
    with pytest.raises(error, match=match) as info:
        load_dataset("npy", "test", str(root))
    assert "allow_pickle" not in str(info.value)


@pytest.mark.parametrize("mmap", [False, True])
def test_load_npy_never_unpickles_and_maps_empty_arrays(tmp_path, mmap):
    np.save(tmp_path / "e.npy", np.zeros((0, 4), np.float32))
    assert load_npy(tmp_path / "e.npy", mmap=mmap).shape == (0, 4)
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match="o.npy holds Python objects"):
        load_npy(tmp_path / "o.npy", mmap=mmap)
    with pytest.raises(PathError, match="is a folder; expected a .npy file"):
        load_npy(tmp_path, mmap=mmap)
    with pytest.raises(MissingPathError, match="x.npy does not exist"):
        load_npy(tmp_path / "x.npy", mmap=mmap)


@pytest.mark.parametrize(
    "name, root_kind, error, match",
    [
        ("npy", "file", PathError, "data_root must be the folder of .npy files"),
        ("idx", "file", PathError, "data_root must be the folder of IDX files"),
        ("npy", "empty", MissingPathError, "train_x.npy does not exist; the folder needs"),
    ],
)
def test_data_root_that_cannot_serve(tmp_path, name, root_kind, error, match):
    root = tmp_path / "root"
    root.write_text("x") if root_kind == "file" else root.mkdir()
    with pytest.raises(error, match=match):
        load_dataset(name, "train", str(root))


# --- parameters ---------------------------------------------------------------------------


def small_set():
    from mrl.data import InMemoryDataset

    return InMemoryDataset(np.zeros((6, 2), np.float32), np.arange(6) % 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"batch_size": 2.5}, r"batch_size must be an int, got 2.5 \(float\)"),
        ({"batch_size": 4, "rank": 2, "world_size": 2}, "rank must be in 0..1, got 2"),
        ({"batch_size": 4, "world_size": 0}, "world_size must be >= 1, got 0"),
        ({"batch_size": 4, "num_workers": -1}, "num_workers must be >= 0, got -1"),
        ({"batch_size": 5, "world_size": 2, "drop_last": True}, "must be divisible by the 2"),
    ],
)
def test_batch_loader_parameters_are_checked(kwargs, match):
    from mrl.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        BatchLoader(small_set(), **kwargs)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: load_dataset("npyy", "train"), r"unknown dataset 'npyy' \(did you mean 'npy'\?\)"),
        (lambda: load_dataset("npy", "valid"), "split must be one of train, test, got 'valid'"),
        (lambda: load_dataset("npy", "train"), "dataset 'npy' needs data_root"),
        (lambda: load_dataset("imagefolder", "train"), "dataset 'imagefolder' needs data_root"),
    ],
)
def test_dataset_names_and_roots_are_checked(call, match):
    from mrl.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        call()


def test_in_memory_dataset_parameters():
    from mrl.data import InMemoryDataset
    from mrl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"num_classes must be an int, got '3'"):
        InMemoryDataset(np.zeros((3, 2)), np.arange(3), num_classes="3")
    with pytest.raises(InputError, match=r"label 2 is out of range for 2 classes"):
        InMemoryDataset(np.zeros((3, 2)), np.arange(3), num_classes=2)
    with pytest.raises(InputError, match=r"arrays train features holds features of shape \(3,\)"):
        InMemoryDataset(np.zeros(3), np.arange(3))


# --- through the CLI ----------------------------------------------------------------------


def train_config(tmp_path, dataset, root, extra=""):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"dataset: {dataset}\ndata_root: {root}\nbackbone: mlp\nembed_dim: 8\nmin_dim: 4\n"
        f"epochs: 1\nbatch_size: 4\nprogress: false\nout_dir: {tmp_path / 'run'}\n{extra}"
    )
    return path


@pytest.mark.parametrize("workers", [0, 1])
def test_train_on_a_corrupt_image_is_one_named_line(tmp_path, cli, workers):
    root = image_folder(tmp_path / "images", per_class=2)
    (root / "train" / "dog" / "0.png").write_bytes(b"not a png")
    config = train_config(tmp_path, "imagefolder", root, f"image_size: 8\nnum_workers: {workers}")
    cli("train", "--config", config).assert_named_error(
        "dog/0.png is not a readable image", "replace or delete the file"
    )


@pytest.mark.parametrize(
    "override, fragments",
    [
        ({"train_x": b"1 2 3\n"}, ["train_x.npy is not a NumPy .npy file"]),
        ({"train_x": np.zeros(12, np.float32)}, ["train_x.npy holds features of shape (12,)"]),
        ({"train_y": np.arange(12) - 1}, ["train_y.npy: label -1 is negative"]),
    ],
    ids=["text", "1d", "negative"],
)
def test_train_on_bad_npy_files_is_one_named_line(tmp_path, cli, override, fragments):
    root = tmp_path / "data"
    root.mkdir()
    npy_folder(root, **override)
    cli("train", "--config", train_config(tmp_path, "npy", root)).assert_named_error(*fragments)
