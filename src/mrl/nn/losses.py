"""Matryoshka losses: a weighted sum over nested sizes of a base loss.

`MatryoshkaLoss` works on stacked head logits [G, N, C]; `MatryoshkaEmbeddingLoss` hands
each prefix z[:, :m] to a contrastive / metric loss (optionally L2-normalised per prefix).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mrl.checks import check_labels
from mrl.errors import ConfigError, InputError
from mrl.nesting import Nesting, check_nesting, truncate

LogitsLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MatryoshkaLoss(nn.Module):
    """sum_m c_m * base_loss(logits_m, target) over the nesting's sizes.

    Args:
        nesting: sizes and their weights c_m (all 1 by default, as in the paper).
        base_loss: any `(logits [N, C], target) -> scalar`, called once per size; by default
            one vectorised cross-entropy over all sizes (the same value, fewer kernels).
        label_smoothing: used by the default cross-entropy only.

    References:
        Kusupati et al., NeurIPS 2022, arXiv 2205.13147, Eq. (1); official `Matryoshka_CE_Loss`
        (whose weights stay on the CPU; ours follow the logits' device and dtype).

    Example:
        >>> loss_fn = MatryoshkaLoss(Nesting((8, 16)), label_smoothing=0.1)
        >>> logits = torch.randn(2, 4, 10)  # (G, N, C)
        >>> loss_fn(logits, torch.tensor([0, 1, 2, 3])).shape
        torch.Size([])
    """

    def __init__(
        self,
        nesting: Nesting,
        base_loss: LogitsLoss | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if base_loss is not None and label_smoothing:
            raise ConfigError("label_smoothing applies to the default cross-entropy only")
        self.nesting = check_nesting(nesting)
        self.base_loss = base_loss
        self.label_smoothing = label_smoothing
        # Label ranges are checked on every CPU batch, but on an accelerator only on the first:
        # the check needs a host sync, which would stall the GPU on every step.
        self._checked_accelerator_labels = False

    def per_size(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Unweighted base loss of each size, shape [G]."""
        if logits.ndim != 3:
            raise InputError(f"expected stacked logits [G, N, C], got shape {tuple(logits.shape)}")
        g, n, c = logits.shape
        if g != len(self.nesting.weights):
            raise InputError(
                f"logits have {g} sizes but the loss has {len(self.nesting.weights)} "
                f"weights (nesting {list(self.nesting.dims)})"
            )
        if self.base_loss is not None:
            return torch.stack([self.base_loss(size_logits, target) for size_logits in logits])
        if target.shape != (n,):
            raise InputError(
                f"labels must be shaped [N] = [{n}] like the logits, got {tuple(target.shape)}"
            )
        if target.device.type == "cpu" or not self._checked_accelerator_labels:
            check_labels(target.detach().cpu().numpy(), num_classes=c)
            self._checked_accelerator_labels = target.device.type != "cpu"
        # One cross-entropy over all sizes at once (one kernel, not G).
        ce = nn.functional.cross_entropy(
            logits.reshape(g * n, c),
            target.repeat(g),
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        return ce.view(g, n).mean(dim=1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_size = self.per_size(logits, target)
        return self.nesting.weight_tensor(per_size) @ per_size


class MatryoshkaEmbeddingLoss(nn.Module):
    """sum_m c_m * base_loss(prefix_m(e_1), prefix_m(e_2), ...) for embedding-level losses.

    Each embedding passed to `forward` (one tower, or both towers of a two-tower model) is
    cut to every nested size; with `normalize=True` each prefix is L2-normalised on its own,
    as the paper does for ALIGN.

    Example:
        >>> def info_nce(a, b):
        ...     return nn.functional.cross_entropy(a @ b.T / 0.07, torch.arange(len(a)))
        >>> loss_fn = MatryoshkaEmbeddingLoss(Nesting((8, 16)), info_nce, normalize=True)
        >>> loss_fn(torch.randn(4, 16), torch.randn(4, 16)).shape
        torch.Size([])
    """

    def __init__(
        self, nesting: Nesting, base_loss: Callable[..., torch.Tensor], normalize: bool = False
    ) -> None:
        super().__init__()
        self.nesting = check_nesting(nesting)
        self.base_loss = base_loss
        self.normalize = normalize

    def per_size(self, *embeddings: torch.Tensor, **kwargs) -> torch.Tensor:
        """Unweighted base loss of each size, shape [G]."""
        if not embeddings:
            raise InputError("give at least one [N, d] embedding tensor")
        for e in embeddings:
            if e.ndim != 2:
                raise InputError(f"expected [N, d] embeddings, got shape {tuple(e.shape)}")
            self.nesting.check_embed_dim(e.shape[1])
        return torch.stack(
            [
                self.base_loss(*(truncate(e, m, self.normalize) for e in embeddings), **kwargs)
                for m in self.nesting
            ]
        )

    def forward(self, *embeddings: torch.Tensor, **kwargs) -> torch.Tensor:
        per_size = self.per_size(*embeddings, **kwargs)
        return self.nesting.weight_tensor(per_size) @ per_size
