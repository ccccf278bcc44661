"""Linear probes on frozen embeddings: one multinomial logistic regression per prefix size.

All sizes are fitted together in one optimisation over the cached features (dinov2's
`eval/linear.py` idea): the probes share no parameters, so the summed loss is minimised exactly
when each probe is at its own optimum, and every pass over the data serves all G probes. This is
faster than G separate scikit-learn `LogisticRegression` fits, which would each re-read the
data, and it streams the features in chunks, so a memmap larger than RAM works too.

The optimiser is full-batch L-BFGS with a strong-Wolfe line search on the (convex) L2-regularised
cross-entropy: deterministic, no learning rate or epochs to tune, and it reaches the same optimum
as scikit-learn's lbfgs solver.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mrl.checks import check_finite_rows, check_labels
from mrl.errors import InputError
from mrl.evaluation import metrics
from mrl.nesting import Nesting, truncate


class LinearProbe:
    """Logistic-regression probes on the prefixes z[:, :m] for each m in `dims`, fitted at once.

    Features are standardised per coordinate with the training mean and std (so SVD components
    and raw embeddings of any scale train alike). The G probes are stored as one masked weight
    W [G, C, d] (row block g is zero beyond m_g) and bias [G, C], so all logits take one einsum
    and one pass; masked entries get zero gradient and stay zero, so each probe is exactly a
    logistic regression on its prefix. Follows the scikit-learn estimator contract.

    Args:
        dims: prefix sizes to probe (strictly increasing).
        l2: L2 penalty on the weights, added once per probe (scikit-learn's 1 / (C * N)).
        max_iter: L-BFGS iterations.
        chunk_size: rows per forward/backward pass while accumulating the full-batch loss.
        cache_bytes: keep the standardised features in memory when they fit in this budget
            (else re-read each chunk per iteration, e.g. from a memmap).

    Attributes (after `fit`):
        mean_, scale_: [max(dims)] standardisation. num_classes_: C.
        coef_: [G, C, max(dims)] weights (zero beyond each size). intercept_: [G, C].

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X, y = rng.normal(size=(200, 8)).astype(np.float32), rng.integers(0, 3, 200)
        >>> LinearProbe(dims=(2, 8)).fit(X, y).predict(X).shape
        (2, 200)
    """

    def __init__(
        self,
        dims: Sequence[int],
        l2: float = 1e-4,
        max_iter: int = 100,
        chunk_size: int = 65536,
        cache_bytes: int = 1 << 30,
    ) -> None:
        self.dims = dims
        self.l2 = l2
        self.max_iter = max_iter
        self.chunk_size = chunk_size
        self.cache_bytes = cache_bytes

    def _features(self, X: np.ndarray, start: int, stop: int) -> torch.Tensor:
        z = np.array(truncate(np.asarray(X[start:stop]), self.nesting_.embed_dim), np.float32)
        check_finite_rows(z, "probe features", row_offset=start)
        return (torch.from_numpy(z) - self.mean_) / self.scale_  # (n, d); z is a private copy

    def _logits(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nd,gcd->gnc", x, weight) + bias[:, None, :]  # (G, n, C)

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Fit one probe per size. X: [N, d] features (d >= max(dims)); y: [N] int labels."""
        self.nesting_ = Nesting(tuple(self.dims))
        y = check_labels(y)
        metrics.check_same_length(X, y, "features", "labels")
        if X.ndim != 2 or X.shape[1] < self.nesting_.embed_dim:
            raise InputError(
                f"probe sizes {list(self.nesting_.dims)} need features with at least "
                f"{self.nesting_.embed_dim} dims, got shape {X.shape}"
            )
        n, d = len(X), self.nesting_.embed_dim
        # Streaming mean / variance in float64 so large N does not lose precision.
        total, total_sq = np.zeros(d), np.zeros(d)
        for s in range(0, n, self.chunk_size):
            z = np.asarray(truncate(np.asarray(X[s : s + self.chunk_size]), d), np.float64)
            check_finite_rows(z, "probe features", row_offset=s)
            total += z.sum(0)
            total_sq += (z * z).sum(0)
        mean = total / n
        std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
        self.mean_ = torch.from_numpy(mean.astype(np.float32))
        self.scale_ = torch.from_numpy(np.where(std > 1e-12, std, 1.0).astype(np.float32))
        self.num_classes_ = c = int(y.max()) + 1
        g = len(self.nesting_)
        mask = torch.zeros(g, 1, d)  # (G, 1, d): 1 on each probe's prefix
        for i, m in enumerate(self.nesting_):
            mask[i, :, :m] = 1
        # Zero start: the problem is convex, so the optimum does not depend on it.
        weight = torch.zeros(g, c, d, requires_grad=True)
        bias = torch.zeros(g, c, requires_grad=True)
        starts = range(0, n, self.chunk_size)
        cached = None
        if n * d * 4 <= self.cache_bytes:
            cached = [self._features(X, s, s + self.chunk_size) for s in starts]
        targets = torch.from_numpy(y)
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1.0,
            max_iter=self.max_iter,
            history_size=20,
            tolerance_grad=1e-7,
            tolerance_change=1e-10,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            w = weight * mask
            total_loss = 0.5 * self.l2 * (w * w).sum()
            for i, s in enumerate(starts):
                x = cached[i] if cached is not None else self._features(X, s, s + self.chunk_size)
                logits = self._logits(x, w, bias)  # (G, n, C)
                t = targets[s : s + self.chunk_size].repeat(g)
                total_loss = (
                    total_loss
                    + nn.functional.cross_entropy(logits.flatten(0, 1), t, reduction="sum") / n
                )
            total_loss.backward()
            return total_loss.detach()

        optimizer.step(closure)
        self.coef_ = (weight * mask).detach()
        self.intercept_ = bias.detach()
        return self

    @torch.no_grad()
    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """[G, N, C] float32 logits of every size's probe on X [N, d]."""
        out = [
            self._logits(self._features(X, s, s + self.chunk_size), self.coef_, self.intercept_)
            for s in range(0, len(X), self.chunk_size)
        ]
        return torch.cat(out, dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """[G, N] int64 predicted classes, one row per size."""
        return self.decision_function(X).argmax(-1)

    def score(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """[G] top-1 accuracy of each size's probe."""
        return (self.predict(X) == check_labels(y)[None, :]).mean(1)
