"""Real datasets already on disk (no downloads), an IDX reader, and a fast batch loader."""

from mrl.data.datasets import (
    DATASETS,
    ImageFolderDataset,
    InMemoryDataset,
    LabeledDataset,
    check_label_array,
    load_dataset,
)
from mrl.data.idx import read_idx
from mrl.data.loader import BatchLoader

__all__ = [
    "DATASETS",
    "BatchLoader",
    "ImageFolderDataset",
    "InMemoryDataset",
    "LabeledDataset",
    "check_label_array",
    "load_dataset",
    "read_idx",
]
