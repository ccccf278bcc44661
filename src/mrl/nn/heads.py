"""Classification heads over a d-dim representation, returning stacked logits [G, N, C].

- `MRLHead`: a separate linear classifier per nested size m, reading z[:, :m].
- `MRLEHead` (MRL-E): one shared weight W (C x d); size m uses W[:, :m]; no extra parameters.
- `FixedFeatureHead` (FF-k): the baseline, one classifier on the first k dims (G = 1).

References:
    Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, arXiv 2205.13147
    (official code: RAIVNLab/MRL, `MRL_Linear_Layer`, `FixedFeatureLayer`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mrl.checks import check_int
from mrl.errors import ConfigError, InputError
from mrl.nesting import Nesting, check_nesting, truncate


class _Head(nn.Module):
    """What every head shares: C classes over the sizes `dims` of a d-dim representation.

    Subclasses set `kind` (the `create_head` name, recorded in embedding manifests) and
    define `dims` (the G sizes they produce logits for), `forward` ([N, d] -> [G, N, C])
    and `forward_size` ([N, d] -> [N, C] of one size).
    """

    kind: str

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim)
        self.num_classes = check_int("num_classes", num_classes)

    def check_features(self, z: torch.Tensor) -> None:
        """Raise `InputError` unless `z` is [N, d]."""
        if z.ndim != 2 or z.shape[1] != self.embed_dim:
            raise InputError(
                f"head expects features of shape [N, {self.embed_dim}], got {tuple(z.shape)}"
            )


class _NestedHead(_Head):
    """A head over every size of a `Nesting` (MRL, MRL-E)."""

    def __init__(self, nesting: Nesting, num_classes: int) -> None:
        super().__init__(check_nesting(nesting).embed_dim, num_classes)
        self.nesting = nesting

    @property
    def dims(self) -> tuple[int, ...]:
        return self.nesting.dims


class MRLHead(_NestedHead):
    """One `nn.Linear(m, C)` per nested size m, applied to z[:, :m].

    Example:
        >>> head = MRLHead(Nesting((8, 16, 32)), num_classes=10)
        >>> head(torch.randn(4, 32)).shape
        torch.Size([3, 4, 10])
    """

    kind = "mrl"

    def __init__(self, nesting: Nesting, num_classes: int, bias: bool = True) -> None:
        super().__init__(nesting, num_classes)
        self.classifiers = nn.ModuleList(nn.Linear(m, num_classes, bias=bias) for m in nesting)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[N, d] features -> [G, N, C] logits, one slice per nested size.

        On an accelerator the G classifiers run as one batched matmul (`forward_batched`),
        where kernel launches, not FLOPs, dominate; on the CPU one small matmul per size
        (`forward_per_size`) does ~G/2 times fewer FLOPs and copies no padded weights.
        """
        self.check_features(z)
        if z.device.type == "cpu":
            return self.forward_per_size(z)
        return self.forward_batched(z)

    def forward_per_size(self, z: torch.Tensor) -> torch.Tensor:
        """The reference: `Linear(m, C)` applied to each prefix z[:, :m], stacked to [G, N, C]."""
        return torch.stack([self.forward_size(z, g) for g in range(len(self.dims))])

    def forward_batched(self, z: torch.Tensor) -> torch.Tensor:
        """The same logits from one `baddbmm` over weights zero-padded to d columns.

        The padding contributes exact zeros to the logits and to z's gradient.
        """
        d = self.nesting.embed_dim
        weight = torch.stack(  # (G, C, d)
            [nn.functional.pad(clf.weight, (0, d - clf.in_features)) for clf in self.classifiers]
        )
        z = z.unsqueeze(0).expand(len(self.dims), -1, -1)  # (G, N, d)
        if self.classifiers[0].bias is None:
            return torch.bmm(z, weight.transpose(1, 2))
        bias = torch.stack([clf.bias for clf in self.classifiers]).unsqueeze(1)  # (G, 1, C)
        return torch.baddbmm(bias, z, weight.transpose(1, 2))  # (G, N, C)

    def forward_size(self, z: torch.Tensor, index: int) -> torch.Tensor:
        """Logits [N, C] of the `index`-th size only (for early-exit inference)."""
        return self.classifiers[index](truncate(z, self.dims[index]))


class MRLEHead(_NestedHead):
    """MRL-E: one shared `W` (C x d) and bias; size m's logits are z[:, :m] @ W[:, :m].T + b.

    The forward masks z to each prefix and runs one (G*N, d) @ (d, C) matmul: exact zeros
    beyond m, and one kernel instead of G, which is what matters on a GPU.

    Example:
        >>> head = MRLEHead(Nesting((8, 16, 32)), num_classes=10)
        >>> head(torch.randn(4, 32)).shape
        torch.Size([3, 4, 10])
    """

    kind = "mrl-e"

    def __init__(self, nesting: Nesting, num_classes: int, bias: bool = True) -> None:
        super().__init__(nesting, num_classes)
        self.weight = nn.Parameter(torch.empty(num_classes, nesting.embed_dim))
        self.bias = nn.Parameter(torch.empty(num_classes)) if bias else None
        dims = torch.tensor(nesting.dims)
        prefix_mask = torch.arange(nesting.embed_dim)[None, :] < dims[:, None]  # (G, d)
        self.register_buffer("prefix_mask", prefix_mask.unsqueeze(1), persistent=False)  # (G, 1, d)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same initialisation as `nn.Linear(d, C)`."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.nesting.embed_dim)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[N, d] features -> [G, N, C] logits, one slice per nested size."""
        self.check_features(z)
        masked = z.unsqueeze(0) * self.prefix_mask.to(z.dtype)  # (G, N, d)
        return nn.functional.linear(masked, self.weight, self.bias)  # (G, N, C)

    def forward_size(self, z: torch.Tensor, index: int) -> torch.Tensor:
        """Logits [N, C] of the `index`-th size only (for early-exit inference)."""
        m = self.dims[index]
        return nn.functional.linear(truncate(z, m), self.weight[:, :m], self.bias)


class FixedFeatureHead(_Head):
    """FF-k: a single `nn.Linear(k, C)` on the first k of d dims; logits shaped [1, N, C].

    As in the official code, the backbone still produces d dims; only the head is narrow.

    Args:
        embed_dim: d, the representation size.
        ff_dim: k, the dims the classifier reads (1 <= k <= d); the name of
            `TrainConfig.ff_dim`.
        num_classes: C.

    Example:
        >>> FixedFeatureHead(32, ff_dim=8, num_classes=10)(torch.randn(4, 32)).shape
        torch.Size([1, 4, 10])
    """

    kind = "ff"

    def __init__(self, embed_dim: int, ff_dim: int, num_classes: int, bias: bool = True) -> None:
        super().__init__(embed_dim, num_classes)
        check_int("ff_dim", ff_dim, high=self.embed_dim)
        self.classifier = nn.Linear(ff_dim, num_classes, bias=bias)

    @property
    def dims(self) -> tuple[int, ...]:
        return (self.classifier.in_features,)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[N, d] features -> [1, N, C] logits of the one size k."""
        self.check_features(z)
        return self.forward_size(z, 0).unsqueeze(0)

    def forward_size(self, z: torch.Tensor, index: int = 0) -> torch.Tensor:
        """Logits [N, C] of the one size (index 0)."""
        if index != 0:
            raise IndexError(f"an FF head has one size; got index {index}")
        return self.classifier(truncate(z, self.dims[0]))


HEADS = ("mrl", "mrl-e", "ff")


def create_head(
    kind: str, nesting: Nesting, num_classes: int, ff_dim: int | None = None
) -> nn.Module:
    """Build a head by name: 'mrl', 'mrl-e', or 'ff' (needs `ff_dim`, defaults to d)."""
    if kind == "mrl":
        return MRLHead(nesting, num_classes)
    if kind == "mrl-e":
        return MRLEHead(nesting, num_classes)
    if kind == "ff":
        ff_dim = nesting.embed_dim if ff_dim is None else ff_dim
        return FixedFeatureHead(nesting.embed_dim, ff_dim, num_classes)
    raise ConfigError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
