"""Evaluation at every nested size: metrics, k-NN, linear probes, baselines, embed, reproduce.

`metrics` are pure functions over arrays; `knn_search` streams the database through FAISS;
`LinearProbe`, `SVDProjection` and `RandomFeatures` follow the scikit-learn contract;
`embed_dataset` / `load_embeddings` define the on-disk layout `mrl eval` and `mrl cascade` read;
`reproduce` trains and compares MRL, MRL-E, FF-k, SVD and Rand-FS and writes a report.
"""

from mrl.evaluation.baselines import RandomFeatures, SVDProjection
from mrl.evaluation.embed import EmbeddingSet, embed_dataset, load_embeddings
from mrl.evaluation.evaluate import evaluate_embeddings, evaluate_sizes
from mrl.evaluation.knn import knn_metrics, knn_search
from mrl.evaluation.metrics import (
    hit_rate_at_k,
    knn_accuracy,
    map_at_k,
    map_at_k_paper,
    precision_at_k,
    recall_at_k,
    retrieval_metrics,
    topk_accuracy,
)
from mrl.evaluation.probe import LinearProbe
from mrl.evaluation.report import write_report
from mrl.evaluation.reproduce import ReproduceConfig, load_reproduce_config, reproduce

__all__ = [
    "EmbeddingSet",
    "LinearProbe",
    "RandomFeatures",
    "ReproduceConfig",
    "SVDProjection",
    "embed_dataset",
    "evaluate_embeddings",
    "evaluate_sizes",
    "hit_rate_at_k",
    "knn_accuracy",
    "knn_metrics",
    "knn_search",
    "load_embeddings",
    "load_reproduce_config",
    "map_at_k",
    "map_at_k_paper",
    "precision_at_k",
    "recall_at_k",
    "reproduce",
    "retrieval_metrics",
    "topk_accuracy",
    "write_report",
]
