"""Every metric at every size for one representation: the per-size table behind `mrl eval`.

`evaluate_sizes` works on arrays (so baselines such as SVD projections use it too);
`evaluate_embeddings` checks two `mrl embed` folders against each other and the requested
sizes, then calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mrl.checks import check_int
from mrl.errors import ConfigError, InputError
from mrl.evaluation import metrics
from mrl.evaluation.embed import EmbeddingSet
from mrl.evaluation.knn import check_ks, knn_metrics
from mrl.evaluation.probe import LinearProbe

log = logging.getLogger(__name__)

KNN_KS = (1, 5, 20)
RETRIEVAL_KS = (10, 25, 50, 100)


def evaluate_sizes(
    train_z: np.ndarray,
    train_y: np.ndarray,
    test_z: np.ndarray,
    test_y: np.ndarray,
    dims: Sequence[int],
    test_logits: np.ndarray | None = None,
    probe: bool = False,
    knn_ks: Sequence[int] = KNN_KS,
    retrieval_ks: Sequence[int] = RETRIEVAL_KS,
    chunk_size: int = 65536,
) -> dict[int, dict[str, float]]:
    """Classification, k-NN and retrieval metrics for each prefix size m in `dims`.

    Args:
        train_z, train_y: [N, d] train embeddings (the k-NN database, the probe's data), [N] labels.
        test_z, test_y: [Q, d] test embeddings (the queries), [Q] labels.
        dims: prefix sizes, each <= d.
        test_logits: [G, Q, C] logits of the model's own heads, one slice per entry of `dims`;
            gives "top1"/"top5".
        probe: fit a linear probe per size on the train embeddings; gives "probe_top1"/"probe_top5".
        knn_ks, retrieval_ks: see `knn_metrics`.
        chunk_size: database rows per k-NN search chunk (and probe chunk).

    Returns:
        {m: {"top1", "top5", "probe_top1", "probe_top5", "knn_{k}", "map_at_{k}_paper",
        "map_at_{k}", "precision_at_{k}", "recall_at_{k}", "hit_rate_at_{k}"}}, fractions in
        [0, 1]; the classification keys appear only when their source was given.

    Raises:
        InputError: 2-D train and test embeddings of different widths, or a length mismatch.
        ConfigError: a size outside 1..d or given twice, a k outside 1..N (N train items),
            no k at all, or a chunk_size that is not a positive int.
    """
    # Every argument is checked here, before the probe or any search starts.
    if train_z.ndim != 2 or test_z.ndim != 2 or train_z.shape[1] != test_z.shape[1]:
        raise InputError(
            f"train embeddings {train_z.shape} and test embeddings {test_z.shape} must be "
            "[N, d] and [Q, d] of one width d; embed both splits with the same model"
        )
    metrics.check_same_length(train_z, train_y, "train embeddings", "train labels")
    metrics.check_same_length(test_z, test_y, "test embeddings", "test labels")
    d = train_z.shape[1]
    dims = _check_sizes(dims, "the embeddings", f"1..{d} (their width)", range(1, d + 1))
    check_ks(knn_ks, retrieval_ks, len(train_z))
    chunk_size = check_int("chunk_size", chunk_size)
    if test_logits is not None and test_logits.shape[:2] != (len(dims), len(test_y)):
        raise InputError(
            f"logits have shape {test_logits.shape}, expected [{len(dims)}, {len(test_y)}, C] "
            f"for sizes {dims}"
        )
    results: dict[int, dict[str, float]] = {m: {} for m in dims}
    if test_logits is not None:
        top5 = min(5, test_logits.shape[2])
        for g, m in enumerate(dims):
            logits = np.asarray(test_logits[g])
            results[m]["top1"] = metrics.topk_accuracy(logits, test_y, 1)
            results[m]["top5"] = metrics.topk_accuracy(logits, test_y, top5)
    if probe:
        fitted = LinearProbe(dims, chunk_size=chunk_size).fit(train_z, train_y)
        probe_logits = fitted.decision_function(test_z)  # (G, Q, C)
        k5 = min(5, probe_logits.shape[2])
        for g, m in enumerate(dims):
            results[m]["probe_top1"] = metrics.topk_accuracy(probe_logits[g], test_y, 1)
            results[m]["probe_top5"] = metrics.topk_accuracy(probe_logits[g], test_y, k5)
    for m in dims:
        log.debug("k-NN / retrieval at size %d", m)
        results[m].update(
            knn_metrics(train_z, train_y, test_z, test_y, m, knn_ks, retrieval_ks, chunk_size)
        )
    return results


def evaluate_embeddings(
    train: EmbeddingSet,
    test: EmbeddingSet,
    dims: Sequence[int] | None = None,
    probe: bool = False,
    knn_ks: Sequence[int] = KNN_KS,
    retrieval_ks: Sequence[int] = RETRIEVAL_KS,
    chunk_size: int = 65536,
) -> dict[int, dict[str, float]]:
    """`evaluate_sizes` on two `mrl embed` folders of the same model (train = database).

    Args:
        train, test: loaded with `load_embeddings`.
        dims: sizes to evaluate; each must be one of the model's head sizes (the nesting for
            MRL / MRL-E, (k,) for FF-k). None means all head sizes.
        probe: also fit linear probes (always done when the folders hold no logits).

    Raises:
        InputError: the folders come from different models (width, nesting or head sizes).
        ConfigError: a size not among the model's head sizes, or given twice.
    """
    widths = (train.embeddings.shape[1:], test.embeddings.shape[1:])
    if (
        widths[0] != widths[1]
        or train.manifest["nesting"] != test.manifest["nesting"]
        or train.head_dims != test.head_dims
    ):
        raise InputError(
            "train and test embeddings come from different models: width "
            f"{widths[0][0]} / nesting {train.manifest['nesting']['dims']} / head sizes "
            f"{list(train.head_dims)} vs {widths[1][0]} / {test.manifest['nesting']['dims']} "
            f"/ {list(test.head_dims)}; embed both splits with the same run"
        )
    head_dims = test.head_dims
    where = f"its head sizes {list(head_dims)} (nesting {list(test.nesting.dims)})"
    dims = list(head_dims) if dims is None else _check_sizes(dims, "the model", where, head_dims)
    logits = None
    if test.logits is not None:
        logits = np.stack([np.asarray(test.logits[head_dims.index(m)]) for m in dims])
    return evaluate_sizes(
        train.embeddings,
        train.require_labels("evaluation (the k-NN database's classes)"),
        test.embeddings,
        test.require_labels("evaluation (the queries' classes)"),
        dims,
        test_logits=logits,
        probe=probe or logits is None,
        knn_ks=knn_ks,
        retrieval_ks=retrieval_ks,
        chunk_size=chunk_size,
    )


def _check_sizes(dims: Sequence[int], what: str, where: str, allowed: Sequence[int]) -> list[int]:
    """`dims` as a list of distinct ints, each one of `allowed` (sizes of `what`, see `where`)."""
    sizes = [check_int("size", m) for m in dims]
    if not sizes:
        raise ConfigError(f"give at least one size; choose from {where}")
    for m in sizes:
        if m not in allowed:
            raise ConfigError(f"size {m} does not match {what}: choose from {where}")
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"sizes {sizes} repeat a size; give each once")
    return sizes
