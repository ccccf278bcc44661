"""`MatryoshkaIndex`: full nested vectors + an ANN structure over their D_s-prefix, with plans.

Search is composition, faiss-contrib style: `shortlist` (ANN or brute force at D_s) then
`rerank` (vectorised re-scoring at growing prefixes). Scores are cosine similarities of the
per-prefix unit vectors (the same ranking as L2 on unit vectors, as in the paper).

Removal uses tombstones: faiss HNSW cannot delete, so removed rows stay in the graph and are
filtered *during* the faiss search by an `IDSelectorBitmap` of live rows (no over-fetch, so
exactly `n` live candidates come back when the graph reaches them); once more than
`compact_at` of the rows are dead, the index compacts (drops them and rebuilds the ANN).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import faiss
import numpy as np
import torch

from mrl.io import atomic_dir_commit, current_version_dir, sha256_file
from mrl.nesting import truncate
from mrl.retrieval.plans import Funnel, Plan, Step, check_plan
from mrl.retrieval.storage import (
    STORAGE_DTYPES,
    Scratch,
    VectorStore,
    as_rows,
    check_new_ids,
    resident_copy,
    unit_prefix,
)
from mrl.retrieval.tune import PlanTuner

log = logging.getLogger(__name__)

FORMAT = "mrl-matryoshka-index"
FORMAT_VERSION = 1
ANN_KINDS = ("hnsw", "flat", "ivf")
_FILES = ("vectors.npy", "ids.npy", "live.npy", "ann.faiss")
_SCAN_FLOATS = 1 << 24  # scores per brute-force block (64 MB of float32)
_GATHER_FLOATS = 1 << 24  # gathered candidate floats per rerank chunk (64 MB of float32)
_NO_ID = np.iinfo(np.int64).max  # sorts invalid candidates last among equal (-inf) scores


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


def top_by_score_then_id(scores: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """Columns of the best `n` entries per row, ordered by score desc, then id asc.

    Vectorised over rows: a partition keeps everything >= the n-th score (so boundary ties are
    all seen), a stable argsort orders it, and only rows with equal scores are re-sorted by
    `np.lexsort` (rare with real-valued data, exact when they occur).

    Args:
        scores: [Q, m] float32.
        ids: [Q, m] int64 tie-breakers, or [m] shared by every row, or a function returning
            either: it is called only when some scores tie, so callers skip gathering ids
            in the usual case.
        n: how many to keep, <= m.

    Returns:
        [Q, n] int64 column indices into `scores`.
    """
    q, m = scores.shape

    def tie_ids() -> np.ndarray:  # a view: a shared [m] row is never copied Q times
        return np.broadcast_to(ids() if callable(ids) else ids, (q, m))

    cols = np.broadcast_to(np.arange(m), (q, m))
    if m > n:
        nth = np.partition(scores, m - n, axis=1)[:, m - n]  # (Q,) n-th largest
        keep = scores >= nth[:, None]
        counts = keep.sum(axis=1)
        sel = np.empty((q, n), dtype=np.int64)
        plain = counts == n
        sel[plain] = np.nonzero(keep[plain])[1].reshape(-1, n)
        if not plain.all():  # ties straddle the cut: order the whole row by (score, id)
            rows = ~plain
            sel[rows] = np.lexsort((tie_ids()[rows], -scores[rows]), axis=1)[:, :n]
        cols = sel
    s = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-s, axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1)
    s = np.take_along_axis(s, order, axis=1)
    tied = (s[:, 1:] == s[:, :-1]).any(axis=1)
    if tied.any():
        i = np.take_along_axis(tie_ids()[tied], cols[tied], axis=1)
        fix = np.lexsort((i, -s[tied]), axis=1)
        cols[tied] = np.take_along_axis(cols[tied], fix, axis=1)
    return cols


def _batched_dots(x: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """[Q, c] dot products of each query with its own candidates, x: [Q, c, dim].

    torch sends a batch of one to a matrix-vector kernel that rounds differently from the
    batched one; a lone query is computed as a batch of two so that a query's scores never
    depend on which other queries share its call.
    """
    if len(x) == 1:
        return _batched_dots(x.expand(2, -1, -1), queries.expand(2, -1))[:1]
    return torch.bmm(x, queries[:, :, None])[..., 0]


class MatryoshkaIndex:
    """A persisted index over nested (Matryoshka) embeddings, searched by adaptive plans.

    Keeps the full [N, D] vectors (float32 or float16, optionally memory-mapped) and an ANN
    structure over the unit-norm D_s-prefixes: HNSW (faiss `IndexHNSWFlat`, M=32, as in the
    paper), exact flat (`IndexFlatIP`) or IVF (`IndexIVFFlat`). Plans (`SingleShot`, `Rerank`,
    `Funnel`) choose the shortlist and the rerank prefixes per call.

    Args:
        shortlist_dim: D_s, the prefix indexed by the ANN structure.
        ann: "hnsw", "flat" or "ivf".
        dtype: storage dtype of the full vectors, "float32" or "float16" (scores are float32).
        hnsw_m: HNSW graph degree M.
        ef_construction: HNSW build beam width.
        ef_search: HNSW search beam width; raised to the shortlist size when smaller.
        ivf_lists: IVF cells (needs at least that many vectors at build).
        ivf_probe: IVF cells probed per query.
        compact_at: compact when more than this fraction of rows are removed.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, arXiv 2205.13147,
        Section 4.3 (adaptive retrieval with HNSW32 shortlisting and funnel reranking).

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
        >>> index = MatryoshkaIndex(shortlist_dim=8).build(x)
        >>> res = index.search(x[:3], k=5, plan=Funnel(8, ((16, 100), (64, 20))))
        >>> res.ids[:, 0].tolist()
        [0, 1, 2]
    """

    def __init__(
        self,
        shortlist_dim: int = 16,
        ann: str = "hnsw",
        dtype: str = "float32",
        hnsw_m: int = 32,
        ef_construction: int = 40,
        ef_search: int = 64,
        ivf_lists: int = 1024,
        ivf_probe: int = 16,
        compact_at: float = 0.5,
    ):
        self.shortlist_dim = shortlist_dim
        self.ann = ann
        self.dtype = dtype
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.ivf_lists = ivf_lists
        self.ivf_probe = ivf_probe
        self.compact_at = compact_at

    # ------------------------------------------------------------------ build / add / remove
    def _check_params(self, dim: int) -> None:
        if self.ann not in ANN_KINDS:
            raise ValueError(f"unknown ann {self.ann!r}; choose one of {list(ANN_KINDS)}")
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose one of {list(STORAGE_DTYPES)}")
        if not 1 <= self.shortlist_dim <= dim:
            raise ValueError(f"shortlist_dim {self.shortlist_dim} is outside 1..{dim}")
        if not 0 < self.compact_at <= 1:
            raise ValueError(f"compact_at must be in (0, 1], got {self.compact_at}")

    def build(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> MatryoshkaIndex:
        """Store `vectors` and build the ANN structure over their D_s-prefixes.

        Args:
            vectors: [N, D] float array, N >= 1. A `np.memmap` of the storage dtype is kept
                memory-mapped (not copied); pass `resident_copy(x)` instead when it fits in
                RAM: reranks from a memory map are several times slower.
            ids: [N] unique ints; defaults to 0..N-1.

        Returns:
            self, with `store_` and `ann_` set.
        """
        if not isinstance(vectors, np.ndarray):
            vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"build needs a non-empty [N, D] array, got shape {vectors.shape}")
        self._check_params(vectors.shape[1])
        vectors = as_rows(vectors, vectors.shape[1], "vectors")
        ids = np.arange(len(vectors), dtype=np.int64) if ids is None else ids
        ids = check_new_ids(ids, len(vectors))
        self.store_ = VectorStore(self._cast(vectors), ids)
        self._build_ann()
        return self

    def _cast(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.dtype == np.dtype(self.dtype):
            return vectors
        with np.errstate(over="ignore"):  # reported below with the row
            out = vectors.astype(self.dtype)
        if self.dtype == "float16" and not np.isfinite(out).all():
            row = int(np.argmax(~np.isfinite(out).all(axis=1)))
            raise ValueError(f"vectors row {row} overflows float16 (|x| > 65504)")
        return out

    def _new_ann(self) -> faiss.Index:
        d = self.shortlist_dim
        if self.ann == "hnsw":
            ann = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            ann.hnsw.efConstruction = self.ef_construction
            return ann
        if self.ann == "flat":
            return faiss.IndexFlatIP(d)
        return faiss.IndexIVFFlat(
            faiss.IndexFlatIP(d), d, self.ivf_lists, faiss.METRIC_INNER_PRODUCT
        )

    def _build_ann(self) -> None:
        store = self.store_
        ann = self._new_ann()
        if self.ann == "ivf":
            if store.n_rows < self.ivf_lists:
                raise ValueError(
                    f"ivf with {self.ivf_lists} lists needs >= {self.ivf_lists} vectors, "
                    f"got {store.n_rows}; lower ivf_lists"
                )
            sample = np.linspace(0, store.n_rows - 1, min(store.n_rows, 64 * self.ivf_lists))
            ann.train(store.prefix(sample.astype(np.int64), self.shortlist_dim))
        for _, block in store.blocks(self.shortlist_dim, 1 << 16):
            ann.add(block)
        self.ann_ = ann

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Add vectors after build or load.

        Args:
            vectors: [n, D] (or [D]) finite floats.
            ids: [n] ints unique among themselves and new to the index; defaults to
                max(existing id) + 1, ... .
        """
        self._check_built()
        vectors = as_rows(vectors, self.dim, "added vectors")
        if ids is None:
            start = int(self.store_.ids.max()) + 1 if self.store_.n_rows else 0
            ids = np.arange(start, start + len(vectors), dtype=np.int64)
        ids = check_new_ids(np.atleast_1d(ids), len(vectors))
        vectors = self._cast(vectors)
        self.store_.append(vectors, ids)
        self.ann_.add(unit_prefix(vectors, self.shortlist_dim))

    def remove(self, ids: np.ndarray) -> None:
        """Remove vectors by id (every id must be present); compacts past `compact_at`."""
        self._check_built()
        self.store_.kill(np.atleast_1d(ids))
        if 1 - self.store_.count / self.store_.n_rows > self.compact_at:
            self.compact()

    def compact(self) -> None:
        """Drop removed rows and rebuild the ANN structure over the live ones."""
        self._check_built()
        self.store_.compact()
        self.ann_.reset()  # keeps a trained IVF quantizer, so any size can be re-added
        for _, block in self.store_.blocks(self.shortlist_dim, 1 << 16):
            self.ann_.add(block)

    # ------------------------------------------------------------------ properties
    def _check_built(self) -> None:
        if not hasattr(self, "store_"):
            raise ValueError("the index is not built: call build(vectors) or load(path)")

    @property
    def dim(self) -> int:
        """D, the full embedding size."""
        self._check_built()
        return self.store_.dim

    @property
    def count(self) -> int:
        """Number of live vectors."""
        self._check_built()
        return self.store_.count

    @property
    def ids(self) -> np.ndarray:
        """[count] int64 ids of the live vectors, in storage order."""
        return self.store_.ids[self.store_.live]

    # ------------------------------------------------------------------ search
    def _check_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        self._check_built()
        if self.count == 0:
            raise ValueError("the index is empty: add vectors before searching")
        q = as_rows(queries, self.dim, "queries").astype(np.float32, copy=False)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if k > self.count:
            raise ValueError(f"k={k} exceeds the {self.count} vectors in the index")
        return q

    def search(
        self, queries: np.ndarray, k: int, plan: Plan | None = None, effort: int | None = None
    ) -> SearchResult:
        """Top-`k` neighbours of each query under `plan`.

        Args:
            queries: [Q, D] (or one [D] query) finite floats.
            k: results per query, 1 <= k <= count.
            plan: `SingleShot`, `Rerank` or `Funnel`; default the paper's halving funnel from
                this index's D_s.
            effort: ANN search effort for this call only: HNSW efSearch (raised to the
                shortlist size) or IVF nprobe; default the index's `ef_search` / `ivf_probe`.

        Returns:
            `SearchResult` with [Q, k] ids and scores ([k] for a 1-D query) and `SearchStats`.
        """
        single = np.ndim(queries) == 1
        q = self._check_query(queries, k)
        plan = Funnel.halving(self.dim, self.shortlist_dim) if plan is None else plan
        check_plan(plan, self.dim, k)
        bad_effort = isinstance(effort, bool) or not isinstance(effort, int | np.integer)
        if effort is not None and (bad_effort or effort < 1):
            raise ValueError(f"effort must be an int >= 1 (efSearch or nprobe), got {effort!r}")
        exact = plan.exact
        t0 = time.perf_counter()
        size = plan.shortlist_size(k)
        rows, scores, flops = self.shortlist(q, plan.shortlist_dim, size, exact, effort)
        t1 = time.perf_counter()
        rows, scores = self.rerank(q, rows, plan.steps, k, scores)
        t2 = time.perf_counter()
        itemsize = self.store_.vectors.dtype.itemsize
        rerank_bytes = sum(d * c for d, c in plan.steps) * itemsize
        shortlist_bytes = flops * (itemsize if exact else 4)  # faiss stores float32
        stats = SearchStats(
            flops_per_query=flops + sum(d * c for d, c in plan.steps),
            bytes_per_query=shortlist_bytes + rerank_bytes,
            rerank_bytes_per_query=rerank_bytes,
            shortlist_seconds=t1 - t0,
            rerank_seconds=t2 - t1,
        )
        ids = np.where(rows >= 0, self.store_.ids[np.maximum(rows, 0)], -1)
        if single:
            return SearchResult(ids[0], scores[0], stats)
        return SearchResult(ids, scores, stats)

    def _ids_of(self, rows: np.ndarray) -> np.ndarray:
        return np.where(rows >= 0, self.store_.ids[np.maximum(rows, 0)], _NO_ID)

    def shortlist(
        self,
        queries: np.ndarray,
        dim: int,
        n: int,
        exact: bool = False,
        effort: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """The best `n` rows per query at the `dim`-prefix, best first.

        Shortlisting the whole database returns every live row (score order, ties by id).

        Args:
            queries: [Q, D] float32, validated.
            dim: prefix size; must equal `shortlist_dim` unless `exact`.
            n: shortlist size.
            exact: brute force over the stored vectors instead of the ANN structure.
            effort: HNSW efSearch or IVF nprobe for this call (see `search`).

        Returns:
            rows [Q, n] int64 (storage rows, -1 if not found), scores [Q, n] float32, and
            multiply-adds per query.
        """
        store = self.store_
        qd = truncate(queries, dim, normalize=True)  # (Q, dim)
        if n >= store.count:
            live = np.flatnonzero(store.live)
            rows = np.broadcast_to(live, (len(queries), len(live)))
            scores = qd @ store.prefix(live, dim).T  # (Q, count)
            cols = top_by_score_then_id(scores, partial(self._ids_of, live), len(live))
            return np.take_along_axis(rows, cols, 1), np.take_along_axis(scores, cols, 1), 0.0
        if exact:
            rows, scores = self._scan(qd, dim, n)
            return rows, scores, float(store.count * dim)
        if dim != self.shortlist_dim:
            raise ValueError(
                f"the ANN structure indexes the {self.shortlist_dim}-prefix, not {dim}; "
                "use exact=True or a plan whose D_s is the index's shortlist_dim"
            )
        return self._ann_search(qd, n, effort)

    def _scan(self, qd: np.ndarray, dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top-n over all live rows at `dim`, block by block (bounded memory)."""
        store = self.store_
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
            cols = top_by_score_then_id(s, partial(self._ids_of, block_rows), min(n, len(x)))
            rows = np.concatenate([best_rows, block_rows[cols]], 1)  # (Q, <= 2n)
            s = np.concatenate([best, np.take_along_axis(s, cols, 1)], 1)
            cols = top_by_score_then_id(s, partial(self._ids_of, rows), min(n, s.shape[1]))
            best_rows = np.take_along_axis(rows, cols, 1)
            best = np.take_along_axis(s, cols, 1)
        return best_rows, best

    def _ann_search(
        self, qd: np.ndarray, n: int, effort: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        store = self.store_
        sel, bitmap = None, None
        if store.count < store.n_rows:
            bitmap = np.packbits(store.live, bitorder="little")
            sel = faiss.IDSelectorBitmap(store.n_rows, faiss.swig_ptr(bitmap))
        if self.ann == "hnsw":
            ef = self.ef_search if effort is None else int(effort)
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(ef, n))
            stats = faiss.cvar.hnsw_stats
        elif self.ann == "ivf":
            nprobe = self.ivf_probe if effort is None else int(effort)
            params = faiss.SearchParametersIVF(sel=sel, nprobe=min(nprobe, self.ivf_lists))
            stats = faiss.cvar.indexIVF_stats
        else:
            params, stats = faiss.SearchParameters(sel=sel), None
        if stats is not None:
            stats.reset()
        scores, rows = self.ann_.search(qd, n, params=params)
        del bitmap  # kept alive until the search is done (the selector points into it)
        if stats is None:
            flops = float(store.count * self.shortlist_dim)
        else:
            per_query = stats.ndis / len(qd)
            if self.ann == "ivf":
                per_query += self.ivf_lists  # the coarse quantizer's distances
            flops = per_query * self.shortlist_dim
        scores[rows < 0] = -np.inf
        cols = top_by_score_then_id(scores, partial(self._ids_of, rows), n)
        return np.take_along_axis(rows, cols, 1), np.take_along_axis(scores, cols, 1), flops

    def rerank(
        self,
        queries: np.ndarray,
        rows: np.ndarray,
        steps: tuple[Step, ...],
        k: int,
        scores: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidates step by step; no Python loop over queries.

        Each step gathers the top `candidates` rows (only their first `dim` columns) and
        scores all queries with one batched matmul, divided by each candidate prefix's norm.

        Args:
            queries: [Q, D] float32.
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
        chunk = max(1, _GATHER_FLOATS // max(dim * cand for dim, cand in steps))
        scratch = Scratch()  # one set of gather buffers for every chunk and step of this call
        out = [
            self._rerank_chunk(queries[s : s + chunk], rows[s : s + chunk], steps, k, scratch)
            for s in range(0, len(queries), chunk)
        ]
        return np.concatenate([r for r, _ in out]), np.concatenate([v for _, v in out])

    def _rerank_chunk(self, queries, rows, steps, k, scratch):
        for i, (dim, cand) in enumerate(steps):
            keep = steps[i + 1][1] if i + 1 < len(steps) else k
            rows = rows[:, :cand]
            valid = rows >= 0
            x = self.store_.gather(np.where(valid, rows, 0), dim, scratch)  # (Q, c, dim) f32
            qd = torch.from_numpy(truncate(queries, dim, normalize=True))  # (Q, dim)
            # Cosine of per-prefix unit vectors: dividing the dot products by the candidates'
            # prefix norms equals normalising each prefix, without writing a normalised copy.
            dots = _batched_dots(x, qd)  # (Q, c)
            norms = torch.linalg.vector_norm(x, dim=2)  # (Q, c)
            scores = (dots / norms.clamp_min(1e-12)).numpy()
            scores[~valid] = -np.inf
            cols = top_by_score_then_id(scores, partial(self._ids_of, rows), min(keep, cand))
            rows = np.take_along_axis(rows, cols, 1)
            scores = np.take_along_axis(scores, cols, 1)
        return rows[:, :k], scores[:, :k]

    def tune(
        self,
        queries: np.ndarray,
        target: float,
        k: int = 10,
        query_labels: np.ndarray | None = None,
        id_labels: np.ndarray | None = None,
        plans: list[Plan] | None = None,
        repeats: int = 2,
        efforts: list[int] | None = None,
    ):
        """Cheapest plan (and ANN effort) by measured latency reaching `target`.

        See `mrl.retrieval.tune.PlanTuner`; quality is recall@k against exact full-dim search,
        or the paper's mAP@k relative to exact search when labels are given. `efforts` are
        HNSW efSearch / IVF nprobe values tried with every ANN plan.

        Returns:
            the fitted `PlanTuner` (`best_plan_`, `best_effort_`, `best_`, `table_`, `pareto_`).
        """
        tuner = PlanTuner(target=target, k=k, plans=plans, repeats=repeats, efforts=efforts)
        return tuner.fit(self, queries, query_labels, id_labels)

    # ------------------------------------------------------------------ persistence
    def _manifest(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "shortlist_dim": self.shortlist_dim,
            "dtype": self.dtype,
            "count": self.count,
            "rows": self.store_.n_rows,
            "metric": "cosine (inner product of per-prefix unit vectors)",
            "index_params": {
                "ann": self.ann,
                "hnsw_m": self.hnsw_m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
                "ivf_lists": self.ivf_lists,
                "ivf_probe": self.ivf_probe,
                "compact_at": self.compact_at,
            },
        }

    def save(self, path: str | Path) -> None:
        """Save atomically to folder `path`: a crash mid-save leaves the previous save loadable.

        Writes vectors.npy, ids.npy, live.npy, ann.faiss and manifest.json (format version,
        D, D_s, dtype, count, metric, index parameters, sha256 and size of every file) into a
        new version folder, then switches `path/CURRENT` to it (`mrl.io.atomic_dir_commit`).
        """
        self._check_built()
        store = self.store_
        with atomic_dir_commit(path) as tmp:
            np.save(tmp / "vectors.npy", store.vectors)
            np.save(tmp / "ids.npy", store.ids)
            np.save(tmp / "live.npy", store.live)
            faiss.write_index(self.ann_, str(tmp / "ann.faiss"))
            manifest = self._manifest()
            manifest["files"] = {
                name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in _FILES
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False, verify: bool = True) -> MatryoshkaIndex:
        """Load a saved index, checking its manifest, file sizes and (if `verify`) sha256.

        Args:
            path: folder written by `save`.
            mmap: memory-map the full vectors read-only instead of reading them into RAM.
            verify: check every file's sha256 (reads all bytes once).

        Raises:
            FileNotFoundError: no such folder.
            ValueError: not an index folder, foreign or unknown format version, a missing or
                truncated file, or a checksum mismatch.
        """
        version = current_version_dir(path)
        manifest_path = version / "manifest.json"
        if not manifest_path.is_file():
            raise ValueError(f"truncated index at {path}: {manifest_path.name} is missing")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"corrupted index at {path}: manifest.json is not JSON ({e})") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} folder (foreign manifest)")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"unknown format version {manifest.get('format_version')!r} at {path}; "
                f"this mrl reads version {FORMAT_VERSION}"
            )
        for name in _FILES:
            meta = manifest["files"].get(name)
            f = version / name
            if meta is None or not f.is_file():
                raise ValueError(f"truncated index at {path}: {name} is missing")
            if f.stat().st_size != meta["bytes"]:
                raise ValueError(
                    f"truncated index at {path}: {name} has {f.stat().st_size} bytes, "
                    f"the manifest says {meta['bytes']}"
                )
            if verify and sha256_file(f) != meta["sha256"]:
                raise ValueError(f"checksum mismatch for {name} at {path}: the index is corrupted")
        index = cls(
            shortlist_dim=manifest["shortlist_dim"],
            dtype=manifest["dtype"],
            **manifest["index_params"],
        )
        vectors = np.load(version / "vectors.npy", mmap_mode="r")
        if not mmap:
            vectors = resident_copy(vectors)
        ids = np.load(version / "ids.npy")
        live = np.load(version / "live.npy")
        if vectors.shape != (manifest["rows"], manifest["dim"]) or len(ids) != len(vectors):
            raise ValueError(f"corrupted index at {path}: array shapes disagree with the manifest")
        index.store_ = VectorStore(vectors, ids, live)
        index.ann_ = faiss.read_index(str(version / "ann.faiss"))
        if index.ann_.ntotal != len(ids) or index.ann_.d != index.shortlist_dim:
            raise ValueError(f"corrupted index at {path}: ann.faiss disagrees with the manifest")
        return index
