"""Matryoshka heads and losses (pure PyTorch modules)."""

from mrl.nn.contrastive import MatryoshkaContrastiveLoss, prefix_similarities
from mrl.nn.heads import HEADS, FixedFeatureHead, MRLEHead, MRLHead, create_head
from mrl.nn.losses import MatryoshkaEmbeddingLoss, MatryoshkaLoss

__all__ = [
    "HEADS",
    "FixedFeatureHead",
    "MRLEHead",
    "MRLHead",
    "MatryoshkaContrastiveLoss",
    "MatryoshkaEmbeddingLoss",
    "MatryoshkaLoss",
    "create_head",
    "prefix_similarities",
]
