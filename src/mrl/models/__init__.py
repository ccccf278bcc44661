"""Backbones and the `MatryoshkaModel` contract (forward_features -> forward_head)."""

from mrl.models.backbones import BACKBONES, create_backbone
from mrl.models.model import MatryoshkaModel, create_model

__all__ = ["BACKBONES", "MatryoshkaModel", "create_backbone", "create_model"]
