"""Early-exit inference: apply a fitted `Cascade` to new inputs with a model.

The backbone runs once per batch; then size j's head runs only on the rows still undecided
after sizes 0..j-1, so an input that stops at the smallest size never pays for larger heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrl.adaptive.cascade import Cascade
from mrl.errors import ConfigError, NotFittedError
from mrl.models.model import MatryoshkaModel


@dataclass(frozen=True)
class EarlyExit:
    """Predictions of an early-exit pass.

    Attributes:
        predictions: [N] int64 predicted classes.
        exit_index: [N] int64 index (into the cascade's `dims_`) of the size each row used.
        confidence: [N] float64 max softmax probability at that size.
    """

    predictions: torch.Tensor
    exit_index: torch.Tensor
    confidence: torch.Tensor


class AdaptiveClassifier:
    """A model plus a fitted cascade: classify each input with the fewest nested sizes.

    Args:
        model: a `MatryoshkaModel` whose head has one size per nesting entry (MRL or MRL-E).
        cascade: a `Cascade` fitted on this model's held-out logits.

    Example:
        >>> clf = AdaptiveClassifier(model.eval(), cascade)
        >>> out = clf.predict(images)  # out.predictions [N], out.exit_index [N]
    """

    def __init__(self, model: MatryoshkaModel, cascade: Cascade) -> None:
        if not isinstance(model, MatryoshkaModel):
            raise ConfigError(f"model must be a MatryoshkaModel, got {type(model).__name__}")
        if not isinstance(cascade, Cascade):
            raise ConfigError(f"cascade must be a fitted Cascade, got {type(cascade).__name__}")
        if not hasattr(cascade, "thresholds_"):
            raise NotFittedError("the cascade is not fitted yet; call fit(scores, labels) first")
        if tuple(model.head_dims) != cascade.nesting.dims:
            raise ConfigError(
                f"the cascade was fitted for sizes {list(cascade.nesting.dims)} but the model's "
                f"head has sizes {list(model.head_dims)}"
            )
        self.model = model
        self.cascade = cascade

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> EarlyExit:
        """Classify a batch, running each size's head only on the rows that reach it.

        Args:
            x: a batch the model's backbone accepts, N inputs.

        Returns:
            `EarlyExit` with [N] predictions, exit indices and confidences. Same decisions as
            `cascade.predict` on the full [G, N, C] logits (softmax in float64 in both).
        """
        z = self.model.forward_features(x)  # (N, d)
        n = z.shape[0]
        predictions = torch.empty(n, dtype=torch.long, device=z.device)
        exits = torch.empty(n, dtype=torch.long, device=z.device)
        conf = torch.empty(n, dtype=torch.float64, device=z.device)
        thresholds = self.cascade.thresholds_
        last = len(self.cascade.dims_) - 1
        pending = torch.arange(n, device=z.device)  # rows still undecided
        for j in range(last + 1):
            if pending.numel() == 0:
                break
            logits = self.model.head.forward_size(z[pending], j)  # (P, C)
            c, p = logits.double().softmax(dim=-1).max(dim=-1)
            stop = c > thresholds[j] if j < last else torch.ones_like(c, dtype=torch.bool)
            rows = pending[stop]
            predictions[rows], exits[rows], conf[rows] = p[stop], j, c[stop]
            pending = pending[~stop]
        return EarlyExit(predictions=predictions, exit_index=exits, confidence=conf)
