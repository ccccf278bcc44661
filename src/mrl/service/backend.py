"""The storage contract every service backend implements: collections of nested vectors.

`mrl.service`'s HTTP layer talks only to a `Backend`; the in-process backend (a
`MatryoshkaIndex` per collection, made durable by a write-ahead log) and the PostgreSQL +
pgvector backend both implement it, so the same requests give the same answers on either.

Contract shared by every implementation:
- ids are ints in 0..2^63-1; vectors are [n, dim] float32, finite (checked by the caller
  through `mrl.retrieval` helpers before they reach a backend, and again by the backend where
  its storage would otherwise accept bad data);
- `add` is all-or-nothing: a batch with an id already in the collection raises
  `ConflictError` and stores nothing; a failed write leaves nothing behind;
- unknown collections and ids raise `NotFoundError`; a clash on create raises
  `ConflictError`; a backend that cannot be reached raises `UnavailableError`;
- `search` takes a plan from `mrl.retrieval.plans` (or None: the collection's default plan)
  and returns ids and cosine scores ordered best first, ties broken by the smaller id, so
  exact plans give identical ids on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mrl.retrieval.plans import Plan

METRICS = ("cosine",)  # the funnel ranks by per-prefix cosine similarity (paper, Sec. 4.3)
STORAGE_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection is: its name, vector width, nesting and shortlist prefix.

    Attributes:
        name: 1-64 chars of [A-Za-z0-9_-], unique per service.
        dim: D, the full vector width.
        nesting: the sizes the vectors were trained for, increasing, last == dim.
        shortlist_dim: D_s, the prefix the ANN structure indexes (one of the nesting).
        metric: "cosine" (the only one: prefixes are compared as unit vectors).
        backend: "memory" or "postgres".
        dtype: storage dtype of the full vectors, "float32" or "float16".
        default_plan: the plan spelling used when a search names none ("funnel" = the paper's
            halving funnel from shortlist_dim).
    """

    name: str
    dim: int
    nesting: tuple[int, ...]
    shortlist_dim: int
    metric: str = "cosine"
    backend: str = "memory"
    dtype: str = "float32"
    default_plan: str = "funnel"


@dataclass(frozen=True)
class SearchHits:
    """`search`'s answer: [Q, k] ids and scores, best first, and what the search cost."""

    ids: np.ndarray
    scores: np.ndarray
    stats: dict[str, float] = field(default_factory=dict)


class Backend(Protocol):
    """Collections of nested vectors with ids and JSON payloads; see the module docstring."""

    def create(self, spec: CollectionSpec) -> None:
        """Create an empty collection (ConflictError if the name exists)."""

    def collections(self) -> list[CollectionSpec]:
        """Every collection, sorted by name."""

    def info(self, name: str) -> dict[str, Any]:
        """{"spec": CollectionSpec, "count": int, "memory_bytes": int} of one collection."""

    def spec(self, name: str) -> CollectionSpec:
        """One collection's spec, cheaply (no count, no sizes): what a request is checked
        against before it reaches `add` or `search` (NotFoundError if absent)."""

    def drop(self, name: str) -> None:
        """Delete a collection and everything in it."""

    def add(
        self,
        name: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        payloads: list[dict[str, Any] | None],
    ) -> None:
        """Store a batch atomically (ConflictError on an id already present)."""

    def get(self, name: str, item_id: int) -> tuple[np.ndarray, dict[str, Any] | None]:
        """One item's full vector and payload (NotFoundError if absent)."""

    def delete(self, name: str, ids: np.ndarray) -> int:
        """Delete the given ids atomically (NotFoundError naming the first absent one)."""

    def payloads(self, name: str, ids: np.ndarray) -> list[dict[str, Any] | None]:
        """Payloads of ids that exist (as returned by search), in the same order."""

    def search(self, name: str, queries: np.ndarray, k: int, plan: Plan | None) -> SearchHits:
        """Top-k of each [Q, dim] query under `plan` (None: the collection's default)."""

    def set_tuning(self, name: str, table: dict[str, Any]) -> None:
        """Store a collection's tuner table (plans with their measured recall and latency),
        durably, so a search by `target_recall` resolves the same plan after a restart."""

    def tuning(self, name: str) -> dict[str, Any] | None:
        """The stored tuner table of a collection, or None before the first tune."""

    def close(self) -> None:
        """Flush and release everything (log files, connections, the embedded server)."""
