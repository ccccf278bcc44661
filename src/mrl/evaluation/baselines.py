"""Post-hoc low-dimensional baselines fitted on a trained (FF) model's embeddings.

The paper's Table 1/2 compare MRL against representations made small *after* training:

- `SVDProjection` ("SVD"/"FF+SVD"): project onto the top-k principal directions of the train
  embeddings. Components are sorted by variance, so the k-dim projection is the prefix of the
  full one and a single `transform` serves every size through `mrl.nesting.truncate`.
- `RandomFeatures` ("Rand.FS"/"Rand.LP"): k coordinates chosen uniformly at random. A seeded
  random permutation of the coordinates is nested the same way: its first k entries are a
  uniform random k-subset for every k. Average a few seeds to smooth the draw.

Both follow the scikit-learn contract (`fit` sets attributes ending in `_` and returns self).
"""

from __future__ import annotations

import numpy as np

from mrl.checks import check_finite_rows
from mrl.errors import ConfigError, InputError


class SVDProjection:
    """Projection of centred embeddings onto their top principal directions.

    The covariance is accumulated in float64 over row chunks and eigendecomposed (d x d), so the
    fit streams a memmap of any length; the result equals the right singular vectors of
    `numpy.linalg.svd` of the centred data (up to sign, fixed here so the largest-magnitude
    entry of each direction is positive).

    Args:
        n_components: directions kept; None keeps all d.
        chunk_size: rows read at once while fitting and transforming.

    Attributes (after `fit`):
        mean_: [d] train mean. components_: [n_components, d] orthonormal rows, by decreasing
        variance. explained_variance_: [n_components].

    Example:
        >>> X = np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32)
        >>> SVDProjection(n_components=4).fit(X).transform(X).shape
        (100, 4)
    """

    def __init__(self, n_components: int | None = None, chunk_size: int = 65536) -> None:
        self.n_components = n_components
        self.chunk_size = chunk_size

    def fit(self, X: np.ndarray) -> SVDProjection:
        """Fit on X [N, d] (finite, N >= 2)."""
        if X.ndim != 2 or len(X) < 2:
            raise InputError(f"SVD needs a 2-D array with at least 2 rows, got shape {X.shape}")
        n, d = X.shape
        k = d if self.n_components is None else self.n_components
        if not 1 <= k <= d:
            raise ConfigError(f"n_components={k} must be within 1..{d} (the embedding size)")
        total, gram = np.zeros(d), np.zeros((d, d))
        for s in range(0, n, self.chunk_size):
            z = np.asarray(X[s : s + self.chunk_size], dtype=np.float64)
            check_finite_rows(z, "embeddings", row_offset=s)
            total += z.sum(0)
            gram += z.T @ z
        mean = total / n
        cov = (gram - n * np.outer(mean, mean)) / (n - 1)
        eigval, eigvec = np.linalg.eigh(cov)  # ascending
        order = np.argsort(eigval)[::-1][:k]
        components = eigvec[:, order].T  # (k, d)
        flip = np.sign(components[np.arange(k), np.abs(components).argmax(1)])
        self.mean_ = mean.astype(np.float32)
        self.components_ = (components * flip[:, None]).astype(np.float32)
        self.explained_variance_ = np.maximum(eigval[order], 0.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """[N, d] -> [N, n_components] float32 coordinates; column j is the j-th direction."""
        if X.ndim != 2 or X.shape[1] != self.mean_.shape[0]:
            raise InputError(f"expected [N, {self.mean_.shape[0]}] embeddings, got {X.shape}")
        out = np.empty((len(X), len(self.components_)), dtype=np.float32)
        for s in range(0, len(X), self.chunk_size):
            z = np.asarray(X[s : s + self.chunk_size], dtype=np.float32)
            out[s : s + self.chunk_size] = (z - self.mean_) @ self.components_.T
        return out

    def inverse_transform(self, Y: np.ndarray) -> np.ndarray:
        """[N, k] coordinates (k <= n_components) -> [N, d] reconstruction (rank-k if k < d)."""
        k = Y.shape[1]
        return Y @ self.components_[:k] + self.mean_


class RandomFeatures:
    """A seeded random ordering of the coordinates; its first k are a random k-subset.

    Args:
        seed: NumPy `default_rng` seed; different seeds are independent draws.

    Attributes (after `fit`):
        coords_: [d] int64 permutation of 0..d-1.

    Example:
        >>> X = np.arange(12, dtype=np.float32).reshape(2, 6)
        >>> RandomFeatures(seed=0).fit(X).transform(X).shape
        (2, 6)
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, X: np.ndarray) -> RandomFeatures:
        """Draw the permutation for X's [N, d] width (the values are not used)."""
        if X.ndim != 2:
            raise InputError(f"expected a 2-D [N, d] array, got shape {X.shape}")
        self.coords_ = np.random.default_rng(self.seed).permutation(X.shape[1])
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """[N, d] -> [N, d] with columns in the drawn order (a copy)."""
        if X.ndim != 2 or X.shape[1] != len(self.coords_):
            raise InputError(f"expected [N, {len(self.coords_)}] embeddings, got {X.shape}")
        return np.asarray(X)[:, self.coords_]
