"""Plan auto-tuning: measure candidate plans on sample queries, keep the Pareto set, pick one.

Quality is relative to exact full-dim search: recall@k of its top-k ids, or (with labels) the
paper's mAP@k divided by exact search's mAP@k. So `target=0.995` reads "99.5% of exact search"
either way. Cost is measured wall-clock per query on this machine (best of `repeats` runs),
with the analytic FLOPs and bytes of each plan beside it, as in faiss's `OperatingPoints`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from mrl.checks import check_int, check_k, check_labels, check_number
from mrl.errors import ConfigError, InputError
from mrl.evaluation import metrics
from mrl.nesting import Nesting
from mrl.retrieval.plans import Funnel, Plan, Rerank, SingleShot
from mrl.retrieval.search import check_effort

log = logging.getLogger(__name__)


def neighbor_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found_q ∩ truth_q| / k ("k-recall@k" against a ground truth).

    Args:
        found: [Q, k] ids returned by a plan (-1 = none).
        truth: [Q, k] ids of the exact search.
    """
    if found.shape != truth.shape:
        raise InputError(f"found {found.shape} and truth {truth.shape} must have the same shape")
    hits = 0
    for s in range(0, len(found), 1024):  # bounds the [chunk, k, k] comparison
        f, t = found[s : s + 1024], truth[s : s + 1024]
        hits += ((f[:, :, None] == t[:, None, :]).any(2) & (f >= 0)).sum()
    return float(hits / truth.size)


def labelled_map_at_k(
    ids: np.ndarray, query_labels: np.ndarray, id_labels: np.ndarray, k: int
) -> float:
    """The paper's mAP@k of search results, "relevant" meaning the query's label.

    Args:
        ids: [Q, k] ids returned by a search (-1 = none, never relevant).
        query_labels: [Q] int labels of the queries.
        id_labels: labels indexed by id (`id_labels[i]` is the label of id i).
        k: cut-off.
    """
    rel = metrics.relevance(id_labels[np.maximum(ids, 0)], query_labels) & (ids >= 0)
    return metrics.map_at_k_paper(rel, k)


def time_search(index, queries: np.ndarray, k: int, plan: Plan, repeats: int, effort=None):
    """Best-of-`repeats` wall-clock of `index.search(queries, k, plan, effort=effort)`.

    Returns:
        (the `SearchResult` of the fastest run, its seconds for the whole batch).
    """
    best, res = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = index.search(queries, k, plan, effort=effort)
        took = time.perf_counter() - t0
        if took < best:
            best, res = took, r
    return res, best


def pareto_front(latency: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """[n] bool: points no other point beats in both latency (lower) and quality (higher)."""
    order = np.lexsort((-quality, latency))
    front = np.zeros(len(latency), dtype=bool)
    best = -np.inf
    for i in order:
        if quality[i] > best:
            front[i], best = True, quality[i]
    return front


def default_plans(embed_dim: int, shortlist_dim: int, k: int, count: int) -> list[Plan]:
    """Candidate plans: pure ANN, shortlist+rerank over the halving dims, halving funnels.

    Shortlist sizes k, 2k, 5k, 10k, 20k, 50k (below `count`); exact full-dim single shot is
    always included so a recall target can always be met.
    """
    halving = Nesting.halving(embed_dim, min_dim=min(8, embed_dim))
    dims = [m for m in halving.dims if m > shortlist_dim]
    sizes = sorted({s for s in (k, 2 * k, 5 * k, 10 * k, 20 * k, 50 * k) if s < count})
    plans: list[Plan] = [SingleShot(shortlist_dim, exact=False), SingleShot(embed_dim)]
    for s in sizes:
        plans += [Rerank(shortlist_dim, d, s) for d in dims]
        if s >= 2 * k and 2 * shortlist_dim < embed_dim:
            plans.append(Funnel.halving(embed_dim, shortlist_dim, shortlist=s, final=k))
    return plans


@dataclass(frozen=True)
class TuneRow:
    """One measured plan: latency (ms/query), cost, quality and whether it is Pareto-optimal."""

    plan: str
    effort: int | None
    latency_ms: float
    flops_per_query: float
    bytes_per_query: float
    quality: float
    relative_quality: float
    meets_target: bool
    pareto: bool


class PlanTuner:
    """Pick the fastest search plan that reaches a quality target on sample queries.

    Follows the scikit-learn contract: `__init__` stores parameters, `fit` measures and sets
    `best_plan_`, `best_effort_` (None: the index's own), `table_` (a `TuneRow` per plan and
    effort) and `pareto_` (the Pareto-optimal rows).

    Args:
        target: required quality relative to exact full-dim search, in (0, 1].
        k: results per query.
        plans: candidates; default `default_plans(...)` for the index.
        repeats: timing runs per plan (the best is kept).
        efforts: ANN search efforts (HNSW efSearch or IVF nprobe) to try with every plan that
            uses the ANN structure; None tries only the index's own setting. Exact plans are
            measured once.

    References:
        Kusupati et al., arXiv 2205.13147, Figure 8 (the cost/accuracy trade-off tuned here).

    Example:
        >>> tuner = PlanTuner(target=0.95, k=10).fit(index, sample_queries)  # doctest: +SKIP
        >>> index.search(queries, 10, tuner.best_plan_, effort=tuner.best_effort_)  # doctest: +SKIP
    """

    def __init__(
        self,
        target: float,
        k: int = 10,
        plans: list[Plan] | None = None,
        repeats: int = 2,
        efforts: list[int] | None = None,
    ):
        self.target = target
        self.k = k
        self.plans = plans
        self.repeats = repeats
        self.efforts = efforts

    def fit(
        self,
        index,
        queries: np.ndarray,
        query_labels: np.ndarray | None = None,
        id_labels: np.ndarray | None = None,
    ) -> PlanTuner:
        """Measure every plan on `queries` against exact full-dim search.

        Args:
            index: a built `MatryoshkaIndex`.
            queries: [Q, D] sample queries.
            query_labels: [Q] int labels; with `id_labels`, quality is mAP@k (paper variant).
            id_labels: labels indexed by id (`id_labels[i]` is the label of id i).

        Returns:
            self.
        """
        self._check_params(index)
        queries = np.atleast_2d(queries)  # one [D] query is a batch of one here
        if (query_labels is None) != (id_labels is None):
            raise ConfigError("give both query_labels and id_labels for mAP, or neither")
        if query_labels is not None:
            query_labels, id_labels = _check_tune_labels(index, queries, query_labels, id_labels)
        plans = self.plans or default_plans(index.dim, index.shortlist_dim, self.k, index.count)
        truth = index.search(queries, self.k, SingleShot(index.dim)).ids

        def quality(ids: np.ndarray) -> float:
            if query_labels is None:
                return neighbor_recall(ids, truth)
            return labelled_map_at_k(ids, query_labels, id_labels, self.k)

        reference = quality(truth)
        rows = []
        efforts = [None] if self.efforts is None else list(self.efforts)
        for plan in plans:
            for effort in efforts if not plan.exact else [None]:
                res, best = time_search(index, queries, self.k, plan, self.repeats, effort)
                q = quality(res.ids)
                rel_q = q / reference if reference > 0 else float(q >= reference)
                rows.append((plan, effort, 1e3 * best / len(queries), res.stats, q, rel_q))
                log.debug("%s @%s: %.3f ms/query, quality %.4f", plan, effort, rows[-1][2], q)
        latency = np.array([r[2] for r in rows])
        rel = np.array([r[5] for r in rows])
        front = pareto_front(latency, rel)
        self.table_ = [
            TuneRow(
                plan=str(p),
                effort=e,
                latency_ms=lat,
                flops_per_query=s.flops_per_query,
                bytes_per_query=s.bytes_per_query,
                quality=q,
                relative_quality=r,
                meets_target=bool(r >= self.target),
                pareto=bool(f),
            )
            for (p, e, lat, s, q, r), f in zip(rows, front, strict=True)
        ]
        self.pareto_ = [row for row in self.table_ if row.pareto]
        ok = [i for i, r in enumerate(self.table_) if r.meets_target]
        if not ok:
            raise InputError(
                f"no plan reaches {self.target:.4f} of exact search; the best reaches "
                f"{rel.max():.4f} ({self.table_[int(rel.argmax())].plan})"
            )
        best_i = min(ok, key=lambda i: self.table_[i].latency_ms)
        self.best_plan_, self.best_effort_ = rows[best_i][0], rows[best_i][1]
        self.best_ = self.table_[best_i]
        return self

    def _check_params(self, index) -> None:
        check_number("target", self.target, 0, 1, low_open=True)
        check_k(self.k, index.count, "indexed vectors")
        check_int("repeats", self.repeats, 1)
        if self.efforts is not None:
            if not len(self.efforts):
                raise ConfigError("efforts is empty; give at least one effort, or None")
            for i, effort in enumerate(self.efforts):
                check_effort(effort, f"efforts[{i}]")
        if self.plans is not None and not len(self.plans):
            raise ConfigError("plans is empty; give at least one plan, or None for the defaults")


def _check_tune_labels(index, queries, query_labels, id_labels) -> tuple[np.ndarray, np.ndarray]:
    """Query labels, one per query, and id labels covering exactly the index's ids 0..max."""
    query_labels = check_labels(query_labels, "query_labels")
    id_labels = check_labels(id_labels, "id_labels")
    n_queries = len(np.atleast_2d(queries))
    if len(query_labels) != n_queries:
        raise InputError(
            f"query_labels has {len(query_labels)} labels for {n_queries} queries; give one "
            "label per query"
        )
    need = int(index.store_.ids.max()) + 1
    if len(id_labels) != need:
        few = "too few" if len(id_labels) < need else "too many"
        raise InputError(
            f"id_labels has {len(id_labels)} labels ({few}): the index's largest id is "
            f"{need - 1}, so give {need} (id_labels[i] is the label of id i)"
        )
    return query_labels, id_labels
