"""`MatryoshkaIndex(graph_dim=W)`: an HNSW graph built over the W-prefix, searched at D_s."""

import json

import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.errors import ConfigError
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Rerank, SingleShot
from mrl.retrieval.tune import neighbor_recall

SPEC = GeneratedNestedSpec(dim=64, num_classes=20, seed=5)
N, D, K = 3000, 64, 10


@pytest.fixture(scope="module")
def data():
    x, _ = generated_nested_embeddings(N, SPEC)
    q, _ = generated_nested_embeddings(50, SPEC, "queries")
    return x, q


@pytest.fixture
def one_faiss_thread():
    """faiss builds on one thread, so two builds of the same rows give the same graph."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def exact(x, q, d):
    xn = x[:, :d] / np.linalg.norm(x[:, :d], axis=1, keepdims=True)
    qn = q[:, :d] / np.linalg.norm(q[:, :d], axis=1, keepdims=True)
    return np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :K]


def edges(index):
    return faiss.vector_to_array(index.ann_.hnsw.neighbors)


@pytest.mark.parametrize("ann", ["hnsw", "hnsw_sq8"])
def test_a_graph_built_at_a_prefix_is_searched_at_d_s_and_finds_the_neighbours(data, ann):
    x, q = data
    full = MatryoshkaIndex(shortlist_dim=D, ann=ann, hnsw_m=16).build(x)
    narrow = MatryoshkaIndex(shortlist_dim=D, ann=ann, hnsw_m=16, graph_dim=16).build(x)
    assert narrow.ann_.d == D and narrow.ann_.ntotal == N
    assert not np.array_equal(edges(narrow), edges(full))  # other edges: built at 16 dims
    truth = exact(x, q, D)
    plan = SingleShot(D, exact=False)
    got = neighbor_recall(narrow.search(q, K, plan, 64).ids, truth)
    assert got >= 0.9
    assert got >= neighbor_recall(full.search(q, K, plan, 64).ids, truth) - 0.05
    added = narrow.search(q[:1], K, plan).ids  # rows added later go in at D_s
    narrow.add(q[:1], ids=np.array([10**6]))
    assert narrow.search(q[:1], K, plan).ids[0, 0] == 10**6 != added[0, 0]


def test_the_graph_dim_survives_save_load_and_compaction_builds_over_it_again(
    data, tmp_path, one_faiss_thread
):
    x, q = data
    index = MatryoshkaIndex(shortlist_dim=32, ann="hnsw", graph_dim=8, compact_at=0.3).build(x)
    index.save(tmp_path / "idx")
    loaded = MatryoshkaIndex.load(tmp_path / "idx")
    assert loaded.graph_dim == 8
    plan = Rerank(32, D, 50)
    assert_array_equal(loaded.search(q, K, plan).ids, index.search(q, K, plan).ids)
    dead = np.arange(0, N, 2)  # half the rows: past compact_at, so the graph is rebuilt
    loaded.remove(dead)
    assert loaded.store_.n_rows == N - len(dead)
    fresh = MatryoshkaIndex(shortlist_dim=32, ann="hnsw", graph_dim=8).build(
        x[1::2], ids=np.arange(1, N, 2)
    )
    assert_array_equal(edges(loaded), edges(fresh))  # the same graph: built at 8 dims again
    assert_array_equal(loaded.search(q, K, plan).ids, fresh.search(q, K, plan).ids)


def test_an_index_without_graph_dim_saves_the_manifest_as_before(data, tmp_path):
    x, _ = data
    MatryoshkaIndex(shortlist_dim=16).build(x[:500]).save(tmp_path / "plain")
    version = (tmp_path / "plain" / "CURRENT").read_text().strip()
    manifest = json.loads((tmp_path / "plain" / version / "manifest.json").read_text())
    assert "graph_dim" not in manifest["index_params"]
    assert MatryoshkaIndex.load(tmp_path / "plain").graph_dim is None


@pytest.mark.parametrize(
    "params, error",
    [
        ({"shortlist_dim": 16, "graph_dim": 32}, "graph_dim must be"),
        ({"shortlist_dim": 16, "graph_dim": 0}, "graph_dim must be"),
        ({"shortlist_dim": 16, "graph_dim": 8, "ann": "ivf"}, "HNSW graph's build prefix"),
        ({"shortlist_dim": 16, "graph_dim": 8, "ann": "flat"}, "leave graph_dim None"),
    ],
)
def test_a_graph_dim_out_of_range_or_for_another_kind_is_refused_before_faiss(data, params, error):
    with pytest.raises(ConfigError, match=error):
        MatryoshkaIndex(**params).build(data[0][:500])


def test_cli_build_takes_the_graph_dim(data, tmp_path, cli):
    x, _ = data
    np.save(tmp_path / "x.npy", x[:800])
    r = cli("index", "build", tmp_path / "x.npy", "--out", tmp_path / "idx",
            "--shortlist-dim", "32", "--graph-dim", "8")  # fmt: skip
    assert r.code == 0, r.err
    assert MatryoshkaIndex.load(tmp_path / "idx").graph_dim == 8
    r = cli("index", "build", tmp_path / "x.npy", "--out", tmp_path / "bad",
            "--shortlist-dim", "32", "--graph-dim", "64")  # fmt: skip
    r.assert_named_error("graph_dim must be")
    assert not (tmp_path / "bad").exists()
