"""Per-size evaluation metrics as pure functions over NumPy arrays.

Classification: `topk_accuracy` on logits. k-NN: `knn_predict` / `knn_accuracy` on the labels
of each query's nearest database items, nearest first. Retrieval ("relevant" = same label as the
query, or any [Q, K] relevance with one or several relevant items per query, as in text
retrieval): `precision_at_k`, `recall_at_k`, `hit_rate_at_k`, `mrr_at_k`, `ndcg_at_k` (binary
gains) and two mAP@k variants, named apart because they differ by a large factor:

- `map_at_k_paper`: sum over hits i <= k of precision@i, divided by k, as in the paper's
  `compute_mAP_recall_at_k` ("corrected mAP@k").
- `map_at_k`: the usual AP@k, the same sum divided by min(k, number of relevant items).

Recall@k, AP@k and nDCG@k count each query's relevant items from the database labels (never a
constant such as the official notebook's 1300). A query with no relevant item in the database
has no defined recall, AP@k or nDCG@k and is left out of those means (NaN if no query is left);
MRR@k does the same when given `num_relevant`.

All functions take the [Q, K] neighbour-label matrix from one search with the largest k, so
every smaller k is a column prefix of it (one `topk(max_k)`, as in dinov2's k-NN eval).
"""

from __future__ import annotations

import numpy as np

from mrl.checks import check_k, check_labels
from mrl.errors import InputError


def check_same_length(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    """Raise unless `a` and `b` have the same number of rows (e.g. embeddings and labels)."""
    if len(a) != len(b):
        raise InputError(
            f"{a_name} has {len(a)} rows but {b_name} has {len(b)}; they must describe the "
            "same items"
        )


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose true label is among the k largest logits.

    Args:
        logits: [N, C] scores.
        labels: [N] int class ids.
        k: 1 <= k <= C.

    Returns:
        accuracy in [0, 1]. Equal scores rank the smaller class id first, as `argmax` does.
    """
    labels = check_labels(labels)
    if logits.ndim != 2:
        raise InputError(f"logits must be [N, C], got shape {logits.shape}")
    check_same_length(logits, labels, "logits", "labels")
    check_k(k, logits.shape[1], "classes")
    # Rank of the true class = number of classes scoring strictly higher (or equal and earlier).
    true = logits[np.arange(len(labels)), labels][:, None]
    cols = np.arange(logits.shape[1])[None, :]
    rank = (logits > true).sum(1) + ((logits == true) & (cols < labels[:, None])).sum(1)
    return float((rank < k).mean())


def knn_predict(neighbor_labels: np.ndarray, k: int, chunk_size: int = 8192) -> np.ndarray:
    """Majority vote over each query's k nearest neighbours.

    Ties go to the smallest class id, as in scikit-learn's `KNeighborsClassifier`.

    Args:
        neighbor_labels: [Q, K] int labels of each query's neighbours, nearest first.
        k: votes used, 1 <= k <= K.
        chunk_size: queries voted at once (bounds the [chunk, C] count matrix).

    Returns:
        [Q] int64 predicted labels.
    """
    if neighbor_labels.ndim != 2:
        raise InputError(f"neighbor_labels must be [Q, K], got shape {neighbor_labels.shape}")
    check_k(k, neighbor_labels.shape[1], "neighbours")
    votes = neighbor_labels[:, :k].astype(np.int64)
    if votes.size and votes.min() < 0:
        raise InputError("neighbor_labels hold a negative label (an unfilled search slot?)")
    num_classes = int(votes.max()) + 1 if votes.size else 1
    out = np.empty(len(votes), dtype=np.int64)
    for s in range(0, len(votes), chunk_size):
        chunk = votes[s : s + chunk_size]  # (q, k)
        flat = (np.arange(len(chunk))[:, None] * num_classes + chunk).ravel()
        counts = np.bincount(flat, minlength=len(chunk) * num_classes)
        out[s : s + chunk_size] = counts.reshape(len(chunk), num_classes).argmax(1)
    return out


def knn_accuracy(neighbor_labels: np.ndarray, query_labels: np.ndarray, k: int) -> float:
    """k-NN classification accuracy (majority vote of the k nearest, ties to the smallest id).

    Args:
        neighbor_labels: [Q, K] labels of each query's neighbours, nearest first.
        query_labels: [Q] true labels.
        k: 1 <= k <= K.
    """
    query_labels = check_labels(query_labels, "query labels")
    check_same_length(neighbor_labels, query_labels, "neighbor_labels", "query labels")
    return float((knn_predict(neighbor_labels, k) == query_labels).mean())


def relevance(neighbor_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """[Q, K] bool: neighbour j of query q has the query's label."""
    query_labels = check_labels(query_labels, "query labels")
    check_same_length(neighbor_labels, query_labels, "neighbor_labels", "query labels")
    return neighbor_labels == query_labels[:, None]


def count_relevant(query_labels: np.ndarray, database_labels: np.ndarray) -> np.ndarray:
    """[Q] int64: how many database items share each query's label (the recall denominator)."""
    query_labels = check_labels(query_labels, "query labels")
    database_labels = check_labels(database_labels, "database labels")
    size = max(int(query_labels.max(initial=0)), int(database_labels.max(initial=0))) + 1
    return np.bincount(database_labels, minlength=size)[query_labels]


def _check_relevance(rel: np.ndarray, k: int) -> np.ndarray:
    """`rel` as a [Q, K] bool array (0/1 ints accepted), after checking k against K."""
    rel = np.asarray(rel)
    if rel.ndim != 2:
        raise InputError(f"relevance must be a [Q, K] array, got shape {rel.shape}")
    if rel.dtype != bool:
        if not np.issubdtype(rel.dtype, np.integer) or not np.isin(rel, (0, 1)).all():
            raise InputError(
                f"relevance must be bool (or 0/1), got dtype {rel.dtype}; build it with "
                "relevance(neighbor_labels, query_labels)"
            )
        rel = rel.astype(bool)
    check_k(k, rel.shape[1], "neighbours")
    return rel


def precision_at_k(rel: np.ndarray, k: int) -> float:
    """Mean over queries of (relevant items among the top k) / k. `rel` is [Q, K] bool."""
    rel = _check_relevance(rel, k)
    return float(rel[:, :k].mean(1).mean())


def hit_rate_at_k(rel: np.ndarray, k: int) -> float:
    """Fraction of queries with at least one relevant item in the top k (the paper's "top-k")."""
    rel = _check_relevance(rel, k)
    return float(rel[:, :k].any(1).mean())


def _mean_defined(values: np.ndarray, num_relevant: np.ndarray) -> float:
    defined = num_relevant > 0
    return float(values[defined].mean()) if defined.any() else float("nan")


def _check_num_relevant(rel: np.ndarray, num_relevant: np.ndarray) -> np.ndarray:
    """`num_relevant` as [Q] int64 counts that agree with `rel` (no row has more hits)."""
    num_relevant = np.asarray(num_relevant)
    if num_relevant.ndim != 1 or not np.issubdtype(num_relevant.dtype, np.integer):
        raise InputError(
            f"num_relevant must be a 1-D int array (relevant items per query), got shape "
            f"{num_relevant.shape} dtype {num_relevant.dtype}; build it with count_relevant"
        )
    check_same_length(rel, num_relevant, "relevance", "num_relevant")
    over = np.flatnonzero(rel.sum(1) > num_relevant)
    if len(over):
        q = int(over[0])
        raise InputError(
            f"query {q} has {int(rel[q].sum())} relevant results but num_relevant[{q}] = "
            f"{int(num_relevant[q])}; num_relevant must count every relevant item of the "
            "database (count_relevant)"
        )
    return num_relevant.astype(np.int64)


def recall_at_k(rel: np.ndarray, num_relevant: np.ndarray, k: int) -> float:
    """Mean over queries of (relevant items in the top k) / (relevant items in the database).

    One relevant item per query (a text pair) gives the fraction of queries with it in the
    top k; several (a label, or several positives) give the usual fraction found.

    Args:
        rel: [Q, K] bool relevance of each query's neighbours, nearest first.
        num_relevant: [Q] relevant items per query in the whole database (`count_relevant`).
        k: 1 <= k <= K.

    Returns:
        mean recall over queries with at least one relevant item (NaN if there are none).
    """
    rel = _check_relevance(rel, k)
    num_relevant = _check_num_relevant(rel, num_relevant)
    hits = rel[:, :k].sum(1)
    return _mean_defined(hits / np.maximum(num_relevant, 1), num_relevant)


def _precision_sum_at_hits(rel: np.ndarray, k: int) -> np.ndarray:
    """[Q]: sum of precision@i over the ranks i <= k that are hits."""
    top = rel[:, :k]
    precision_at_i = np.cumsum(top, axis=1) / np.arange(1, k + 1)  # (Q, k)
    return (precision_at_i * top).sum(1)


def map_at_k_paper(rel: np.ndarray, k: int) -> float:
    """The paper's mAP@k: mean over queries of sum_{hits i <= k} precision@i, divided by k.

    This is what RAIVNLab/MRL `compute_mAP_recall_at_k` computes; it is at most
    precision@k-ish and lower than the usual AP@k whenever a query has fewer than k hits.
    """
    rel = _check_relevance(rel, k)
    return float((_precision_sum_at_hits(rel, k) / k).mean())


def map_at_k(rel: np.ndarray, num_relevant: np.ndarray, k: int) -> float:
    """The usual mAP@k: sum_{hits i <= k} precision@i divided by min(k, #relevant), averaged.

    Args:
        rel: [Q, K] bool relevance, nearest first.
        num_relevant: [Q] relevant items per query in the database.
        k: 1 <= k <= K.

    Returns:
        mean AP@k over queries with at least one relevant item (NaN if there are none).
    """
    rel = _check_relevance(rel, k)
    num_relevant = _check_num_relevant(rel, num_relevant)
    denom = np.maximum(np.minimum(num_relevant, k), 1)
    return _mean_defined(_precision_sum_at_hits(rel, k) / denom, num_relevant)


def mrr_at_k(rel: np.ndarray, k: int, num_relevant: np.ndarray | None = None) -> float:
    """Mean reciprocal rank: mean over queries of 1 / (rank of the first relevant item <= k).

    Args:
        rel: [Q, K] bool relevance, nearest first.
        k: 1 <= k <= K; a query with no relevant item in its top k scores 0.
        num_relevant: optional [Q] relevant items per query in the database; if given,
            queries with none are left out (as recall and AP@k do; NaN if none is left).

    Returns:
        MRR@k in [0, 1].
    """
    rel = _check_relevance(rel, k)
    top = rel[:, :k]
    first = top.argmax(1)  # index of the first hit (0 when there is none; masked below)
    rr = np.where(top.any(1), 1.0 / (first + 1), 0.0)
    if num_relevant is None:
        return float(rr.mean())
    return _mean_defined(rr, _check_num_relevant(rel, num_relevant))


def ndcg_at_k(rel: np.ndarray, num_relevant: np.ndarray, k: int) -> float:
    """nDCG@k with binary gains: DCG = sum_{hits at rank i <= k} 1 / log2(i + 1), over the
    ideal DCG of min(num_relevant, k) hits at the top ranks, averaged over queries.

    Args:
        rel: [Q, K] bool relevance, nearest first.
        num_relevant: [Q] relevant items per query in the database (the ideal ranking).
        k: 1 <= k <= K.

    Returns:
        mean nDCG@k in [0, 1] over queries with at least one relevant item (NaN if none).
    """
    rel = _check_relevance(rel, k)
    num_relevant = _check_num_relevant(rel, num_relevant)
    discount = 1.0 / np.log2(np.arange(2, k + 2))  # (k,) rank i = 1..k -> 1 / log2(i + 1)
    dcg = rel[:, :k] @ discount
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(num_relevant, k)]
    return _mean_defined(dcg / np.where(ideal > 0, ideal, 1.0), num_relevant)


def retrieval_metrics(
    neighbor_labels: np.ndarray,
    query_labels: np.ndarray,
    database_labels: np.ndarray,
    ks: tuple[int, ...] = (10, 25, 50, 100),
) -> dict[str, float]:
    """Every retrieval metric at every k, from one [Q, max_k] neighbour-label matrix.

    Returns:
        {"map_at_{k}_paper", "map_at_{k}", "precision_at_{k}", "recall_at_{k}",
        "hit_rate_at_{k}"} for each k, as fractions in [0, 1].
    """
    rel = relevance(neighbor_labels, query_labels)
    num_relevant = count_relevant(query_labels, database_labels)
    out: dict[str, float] = {}
    for k in ks:
        out[f"map_at_{k}_paper"] = map_at_k_paper(rel, k)
        out[f"map_at_{k}"] = map_at_k(rel, num_relevant, k)
        out[f"precision_at_{k}"] = precision_at_k(rel, k)
        out[f"recall_at_{k}"] = recall_at_k(rel, num_relevant, k)
        out[f"hit_rate_at_{k}"] = hit_rate_at_k(rel, k)
    return out
