"""The nesting: which prefix sizes of an embedding are trained, and with what weight.

`Nesting` is the one place sizes are validated; everything else takes a `Nesting`.
`truncate` is the one truncation primitive (prefix + optional per-prefix L2 norm)
shared by the loss, evaluation, adaptive classification and the retrieval index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from mrl.checks import check_int, check_number
from mrl.errors import ConfigError, InputError

Array = TypeVar("Array", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Nesting:
    """Prefix sizes m_1 < ... < m_G = d of a d-dim embedding, with loss weights c_m.

    Args:
        dims: strictly increasing positive ints; the last one is the embedding size d.
        weights: non-negative c_m, one per size; defaults to all 1 (the paper's choice).

    Raises:
        ConfigError: a string, float or non-positive size ("8,16" is refused, not split
            into characters), sizes not strictly increasing, or bad weights.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, arXiv 2205.13147.

    Example:
        >>> Nesting.halving(2048).dims
        (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
        >>> Nesting((8, 16, 32), weights=(2.0, 1.0, 1.0)).embed_dim
        32
    """

    dims: tuple[int, ...]
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        dims = _sequence("nesting dims", self.dims, "ints, e.g. (8, 16, 32)")
        dims = tuple(check_int("nesting size", m) for m in dims)
        if len(dims) == 0:
            raise ConfigError("nesting is empty: give at least one size, e.g. dims=(8, 16, 32)")
        for a, b in zip(dims, dims[1:], strict=False):
            if b <= a:
                raise ConfigError(
                    f"nesting must be strictly increasing, got {a} then {b} in {list(dims)}"
                )
        object.__setattr__(self, "dims", dims)
        if self.weights is None:
            object.__setattr__(self, "weights", (1.0,) * len(dims))
            return
        weights = _sequence("nesting weights", self.weights, "numbers, e.g. (1.0, 1.0)")
        if len(weights) != len(dims):
            raise ConfigError(
                f"nesting has {len(dims)} sizes but {len(weights)} weights; "
                "give one weight per size"
            )
        weights = tuple(
            check_number(f"nesting weight for size {m}", w, low=0)
            for m, w in zip(dims, weights, strict=True)
        )
        object.__setattr__(self, "weights", weights)

    @classmethod
    def halving(
        cls, embed_dim: int, min_dim: int = 8, weights: Sequence[float] | None = None
    ) -> Nesting:
        """The paper's "consistent halving": d, d/2, ... down to the last size >= min_dim.

        2048 -> {8, 16, ..., 2048}; 768 -> {12, 24, ..., 768}.
        """
        embed_dim, min_dim = check_int("embed_dim", embed_dim), check_int("min_dim", min_dim)
        if min_dim > embed_dim:
            raise ConfigError(f"min_dim {min_dim} exceeds embed_dim {embed_dim}")
        dims = [embed_dim]
        while dims[-1] % 2 == 0 and dims[-1] // 2 >= min_dim:
            dims.append(dims[-1] // 2)
        return cls(tuple(reversed(dims)), None if weights is None else tuple(weights))

    @property
    def embed_dim(self) -> int:
        """The full embedding size d (the largest nested size)."""
        return self.dims[-1]

    def __len__(self) -> int:
        return len(self.dims)

    def __iter__(self) -> Iterator[int]:
        return iter(self.dims)

    def check_embed_dim(self, embed_dim: int) -> None:
        """Raise unless this nesting ends exactly at the embedding size `embed_dim`."""
        if self.embed_dim != embed_dim:
            raise ConfigError(
                f"nesting {list(self.dims)} ends at {self.embed_dim} but the embedding has "
                f"{embed_dim} dims; the last size must equal the embedding size"
            )

    def index(self, dim: int) -> int:
        """Position of size `dim` in the nesting; a clear error if it is not one of them."""
        try:
            return self.dims.index(int(dim))
        except ValueError:
            raise ConfigError(f"size {dim} is not in the nesting {list(self.dims)}") from None

    def subset(self, dims: Sequence[int]) -> Nesting:
        """The nesting restricted to `dims` (each must be one of ours), weights carried along."""
        idx = [self.index(m) for m in dims]
        return Nesting(tuple(self.dims[i] for i in idx), tuple(self.weights[i] for i in idx))

    def weight_tensor(self, like: torch.Tensor) -> torch.Tensor:
        """The weights c_m as a [G] tensor on `like`'s device and dtype."""
        return torch.tensor(self.weights, device=like.device, dtype=like.dtype)

    def to_dict(self) -> dict:
        return {"dims": list(self.dims), "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, d: dict) -> Nesting:
        return cls(tuple(d["dims"]), tuple(d["weights"]) if d.get("weights") else None)


def _sequence(what: str, values: object, of: str) -> tuple:
    """`values` as a tuple; a string, a scalar or a mapping is refused (not split up)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ConfigError(
            f"{what} must be a sequence of {of}, got {values!r} ({type(values).__name__})"
        )
    return tuple(values)


def check_nesting(nesting: object, what: str = "nesting") -> Nesting:
    """`nesting` if it is a `Nesting`; a named error (with the fix) for a bare list of sizes."""
    if not isinstance(nesting, Nesting):
        raise ConfigError(
            f"{what} must be a Nesting, e.g. Nesting((8, 16, 32)) or Nesting.halving(2048), "
            f"got {type(nesting).__name__} {nesting!r:.60}"
        )
    return nesting


def truncate(z: Array, dim: int, normalize: bool = False, eps: float = 1e-12) -> Array:
    """The first `dim` coordinates of each row of `z`, optionally L2-normalised per prefix.

    Works on NumPy arrays and torch tensors alike. Normalising each prefix on its own is
    what the paper does for cosine/L2 retrieval and contrastive training.

    Args:
        z: [N, d] embeddings.
        dim: prefix size, 1 <= dim <= d.
        normalize: divide each prefix row by its L2 norm (zero rows stay zero).

    Returns:
        [N, dim] prefix; float32 for NumPy input when normalised (float16 norms overflow).
    """
    if not isinstance(z, (np.ndarray, torch.Tensor)):
        raise InputError(
            f"truncate takes a NumPy array or a torch tensor [N, d], got {type(z).__name__} "
            "(wrap it with np.asarray)"
        )
    if z.ndim != 2:
        raise InputError(f"expected a 2-D [N, d] array, got shape {tuple(z.shape)}")
    d = z.shape[1]
    dim = check_int("prefix size", dim, 1, d)
    prefix = z[:, :dim]
    if not normalize:
        return prefix
    if isinstance(prefix, torch.Tensor):
        return torch.nn.functional.normalize(prefix, dim=1, eps=eps)
    prefix = np.asarray(prefix, dtype=np.float32)
    norms = np.linalg.norm(prefix, axis=1, keepdims=True)
    return prefix / np.maximum(norms, eps)
