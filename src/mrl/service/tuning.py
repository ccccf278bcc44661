"""Tuning a collection's plans on sample queries, and reading a `target_recall` off the table.

`PlanTuner` (mrl.retrieval.tune) measures every candidate plan, one query per call as a
service sees it, against exact full-dim search; here it runs over any `Backend` collection
through `CollectionView`, so both backends tune the same way. The table kept per collection
is small JSON: per plan its latency and recall@k lower bound; a search asking for
`target_recall` runs the fastest plan whose bound reaches it (the exact plan, always in the
table, reaches 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrl.checks import check_number
from mrl.errors import InputError
from mrl.retrieval.plans import Plan, parse_plan
from mrl.retrieval.search import SearchResult
from mrl.retrieval.tune import PlanTuner
from mrl.service.backend import Backend, CollectionSpec
from mrl.service.spec import check_search_k


@dataclass
class _Stats:
    """The cost fields `PlanTuner` reads; a backend that does not report one gives NaN."""

    values: dict[str, float] = field(default_factory=dict)

    def __getattr__(self, name: str) -> float:
        return float(self.values.get(name, float("nan")))


class CollectionView:
    """A backend collection through the part of `MatryoshkaIndex`'s API that `PlanTuner` uses."""

    # A Backend exposes no ANN effort knob: "flat" tells the tuner there is none to vary, so
    # it measures each plan once at the backend's own setting.
    ann = "flat"
    scores_codes = False  # and no 8-bit codes whose shortlist the tuner would re-score

    def __init__(self, backend: Backend, spec: CollectionSpec, count: int):
        self.backend, self.spec, self.count = backend, spec, count
        self.dim, self.shortlist_dim = spec.dim, spec.shortlist_dim

    def search(self, queries: np.ndarray, k: int, plan: Plan, effort=None) -> SearchResult:
        hits = self.backend.search(self.spec.name, np.atleast_2d(queries), k, plan)
        ids, scores = hits.ids, hits.scores
        if np.ndim(queries) == 1:
            ids, scores = ids[0], scores[0]
        return SearchResult(ids, scores, _Stats(dict(hits.stats)))


def tune(backend: Backend, spec: CollectionSpec, count: int, queries: np.ndarray, k: int) -> dict:
    """Measure the default candidate plans on `queries`; the table to store with the collection.

    Returns:
        {"k": k, "queries": Q, "rows": [{plan, latency_ms, recall, recall_bound}, ...]} with
        rows sorted by latency; recall is recall@k against exact search, recall_bound its
        one-sided 95% lower bound.
    """
    check_search_k(k, count, spec.name)
    view = CollectionView(backend, spec, count)
    tuner = PlanTuner(target=1.0, k=k, repeats=2, per_query=True).fit(view, queries)
    rows = [
        {
            "plan": row.plan,
            "latency_ms": row.latency_ms,
            "recall": row.relative_quality,
            "recall_bound": row.quality_bound,
        }
        for row in sorted(tuner.table_, key=lambda r: r.latency_ms)
    ]
    return {"k": k, "queries": len(queries), "rows": rows}


def plan_for_recall(table: dict[str, Any], spec: CollectionSpec, target: float, k: int) -> Plan:
    """The fastest tuned plan whose recall bound reaches `target`.

    Raises:
        InputError: `k` differs from the k the table was measured at.
    """
    target = check_number("target_recall", target, 0, 1, low_open=True)
    if k != table["k"]:
        raise InputError(
            f"collection {spec.name!r} was tuned for k={table['k']}, not k={k}; search with "
            f"k={table['k']} or tune again with k={k}"
        )
    rows = [r for r in table["rows"] if r["recall_bound"] >= target]
    best = min(rows, key=lambda r: r["latency_ms"])  # the exact plan always qualifies
    return parse_plan(best["plan"], spec.dim, spec.shortlist_dim)
