"""Search execution over a built `MatryoshkaIndex`: shortlist, then rerank, with measured cost.

Functions over the index's arrays, faiss-contrib style: `shortlist` finds candidates at the
D_s-prefix (the ANN structure, or brute force block by block), `rerank` re-scores them at
growing prefixes (one in-place dot product per candidate, divided by its stored prefix norm),
and `search` composes them under a plan; `search_one` is the same for one query per call
without the batch machinery. An index with a fused rerank (`mrl.retrieval.fused`) runs a
plan re-scored once at full D as one faiss call instead. `PreparedOneQuery` runs a plan that
is one faiss call (the ANN alone, or a fused rerank) for one query, set up once per (plan,
k, effort) for the calls that repeat it.
Scores are cosine similarities of the per-prefix unit vectors (the same ranking as L2 on
unit vectors, as in the paper).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING

import faiss
import numpy as np

from mrl.checks import check_int
from mrl.errors import ConfigError
from mrl.nesting import truncate
from mrl.retrieval.fused import refine_params, shared_refine_params
from mrl.retrieval.plans import Plan, Step
from mrl.retrieval.storage import Scratch, VectorStore
from mrl.retrieval.topk import top_by_score_then_id, top_of_one_row

if TYPE_CHECKING:
    from mrl.retrieval.index import MatryoshkaIndex

_SCAN_FLOATS = 1 << 24  # scores per brute-force block (64 MB of float32)
_GATHER_FLOATS = 1 << 24  # gathered candidate floats per rerank chunk (64 MB of float32)
_NO_ID = np.iinfo(np.int64).max  # sorts invalid candidates last among equal (-inf) scores
HNSW_KINDS = ("hnsw", "hnsw_sq8")  # ANN kinds searched with faiss's HNSW parameters
IVF_KINDS = ("ivf", "ivf_sq8")  # ... and with its IVF parameters
QUANTISED_KINDS = ("hnsw_sq8", "ivf_sq8")  # ANN kinds scoring 8-bit codes, not the floats
# Bound of every ANN beam or probe count (efConstruction, efSearch, nprobe): far above any
# useful value, low enough that faiss never tries to allocate a beam that cannot fit.
MAX_EFFORT = 1 << 20


def check_effort(effort, name: str = "effort") -> int:
    """An ANN effort (HNSW efSearch / efConstruction or IVF nprobe) as an int in 1..2^20."""
    return check_int(name, effort, 1, MAX_EFFORT)


@dataclass(frozen=True)
class SearchStats:
    """Measured cost of one `search` call.

    Attributes:
        flops_per_query: multiply-adds per query, the paper's convention: D_s * N for a brute
            force shortlist (D_s * distances for HNSW/IVF, from faiss's counters) plus
            dim * candidates for every rerank step.
        bytes_per_query: vector bytes read per query (shortlist + rerank).
        rerank_bytes_per_query: the rerank part of `bytes_per_query`.
        shortlist_seconds: wall-clock of the shortlist stage for the whole batch.
        rerank_seconds: wall-clock of all rerank steps for the whole batch.
    """

    flops_per_query: float
    bytes_per_query: float
    rerank_bytes_per_query: float
    shortlist_seconds: float
    rerank_seconds: float

    @property
    def seconds(self) -> float:
        return self.shortlist_seconds + self.rerank_seconds


@dataclass(frozen=True)
class SearchResult:
    """Top-k per query, best first; ties broken by the smaller id.

    Attributes:
        ids: [Q, k] int64 (or [k] for a single 1-D query); -1 where fewer than k were found.
        scores: [Q, k] float32 cosine similarities at the last dim the plan used (-inf for -1).
        stats: measured cost.
    """

    ids: np.ndarray
    scores: np.ndarray
    stats: SearchStats


def search(
    index: MatryoshkaIndex, q: np.ndarray, k: int, plan: Plan, effort: int | None
) -> tuple[np.ndarray, np.ndarray, SearchStats]:
    """Run a validated `plan` for validated [Q, D] float32 queries `q`: ids, scores, stats.

    A plan the index's `FusedRerank` can run (`fused_applies`) runs as one faiss call;
    any other plan runs stage by stage (`search_steps`).
    """
    if fused_applies(index, plan, k):
        return _fused_search(index, q, k, plan, effort, search_steps)
    return search_steps(index, q, k, plan, effort)


def search_steps(
    index: MatryoshkaIndex, q: np.ndarray, k: int, plan: Plan, effort: int | None
) -> tuple[np.ndarray, np.ndarray, SearchStats]:
    """`search` stage by stage: the shortlist, then each rerank step, in NumPy and faiss."""
    store = index.store_
    t0 = time.perf_counter()
    size = plan.shortlist_size(k)
    rows, scores, flops = shortlist(index, q, plan.shortlist_dim, size, plan.exact, effort)
    t1 = time.perf_counter()
    rows, scores = rerank(index, q, rows, plan.steps, k, scores)
    t2 = time.perf_counter()
    ids = np.where(rows >= 0, store.ids[np.maximum(rows, 0)], -1)
    return ids, scores, _stats(store, plan, flops, t1 - t0, t2 - t1)


def search_one(
    index: MatryoshkaIndex, q: np.ndarray, k: int, plan: Plan, effort: int | None
) -> tuple[np.ndarray, np.ndarray, SearchStats]:
    """`search` for one validated [1, D] float32 query, without the batch machinery.

    The one-query-per-call path of a service, where the count of NumPy calls is most of the
    cost (a 64-d IVF shortlist and a 2048-d rerank of 50 rows compute for ~0.1 ms; each NumPy
    call costs 1-2 us after faiss has swept the caches): one faiss call for the shortlist
    (parameters made once per effort, outputs straight from the C entry point), then per
    rerank step one faiss dot-product call over the candidate rows, a division by their
    stored norms and one lexsort, all on 1-D arrays; a plan without steps (the ANN alone)
    returns the shortlist. The shortlist's own order is fixed (ties by id) only when it is
    kept or cut by the first step; a step that re-scores every candidate orders them
    itself. Every number is computed by the same arithmetic as in `search`, so the ids and
    scores equal the batch path's bit for bit (tested). Returns [k] ids and scores and the
    stats.
    """
    if fused_applies(index, plan, k):
        ids, scores, stats = _fused_search(index, q, k, plan, effort, _search_one_steps)
        return ids[0], scores[0], stats
    return _search_one_steps(index, q, k, plan, effort)


class PreparedOneQuery:
    """`search_one` of a plan that is one faiss call, set up once per (plan, k, effort) and
    kept while the index is unchanged: the ANN alone (a plan without rerank steps), or a
    plan the index's `FusedRerank` runs (`fused_applies`).

    A service asks one index the same plan query after query. For such a plan the set-up
    `MatryoshkaIndex.search` redoes on every call (the query's full validation, the plan's
    and the effort's checks, the faiss search parameters, the stats' constant parts) cost
    about 10 us around a 35 us HNSW search at D = 384 (issue 11's real set). This keeps what
    does not change; a call checks the query's dtype, shape and finiteness and that the index
    is the one it was made for (`serves`), then runs the arithmetic of `_search_one_steps`
    (or of `_fused_search`), so the same ids and scores bit for bit, equal scores in id
    order included. A result that came back short (which the general path pads) is left
    to the general path (`run` returns None). Built only for a plan `applies` accepts, on
    an index without removed rows.
    """

    def __init__(self, index: MatryoshkaIndex, k: int, plan: Plan, effort: int | None):
        store = index.store_
        self.k, self.plan = k, plan
        self.state = self.state_of(index)
        self.fused = fused_applies(index, plan, k)
        size = plan.shortlist_size(k)
        base, self.counters, _ = _ann_params(index, size, effort)  # no bitmap: no removals
        if self.fused:  # as `_fused_search` asks
            self.n = _fused_results(k, size)
            self.params = shared_refine_params(base, size, self.n)
            self.searched = index.fused_.index  # normalises the full query inside faiss
            # for a tie past the results (`_fused_top_k`); None: they hold every candidate
            self.size = size
            self.every = shared_refine_params(base, size, size) if self.n < size else None
        else:
            self.n, self.params, self.searched = k, base, index.ann_
        self.dim = plan.shortlist_dim
        self.width = store.dim
        # multiply-adds per query: the counters' distances (+ an IVF's coarse ones) x D_s,
        # and the rerank step's, as `_stats` counts them
        self.coarse = index.ivf_lists if index.ann in IVF_KINDS else 0
        self.fixed_flops = None if self.counters is not None else float(store.count * self.dim)
        self.rerank_flops, self.rerank_bytes = _rerank_cost(store, plan)

    @staticmethod
    def applies(index: MatryoshkaIndex, plan: Plan, k: int) -> bool:
        """Whether `plan` for `k` results is one faiss call on an index with every row live."""
        store = index.store_
        if store.live_bitmap is not None:
            return False
        if fused_applies(index, plan, k):
            return True
        return (
            not plan.steps
            and not plan.exact
            and plan.shortlist_dim == index.shortlist_dim
            and plan.shortlist_size(k) < store.count
        )

    @staticmethod
    def state_of(index: MatryoshkaIndex) -> tuple:
        """What the set-up depends on: the store (and its generation: every add, remove and
        compact makes a new one), the ANN and fused structures, D_s and the default efforts."""
        store = index.store_
        return (
            store,
            store.generation,
            index.ann_,
            index.fused_,
            index.shortlist_dim,
            index.ef_search,
            index.ivf_probe,
        )

    def serves(self, index: MatryoshkaIndex, queries: np.ndarray) -> bool:
        """Whether `queries` is one finite float32 query ([D] or [1, D]) for this index state."""
        return (
            queries.dtype == np.float32
            and queries.ndim <= 2
            and queries.shape[-1] == self.width
            and queries.size == self.width
            and self.state_of(index) == self.state
            and bool(np.isfinite(queries).all())
        )

    def run(self, index: MatryoshkaIndex, queries: np.ndarray):
        """(ids, scores, stats) shaped like `queries`' rows, or None: take the general path."""
        q = queries.reshape(1, self.width)
        t0 = time.perf_counter()
        if not self.fused:
            q = _unit_prefix_of(q, q * q, self.dim)
        if self.counters is not None:
            self.counters.reset()
        scores, rows = _faiss_search(self.searched, q, self.n, self.params)
        if self.fixed_flops is None:
            flops = float((self.counters.ndis + self.coarse) * self.dim)
        else:
            flops = self.fixed_flops
        k = self.k
        if rows[0, k - 1] < 0:  # fewer than k rows found: the general path pads
            return None
        ids = index.store_.ids
        if self.fused:
            every = None
            if self.every is not None:
                every = partial(_every_candidate, self.searched, q, self.size, self.every)
            ids, scores = _fused_top_k(index.store_, k, scores, rows, every)
        else:  # as `_search_one_steps` orders a kept shortlist
            row_scores = scores[0]
            if (row_scores[1:] == row_scores[:-1]).any():
                cols = top_of_one_row(row_scores, ids[rows[0]], k)
                rows, scores = rows[:, cols], scores[:, cols]
            ids = ids[rows]
        t1 = time.perf_counter()
        stats = SearchStats(
            flops_per_query=flops + self.rerank_flops,
            bytes_per_query=flops * 4 + self.rerank_bytes,  # faiss stores float32 or codes
            rerank_bytes_per_query=self.rerank_bytes,
            shortlist_seconds=t1 - t0,
            rerank_seconds=0.0,
        )
        if queries.ndim == 1:
            return ids[0], scores[0], stats
        return ids, scores, stats


def _search_one_steps(
    index: MatryoshkaIndex, q: np.ndarray, k: int, plan: Plan, effort: int | None
) -> tuple[np.ndarray, np.ndarray, SearchStats]:
    """`search_one` stage by stage (see there); a batch of one for exact or whole-DB plans."""
    store = index.store_
    size = plan.shortlist_size(k)
    if plan.exact or size >= store.count:
        ids, scores, stats = search_steps(index, q, k, plan, effort)  # rare here: batch path
        return ids[0], scores[0], stats
    _check_ann_dim(index, plan.shortlist_dim)
    t0 = time.perf_counter()
    squares = q * q  # every stage's query-prefix norm sums a slice of these
    qd = _unit_prefix_of(q, squares, plan.shortlist_dim)
    scores, rows, flops = _ann_call(index, qd, size, effort)
    rows, scores = rows[0], scores[0]
    if rows[-1] < 0:  # faiss pads a short result with -1 at the end
        found = rows >= 0
        rows, scores = rows[found], scores[found]
    cut = not plan.steps or plan.steps[0][1] < len(rows)  # is the shortlist's order kept?
    if cut and (scores[1:] == scores[:-1]).any():  # faiss orders ties arbitrarily
        cols = top_of_one_row(scores, store.ids[rows], len(rows))
        rows, scores = rows[cols], scores[cols]
    t1 = time.perf_counter()
    for dim, cand, keep in _steps_with_keep(plan.steps, k):
        rows = rows[:cand]
        scores = _dots(store, _unit_prefix_of(q, squares, dim), rows[None], dim, None)[0]
        scores /= np.maximum(store.norms(dim)[rows], 1e-12)
        cols = top_of_one_row(scores, store.ids[rows], min(keep, len(rows)))
        rows, scores = rows[cols], scores[cols]
    t2 = time.perf_counter()
    ids = store.ids[rows]
    if len(rows) < k:  # fewer live candidates than k: pad as the batch path does
        ids = np.concatenate([ids, np.full(k - len(rows), -1, dtype=np.int64)])
        scores = np.concatenate([scores, np.full(k - len(rows), -np.inf, dtype=np.float32)])
    return ids, scores, _stats(store, plan, flops, t1 - t0, t2 - t1)


@lru_cache(maxsize=1024)
def _steps_with_keep(steps: tuple[Step, ...], k: int) -> tuple[tuple[int, int, int], ...]:
    """`(dim, candidates, keep)` per rerank step: keep is the next step's candidates (k last)."""
    keeps = [cand for _, cand in steps[1:]] + [k]
    return tuple((dim, cand, keep) for (dim, cand), keep in zip(steps, keeps, strict=False))


def _unit_prefix_of(q: np.ndarray, squares: np.ndarray, dim: int) -> np.ndarray:
    """`truncate(q, dim, normalize=True)` of one validated [1, D] float32 query, from `q * q`.

    The same operations on the same numbers as `truncate` (`np.linalg.norm(axis=1)` sums the
    squares of the prefix pairwise, then takes a float32 square root), so the same bits as the
    batch path; without its checks and with the squares shared by every stage, which for one
    query cost more than the sum. The root is taken in double precision and rounded to
    float32, which is the float32 root (both are correctly rounded), as a scalar: half the
    time of the array calls.
    """
    norm = np.float32(math.sqrt(np.add.reduce(squares[0, :dim])))
    return q[:, :dim] / (norm if norm > 1e-12 else np.float32(1e-12))


def _rerank_cost(store: VectorStore, plan: Plan) -> tuple[int, int]:
    """(multiply-adds, vector bytes read) per query of `plan`'s rerank steps."""
    # a step reranks at most the live rows, however many candidates the plan allows
    flops = sum(d * min(c, store.count) for d, c in plan.steps)
    return flops, flops * store.vectors.dtype.itemsize


def _stats(store: VectorStore, plan: Plan, flops: float, shortlist_s: float, rerank_s: float):
    rerank_flops, rerank_bytes = _rerank_cost(store, plan)
    itemsize = store.vectors.dtype.itemsize
    shortlist_bytes = flops * (itemsize if plan.exact else 4)  # faiss stores float32
    return SearchStats(
        flops_per_query=flops + rerank_flops,
        bytes_per_query=shortlist_bytes + rerank_bytes,
        rerank_bytes_per_query=rerank_bytes,
        shortlist_seconds=shortlist_s,
        rerank_seconds=rerank_s,
    )


def _ids_of(store: VectorStore, rows: np.ndarray) -> np.ndarray:
    """Ids of storage `rows` as tie-breakers; -1 rows get an id that sorts last."""
    return np.where(rows >= 0, store.ids[np.maximum(rows, 0)], _NO_ID)


def shortlist(
    index: MatryoshkaIndex,
    queries: np.ndarray,
    dim: int,
    n: int,
    exact: bool = False,
    effort: int | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The best `n` rows per query at the `dim`-prefix, best first.

    Shortlisting the whole database returns every live row (score order, ties by id).

    Args:
        index: a built index.
        queries: [Q, D] float32, validated.
        dim: prefix size; must equal the index's `shortlist_dim` unless `exact`.
        n: shortlist size.
        exact: brute force over the stored vectors instead of the ANN structure.
        effort: HNSW efSearch or IVF nprobe for this call (validated by the caller).

    Returns:
        rows [Q, n] int64 (storage rows, -1 if not found), scores [Q, n] float32, and
        multiply-adds per query.
    """
    store = index.store_
    qd = truncate(queries, dim, normalize=True)  # (Q, dim)
    if n >= store.count:
        live = np.flatnonzero(store.live)
        rows = np.broadcast_to(live, (len(queries), len(live)))
        scores = qd @ store.prefix(live, dim).T  # (Q, count)
        cols = top_by_score_then_id(scores, partial(_ids_of, store, live), len(live))
        flops = float(store.count * dim)  # every live row scored at the prefix
        return np.take_along_axis(rows, cols, 1), np.take_along_axis(scores, cols, 1), flops
    if exact:
        rows, scores = _scan(store, qd, dim, n)
        return rows, scores, float(store.count * dim)
    _check_ann_dim(index, dim)
    return _ann_search(index, qd, n, effort)


def _check_ann_dim(index: MatryoshkaIndex, dim: int) -> None:
    if dim != index.shortlist_dim:
        raise ConfigError(
            f"the ANN structure indexes the {index.shortlist_dim}-prefix, not {dim}; "
            "use exact=True or a plan whose D_s is the index's shortlist_dim"
        )


def _scan(store: VectorStore, qd: np.ndarray, dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-n over all live rows at `dim`, block by block (bounded memory)."""
    nq = len(qd)
    best_rows = np.full((nq, 0), -1, dtype=np.int64)
    best = np.zeros((nq, 0), dtype=np.float32)
    block = max(1024, _SCAN_FLOATS // nq)
    for start, x in store.blocks(dim, block):
        s = qd @ x.T  # (Q, b)
        block_rows = np.arange(start, start + len(x))
        dead = ~store.live[block_rows]
        if dead.any():
            s[:, dead] = -np.inf
        # top-n of the block (ids shared by every query row), then merge with the best so far
        cols = top_by_score_then_id(s, partial(_ids_of, store, block_rows), min(n, len(x)))
        rows = np.concatenate([best_rows, block_rows[cols]], 1)  # (Q, <= 2n)
        s = np.concatenate([best, np.take_along_axis(s, cols, 1)], 1)
        cols = top_by_score_then_id(s, partial(_ids_of, store, rows), min(n, s.shape[1]))
        best_rows = np.take_along_axis(rows, cols, 1)
        best = np.take_along_axis(s, cols, 1)
    return best_rows, best


def _ann_search(
    index: MatryoshkaIndex, qd: np.ndarray, n: int, effort: int | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Top-n rows and scores by the faiss structure, ties in id order, and flops per query."""
    store = index.store_
    scores, rows, flops = _ann_call(index, qd, n, effort)
    scores[rows < 0] = -np.inf
    cols = top_by_score_then_id(scores, partial(_ids_of, store, rows), n)
    return np.take_along_axis(rows, cols, 1), np.take_along_axis(scores, cols, 1), flops


def _ann_call(
    index: MatryoshkaIndex, qd: np.ndarray, n: int, effort: int | None
) -> tuple[np.ndarray, np.ndarray, float]:
    """One faiss search of the unit prefixes `qd` [Q, D_s]: scores, rows (-1 pads), flops/query.

    Dead rows are filtered inside faiss by a bitmap selector; without any, the search
    parameters are shared (`_plain_params`). The C entry point (`search_c`) takes the
    arrays this module made, skipping the NumPy wrapper's checks and copies.
    """
    params, stats, bitmap = _ann_params(index, n, effort)
    scores, rows = _faiss_search(index.ann_, qd, n, params)
    del bitmap  # kept alive until the search is done (the selector points into it)
    return scores, rows, _ann_flops(index, stats, len(qd))


def _faiss_search(ann: faiss.Index, q: np.ndarray, n: int, params) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) [Q, n] of `ann` for the queries `q` through faiss's C entry point."""
    nq = len(q)
    q = np.ascontiguousarray(q, dtype=np.float32)
    scores = np.empty((nq, n), dtype=np.float32)
    rows = np.empty((nq, n), dtype=np.int64)
    ann.search_c(nq, faiss.swig_ptr(q), n, faiss.swig_ptr(scores), faiss.swig_ptr(rows), params)
    return scores, rows


def _ann_params(index: MatryoshkaIndex, n: int, effort: int | None):
    """(faiss search parameters for an `n`-row shortlist at `effort`, the reset faiss counters
    of the ANN family or None, the live-row bitmap the parameters point into or None)."""
    store = index.store_
    family = "hnsw" if index.ann in HNSW_KINDS else "ivf" if index.ann in IVF_KINDS else None
    if family == "hnsw":
        value = max(index.ef_search if effort is None else int(effort), n)
        stats = faiss.cvar.hnsw_stats
    elif family == "ivf":
        value = min(index.ivf_probe if effort is None else int(effort), index.ivf_lists)
        stats = faiss.cvar.indexIVF_stats
    else:
        value, stats = 0, None
    bitmap = store.live_bitmap  # None when no row is removed
    if bitmap is None:
        params = _plain_params(family, value)
    else:
        sel = faiss.IDSelectorBitmap(store.n_rows, faiss.swig_ptr(bitmap))
        params = _new_params(family, value, sel)
    if stats is not None:
        stats.reset()
    return params, stats, bitmap


def _ann_flops(index: MatryoshkaIndex, stats, nq: int) -> float:
    """Multiply-adds per query of the ANN search just run, from faiss's counters."""
    if stats is None:
        return float(index.store_.count * index.shortlist_dim)
    per_query = stats.ndis / nq
    if index.ann in IVF_KINDS:
        per_query += index.ivf_lists  # the coarse quantizer's distances
    return per_query * index.shortlist_dim


def fused_applies(index: MatryoshkaIndex, plan: Plan, k: int) -> bool:
    """Whether `plan` runs as one `FusedRerank` call: the index has one (see
    `MatryoshkaIndex.use_fused_rerank`) and the plan is an ANN shortlist of fewer than
    every row, re-scored by one step at full D."""
    steps = plan.steps
    return (
        index.fused_ is not None
        and len(steps) == 1
        and steps[0][0] == index.store_.dim
        and not plan.exact
        and plan.shortlist_size(k) < index.store_.count
    )


# A fused search of a shortlist up to this long returns every re-scored candidate (the
# refine computes each one's distance whatever it returns), so equal scores are ordered
# without a second call; a longer one returns k + 1 (at 100-400 candidates the sort of
# every one costs 8-10% of a batch).
_FUSED_ALL_RESULTS_MAX = 32


def _fused_results(k: int, size: int) -> int:
    """How many results a fused search of a `size`-row shortlist asks faiss for."""
    return size if size <= max(_FUSED_ALL_RESULTS_MAX, k + 1) else k + 1


def _fused_search(index, q, k, plan, effort, fallback):
    """`plan` for the validated [Q, D] float32 queries `q` in one `FusedRerank` call.

    faiss orders equal scores arbitrarily: `_fused_top_k` puts them in id order. A query
    that found fewer than k rows is searched again by `fallback`, the stage-by-stage path,
    which pads as the contract says. The whole call is timed as the shortlist (faiss does
    not split it); the flops are the stages' own.
    """
    store = index.store_
    size = plan.shortlist_size(k)
    n = _fused_results(k, size)
    t0 = time.perf_counter()
    base, stats, bitmap = _ann_params(index, size, effort)
    make = shared_refine_params if bitmap is None else refine_params
    searched = index.fused_.index
    scores, rows = _faiss_search(searched, q, n, make(base, size, n))
    flops = _ann_flops(index, stats, len(q))

    every = None
    if n < size:
        every = partial(_every_candidate, searched, q, size, make(base, size, size))
    ids, scores = _fused_top_k(store, k, scores, rows, every)
    del bitmap, every  # kept alive until the searches are done
    t1 = time.perf_counter()
    stats = _stats(store, plan, flops, t1 - t0, 0.0)
    for i in np.flatnonzero(rows[:, k - 1] < 0):  # rare: fewer than k rows found
        ids[i], scores[i], _ = fallback(index, q[i : i + 1], k, plan, effort)
    return ids, scores, stats


def _fused_top_k(store: VectorStore, k: int, scores, rows, every) -> tuple[np.ndarray, ...]:
    """[Q, k] ids and scores of a fused search's [Q, n] results, equal scores in id order:
    the order the staged rerank of the same candidates gives.

    Equal scores are common in real collections (the Debian descriptions hold 12,225 exact
    duplicates: two of three one-query searches of them tie), so they are ordered here
    rather than by a staged search. A query without a tie in its k + 1 best is the usual
    case: its k best are unique and in order (no copy, no sort). A tied one is ordered
    among its results, which is enough when they hold every shortlisted candidate
    (`every` is None) or when the tie ends before the k-th; a tie across the k-th may hide
    more tied rows past the results, so those queries are ordered from `every(queries)`
    (their every candidate: one more faiss call).
    """
    if len(scores) == 1:  # one query per call: 1-D arrays, a handful of NumPy calls
        s, r = scores[0], rows[0]
        head = s[: k + 1]
        if r[k - 1] < 0 or not (head[1:] == head[:-1]).any():
            return store.ids[r[:k]][None], s[None, :k]
        if every is not None and s[k - 1] == s[k]:
            s, r = (a[0] for a in every([0]))
        cols = top_of_one_row(np.where(r >= 0, s, -np.inf), store.ids[r], k)
        return store.ids[r[cols]][None], s[cols][None]
    head = scores[:, : k + 1]
    tied = (head[:, 1:] == head[:, :-1]).any(axis=1) & (rows[:, k - 1] >= 0)
    ids, top = store.ids[rows[:, :k]], scores[:, :k]
    if not tied.any():
        return ids, top
    top = top.copy()
    across = tied & (head[:, k - 1] == head[:, k]) if every is not None else np.zeros_like(tied)
    inside = tied & ~across
    if inside.any():
        _order_ties(store, k, ids, top, inside, scores[inside], rows[inside])
    if across.any():
        _order_ties(store, k, ids, top, across, *every(across))
    return ids, top


def _every_candidate(searched, q, size: int, params, sel) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) [selected queries, size]: every shortlisted candidate of the queries
    `q[sel]` (`sel` a mask or indices), from the fused `searched` with `params` asking for
    all `size`."""
    return _faiss_search(searched, q[sel], size, params)


def _order_ties(store: VectorStore, k: int, ids, top, sel, scores, rows) -> None:
    """Write into `ids[sel]`, `top[sel]` the best k of those queries' results by (score, id)."""
    scores = np.where(rows >= 0, scores, -np.inf)  # faiss pads what it did not find
    r_ids = store.ids[rows]
    cols = top_by_score_then_id(scores, r_ids, k)
    ids[sel] = np.take_along_axis(r_ids, cols, axis=1)
    top[sel] = np.take_along_axis(scores, cols, axis=1)


def _new_params(family: str | None, value: int, sel=None) -> faiss.SearchParameters:
    if family == "hnsw":
        return faiss.SearchParametersHNSW(sel=sel, efSearch=value)
    if family == "ivf":
        return faiss.SearchParametersIVF(sel=sel, nprobe=value)
    return faiss.SearchParameters(sel=sel)


@lru_cache(maxsize=256)
def _plain_params(family: str | None, value: int) -> faiss.SearchParameters:
    """Selector-free search parameters, made once per (family, value) and shared: faiss only
    reads them, and building one through SWIG costs about as much as a 64-d IVF probe."""
    return _new_params(family, value)


def rerank(
    index: MatryoshkaIndex,
    queries: np.ndarray,
    rows: np.ndarray,
    steps: tuple[Step, ...],
    k: int,
    scores: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidates step by step; no Python loop over queries.

    Each step takes one dot product per top-`candidates` row with the unit query prefix
    (reading only the first `dim` columns of each row, see `_dots`) and divides it by the
    row's stored prefix norm (`VectorStore.norms`): the cosine of the unit prefixes, without
    normalising a copy of the candidates.

    Args:
        index: a built index.
        queries: [Q, D] float32, validated.
        rows: [Q, s] candidate rows, best first (-1 = none).
        steps: `(dim, candidates)` pairs.
        k: results to return.
        scores: [Q, s] shortlist scores, returned when there are no steps.

    Returns:
        rows [Q, k] and scores [Q, k] float32 at the last step's dim.
    """
    if not steps:
        return rows[:, :k], scores[:, :k]
    # Queries go in chunks so the gathered candidates stay within _GATHER_FLOATS (a
    # 10k-query batch reranked at 2048 x 200 would otherwise need 16 GB).
    store = index.store_
    chunk = max(1, _GATHER_FLOATS // max(dim * cand for dim, cand in steps))
    if len(queries) <= chunk:  # the usual case, and a single query: no concatenation
        return _rerank_chunk(store, queries, rows, steps, k, Scratch())
    scratch = Scratch()  # one set of gather buffers for every chunk and step of this call
    out = [
        _rerank_chunk(store, queries[s : s + chunk], rows[s : s + chunk], steps, k, scratch)
        for s in range(0, len(queries), chunk)
    ]
    return np.concatenate([r for r, _ in out]), np.concatenate([v for _, v in out])


def _rerank_chunk(store, queries, rows, steps, k, scratch):
    for i, (dim, cand) in enumerate(steps):
        keep = steps[i + 1][1] if i + 1 < len(steps) else k
        rows = rows[:, :cand]
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        qd = truncate(queries, dim, normalize=True)  # (Q, dim)
        scores = _dots(store, qd, safe, dim, scratch)  # (Q, c)
        scores /= np.maximum(store.norms(dim)[safe], 1e-12)
        scores[~valid] = -np.inf
        cols = top_by_score_then_id(scores, partial(_ids_of, store, rows), min(keep, cand))
        rows = np.take_along_axis(rows, cols, 1)
        scores = np.take_along_axis(scores, cols, 1)
    return rows[:, :k], scores[:, :k]


def _dots(
    store: VectorStore, qd: np.ndarray, rows: np.ndarray, dim: int, scratch: Scratch | None
) -> np.ndarray:
    """[Q, c] dot products of each query's `dim`-prefix with the prefixes of its own rows.

    Float32 rows in RAM go to faiss's `fvec_inner_products_by_idx`, which reads each
    candidate prefix in place (no gathered copy; 6-10x faster than gathering 100 x 1024
    floats per query, 2 threads); a `dim` that divides D is addressed as row `r * D / dim` of
    a [R * D / dim, dim] view. Otherwise (float16, or a dim that does not divide D) the
    prefixes are gathered and multiplied by `einsum`. Either way every dot product is
    computed on its own, so a query's scores do not depend on which queries share its call.
    """
    vectors = store.vectors
    nq, c = rows.shape
    if vectors.dtype == np.float32 and vectors.flags.c_contiguous and store.dim % dim == 0:
        out = np.empty((nq, c), dtype=np.float32)
        stride = store.dim // dim
        ids = np.ascontiguousarray(rows if stride == 1 else rows * stride, dtype=np.int64)
        # faiss splits the queries over OpenMP threads without checking that there are
        # several: one query on 2 threads waited ~30 ms per call for the idle thread on a
        # loaded machine (2 us on one). The thread count is per calling thread in OpenMP,
        # so lowering it here leaves concurrent searches alone.
        threads = faiss.omp_get_max_threads()
        if nq < threads:
            faiss.omp_set_num_threads(nq)
        try:
            faiss.fvec_inner_products_by_idx(
                faiss.swig_ptr(out),
                faiss.swig_ptr(qd),
                faiss.swig_ptr(vectors),
                faiss.swig_ptr(ids),
                dim,
                nq,
                c,
            )
        finally:
            if nq < threads:
                faiss.omp_set_num_threads(threads)
        return out
    x = store.gather(rows, dim, scratch).numpy()  # (Q, c, dim) f32, a scratch buffer
    return np.einsum("qcd,qd->qc", x, qd)
