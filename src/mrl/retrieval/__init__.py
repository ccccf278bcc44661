"""Adaptive retrieval over nested (Matryoshka) embeddings: index, plans, tuning, benchmark.

References:
    Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, arXiv 2205.13147.
"""

from mrl.retrieval.generated import (
    GeneratedNestedSpec,
    generated_nested_embeddings,
    write_generated_nested_embeddings,
)
from mrl.retrieval.index import MatryoshkaIndex, SearchResult, SearchStats
from mrl.retrieval.plans import Funnel, Rerank, SingleShot, parse_plan
from mrl.retrieval.tune import PlanTuner

__all__ = [
    "Funnel",
    "GeneratedNestedSpec",
    "MatryoshkaIndex",
    "PlanTuner",
    "Rerank",
    "SearchResult",
    "SearchStats",
    "SingleShot",
    "generated_nested_embeddings",
    "parse_plan",
    "write_generated_nested_embeddings",
]
