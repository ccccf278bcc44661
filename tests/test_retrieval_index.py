"""MatryoshkaIndex: agreement with brute-force faiss, funnel recall, add/remove, bad input."""

import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.errors import ConfigError, InputError, MrlError, PathError
from mrl.retrieval import search
from mrl.retrieval.index import MatryoshkaIndex, default_ivf_lists
from mrl.retrieval.plans import Funnel, Rerank, SingleShot, parse_plan
from mrl.retrieval.storage import resident_copy
from mrl.retrieval.tune import neighbor_recall

SPEC = GeneratedNestedSpec(dim=128, num_classes=30, seed=1)
N, D = 3000, 128


@pytest.fixture(scope="module")
def data():
    x, y = generated_nested_embeddings(N, SPEC)
    q, yq = generated_nested_embeddings(64, SPEC, "queries")
    return x, y, q, yq


@pytest.fixture(scope="module")
def index(data):
    return MatryoshkaIndex(shortlist_dim=16).build(data[0])


def faiss_exact(x, q, dim, k):
    """Brute-force reference: faiss IndexFlatIP over unit-norm dim-prefixes."""
    flat = faiss.IndexFlatIP(dim)
    xs = x[:, :dim] / np.linalg.norm(x[:, :dim], axis=1, keepdims=True)
    flat.add(np.ascontiguousarray(xs, dtype=np.float32))
    qs = q[:, :dim] / np.linalg.norm(q[:, :dim], axis=1, keepdims=True)
    return flat.search(np.ascontiguousarray(qs, dtype=np.float32), k)[1]


@pytest.mark.parametrize("ann", ["hnsw", "hnsw_sq8", "flat", "ivf", "ivf_sq8"])
def test_funnel_with_full_shortlist_equals_exact_search(data, ann):
    x, _, q, _ = data
    index = MatryoshkaIndex(shortlist_dim=16, ann=ann, ivf_lists=16).build(x)
    exact = index.search(q, 10, SingleShot(D))
    assert_array_equal(exact.ids, faiss_exact(x, q, D, 10))
    funnel = index.search(q, 10, Funnel(16, ((32, N), (64, N), (D, N))))
    assert_array_equal(funnel.ids, exact.ids)
    assert_array_equal(index.search(q, 10, Rerank(16, D, N)).ids, exact.ids)
    np.testing.assert_allclose(funnel.scores, exact.scores, rtol=1e-5)


@pytest.mark.parametrize("dim", [8, 32])
def test_exact_single_shot_at_a_prefix_matches_faiss(data, index, dim):
    x, _, q, _ = data
    assert_array_equal(index.search(q, 7, SingleShot(dim)).ids, faiss_exact(x, q, dim, 7))


def test_default_funnel_recall_bound(data, index):
    """Stated bound: the paper's funnel from a 16-d HNSW shortlist recovers >= 80% of exact
    top-10 ids on this generated set (measured 0.9+); the shortlist+rerank plan >= 90%."""
    _, _, q, _ = data
    exact = index.search(q, 10, SingleShot(D)).ids
    assert Funnel.halving(D) == Funnel(16, ((32, 200), (64, 100), (D, 10)))
    assert neighbor_recall(index.search(q, 10).ids, exact) >= 0.8
    assert neighbor_recall(index.search(q, 10, Rerank(16, D, 200)).ids, exact) >= 0.9


def test_ties_are_broken_by_id():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 32)).astype(np.float32)
    x[[7, 3, 41]] = x[20]  # four identical rows: ids 3, 7, 20, 41 tie
    index = MatryoshkaIndex(shortlist_dim=8).build(x)
    for plan in (SingleShot(32), Rerank(8, 32, 50), Funnel(8, ((16, 30), (32, 10)))):
        assert index.search(x[20], 4, plan).ids.tolist() == [3, 7, 20, 41]


def test_single_query_and_stats(index, data):
    q = data[2]
    res = index.search(q[0], 5)
    assert res.ids.shape == (5,) and res.scores.shape == (5,)
    assert res.ids.tolist() == index.search(q[:1], 5).ids[0].tolist()
    st = index.search(q, 10, Rerank(16, D, 100, exact=True)).stats
    assert st.flops_per_query == 16 * N + D * 100  # the paper's D_s * N + D_r * k'
    assert st.rerank_bytes_per_query == D * 100 * 4


def test_add_remove_save_load_round_trip(tmp_path, data):
    x, _, q, _ = data
    ids = np.arange(N) * 10 + 5
    index = MatryoshkaIndex(shortlist_dim=16, dtype="float16").build(x[:2000], ids[:2000])
    index.add(x[2000:], ids[2000:])
    assert index.count == N
    top = index.search(q, 10, SingleShot(D)).ids
    index.remove(np.unique(top[:, 0]))  # every query's best hit
    after = index.search(q, 10).ids
    assert not np.isin(after, top[:, 0]).any() and (after >= 0).all()
    index.save(tmp_path / "idx")
    for mmap in (False, True):
        loaded = MatryoshkaIndex.load(tmp_path / "idx", mmap=mmap)
        assert loaded.count == index.count
        assert_array_equal(loaded.ids, index.ids)
        assert_array_equal(loaded.search(q, 10).ids, after)
    loaded.add(x[:1], [7])  # add after a memory-mapped load
    rid = int(top[0, 0])
    loaded.add(x[(rid - 5) // 10], [rid])  # a removed id may come back
    assert loaded.search(q[0], 1, SingleShot(D)).ids.tolist() == [rid]
    loaded.save(tmp_path / "idx")  # overwrite the folder it is mapped from
    again = MatryoshkaIndex.load(tmp_path / "idx")
    assert again.count == index.count + 2
    assert again.shortlist_dim == 16 and again.dtype == "float16"


def test_ivf_effort_probing_every_cell_is_exact_and_per_call(data):
    x, _, q, _ = data
    ivf = MatryoshkaIndex(shortlist_dim=16, ann="ivf", ivf_lists=32, ivf_probe=1).build(x)
    everywhere = ivf.search(q, 10, SingleShot(16, exact=False), effort=32).ids
    assert_array_equal(everywhere, faiss_exact(x, q, 16, 10))
    one_cell = ivf.search(q, 10, SingleShot(16, exact=False)).ids
    assert neighbor_recall(one_cell, everywhere) < 1.0 and ivf.ivf_probe == 1


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_resident_copy_equals_its_source_and_is_writable(tmp_path, dtype):
    x = np.random.default_rng(0).standard_normal((1000, 48)).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    copy = resident_copy(mapped, chunk_rows=300)  # several chunks, a ragged last one
    assert copy.dtype == x.dtype and copy.flags.writeable and copy.flags.c_contiguous
    assert_array_equal(copy, x)
    assert resident_copy(x[:0]).shape == (0, 48)


def test_remove_past_threshold_compacts(data):
    x = data[0][:400]
    index = MatryoshkaIndex(shortlist_dim=16, compact_at=0.5).build(x)
    index.remove(np.arange(100))
    assert index.store_.n_rows == 400
    index.remove(np.arange(100, 250))
    assert index.store_.n_rows == 150 and index.ann_.ntotal == 150
    assert_array_equal(index.search(x[300], 1, SingleShot(D)).ids, [300])
    index.remove(np.arange(250, 400))
    with pytest.raises(ValueError, match="the index is empty"):
        index.search(x[0], 1)


@pytest.fixture(scope="module")
def small(data):
    return MatryoshkaIndex(shortlist_dim=16).build(data[0][:200])


def _with_nan(x, row, value=np.nan):
    x = x.copy()
    x[row, 1] = value
    return x


# Each hostile input to search/add/remove: a named error, and the index is left unchanged.
BAD_CALLS = [
    ("query-dim", lambda ix, x: ix.search(x[:2, :64], 5), "queries have dim 64 but the index"),
    ("query-3d", lambda ix, x: ix.search(x[None, :2], 5), r"queries must be \[n, 128\] or"),
    ("query-empty", lambda ix, x: ix.search(x[:0], 5), r"queries are empty \(shape \(0, 128\)\)"),
    ("query-int", lambda ix, x: ix.search(x[:2].astype(int), 5), "must be floating point"),
    ("query-nan", lambda ix, x: ix.search(_with_nan(x[:5], 3), 5), "first bad row is 3"),
    ("add-inf", lambda ix, x: ix.add(_with_nan(x[:4], 2, np.inf)), "added vectors contain NaN"),
    ("add-empty", lambda ix, x: ix.add(x[:0]), "added vectors are empty"),
    ("add-overflow", lambda ix, x: ix.add(x[:3] * [[1], [1], [1e300]]), "row 2 overflows float32"),
    (
        "query-overflow",
        lambda ix, x: ix.search(x[:2].astype(float) * 1e300, 5),
        "queries row 0 overflows float32",
    ),
    ("k-zero", lambda ix, x: ix.search(x[:2], 0), "k must be a positive int .* got 0"),
    ("k-float", lambda ix, x: ix.search(x[:2], 2.5), "k must be a positive int .* got 2.5"),
    ("k-big", lambda ix, x: ix.search(x[:2], 201), "k=201 exceeds the 200 indexed vectors"),
    ("effort-0", lambda ix, x: ix.search(x[:2], 5, effort=0), "effort must be in 1..1048576"),
    ("effort-neg", lambda ix, x: ix.search(x[:2], 5, effort=-3), "effort must be in 1..1048576"),
    ("effort-float", lambda ix, x: ix.search(x[:2], 5, effort=2.5), "effort must be an int"),
    ("effort-bool", lambda ix, x: ix.search(x[:2], 5, effort=True), "effort must be an int"),
    ("effort-str", lambda ix, x: ix.search(x[:2], 5, effort="8"), "effort must be an int"),
    ("effort-huge", lambda ix, x: ix.search(x[:2], 5, effort=1 << 40), "effort must be in 1"),
    ("plan-type", lambda ix, x: ix.search(x[:2], 5, "funnel"), "plan must be a SingleShot"),
    (
        "plan-short",
        lambda ix, x: ix.search(x[:2], 20, Rerank(16, 128, 10)),
        "shortlist of 10 is smaller",
    ),
    ("plan-dim", lambda ix, x: ix.search(x[:2], 5, Rerank(16, 256, 50)), "uses dim 256 but"),
    ("plan-ds", lambda ix, x: ix.search(x[:2], 5, Rerank(32, 128, 50)), "indexes the 16-prefix"),
    # The same through the lean one-query path:
    ("one-plan-ds", lambda ix, x: ix.search(x[0], 5, Rerank(32, 128, 50)), "indexes the 16-pre"),
    ("one-plan-type", lambda ix, x: ix.search(x[0], 5, ["rerank"]), "plan must be a SingleShot"),
    ("one-query-nan", lambda ix, x: ix.search(_with_nan(x[:1], 0), 5), "first bad row is 0"),
    ("one-k-big", lambda ix, x: ix.search(x[0], 201), "k=201 exceeds the 200 indexed vectors"),
    (
        "plan-last",
        lambda ix, x: ix.search(x[:2], 20, Funnel(16, ((32, 50), (128, 10)))),
        "keeps 10 cand",
    ),
    ("remove-unknown", lambda ix, x: ix.remove([5, 12345]), r"remove id 12345 \(position 1\)"),
    (
        "remove-float",
        lambda ix, x: ix.remove([5.0]),
        "ids to remove: 5.0 at position 0 is not an id",
    ),
    ("remove-twice", lambda ix, x: ix.remove([5, 5]), "the same id twice"),
]


@pytest.mark.parametrize("call, match", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_call_is_a_named_error_and_changes_nothing(small, data, call, match):
    count, rows = small.count, small.store_.n_rows
    with pytest.raises(MrlError, match=match):
        call(small, data[0])
    assert (small.count, small.store_.n_rows, small.ann_.ntotal) == (count, rows, rows)


# Ids: -1 is the not-found padding, uint64 >= 2^63 would wrap negative, Python ints >= 2^64
# are no int64, floats are no ids; each is named with its position.
BAD_IDS = [
    ("negative-one", [1000, -1], "-1 at position 1 is negative"),
    ("negative", np.array([1000, 1001, -5]), "-5 at position 2 is negative"),
    ("uint64-wrap", np.array([1000, 2**63 + 7], np.uint64), f"{2**63 + 7} at position 1 is >= 2"),
    ("python-2^64", [1000, 2**64 + 1], f"{2**64 + 1} at position 1 is not an id"),
    ("python-2^63", [2**63, 1000], f"{2**63} at position 0 is not an id"),
    ("float", np.array([1000.0, 1001.5]), "ids must be integers, got dtype float64"),
    ("mixed", [1000, "a"], "ids must be integers"),
    ("duplicate", [900, 900], "duplicate id 900 at position 1"),
    ("existing", [1001, 1], "id 1 at position 1 is already in the index"),
    ("count", [1000], "got 1 ids for 2 vectors"),
    ("2d", [[1000, 1001]], "ids must be a 1-D array"),
]


@pytest.mark.parametrize("ids, match", [b[1:] for b in BAD_IDS], ids=[b[0] for b in BAD_IDS])
def test_bad_ids_are_refused_with_the_first_bad_id_and_position(small, data, ids, match):
    count = small.count
    with pytest.raises(InputError, match=match):
        small.add(data[0][:2], ids)
    assert small.count == count


def test_the_largest_int64_id_round_trips(data):
    index = MatryoshkaIndex(shortlist_dim=16).build(data[0][:50], np.arange(50) + 2**62)
    index.add(data[0][50], [2**63 - 1])
    assert index.search(data[0][50], 1, SingleShot(D)).ids.tolist() == [2**63 - 1]


# Parameters are checked before faiss sees them: hnsw_m=0 aborted the process, -5 hung.
BAD_PARAMS = [
    ({"hnsw_m": 0}, "hnsw_m must be in 2..256, got 0"),
    ({"hnsw_m": -5}, "hnsw_m must be in 2..256, got -5"),
    ({"hnsw_m": 10**6}, "hnsw_m must be in 2..256"),
    ({"hnsw_m": 8.5}, "hnsw_m must be an int, got 8.5"),
    ({"ef_construction": 0}, "ef_construction must be in 1..1048576, got 0"),
    ({"ef_search": -1}, "ef_search must be in 1..1048576, got -1"),
    ({"ivf_lists": 0}, "ivf_lists must be in 1..16777216, got 0"),
    ({"ivf_probe": 0}, "ivf_probe must be in 1..1048576, got 0"),
    ({"ann": "ivf", "ivf_lists": 64}, "ivf_lists=64 needs >= 64 vectors to train, got 40"),
    ({"shortlist_dim": 64}, "shortlist_dim must be in 1..32, got 64"),
    ({"shortlist_dim": 0}, "shortlist_dim must be in 1..32, got 0"),
    ({"shortlist_dim": 8.0}, "shortlist_dim must be an int, got 8.0"),
    ({"compact_at": 0}, r"compact_at must be a finite number in \(0, 1\], got 0.0"),
    ({"compact_at": 1.5}, r"compact_at must be a finite number in \(0, 1\]"),
    ({"ann": "lsh"}, "unknown ann 'lsh'"),
    ({"dtype": "int8"}, "unknown dtype 'int8'"),
]


@pytest.mark.parametrize("params, match", BAD_PARAMS)
def test_bad_parameters_are_named_before_faiss_sees_them(params, match):
    x = np.ones((40, 32), np.float32)
    with pytest.raises(ConfigError, match=match):
        MatryoshkaIndex(**{"shortlist_dim": 8, **params}).build(x)


@pytest.mark.parametrize(
    "vectors, match",
    [
        (np.zeros((0, 32), np.float32), "non-empty"),
        (np.zeros(32, np.float32), r"non-empty \[N, D\] array, got shape \(32,\)"),
        (np.array([[1.0] * 32, [1e6] * 32], np.float32), "vectors row 1 overflows float16"),
        (np.array([[1.0] * 32, [np.nan] * 32], np.float32), "first bad row is 1"),
    ],
    ids=["empty", "1-d", "float16-overflow", "nan"],
)
def test_bad_vectors_at_build(vectors, match):
    with pytest.raises(InputError, match=match):
        MatryoshkaIndex(shortlist_dim=8, dtype="float16").build(vectors)


def test_unbuilt_index():
    with pytest.raises(ConfigError, match="not built"):
        MatryoshkaIndex().search(np.ones(32, np.float32), 1)


def test_rerank_in_query_chunks_equals_one_batch(index, data, monkeypatch):
    q = data[2]
    plan = Funnel.halving(D)
    whole = index.search(q, 10, plan)
    monkeypatch.setattr("mrl.retrieval.search._GATHER_FLOATS", 32 * 200)  # one query per chunk
    chunked = index.search(q, 10, plan)
    assert_array_equal(chunked.ids, whole.ids)
    assert_array_equal(chunked.scores, whole.scores)


@pytest.mark.parametrize("ann", ["hnsw", "hnsw_sq8", "ivf", "ivf_sq8", "flat"])
def test_numpy_int_parameters_reach_faiss_and_the_manifest_as_ints(tmp_path, data, ann):
    x = data[0][:300]
    params = dict(shortlist_dim=np.int64(16), hnsw_m=np.int32(16), ivf_lists=np.int64(4))
    index = MatryoshkaIndex(ann=ann, ef_search=np.int64(30), **params).build(x)
    res = index.search(x[:2], np.int64(3), SingleShot(16, exact=False), effort=np.int64(4))
    assert res.ids[:, 0].tolist() == [0, 1]
    index.save(tmp_path / "idx")  # JSON takes no NumPy ints
    assert MatryoshkaIndex.load(tmp_path / "idx").hnsw_m == 16


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: MatryoshkaIndex(shortlist_dim=1).build([[1.0, 2.0], [1.0]]),
            InputError,
            "not a rect",
        ),
        (
            lambda: MatryoshkaIndex().build(np.array([[1, "a"]], object)),
            InputError,
            "floating point",
        ),
        (lambda: MatryoshkaIndex().ids, ConfigError, "the index is not built"),
        (lambda: MatryoshkaIndex.load(None), PathError, "must be a str or os.PathLike, got None"),
        (lambda: parse_plan(None, 32), ConfigError, "a plan spelling must be a str"),
    ],
    ids=["ragged", "object", "unbuilt-ids", "load-none", "plan-none"],
)
def test_odd_api_inputs_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_query_scores_the_same_bits_alone_or_in_a_batch(data, dtype):
    """The lean one-query path and the batch path compute each dot product the same way.

    float32 reads candidates in place through faiss (a dim dividing D), float16 and dims
    that do not divide D gather and use einsum; 48 does not divide 128."""
    x, _, q, _ = data
    index = MatryoshkaIndex(shortlist_dim=16, dtype=dtype).build(x)
    for plan in (Funnel(16, ((48, 100), (64, 50), (D, 20))), Rerank(16, D, 100)):
        batch = index.search(q, 10, plan)
        for i in range(0, len(q), 9):
            one = index.search(q[i], 10, plan)
            assert_array_equal(one.ids, batch.ids[i])
            assert_array_equal(one.scores, batch.scores[i])


def test_stored_prefix_norms_follow_add_remove_and_compact(data):
    x = data[0]
    index = MatryoshkaIndex(shortlist_dim=16, compact_at=0.2).build(x[:1000])
    assert index.norm_dims == [32, 64, D]
    index.add(x[1000:1500])
    index.store_.norms(48)  # computed on first use, then kept in step with the rows
    index.remove(np.arange(0, 1500, 2)[:400])  # past compact_at: rows are dropped
    assert index.store_.n_rows == index.count == 1100
    for dim in (32, 48, D):
        want = np.linalg.norm(index.store_.vectors[:, :dim].astype(np.float64), axis=1)
        np.testing.assert_allclose(index.store_.norms(dim), want, rtol=1e-5)


def test_small_adds_grow_a_buffer_and_leave_earlier_views_intact():
    rng = np.random.default_rng(0)
    index = MatryoshkaIndex(shortlist_dim=8, ann="flat").build(
        rng.standard_normal((100, 32)).astype(np.float32)
    )
    index.add(rng.standard_normal((1, 32)).astype(np.float32))
    before = index.store_.vectors  # a reader's view, taken between two adds
    snapshot = before.copy()
    for _ in range(5):
        index.add(rng.standard_normal((1, 32)).astype(np.float32))
    after = index.store_.vectors
    assert after.base is before.base  # the later adds wrote spare rows, nothing was copied
    np.testing.assert_array_equal(before, snapshot)
    np.testing.assert_array_equal(after[: len(before)], snapshot)
    assert index.count == 106 and after.flags.c_contiguous
    assert index.ids.tolist() == list(range(106))
    index.remove(np.arange(60))  # past compact_at: the rows are rebuilt, adds grow afresh
    index.add(rng.standard_normal((2, 32)).astype(np.float32), ids=np.array([500, 501]))
    assert index.count == 48 and index.ids[-2:].tolist() == [500, 501]
    hits = index.search(index.store_.vectors[-1], k=1)
    assert hits.ids.tolist() == [501]


def test_cost_stats_count_only_the_rows_a_small_index_has():
    x = np.eye(4, 8, dtype=np.float32)
    index = MatryoshkaIndex(shortlist_dim=4, ann="flat").build(x)
    stats = index.search(x[0], k=2, plan=Rerank(4, 8, 100, exact=True)).stats
    assert stats.flops_per_query == 4 * 4 + 8 * 4  # shortlist over 4 rows, rerank of those 4
    assert stats.rerank_bytes_per_query == 8 * 4 * 4


@pytest.mark.parametrize("ann", ["hnsw", "hnsw_sq8", "flat", "ivf", "ivf_sq8"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_one_query_per_call_equals_the_batch_path_bit_for_bit(data, ann, dtype):
    """The lean one-query path (shared faiss parameters, C entry point, 1-D rerank) returns
    exactly the batch path's ids and scores, with and without removed rows, for rerank
    dims that do and do not divide D (in-place faiss dots vs gathered einsum)."""
    x, _, q, _ = data
    index = MatryoshkaIndex(shortlist_dim=16, ann=ann, dtype=dtype, ivf_lists=16).build(x)
    plans = [
        SingleShot(16, exact=False),  # the ANN alone: the shortlist is the answer
        Rerank(16, D, 40),
        Rerank(16, 16, 30),  # a re-scoring at D_s
        Funnel(16, ((48, 60), (D, 20))),
        parse_plan("funnel:16:32x50,64x20", D),
    ]
    for removed in (False, True):
        if removed:
            index.remove(np.arange(0, N, 7))
        for plan in plans:
            batch = index.search(q[:8], 10, plan, effort=8)
            for i in range(8):
                one = index.search(q[i], 10, plan, effort=8)
                assert_array_equal(one.ids, batch.ids[i])
                assert_array_equal(one.scores, batch.scores[i])
    assert not np.isin(index.search(q[0], 10).ids, np.arange(0, N, 7)).any()


def test_a_repeated_one_query_search_is_set_up_once_and_follows_the_index(data):
    """The ANN alone asked again for one query runs `PreparedOneQuery`: the same bits as
    the first (general) call, in [D] and [1, D] form; an add, a remove or a new default
    effort is seen at once, and bad input still gets the general path's named errors."""
    x, _, q, _ = data
    index = MatryoshkaIndex(shortlist_dim=16, ann="flat").build(x)
    plan = SingleShot(16, exact=False)
    first = index.search(q[0], 10, plan, effort=32)
    prepared = index._one_query[(plan, 10, 32)]
    assert prepared.serves(index, q[0]) and prepared.serves(index, q[:1])
    again = index.search(q[0], 10, plan, effort=32)
    assert_array_equal(again.ids, first.ids)
    assert_array_equal(again.scores, first.scores)
    assert again.stats.flops_per_query == first.stats.flops_per_query == N * 16
    row = index.search(q[:1], 10, plan, effort=32)
    assert row.ids.shape == (1, 10)
    assert_array_equal(row.ids[0], first.ids)
    index.add(q[:1], ids=np.array([10**6]))  # the query itself: cosine 1 at every prefix
    assert not prepared.serves(index, q[0])
    assert index.search(q[0], 10, plan, effort=32).ids[0] == 10**6
    index.remove(np.array([10**6]))
    assert 10**6 not in index.search(q[0], 10, plan, effort=32).ids
    for bad, error in [
        (np.full(D, np.nan, dtype=np.float32), "NaN or inf"),
        (q[:1][None], "must be"),  # [1, 1, D]
        (q[0, :64], "dim 64"),
    ]:
        with pytest.raises(InputError, match=error):
            index.search(bad, 10, plan, effort=32)
    with pytest.raises(ConfigError, match="k must be a positive int"):
        index.search(q[0], True, plan, effort=32)

    graph = MatryoshkaIndex(shortlist_dim=16, ann="hnsw", ef_search=16).build(x)
    narrow = graph.search(q[0], 10, plan)  # the default effort, ef_search
    graph.ef_search = 256
    assert not graph._one_query[(plan, 10, None)].serves(graph, q[0])
    assert graph.search(q[0], 10, plan).stats.flops_per_query > narrow.stats.flops_per_query


def test_one_query_with_tied_scores_orders_them_by_id_as_the_batch_path(data, monkeypatch):
    x, _, q, _ = data
    twice = np.concatenate([x[:500], x[:500]])  # every score comes twice: ties everywhere
    index = MatryoshkaIndex(shortlist_dim=16, ann="flat").build(twice)
    plan = SingleShot(16, exact=False)
    batch = index.search(q[:4], 10, plan)
    for prepared in (False, True):  # the first call sets up, the second runs prepared
        if prepared:  # which orders the ties itself: the general path would fail
            monkeypatch.setattr(search, "search_one", None)
        for i in range(4):
            one = index.search(q[i], 10, plan)
            assert_array_equal(one.ids, batch.ids[i])
            assert_array_equal(one.scores, batch.scores[i])
    assert (batch.ids[:, 0] + 500 == batch.ids[:, 1]).all()  # a tie, the smaller id first


@pytest.mark.parametrize("ann", ["hnsw_sq8", "ivf_sq8"])
def test_rescoring_a_quantised_shortlist_at_d_s_gives_exact_scores(data, ann):
    """`Rerank(D_s, D_s, n)` over 8-bit codes: the float re-scoring returns the exact cosine
    of every result (the codes' own scores are off), ranks at least as well as the codes
    alone, and one query per call gives the same bits as a batch."""
    x, _, q, _ = data
    index = MatryoshkaIndex(shortlist_dim=D, ann=ann, ivf_lists=16, ivf_probe=16).build(x)
    coded = index.search(q, 10, SingleShot(D, exact=False))
    rescored = index.search(q, 10, Rerank(D, D, 30))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    exact_scores = np.einsum("qd,qkd->qk", qn, xn[rescored.ids])
    np.testing.assert_allclose(rescored.scores, exact_scores, rtol=1e-5, atol=1e-6)
    assert not np.allclose(coded.scores, np.einsum("qd,qkd->qk", qn, xn[coded.ids]), atol=1e-6)
    truth = faiss_exact(x, q, D, 10)
    assert neighbor_recall(rescored.ids, truth) >= neighbor_recall(coded.ids, truth)
    assert neighbor_recall(rescored.ids, truth) >= 0.95
    one = index.search(q[3], 10, Rerank(D, D, 30))
    assert_array_equal(one.ids, rescored.ids[3])
    assert_array_equal(one.scores, rescored.scores[3])


def test_default_ivf_lists_grows_with_rows_and_leaves_k_means_enough_points():
    assert [default_ivf_lists(n) for n in (100_000, 200_000, 1_000_000)] == [2048, 2048, 8192]
    assert default_ivf_lists(1000) == 16 and default_ivf_lists(38) == 1  # <= N / 39
    assert default_ivf_lists(100_000, per_sqrt_n=4.0) == 1024
    with pytest.raises(ConfigError, match="n must be >= 1"):
        default_ivf_lists(0)


def test_ivf_lists_left_out_is_chosen_at_build_saved_and_kept(tmp_path):
    x, _ = generated_nested_embeddings(1200, GeneratedNestedSpec(dim=32, num_classes=10))
    index = MatryoshkaIndex(shortlist_dim=8, ann="ivf").build(
        x
    )  # the old default, 1,024 cells, wants 1,024+ rows
    assert index.ivf_lists == faiss.extract_index_ivf(index.ann_).nlist == default_ivf_lists(1200)
    index.add(x[:300] + 1e-3, np.arange(5000, 5300))
    index.remove(np.arange(100))
    index.compact()  # other rows, the same cells: the count is a parameter from now on
    assert faiss.extract_index_ivf(index.ann_).nlist == 16
    index.save(tmp_path / "idx")
    assert MatryoshkaIndex.load(tmp_path / "idx").ivf_lists == 16
    assert MatryoshkaIndex(shortlist_dim=8, ann="ivf", ivf_lists=4).build(x).ivf_lists == 4
