"""`MatryoshkaModel`: backbone -> d-dim representation -> head -> stacked logits [G, N, C]."""

from __future__ import annotations

import torch
from torch import nn

from mrl.errors import ConfigError
from mrl.models.backbones import create_backbone
from mrl.nesting import Nesting, check_nesting
from mrl.nn.heads import create_head


class MatryoshkaModel(nn.Module):
    """One model contract for every backbone: `forward_features` -> `forward_head`.

    Args:
        backbone: any module mapping a batch to [N, d]; d must equal `nesting.embed_dim`.
        head: an `MRLHead`, `MRLEHead` or `FixedFeatureHead` reading those d dims.
        nesting: the nested sizes the representation is trained for.

    Example:
        >>> model = create_model("mlp", (1, 8, 8), Nesting((4, 8, 16)), num_classes=10)
        >>> model(torch.randn(2, 1, 8, 8)).shape
        torch.Size([3, 2, 10])
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, nesting: Nesting) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.nesting = check_nesting(nesting)

    @property
    def head_dims(self) -> tuple[int, ...]:
        """The sizes the head produces logits for (the nesting, or (k,) for FF-k)."""
        return self.head.dims

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
