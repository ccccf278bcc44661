"""mrl: Matryoshka Representation Learning (Kusupati et al., NeurIPS 2022, arXiv 2205.13147)."""

from mrl.data import load_dataset
from mrl.models import MatryoshkaModel, create_model
from mrl.nesting import Nesting, truncate
from mrl.nn import FixedFeatureHead, MatryoshkaEmbeddingLoss, MatryoshkaLoss, MRLEHead, MRLHead
from mrl.training import TrainConfig, load_model, train

__all__ = [
    "FixedFeatureHead",
    "MRLEHead",
    "MRLHead",
    "MatryoshkaEmbeddingLoss",
    "MatryoshkaLoss",
    "MatryoshkaModel",
    "Nesting",
    "TrainConfig",
    "create_model",
    "load_dataset",
    "load_model",
    "train",
    "truncate",
]
