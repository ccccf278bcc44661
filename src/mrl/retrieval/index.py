"""`MatryoshkaIndex`: full nested vectors + an ANN structure over their D_s-prefix, with plans.

This module holds the estimator: its parameters (validated before faiss sees them), build,
add, remove and compaction. Search execution lives in `mrl.retrieval.search` (whose
`shortlist` and `rerank` stages take a built index, for callers that compose them, as the
Figure 8 benchmark does), persistence in `mrl.retrieval.persist`; `search`, `save` and `load`
here are the checked public entry points to both.

Removal uses tombstones: faiss HNSW cannot delete, so removed rows stay in the graph and are
filtered *during* the faiss search by an `IDSelectorBitmap` of live rows (no over-fetch, so
exactly `n` live candidates come back when the graph reaches them); once more than
`compact_at` of the rows are dead, the index compacts (drops them and rebuilds the ANN).
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from mrl.checks import check_int, check_k, check_number
from mrl.errors import ConfigError, InputError
from mrl.nesting import Nesting
from mrl.retrieval import persist, search
from mrl.retrieval.fused import FusedRerank
from mrl.retrieval.plans import Funnel, Plan, Rerank, SingleShot, check_plan
from mrl.retrieval.search import (
    HNSW_KINDS,
    IVF_KINDS,
    QUANTISED_KINDS,
    SearchResult,
    check_effort,
)
from mrl.retrieval.storage import (
    STORAGE_DTYPES,
    VectorStore,
    as_array,
    as_ids,
    as_rows,
    check_new_ids,
    unit_prefix,
)
from mrl.retrieval.tune import PlanTuner

ANN_KINDS = ("hnsw", "hnsw_sq8", "flat", "ivf", "ivf_sq8")
# Upper bounds of the HNSW degree and IVF cells: far above any useful value, low enough that
# faiss never tries to allocate a graph that cannot fit (M = 10^6 asks for terabytes).
MAX_HNSW_M = 256
MAX_IVF_LISTS = 1 << 24
# IVF k-means: 40 training points per cell (faiss warns below 39) and 10 iterations instead
# of faiss's 25. On 200k x 64-d prefixes with 2,048 cells that cut the build from 13.7 s to
# a few seconds; the cells' quality barely moves after 10 iterations (faiss's own benchmarks
# train IVF with 10), and the shortlist is reranked anyway.
IVF_TRAIN_PER_LIST = 40
IVF_TRAIN_ITERATIONS = 10
IVF_MIN_TRAIN_PER_LIST = 39  # faiss's k-means warns below this many points per cell


def default_ivf_lists(n: int, per_sqrt_n: float = 6.0) -> int:
    """IVF cells for `n` rows when none are given: `per_sqrt_n` sqrt(n) as a power of two.

    At most n / 39 (rounded down to a power of two), so k-means has the points per cell
    faiss asks for, and at least 1. Why 6 sqrt(N): on the generated 2,048-d set (100k rows,
    a 128-d SQ8 prefix, session 9 of `docs/results/ann_frontier/README.md`) 2,048 cells
    (6.5 sqrt(N)) served recall@10 0.985 at 1.2x the queries/s of 1,024 and 4,096 was slower;
    at 200k rows the tuner kept 2,048 (4.6 sqrt(N)) over 4,096. 2,048 in both cases.
    """
    n = check_int("n", n, 1)
    cap = max(1, n // IVF_MIN_TRAIN_PER_LIST)
    cells = 2 ** round(np.log2(per_sqrt_n * np.sqrt(n)))
    return int(max(1, min(cells, 2 ** int(np.log2(cap)))))


class MatryoshkaIndex:
    """A persisted index over nested (Matryoshka) embeddings, searched by adaptive plans.

    Keeps the full [N, D] vectors (float32 or float16, optionally memory-mapped), their
    prefix norms at the halving dims (so a rerank is one dot product per candidate), and an
    ANN structure over the unit-norm D_s-prefixes: HNSW (faiss `IndexHNSWFlat`, M=32, as in
    the paper), HNSW over 8-bit scalar codes of the prefix (`IndexHNSWSQ`, a quarter of the
    prefix bytes), exact flat (`IndexFlatIP`), IVF (`IndexIVFFlat`: sequential scans of a
    few cells, the cheapest shortlist of a short prefix on this hardware) or IVF over 8-bit
    codes (`IndexIVFScalarQuantizer`: the smallest resident structure, for a lean-memory
    index whose full vectors stay memory-mapped). Plans
    (`SingleShot`, `Rerank`, `Funnel`) choose the shortlist and the rerank prefixes per call;
    `mrl.retrieval.tune.choose_index` picks the ANN kind, its effort and the plan.

    Args:
        shortlist_dim: D_s, the prefix indexed by the ANN structure, 1..D.
        ann: "hnsw", "hnsw_sq8", "flat", "ivf" or "ivf_sq8".
        dtype: storage dtype of the full vectors, "float32" or "float16" (scores are float32).
        hnsw_m: HNSW graph degree M, 2..256.
        ef_construction: HNSW build beam width, 1..2^20.
        ef_search: HNSW search beam width, 1..2^20; raised to the shortlist size when smaller.
        ivf_lists: IVF cells, 1..2^24 (needs at least that many vectors at build); None
            (the default): `default_ivf_lists(N)` of the rows at the first build (about
            6 sqrt(N)), saved as that number and kept by later adds and rebuilds.
        ivf_probe: IVF cells probed per query, 1..2^20 (at most `ivf_lists` are probed).
        compact_at: compact when more than this fraction of rows are removed, in (0, 1].
        graph_dim: HNSW kinds only: the prefix whose unit vectors the graph's edges are
            built over, 1..D_s; the graph is then searched over the D_s-prefixes. None (the
            default): D_s. Nested prefixes keep the neighbourhoods, so on the real Debian set
            (D = 384) a graph built over the 128-prefix searched the full width nearly as
            well as one built there, in two thirds of the build time
            (`benchmarks/graph_build.py`). Rows added later are inserted at D_s; a
            compaction builds over `graph_dim` again.

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
        ivf_lists: int | None = None,
        ivf_probe: int = 16,
        compact_at: float = 0.5,
        graph_dim: int | None = None,
    ):
        self.shortlist_dim = shortlist_dim
        self.ann = ann
        self.dtype = dtype
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.graph_dim = graph_dim
        self.ef_search = ef_search
        self.ivf_lists = ivf_lists
        self.ivf_probe = ivf_probe
        self.compact_at = compact_at
        self._checked_plans: dict = {}  # (plan, k) -> plan, checked once (a search's fast path)
        self._one_query: dict = {}  # (plan, k, effort) as given -> search.PreparedOneQuery
        self.fused_: FusedRerank | None = None  # see use_fused_rerank

    # ------------------------------------------------------------------ build / add / remove
    def check_params(self, dim: int) -> None:
        """Raise `ConfigError` naming the first parameter outside its range for a `dim`-d index.

        Every parameter is checked (whatever `ann` is) so a saved index never holds a value
        that would crash faiss if the index were rebuilt with another structure. NumPy ints
        become Python ints (faiss's constructors and the JSON manifest take no others).
        """
        if self.ann not in ANN_KINDS:
            raise ConfigError(f"unknown ann {self.ann!r}; choose one of {list(ANN_KINDS)}")
        if self.dtype not in STORAGE_DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {list(STORAGE_DTYPES)}")
        self.shortlist_dim = check_int("shortlist_dim", self.shortlist_dim, 1, dim)
        self.hnsw_m = check_int("hnsw_m", self.hnsw_m, 2, MAX_HNSW_M)
        self.ef_construction = check_effort(self.ef_construction, "ef_construction")
        if self.graph_dim is not None:  # None: the graph is built over D_s
            self.graph_dim = check_int("graph_dim", self.graph_dim, 1, self.shortlist_dim)
            if self.ann not in HNSW_KINDS:
                raise ConfigError(
                    f"graph_dim={self.graph_dim} sets an HNSW graph's build prefix, but ann is "
                    f"{self.ann!r}; leave graph_dim None or choose one of {list(HNSW_KINDS)}"
                )
        self.ef_search = check_effort(self.ef_search, "ef_search")
        if self.ivf_lists is not None:  # None: chosen from the rows at the first build
            self.ivf_lists = check_int("ivf_lists", self.ivf_lists, 1, MAX_IVF_LISTS)
        self.ivf_probe = check_effort(self.ivf_probe, "ivf_probe")
        self.compact_at = check_number("compact_at", self.compact_at, 0, 1, low_open=True)

    def build(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> MatryoshkaIndex:
        """Store `vectors` and build the ANN structure over their D_s-prefixes.

        Args:
            vectors: [N, D] float array, N >= 1. A `np.memmap` of the storage dtype is kept
                memory-mapped (not copied); pass `resident_copy(x)` instead when it fits in
                RAM: reranks from a memory map are several times slower.
            ids: [N] unique ints in 0..2^63-1; defaults to 0..N-1.

        Returns:
            self, with `store_` and `ann_` set.

        Raises:
            ConfigError: a parameter out of range (before faiss sees it).
            InputError: bad vectors or ids (named by row or position).
        """
        vectors = as_array(vectors, "vectors")
        if vectors.ndim != 2 or len(vectors) == 0:
            raise InputError(f"build needs a non-empty [N, D] array, got shape {vectors.shape}")
        if not np.issubdtype(vectors.dtype, np.floating):
            raise InputError(f"vectors must be floating point, got dtype {vectors.dtype}")
        self.check_params(vectors.shape[1])
        if self.ivf_lists is None:
            self.ivf_lists = default_ivf_lists(len(vectors))
        if self.ann in IVF_KINDS and len(vectors) < self.ivf_lists:
            raise ConfigError(
                f"ivf_lists={self.ivf_lists} needs >= {self.ivf_lists} vectors to train, got "
                f"{len(vectors)}; lower ivf_lists (about 8 sqrt(N) works well)"
            )
        vectors = as_rows(vectors, vectors.shape[1], "vectors", self.dtype)
        ids = np.arange(len(vectors), dtype=np.int64) if ids is None else ids
        ids = check_new_ids(ids, len(vectors))
        self.store_ = VectorStore(vectors, ids)
        self._build_ann()
        return self

    def _new_ann(self, d: int) -> faiss.Index:
        """An empty faiss structure of this index's kind over `d`-dim unit vectors."""
        if self.ann in HNSW_KINDS:
            if self.ann == "hnsw":
                ann = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            else:
                qt = faiss.ScalarQuantizer.QT_8bit  # per-dimension min/max, one byte each
                ann = faiss.IndexHNSWSQ(d, qt, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            ann.hnsw.efConstruction = self.ef_construction
            return ann
        if self.ann == "flat":
            return faiss.IndexFlatIP(d)
        if self.ann == "ivf":
            return faiss.IndexIVFFlat(
                faiss.IndexFlatIP(d), d, self.ivf_lists, faiss.METRIC_INNER_PRODUCT
            )
        return faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(d),
            d,
            self.ivf_lists,
            faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT,
        )

    def _build_ann(self) -> None:
        store = self.store_
        ann = self._trained_ann(self.shortlist_dim)
        self._fill_ann(ann)
        self.ann_ = ann
        self._one_query.clear()  # set up over the old structures: let them go
        store.cache_norms(self.norm_dims)
        if self.fused_ is not None:  # a rebuild: the copy follows the new rows and structure
            self.use_fused_rerank()

    def _trained_ann(self, d: int) -> faiss.Index:
        """`_new_ann(d)` trained on a sample of the stored rows' unit `d`-prefixes (IVF cells,
        or the scalar quantiser's ranges; nothing for the other kinds)."""
        store = self.store_
        ann = self._new_ann(d)
        if not ann.is_trained:
            cap = IVF_TRAIN_PER_LIST * self.ivf_lists if self.ann in IVF_KINDS else 1 << 16
            if self.ann in IVF_KINDS:
                ann.cp.niter = IVF_TRAIN_ITERATIONS
            sample = np.linspace(0, store.n_rows - 1, min(store.n_rows, cap))
            ann.train(store.prefix(sample.astype(np.int64), d))
        return ann

    def _fill_ann(self, ann: faiss.Index) -> None:
        """Add every stored row's unit D_s-prefix to the trained, empty `ann`.

        With a `graph_dim` below D_s the HNSW edges come from a graph built over the unit
        `graph_dim`-prefixes (a cheaper distance per step of the build); `ann` takes that
        graph whole and its own D_s codes or floats, so it is searched at D_s as usual.
        """
        store, d = self.store_, self.shortlist_dim
        width = d if self.graph_dim is None else self.graph_dim
        if width == d:
            for _, block in store.blocks(d, 1 << 16):
                ann.add(block)
            return
        graph = self._trained_ann(width)
        for _, block in store.blocks(width, 1 << 16):
            graph.add(block)
        for _, block in store.blocks(d, 1 << 16):
            ann.storage.add(block)  # the codes alone; the edges are the narrow graph's
        ann.hnsw = graph.hnsw  # SWIG copies the C++ graph: levels, neighbours, entry point
        ann.ntotal = graph.ntotal

    @property
    def norm_dims(self) -> list[int]:
        """Prefix dims whose row norms are computed at build and saved: the halving dims
        above D_s (every dim the default plans and the paper's funnel rerank at), D, and D_s
        itself over 8-bit codes (whose shortlist the default plans may re-score at D_s)."""
        dims = Nesting.halving(self.dim, min_dim=min(8, self.dim)).dims
        above = {d for d in dims if d > self.shortlist_dim} | {self.dim}
        return sorted(above | ({self.shortlist_dim} if self.scores_codes else set()))

    @property
    def scores_codes(self) -> bool:
        """Whether the ANN structure scores 8-bit codes of the prefix (`hnsw_sq8`, `ivf_sq8`)
        rather than its floats: its shortlist scores are approximate, worth re-scoring."""
        return self.ann in QUANTISED_KINDS

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Add vectors after build or load.

        Args:
            vectors: [n, D] (or [D]) finite floats, n >= 1.
            ids: [n] ints in 0..2^63-1, unique among themselves and new to the index;
                defaults to max(existing id) + 1, ... .
        """
        self._check_built()
        vectors = as_rows(vectors, self.dim, "added vectors", self.dtype)
        if ids is None:
            start = int(self.store_.ids.max()) + 1 if self.store_.n_rows else 0
            ids = np.arange(start, start + len(vectors), dtype=np.int64)
        ids = check_new_ids(ids, len(vectors))
        self.store_.append(vectors, ids)
        self.ann_.add(unit_prefix(vectors, self.shortlist_dim))
        if self.fused_ is not None:
            self.fused_.add(unit_prefix(vectors, self.dim))

    def remove(self, ids: np.ndarray) -> None:
        """Remove vectors by id (every id must be present); compacts past `compact_at`."""
        self._check_built()
        self.store_.kill(as_ids(ids, "ids to remove"))
        if 1 - self.store_.count / self.store_.n_rows > self.compact_at:
            self.compact()

    def compact(self) -> None:
        """Drop removed rows and rebuild the ANN structure over the live ones."""
        self._check_built()
        self.store_.compact()
        self.ann_.reset()  # keeps a trained IVF quantizer, so any size can be re-added
        self._fill_ann(self.ann_)
        if self.fused_ is not None:
            self.use_fused_rerank()

    def use_fused_rerank(self, enabled: bool = True) -> MatryoshkaIndex:
        """Run plans re-scored once at full D (`Rerank(D_s, D, s)`) as one faiss call.

        Such a plan then runs inside faiss (`IndexRefine` over this index's ANN structure
        and a unit-norm float32 copy of the full vectors, `mrl.retrieval.fused`), without
        the NumPy calls between its stages: for one query of a small embedding those cost
        as much as the search. The results are the same neighbours; a score may differ
        from the stage-by-stage one in its last bits (faiss sums the dot product in its
        own order), and batch and one-query calls still agree bit for bit. The copy costs
        `4 N D` bytes of RAM (`fused_bytes`) whatever the storage dtype or memory map, is
        kept up to date by `add`, `remove` and `compact`, and is not saved: call this
        again after `load`. Returns the index; `enabled=False` drops the copy.
        """
        self._check_built()
        if not isinstance(enabled, bool):
            raise ConfigError(f"enabled must be True or False, got {enabled!r}")
        self.fused_ = None
        self._one_query.clear()  # a set-up may search the old copy: let it go
        if enabled:
            blocks = self.store_.blocks(self.dim, 1 << 16)
            self.fused_ = FusedRerank(
                self.ann_, self.dim, self.shortlist_dim, self.store_.n_rows, blocks
            )
        return self

    @property
    def fused_bytes(self) -> int:
        """RAM held by the fused-rerank copy of the vectors (0 when it is off)."""
        return 0 if self.fused_ is None else self.fused_.nbytes

    # ------------------------------------------------------------------ properties
    def _check_built(self) -> None:
        if not hasattr(self, "store_"):
            raise ConfigError("the index is not built: call build(vectors) or load(path)")

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
        self._check_built()
        return self.store_.ids[self.store_.live]

    # ------------------------------------------------------------------ search
    def _check_query(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, int]:
        self._check_built()
        if self.count == 0:
            raise InputError("the index is empty: add vectors before searching")
        q = as_rows(queries, self.dim, "queries", "float32")
        return q, check_k(k, self.count, "indexed vectors")

    def search(
        self, queries: np.ndarray, k: int, plan: Plan | None = None, effort: int | None = None
    ) -> SearchResult:
        """Top-`k` neighbours of each query under `plan`.

        Args:
            queries: [Q, D] (or one [D] query) finite floats.
            k: results per query, 1 <= k <= count.
            plan: `SingleShot`, `Rerank` or `Funnel`; default the paper's halving funnel from
                the index's D_s (`Funnel.halving(D, D_s)`), or the ANN alone when D_s = D.
            effort: ANN search effort for this call only: HNSW efSearch (raised to the
                shortlist size) or IVF nprobe, 1..2^20; default the index's `ef_search` /
                `ivf_probe`.

        Returns:
            `SearchResult` with [Q, k] ids and scores ([k] for a 1-D query) and `SearchStats`.
        """
        key = (plan, k, effort)
        prepared = self._prepared_one_query(key, queries)
        if prepared is not None:  # the same one-query search as last time: set up already
            found = prepared.run(self, queries)
            if found is not None:
                return SearchResult(*found)
        single = np.ndim(queries) == 1
        q, k = self._check_query(queries, k)
        plan = self._checked_plan(plan, k)
        if effort is not None:
            effort = check_effort(effort)
        if len(q) == 1:  # one query per call: the lean path (same results, less overhead)
            ids, scores, stats = search.search_one(self, q, k, plan, effort)
            self._prepare_one_query(key, plan, k, effort)
            return SearchResult(
                ids if single else ids[None], scores if single else scores[None], stats
            )
        ids, scores, stats = search.search(self, q, k, plan, effort)
        return SearchResult(ids, scores, stats)

    def _prepared_one_query(self, key: tuple, queries) -> search.PreparedOneQuery | None:
        """The `PreparedOneQuery` made for `key` = (plan, k, effort) as given, if it serves
        `queries`; None otherwise (the general path validates and says what is wrong).

        Only plain ints count as k and effort (a bool equals 1 as a key but is refused as a
        k), and an unhashable argument is the general path's to report.
        """
        if type(queries) is not np.ndarray or type(key[1]) is not int:
            return None
        if key[2] is not None and type(key[2]) is not int:
            return None
        try:
            prepared = self._one_query.get(key)
        except TypeError:  # an unhashable plan
            return None
        if prepared is None or not prepared.serves(self, queries):
            return None
        return prepared

    def _prepare_one_query(self, key: tuple, plan: Plan, k: int, effort: int | None) -> None:
        """Set `key`'s one-query search up for its next call when `plan` is one faiss call
        (`PreparedOneQuery.applies`), renewing a stale one; drop it otherwise. Up to 1,024
        keys are kept (a service asks a handful)."""
        if not search.PreparedOneQuery.applies(self, plan, k):
            self._one_query.pop(key, None)
            return
        kept = self._one_query.get(key)
        if kept is not None and kept.state == search.PreparedOneQuery.state_of(self):
            return  # still current (this call went the general way for a short result)
        if kept is not None or len(self._one_query) < 1024:
            self._one_query[key] = search.PreparedOneQuery(self, k, plan, effort)

    def _checked_plan(self, plan: Plan | None, k: int) -> Plan:
        """`plan` (or the default) after `check_plan`, which runs once per (plan, k).

        Plans are frozen and the index's dim never changes, so a check that passed holds for
        every later call; repeated one-query calls (a service) skip it.
        """
        if plan is not None and not isinstance(plan, SingleShot | Rerank | Funnel):
            check_plan(plan, self.dim, k)  # raises the named error (and an unhashable key)
        key = (plan, k)
        checked = self._checked_plans.get(key)
        if checked is not None:
            return checked
        if plan is None and self.shortlist_dim == self.dim:  # nothing left to rerank
            checked = SingleShot(self.dim, exact=False)
        elif plan is None:
            checked = Funnel.halving(self.dim, self.shortlist_dim)
        else:
            checked = plan
        check_plan(checked, self.dim, k)
        if len(self._checked_plans) < 1024:  # bounded: plans built per call never pile up
            self._checked_plans[key] = checked
        return checked

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
        confidence: float | None = 0.95,
        per_query: bool = False,
    ) -> PlanTuner:
        """Cheapest plan (and ANN effort) by measured latency reaching `target`.

        See `mrl.retrieval.tune.PlanTuner`; quality is recall@k against exact full-dim search,
        or the paper's mAP@k relative to exact search when labels are given. `efforts` are
        HNSW efSearch / IVF nprobe values tried with every ANN plan; a plan meets `target`
        when the lower `confidence` bound of its quality does; `per_query` times one query
        per call.

        Returns:
            the fitted `PlanTuner` (`best_plan_`, `best_effort_`, `best_`, `table_`, `pareto_`).
        """
        tuner = PlanTuner(
            target=target,
            k=k,
            plans=plans,
            repeats=repeats,
            efforts=efforts,
            confidence=confidence,
            per_query=per_query,
        )
        return tuner.fit(self, queries, query_labels, id_labels)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Save atomically to folder `path`; see `mrl.retrieval.persist.save`."""
        self._check_built()
        persist.save(self, path)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False, verify: bool = True) -> MatryoshkaIndex:
        """Load a saved index, cross-checking its manifest against every file it describes.

        See `mrl.retrieval.persist.load`.

        Args:
            path: folder written by `save`.
            mmap: memory-map the full vectors read-only instead of reading them into RAM.
            verify: check every file's sha256 (reads all bytes once).
        """
        return persist.load(cls, path, mmap=mmap, verify=verify)
