"""mrl: Matryoshka Representation Learning (Kusupati et al., NeurIPS 2022, arXiv 2205.13147).

The names below load on first use, so `import mrl.retrieval` does not load training.
"""

from mrl._lazy import lazy_exports

_EXPORTS = {
    "FixedFeatureHead": "mrl.nn",
    "MRLEHead": "mrl.nn",
    "MRLHead": "mrl.nn",
    "MatryoshkaEmbeddingLoss": "mrl.nn",
    "MatryoshkaLoss": "mrl.nn",
    "MatryoshkaModel": "mrl.models",
    "MrlError": "mrl.errors",
    "Nesting": "mrl.nesting",
    "TrainConfig": "mrl.training",
    "create_model": "mrl.models",
    "load_dataset": "mrl.data",
    "load_model": "mrl.training",
    "train": "mrl.training",
    "truncate": "mrl.nesting",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
