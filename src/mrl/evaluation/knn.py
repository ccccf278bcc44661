"""Exact k-NN search over a prefix of the embeddings, in database chunks, through FAISS.

`knn_search` streams the database in chunks of rows: each chunk is truncated (and
L2-normalised per prefix) with `mrl.nesting.truncate`, searched with `faiss.knn` (BLAS blocks,
never a Q x N matrix in memory), and merged into one running top-k heap. The database may be a
read-only memmap larger than RAM; only one chunk is ever materialised.

`knn_metrics` does one search with the largest k and derives 1-NN / k-NN accuracy and every
retrieval metric at every k from it (one `topk(max_k)`, as in dinov2's `eval/knn.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrl.checks import check_finite_rows, check_int, check_k, check_labels
from mrl.errors import ConfigError, InputError
from mrl.evaluation import metrics
from mrl.nesting import truncate


def knn_search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    dim: int | None = None,
    normalize: bool = True,
    chunk_size: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact L2 k-nearest neighbours of each query among the database's first `dim` dims.

    On per-prefix L2-normalised vectors (the default) L2 order equals cosine order.

    Args:
        database: [N, d] embeddings (float32 or float16; a memmap is fine).
        queries: [Q, d] embeddings.
        k: neighbours per query, 1 <= k <= N.
        dim: prefix size, 1 <= dim <= d; None means all d dims.
        normalize: L2-normalise each prefix before searching.
        chunk_size: database rows searched at once; bounds memory to chunk_size * dim floats.

    Returns:
        D: [Q, k] float32 squared L2 distances, ascending.
        I: [Q, k] int64 database row ids, nearest first.
    """
    if database.ndim != 2 or queries.ndim != 2:
        raise InputError(
            f"database and queries must be 2-D [N, d], got {database.shape} and {queries.shape}"
        )
    if database.shape[1] != queries.shape[1]:
        raise InputError(
            f"database has {database.shape[1]} dims but queries have {queries.shape[1]}; "
            "embed both with the same model"
        )
    k = check_k(k, len(database), "database items")
    chunk_size = check_int("chunk_size", chunk_size)
    dim = (
        database.shape[1]
        if dim is None
        else check_int("prefix size dim", dim, 1, database.shape[1])
    )
    import faiss  # here, not at the top: `mrl embed` and training import this module

    xq = np.ascontiguousarray(truncate(queries, dim, normalize), dtype=np.float32)
    check_finite_rows(xq, "query embeddings")
    heap = faiss.ResultHeap(len(xq), k)
    for start in range(0, len(database), chunk_size):
        xb = truncate(np.asarray(database[start : start + chunk_size]), dim, normalize)
        xb = np.ascontiguousarray(xb, dtype=np.float32)  # (chunk, dim)
        check_finite_rows(xb, "database embeddings", row_offset=start)
        kc = min(k, len(xb))
        dist, ids = faiss.knn(xq, xb, kc)  # (Q, kc) each
        heap.add_result(dist, ids + start)
    heap.finalize()
    return heap.D, heap.I


def check_ks(knn_ks: Sequence[int], retrieval_ks: Sequence[int], n_database: int) -> None:
    """Raise `ConfigError` unless there is a k and each is in 1..n_database (before any search)."""
    if not len(knn_ks) + len(retrieval_ks):
        raise ConfigError("give at least one k (knn_ks or retrieval_ks)")
    for k in (*knn_ks, *retrieval_ks):
        check_k(k, n_database, "train items (the k-NN database)")


def knn_metrics(
    train_z: np.ndarray,
    train_y: np.ndarray,
    test_z: np.ndarray,
    test_y: np.ndarray,
    dim: int,
    knn_ks: Sequence[int] = (1, 5, 20),
    retrieval_ks: Sequence[int] = (10, 25, 50, 100),
    chunk_size: int = 65536,
) -> dict[str, float]:
    """k-NN accuracy and retrieval metrics of test queries against the train database.

    One search with max(knn_ks + retrieval_ks) neighbours; every k is a prefix of it.

    Args:
        train_z, train_y: [N, d] database embeddings and [N] int labels.
        test_z, test_y: [Q, d] query embeddings and [Q] int labels.
        dim: prefix size evaluated (each prefix L2-normalised).
        knn_ks: k values for majority-vote k-NN accuracy ("knn_{k}"; k=1 is 1-NN).
        retrieval_ks: k values for the retrieval metrics (see `metrics.retrieval_metrics`).
        chunk_size: database rows searched at once.

    Returns:
        {"knn_{k}": accuracy, "map_at_{k}_paper": ..., "map_at_{k}": ..., ...}, fractions.
    """
    train_y = check_labels(train_y, "train labels")
    test_y = check_labels(test_y, "test labels")
    check_ks(knn_ks, retrieval_ks, len(train_y))
    metrics.check_same_length(train_z, train_y, "train embeddings", "train labels")
    metrics.check_same_length(test_z, test_y, "test embeddings", "test labels")
    max_k = max((*knn_ks, *retrieval_ks))
    _, ids = knn_search(train_z, test_z, max_k, dim=dim, chunk_size=chunk_size)
    neighbor_labels = train_y[ids]  # (Q, max_k)
    out = {f"knn_{k}": metrics.knn_accuracy(neighbor_labels, test_y, k) for k in knn_ks}
    out.update(metrics.retrieval_metrics(neighbor_labels, test_y, train_y, tuple(retrieval_ks)))
    return out
