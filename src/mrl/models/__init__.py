"""Backbones (vision, text) and the `MatryoshkaModel` contract (forward_features -> head)."""

from mrl.models.backbones import BACKBONES, create_backbone
from mrl.models.model import MatryoshkaModel, create_model, create_text_model
from mrl.models.text import TextEncoder, default_text_model_path

__all__ = [
    "BACKBONES",
    "MatryoshkaModel",
    "TextEncoder",
    "create_backbone",
    "create_model",
    "create_text_model",
    "default_text_model_path",
]
