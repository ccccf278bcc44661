"""Evaluation at every nested size: metrics, k-NN, linear probes, baselines, embed, report.

`metrics` are pure functions over arrays; `knn_search` streams the database through FAISS;
`LinearProbe`, `SVDProjection` and `RandomFeatures` follow the scikit-learn contract;
`embed_dataset` / `load_embeddings` define the on-disk layout `mrl eval` and `mrl cascade` read.
Names load on first use: `mrl.evaluation.metrics` (which retrieval uses) never loads matplotlib.
"""

from mrl._lazy import lazy_exports

_EXPORTS = {
    "EmbeddingSet": "mrl.evaluation.embed",
    "LinearProbe": "mrl.evaluation.probe",
    "RandomFeatures": "mrl.evaluation.baselines",
    "SVDProjection": "mrl.evaluation.baselines",
    "embed_dataset": "mrl.evaluation.embed",
    "embed_texts": "mrl.evaluation.embed",
    "evaluate_embeddings": "mrl.evaluation.evaluate",
    "evaluate_sizes": "mrl.evaluation.evaluate",
    "hit_rate_at_k": "mrl.evaluation.metrics",
    "knn_accuracy": "mrl.evaluation.metrics",
    "knn_metrics": "mrl.evaluation.knn",
    "knn_search": "mrl.evaluation.knn",
    "load_embeddings": "mrl.evaluation.embed",
    "map_at_k": "mrl.evaluation.metrics",
    "map_at_k_paper": "mrl.evaluation.metrics",
    "mrr_at_k": "mrl.evaluation.metrics",
    "ndcg_at_k": "mrl.evaluation.metrics",
    "precision_at_k": "mrl.evaluation.metrics",
    "Qrels": "mrl.evaluation.ranking",
    "ranking_metrics": "mrl.evaluation.ranking",
    "read_qrels": "mrl.evaluation.ranking",
    "recall_at_k": "mrl.evaluation.metrics",
    "retrieval_metrics": "mrl.evaluation.metrics",
    "topk_accuracy": "mrl.evaluation.metrics",
    "write_report": "mrl.evaluation.report",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
