"""Plan auto-tuning: measure candidate plans on sample queries, keep the Pareto set, pick one.

Quality is relative to exact full-dim search: recall@k of its top-k ids, or (with labels) the
paper's mAP@k divided by exact search's mAP@k. So `target=0.995` reads "99.5% of exact search"
either way. A plan meets the target when a one-sided lower confidence bound of its mean over
the sample queries does (`confidence`, 0.95 by default), so a tuned plan keeps its target on
new queries instead of meeting it on the sample by luck. Cost is measured wall-clock per query
on this machine (best of `repeats` runs; batched, or one query per call), with the analytic
FLOPs and bytes of each plan beside it, as in faiss's `OperatingPoints`. `choose_index` tunes
several built indexes (ANN kinds, D_s, parameters) and keeps the fastest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from mrl.checks import check_int, check_k, check_labels, check_number
from mrl.errors import ConfigError, InputError
from mrl.evaluation import metrics
from mrl.nesting import Nesting
from mrl.retrieval.plans import Funnel, Plan, Rerank, SingleShot
from mrl.retrieval.search import (
    HNSW_KINDS,
    SearchResult,
    SearchStats,
    check_effort,
)

log = logging.getLogger(__name__)


def neighbor_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found_q ∩ truth_q| / k ("k-recall@k" against a ground truth).

    Args:
        found: [Q, k] ids returned by a plan (-1 = none).
        truth: [Q, k] ids of the exact search.
    """
    return float(recall_per_query(found, truth).mean())


def recall_per_query(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[Q] float64: |found_q ∩ truth_q| / k for each query (see `neighbor_recall`)."""
    if found.shape != truth.shape:
        raise InputError(f"found {found.shape} and truth {truth.shape} must have the same shape")
    hits = np.empty(len(found), dtype=np.int64)
    for s in range(0, len(found), 1024):  # bounds the [chunk, k, k] comparison
        f, t = found[s : s + 1024], truth[s : s + 1024]
        hits[s : s + 1024] = ((f[:, :, None] == t[:, None, :]).any(2) & (f >= 0)).sum(1)
    return hits / max(truth.shape[1], 1)


def lower_bound(values: np.ndarray, confidence: float | None) -> float:
    """One-sided lower confidence bound of the mean of `values` (normal approximation).

    mean - z * sd / sqrt(n), z the `confidence` quantile of the standard normal (1.645 at
    0.95); None gives the plain mean. With recall@10 on 500 queries a typical sd of 0.1
    gives a margin of 0.007, the size of the gap between tuning and new queries it covers.
    """
    mean = float(values.mean())
    if confidence is None or len(values) < 2:
        return mean
    z = NormalDist().inv_cdf(confidence)
    return mean - z * float(values.std(ddof=1)) / np.sqrt(len(values))


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


def time_search(
    index, queries: np.ndarray, k: int, plan: Plan, repeats: int, effort=None, per_query=False
):
    """Best-of-`repeats` wall-clock of `index.search(queries, k, plan, effort=effort)`.

    Args:
        per_query: call `search` once per query (a service's case) instead of once per batch;
            the result is then assembled as if batched (stats summed over the calls).

    Returns:
        (the `SearchResult` of the fastest run, its seconds for all the queries).
    """
    best, res = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        if per_query:
            parts = [index.search(row, k, plan, effort=effort) for row in queries]
        else:
            r = index.search(queries, k, plan, effort=effort)
        took = time.perf_counter() - t0
        if per_query:  # stats as a batch's: seconds summed, per-query costs averaged
            st = [p.stats for p in parts]
            stats = SearchStats(
                flops_per_query=float(np.mean([s.flops_per_query for s in st])),
                bytes_per_query=float(np.mean([s.bytes_per_query for s in st])),
                rerank_bytes_per_query=float(np.mean([s.rerank_bytes_per_query for s in st])),
                shortlist_seconds=sum(s.shortlist_seconds for s in st),
                rerank_seconds=sum(s.rerank_seconds for s in st),
            )
            ids = np.stack([p.ids for p in parts])
            r = SearchResult(ids, np.stack([p.scores for p in parts]), stats)
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


def default_plans(
    embed_dim: int, shortlist_dim: int, k: int, count: int, rescore: bool = False
) -> list[Plan]:
    """Candidate plans: pure ANN, shortlist+rerank over the halving dims, halving funnels.

    With `rescore` (an ANN over 8-bit codes), also a float re-scoring of each shortlist at
    D_s itself (`Rerank(D_s, D_s, s)`): the exact rescoring of a quantised search, which is
    the only rerank left when D_s = D, and the cheapest when longer prefixes add little.

    Shortlist sizes k, 2k, 3k, 5k, 10k, 20k, 50k (below `count`); exact full-dim single shot
    is always included so a recall target can always be met. 3k is where a good prefix
    shortlist often sits: at D = 2,048 a 30-row rerank of the 128-d prefix reached recall
    0.987-0.991 where 20 rows gave 0.980-0.983 and 50 rows cost 1.3x the time.
    """
    halving = Nesting.halving(embed_dim, min_dim=min(8, embed_dim))
    dims = [m for m in halving.dims if m > shortlist_dim]
    sizes = sorted({s for s in (k, 2 * k, 3 * k, 5 * k, 10 * k, 20 * k, 50 * k) if s < count})
    plans: list[Plan] = [SingleShot(shortlist_dim, exact=False), SingleShot(embed_dim)]
    for s in sizes:
        plans += [Rerank(shortlist_dim, d, s) for d in ([shortlist_dim] if rescore else []) + dims]
        if s >= 2 * k and 2 * shortlist_dim < embed_dim:
            plans.append(Funnel.halving(embed_dim, shortlist_dim, shortlist=s, final=k))
    return plans


@dataclass(frozen=True)
class TuneRow:
    """One measured plan: latency (ms/query), cost, quality and whether it is Pareto-optimal.

    `quality_bound` is the lower confidence bound of `relative_quality` that `meets_target`
    compares with the target.
    """

    plan: str
    effort: int | None
    latency_ms: float
    flops_per_query: float
    bytes_per_query: float
    quality: float
    relative_quality: float
    meets_target: bool
    pareto: bool
    quality_bound: float | None = None


class PlanTuner:
    """Pick the fastest search plan that reaches a quality target on sample queries.

    Follows the scikit-learn contract: `__init__` stores parameters, `fit` measures and sets
    `best_plan_`, `best_effort_` (None: the index's own), `table_` (a `TuneRow` per plan and
    effort), `measured_plans_` (the (plan, effort) of each row) and `pareto_` (the
    Pareto-optimal rows); `best_for(target)` reads another target off the same fit.

    Args:
        target: required quality relative to exact full-dim search, in (0, 1].
        k: results per query.
        plans: candidates; default `default_plans(...)` for the index.
        repeats: timing runs per plan (the best is kept).
        efforts: ANN search efforts (HNSW efSearch or IVF nprobe) to try with every plan that
            uses the ANN structure; None tries only the index's own setting. Exact plans are
            measured once.
        confidence: a plan meets `target` when the one-sided lower bound of its mean quality
            at this confidence does (see `lower_bound`), in [0.5, 1); None compares the
            sample mean itself.
        per_query: time one query per call (the latency a service sees) instead of batches.

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
        confidence: float | None = 0.95,
        per_query: bool = False,
    ):
        self.target = target
        self.k = k
        self.plans = plans
        self.repeats = repeats
        self.efforts = efforts
        self.confidence = confidence
        self.per_query = per_query

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
        plans = self.plans or default_plans(
            index.dim, index.shortlist_dim, self.k, index.count, index.scores_codes
        )
        truth = index.search(queries, self.k, SingleShot(index.dim)).ids

        def quality(ids: np.ndarray) -> np.ndarray:  # [Q] per-query quality
            if query_labels is None:
                return recall_per_query(ids, truth)
            return np.array(
                [
                    labelled_map_at_k(ids[i : i + 1], query_labels[i : i + 1], id_labels, self.k)
                    for i in range(len(ids))
                ]
            )

        reference = float(quality(truth).mean())
        rows = []
        efforts = [None] if self.efforts is None else list(self.efforts)
        for plan in plans:
            seen = set()
            for effort in efforts if not plan.exact else [None]:
                same = _effective_effort(index, plan, effort, self.k)
                if same in seen:  # faiss would run the very same search again
                    continue
                seen.add(same)
                res, best = time_search(
                    index, queries, self.k, plan, self.repeats, effort, self.per_query
                )
                per = quality(res.ids)
                q, bound = float(per.mean()), lower_bound(per, self.confidence)
                rel_q = q / reference if reference > 0 else float(q >= reference)
                rel_b = bound / reference if reference > 0 else float(bound >= reference)
                lat = 1e3 * best / len(queries)
                rows.append((plan, effort, lat, res.stats, q, rel_q, rel_b))
                log.debug("%s @%s: %.3f ms/query, quality %.4f", plan, effort, lat, q)
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
                meets_target=bool(b >= self.target),
                pareto=bool(f),
                quality_bound=b,
            )
            for (p, e, lat, s, q, r, b), f in zip(rows, front, strict=True)
        ]
        self.pareto_ = [row for row in self.table_ if row.pareto]
        self.measured_plans_ = [(r[0], r[1]) for r in rows]  # parallel to table_
        self.best_plan_, self.best_effort_, self.best_ = self.best_for(self.target)
        return self

    def best_for(self, target: float) -> tuple[Plan, int | None, TuneRow]:
        """The fastest measured (plan, effort, row) whose quality bound reaches `target`.

        Lets one fit serve several targets (the measurements do not depend on the target).

        Raises:
            InputError: no measured plan reaches `target`.
        """
        check_number("target", target, 0, 1, low_open=True)
        ok = [i for i, r in enumerate(self.table_) if r.quality_bound >= target]
        if not ok:
            best = max(range(len(self.table_)), key=lambda i: self.table_[i].quality_bound)
            row = self.table_[best]
            raise InputError(
                f"no plan reaches {target:.4f} of exact search; the best reaches "
                f"{row.relative_quality:.4f} ({row.plan}; lower bound {row.quality_bound:.4f} "
                f"at confidence {self.confidence}); lower the target or add plans"
            )
        i = min(ok, key=lambda i: self.table_[i].latency_ms)
        plan, effort = self.measured_plans_[i]
        return plan, effort, self.table_[i]

    def _check_params(self, index) -> None:
        check_number("target", self.target, 0, 1, low_open=True)
        check_k(self.k, index.count, "indexed vectors")
        check_int("repeats", self.repeats, 1)
        if self.confidence is not None:
            if check_number("confidence", self.confidence, 0.5, 1) == 1:
                raise ConfigError("confidence must be below 1 (an infinite margin); use 0.95")
        if not isinstance(self.per_query, bool | np.bool_):
            raise ConfigError(f"per_query must be True or False, got {self.per_query!r}")
        if self.efforts is not None:
            if not len(self.efforts):
                raise ConfigError("efforts is empty; give at least one effort, or None")
            for i, effort in enumerate(self.efforts):
                check_effort(effort, f"efforts[{i}]")
        if self.plans is not None and not len(self.plans):
            raise ConfigError("plans is empty; give at least one plan, or None for the defaults")


def _effective_effort(index, plan: Plan, effort: int | None, k: int):
    """The search effort faiss actually uses for `plan` (HNSW efSearch is raised to the
    shortlist size, IVF nprobe capped at the cell count), so equal ones are measured once."""
    if plan.exact or index.ann == "flat":
        return None
    if index.ann in HNSW_KINDS:
        return max(index.ef_search if effort is None else effort, plan.shortlist_size(k))
    return min(index.ivf_probe if effort is None else effort, index.ivf_lists)


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


def choose_index(
    candidates: list,
    queries: np.ndarray,
    target: float,
    k: int = 10,
    **tuner_params,
) -> tuple:
    """Tune several built indexes and keep the one whose best plan is fastest.

    The ANN kind, D_s and structure parameters are fixed when an index is built, so the
    tuner chooses among them by tuning each candidate (`PlanTuner` with its own efforts)
    and comparing their best plans' measured latencies on the same queries.

    Args:
        candidates: (built `MatryoshkaIndex`, efforts or None) pairs, e.g. an HNSW and an
            IVF index over the 32- and 64-d prefixes, each with the efSearch / nprobe values
            worth trying.
        queries: [Q, D] sample queries, held out from those the choice will serve.
        target: quality relative to exact full-dim search (see `PlanTuner`).
        k: results per query.
        **tuner_params: further `PlanTuner` arguments (repeats, confidence, per_query, ...).

    Returns:
        (the chosen index, its fitted `PlanTuner`, every candidate's tuner or None where no
        plan reached the target), so callers can also keep the union of the Pareto sets.

    Raises:
        ConfigError: no candidates.
        InputError: no candidate reaches the target.
    """
    if not len(candidates):
        raise ConfigError("choose_index needs at least one (index, efforts) candidate")
    tuners: list[PlanTuner | None] = []
    for index, efforts in candidates:
        tuner = PlanTuner(target=target, k=k, efforts=efforts, **tuner_params)
        try:
            tuners.append(tuner.fit(index, queries))
        except InputError as e:
            if "no plan reaches" not in str(e):
                raise
            log.info("candidate %s reaches no plan: %s", index.ann, e)
            tuners.append(None)
    fitted = [i for i, t in enumerate(tuners) if t is not None]
    if not fitted:
        raise InputError(
            f"no candidate index reaches {target:.4f} of exact search; lower the target or "
            "add candidates with longer prefixes"
        )
    best = min(fitted, key=lambda i: tuners[i].best_.latency_ms)
    return candidates[best][0], tuners[best], tuners
