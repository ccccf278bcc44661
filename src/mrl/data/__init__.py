"""Real datasets already on disk (no downloads), an IDX reader, a checked .npy reader, a fast
batch loader, seeded generated nested embeddings (for retrieval benchmarks and tests), and
text corpora (the Debian package records and their split, user pair and label files) and
the text training sets built from them, batched by length.

Names load on first use, so `mrl.data.generated` and `mrl.data.npy` (NumPy only) never load
torch or torchvision.
"""

from mrl._lazy import lazy_exports

_EXPORTS = {
    "DATASETS": "mrl.data.datasets",
    "BatchLoader": "mrl.data.loader",
    "GeneratedNestedSpec": "mrl.data.generated",
    "ImageFolderDataset": "mrl.data.datasets",
    "InMemoryDataset": "mrl.data.datasets",
    "LengthSortedBatches": "mrl.data.loader",
    "LabeledDataset": "mrl.data.datasets",
    "TEXT_DATASETS": "mrl.data.textsets",
    "TextPair": "mrl.data.text",
    "TextSplit": "mrl.data.textsets",
    "columns_sort_key": "mrl.data.loader",
    "debian_split": "mrl.data.text",
    "generated_nested_embeddings": "mrl.data.generated",
    "load_dataset": "mrl.data.datasets",
    "load_debian_packages": "mrl.data.text",
    "load_npy": "mrl.data.npy",
    "load_text_splits": "mrl.data.textsets",
    "read_idx": "mrl.data.idx",
    "read_labelled_texts": "mrl.data.text",
    "read_pairs": "mrl.data.text",
    "read_texts": "mrl.data.text",
    "read_texts_and_labels": "mrl.data.text",
    "write_generated_nested_embeddings": "mrl.data.generated",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
