"""Every metric at every size for one representation: the per-size table behind `mrl eval`.

`evaluate_sizes` works on arrays (so baselines such as SVD projections use it too);
`evaluate_embeddings` checks two `mrl embed` folders against each other and the requested
sizes, then calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mrl.evaluation import metrics
from mrl.evaluation.embed import EmbeddingSet
from mrl.evaluation.knn import knn_metrics
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
    """
    dims = [int(m) for m in dims]
    for m in dims:
        if not 1 <= m <= train_z.shape[1]:
            raise ValueError(f"size {m} is larger than the {train_z.shape[1]}-dim embedding")
    if test_logits is not None and test_logits.shape[:2] != (len(dims), len(test_y)):
        raise ValueError(
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
        ValueError: the folders come from different models, or a size is not in the model's
            nesting.
    """
    if train.manifest["nesting"] != test.manifest["nesting"] or train.head_dims != test.head_dims:
        raise ValueError(
            f"train and test embeddings come from different models: nesting "
            f"{train.manifest['nesting']['dims']} / head sizes {list(train.head_dims)} vs "
            f"{test.manifest['nesting']['dims']} / {list(test.head_dims)}"
        )
    head_dims = test.head_dims
    dims = list(head_dims) if dims is None else [int(m) for m in dims]
    for m in dims:
        if m not in head_dims:
            raise ValueError(
                f"size {m} does not match the model: its head sizes are {list(head_dims)} "
                f"(nesting {list(test.nesting.dims)})"
            )
    logits = None
    if test.logits is not None:
        logits = np.stack([np.asarray(test.logits[head_dims.index(m)]) for m in dims])
    return evaluate_sizes(
        train.embeddings,
        train.labels,
        test.embeddings,
        test.labels,
        dims,
        test_logits=logits,
        probe=probe or logits is None,
        knn_ks=knn_ks,
        retrieval_ks=retrieval_ks,
        chunk_size=chunk_size,
    )
