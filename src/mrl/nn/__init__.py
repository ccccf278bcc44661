"""Matryoshka heads and losses (pure PyTorch modules)."""

from mrl.nn.heads import HEADS, FixedFeatureHead, MRLEHead, MRLHead, create_head
from mrl.nn.losses import MatryoshkaEmbeddingLoss, MatryoshkaLoss

__all__ = [
    "HEADS",
    "FixedFeatureHead",
    "MRLEHead",
    "MRLHead",
    "MatryoshkaEmbeddingLoss",
    "MatryoshkaLoss",
    "create_head",
]
