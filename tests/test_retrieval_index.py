"""MatryoshkaIndex: agreement with brute-force faiss, funnel recall, persistence, bad input."""

import json

import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.retrieval.index import MatryoshkaIndex, top_by_score_then_id
from mrl.retrieval.plans import Funnel, Rerank, SingleShot
from mrl.retrieval.storage import resident_copy
from mrl.retrieval.tune import neighbor_recall

SPEC = GeneratedNestedSpec(dim=128, n_classes=30, seed=1)
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


@pytest.mark.parametrize("ann", ["hnsw", "flat", "ivf"])
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


def test_top_by_score_then_id_matches_lexsort():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, (40, 30)).astype(np.float32)  # many ties
    ids = np.stack([rng.permutation(1000)[:30] for _ in range(40)])
    for n in (1, 5, 30):
        cols = top_by_score_then_id(scores, ids, n)
        ref = np.lexsort((ids, -scores), axis=1)[:, :n]
        assert_array_equal(cols, ref)


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
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(ValueError, match="effort must be an int >= 1"):
            ivf.search(q, 10, effort=bad)


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


def test_atomic_save_survives_a_crash_between_files(tmp_path, data, monkeypatch):
    x, _, q, _ = data
    index = MatryoshkaIndex(shortlist_dim=16).build(x[:1000])
    index.save(tmp_path / "idx")
    before = index.search(q, 5).ids
    index.add(x[1000:1500])
    calls = []

    def crash(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # vectors.npy written, ids.npy not
            raise OSError("simulated crash mid-save")
        return real_save(*args, **kwargs)

    real_save = np.save
    monkeypatch.setattr("mrl.retrieval.index.np.save", crash)
    with pytest.raises(OSError, match="simulated crash"):
        index.save(tmp_path / "idx")
    monkeypatch.undo()
    old = MatryoshkaIndex.load(tmp_path / "idx")
    assert old.count == 1000
    assert_array_equal(old.search(q, 5).ids, before)
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["CURRENT", "v000001"]


def _corrupt(folder, name, fn):
    version = folder / (folder / "CURRENT").read_text().strip()
    fn(version / name)


@pytest.fixture
def saved(tmp_path, data):
    MatryoshkaIndex(shortlist_dim=16).build(data[0][:300]).save(tmp_path / "idx")
    return tmp_path / "idx"


def test_checksum_mismatch(saved):
    def flip(p):
        b = bytearray(p.read_bytes())
        b[-1] ^= 0xFF
        p.write_bytes(bytes(b))

    _corrupt(saved, "vectors.npy", flip)
    with pytest.raises(ValueError, match="checksum mismatch for vectors.npy"):
        MatryoshkaIndex.load(saved)
    MatryoshkaIndex.load(saved, verify=False)  # sizes still agree: loads unverified


def test_truncated_file(saved):
    _corrupt(saved, "ann.faiss", lambda p: p.write_bytes(p.read_bytes()[:100]))
    with pytest.raises(ValueError, match="truncated index .* ann.faiss has 100 bytes"):
        MatryoshkaIndex.load(saved)


def test_missing_manifest(saved):
    _corrupt(saved, "manifest.json", lambda p: p.unlink())
    with pytest.raises(ValueError, match="truncated index .* manifest.json is missing"):
        MatryoshkaIndex.load(saved)


def test_unknown_format_version(saved):
    def bump(p):
        m = json.loads(p.read_text())
        m["format_version"] = 99
        p.write_text(json.dumps(m))

    _corrupt(saved, "manifest.json", bump)
    with pytest.raises(ValueError, match="unknown format version 99 .* reads version 1"):
        MatryoshkaIndex.load(saved)


def test_foreign_manifest(saved):
    _corrupt(saved, "manifest.json", lambda p: p.write_text('{"format": "something-else"}'))
    with pytest.raises(ValueError, match="not a mrl-matryoshka-index folder"):
        MatryoshkaIndex.load(saved)


def test_foreign_folder_is_neither_loaded_nor_overwritten(tmp_path, data):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ValueError, match="no CURRENT file"):
        MatryoshkaIndex.load(folder)
    index = MatryoshkaIndex(shortlist_dim=16).build(data[0][:100])
    with pytest.raises(ValueError, match="refusing to write into"):
        index.save(folder)
    assert [p.name for p in folder.iterdir()] == ["cat.jpg"]
    with pytest.raises(FileNotFoundError):
        MatryoshkaIndex.load(tmp_path / "missing")


@pytest.fixture(scope="module")
def small(data):
    return MatryoshkaIndex(shortlist_dim=16).build(data[0][:200])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda ix, x: ix.search(x[:2, :64], 5), "queries have dim 64 but the index has dim 128"),
        (lambda ix, x: ix.search(_with_nan(x[:5], 3), 5), "queries row 3 contains NaN or inf"),
        (lambda ix, x: ix.add(_with_nan(x[:4], 2, np.inf)), "added vectors row 2 contains NaN"),
        (lambda ix, x: ix.add(x[:2], [900, 900]), r"duplicate ids in the added batch: \[900\]"),
        (lambda ix, x: ix.add(x[:2], [1, 901]), r"ids already in the index: \[1\]"),
        (lambda ix, x: ix.remove([5, 12345]), r"cannot remove unknown ids: \[12345\]"),
        (lambda ix, x: ix.search(x[:2], 0), "k must be a positive int, got 0"),
        (lambda ix, x: ix.search(x[:2], 201), "k=201 exceeds the 200 vectors in the index"),
        (lambda ix, x: ix.search(x[:2], 20, Rerank(16, 128, 10)), "shortlist of 10 is smaller"),
        (lambda ix, x: ix.search(x[:2], 5, Rerank(16, 256, 50)), "uses dim 256 but the index"),
        (lambda ix, x: ix.search(x[:2], 5, Rerank(32, 128, 50)), "indexes the 16-prefix, not 32"),
        (lambda ix, x: ix.search(x[:2], 20, Funnel(16, ((32, 50), (128, 10)))), "keeps 10 cand"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(small, data, call, match):
    count, rows = small.count, small.store_.n_rows
    with pytest.raises(ValueError, match=match):
        call(small, data[0])
    assert (small.count, small.store_.n_rows, small.ann_.ntotal) == (count, rows, rows)


def _with_nan(x, row, value=np.nan):
    x = x.copy()
    x[row, 1] = value
    return x


def test_build_errors():
    with pytest.raises(ValueError, match="non-empty"):
        MatryoshkaIndex().build(np.zeros((0, 32), np.float32))
    with pytest.raises(ValueError, match="shortlist_dim 64 is outside 1..32"):
        MatryoshkaIndex(shortlist_dim=64).build(np.ones((4, 32), np.float32))
    with pytest.raises(ValueError, match="unknown ann 'lsh'"):
        MatryoshkaIndex(ann="lsh").build(np.ones((4, 32), np.float32))
    with pytest.raises(ValueError, match="vectors row 1 overflows float16"):
        MatryoshkaIndex(shortlist_dim=8, dtype="float16").build(
            np.array([[1.0] * 32, [1e6] * 32], np.float32)
        )
    with pytest.raises(ValueError, match="not built"):
        MatryoshkaIndex().search(np.ones(32, np.float32), 1)


def test_rerank_in_query_chunks_equals_one_batch(index, data, monkeypatch):
    q = data[2]
    plan = Funnel.halving(D)
    whole = index.search(q, 10, plan)
    monkeypatch.setattr("mrl.retrieval.index._GATHER_FLOATS", 32 * 200)  # one query per chunk
    chunked = index.search(q, 10, plan)
    assert_array_equal(chunked.ids, whole.ids)
    assert_array_equal(chunked.scores, whole.scores)
