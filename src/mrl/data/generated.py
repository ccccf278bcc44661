"""Generated (synthetic) labelled nested embeddings for retrieval tests and benchmarks at scale.

Nothing here is real data: rows are drawn from a seeded model whose class signal is
concentrated in the leading dims, like a Matryoshka embedding's. Row j of the model is

    x_j = j^-signal_decay * mu[y, j] + noise * j^-noise_decay * eps_j,   j = 1..D,

with class means mu ~ N(0, I) and eps ~ N(0, 1). The signal-to-noise ratio falls with j, so a
short prefix already separates classes and longer prefixes add a little; retrieval mAP@k rises
with the prefix size and saturates, the shape of the paper's Figure 7.

Rows are produced in fixed blocks seeded by (seed, split, block), so the output is the same
whatever the chunk size and the database and query splits share class means but no rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl.checks import check_int, check_number
from mrl.errors import ConfigError
from mrl.io import atomic_open

_BLOCK = 8192  # rows per seeded block
_SPLITS = {"database": 0, "queries": 1}


@dataclass(frozen=True)
class GeneratedNestedSpec:
    """Parameters of the generated nested-embedding model (see the module docstring).

    Args:
        dim: embedding size D.
        num_classes: number of labels.
        seed: seeds the class means and every block of rows.
        signal_decay: class-signal power-law decay over dims (larger = more front-loaded).
        noise: noise scale.
        noise_decay: noise power-law decay over dims (< signal_decay so the SNR falls).
    """

    dim: int = 2048
    num_classes: int = 1000
    seed: int = 0
    signal_decay: float = 0.75
    noise: float = 0.4
    noise_decay: float = 0.5

    def __post_init__(self) -> None:
        check_int("dim", self.dim)
        check_int("num_classes", self.num_classes)
        check_int("seed", self.seed, 0)
        for name in ("signal_decay", "noise", "noise_decay"):
            check_number(name, getattr(self, name), 0)

    def _means(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2**31])
        return rng.standard_normal((self.num_classes, self.dim), dtype=np.float32)

    def _block(
        self, split: str, b: int, n: int, means: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, _SPLITS[split], b])
        j = np.arange(1, self.dim + 1, dtype=np.float64)
        signal = (j**-self.signal_decay).astype(np.float32)
        scale = (self.noise * j**-self.noise_decay).astype(np.float32)
        # Always draw a whole block, then cut: the first n rows never depend on n.
        y = rng.integers(0, self.num_classes, _BLOCK)[:n]
        x = rng.standard_normal((_BLOCK, self.dim), dtype=np.float32)[:n]  # (n, D)
        x *= scale
        x += means[y] * signal
        return x, y.astype(np.int64)

    def blocks(self, n: int, split: str = "database"):
        """Yield (x [b, D] float32, labels [b] int64) blocks, n rows in all."""
        check_int("n", n, 0)
        if split not in _SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of {list(_SPLITS)}")
        means = self._means()
        for b, start in enumerate(range(0, n, _BLOCK)):
            yield self._block(split, b, min(_BLOCK, n - start), means)


def generated_nested_embeddings(
    n: int, spec: GeneratedNestedSpec | None = None, split: str = "database"
) -> tuple[np.ndarray, np.ndarray]:
    """Generated labelled nested embeddings, in memory.

    Args:
        n: rows.
        spec: the generating model; default `GeneratedNestedSpec()`.
        split: "database" or "queries" (same classes, disjoint random rows).

    Returns:
        x [n, D] float32 and labels [n] int64.
    """
    spec = spec or GeneratedNestedSpec()
    xs, ys = zip(*spec.blocks(n, split), strict=True) if n else ((), ())
    if not xs:
        return np.zeros((0, spec.dim), np.float32), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def write_generated_nested_embeddings(
    prefix: str | Path,
    n: int,
    spec: GeneratedNestedSpec | None = None,
    split: str = "database",
    dtype: str = "float32",
) -> tuple[Path, Path]:
    """Stream generated embeddings to `<prefix>-X.npy` and `<prefix>-y.npy`, block by block.

    Memory stays at one block whatever `n` (1M x 2048 works); each file is written atomically.
    Open the result with `np.load(path, mmap_mode="r")`.

    Returns:
        (embeddings path [n, D] of `dtype`, labels path [n] int64).
    """
    spec = spec or GeneratedNestedSpec()
    x_path, y_path = Path(f"{prefix}-X.npy"), Path(f"{prefix}-y.npy")
    labels = np.empty(n, dtype=np.int64)
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": (n, spec.dim),
    }
    with atomic_open(x_path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        start = 0
        for x, y in spec.blocks(n, split):
            f.write(x.astype(dtype, copy=False).tobytes())
            labels[start : start + len(y)] = y
            start += len(y)
    with atomic_open(y_path, "wb") as f:
        np.save(f, labels)
    return x_path, y_path
