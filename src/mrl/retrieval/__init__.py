"""Adaptive retrieval over nested (Matryoshka) embeddings: index, plans, tuning.

References:
    Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, arXiv 2205.13147.
"""

from mrl.retrieval.index import MatryoshkaIndex, SearchResult, SearchStats
from mrl.retrieval.plans import Funnel, Rerank, SingleShot, parse_plan
from mrl.retrieval.tune import PlanTuner

__all__ = [
    "Funnel",
    "MatryoshkaIndex",
    "PlanTuner",
    "Rerank",
    "SearchResult",
    "SearchStats",
    "SingleShot",
    "parse_plan",
]
