"""Adaptive retrieval over nested (Matryoshka) embeddings: index, plans, tuning.

Modules, one job each:

- `index`: `MatryoshkaIndex`, the estimator (parameters, build, add, remove, compaction);
- `storage`: the full vectors, ids and tombstones behind it, and the row/id checks;
- `plans`: search plans as frozen dataclasses (`SingleShot`, `Rerank`, `Funnel`);
- `search`: search execution (shortlist, then rerank) and its measured cost;
- `topk`: top-n by score with ties broken by id, used by every stage;
- `persist`: save/load of a versioned index folder with a cross-checked manifest;
- `tune`: `PlanTuner`, which measures plans and picks the cheapest reaching a target (by a
  confidence bound), and `choose_index`, which picks among built indexes (ANN kind, D_s).

The benchmark harnesses live in `benchmarks/retrieval.py` (Figure 8, faiss baselines) and
`benchmarks/ann_frontier.py` (recall/QPS frontiers against faiss at full dimension).

References:
    Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, arXiv 2205.13147.
"""

from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Funnel, Rerank, SingleShot, parse_plan
from mrl.retrieval.search import SearchResult, SearchStats
from mrl.retrieval.tune import PlanTuner, choose_index

__all__ = [
    "Funnel",
    "MatryoshkaIndex",
    "PlanTuner",
    "Rerank",
    "SearchResult",
    "SearchStats",
    "SingleShot",
    "choose_index",
    "parse_plan",
]
