"""Real datasets already on disk (no downloads), an IDX reader, a fast batch loader, and
seeded generated nested embeddings (for retrieval benchmarks and tests)."""

from mrl.data.datasets import (
    DATASETS,
    ImageFolderDataset,
    InMemoryDataset,
    LabeledDataset,
    check_label_array,
    load_dataset,
)
from mrl.data.generated import (
    GeneratedNestedSpec,
    generated_nested_embeddings,
    write_generated_nested_embeddings,
)
from mrl.data.idx import read_idx
from mrl.data.loader import BatchLoader

__all__ = [
    "DATASETS",
    "BatchLoader",
    "GeneratedNestedSpec",
    "ImageFolderDataset",
    "InMemoryDataset",
    "LabeledDataset",
    "check_label_array",
    "generated_nested_embeddings",
    "load_dataset",
    "read_idx",
    "write_generated_nested_embeddings",
]
