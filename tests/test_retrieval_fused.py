"""Fused rerank (`MatryoshkaIndex.use_fused_rerank`): the same neighbours as the staged path."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.errors import ConfigError
from mrl.retrieval import search
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Funnel, Rerank, SingleShot
from mrl.retrieval.search import fused_applies

SPEC = GeneratedNestedSpec(dim=64, num_classes=20, seed=3)
N, D, K = 2000, 64, 10


@pytest.fixture(scope="module")
def data():
    x, _ = generated_nested_embeddings(N, SPEC)
    q, _ = generated_nested_embeddings(40, SPEC, "queries")
    return x, q


def staged_and_fused(x, q, plan, effort=32, **params):
    """Results of one index searched stage by stage, then fused (batch and one by one)."""
    index = MatryoshkaIndex(**params).build(x)
    staged = index.search(q, K, plan, effort)
    index.use_fused_rerank()
    assert fused_applies(index, plan, K)
    fused = index.search(q, K, plan, effort)
    singles = [index.search(v, K, plan, effort) for v in q]
    return index, staged, fused, singles


@pytest.mark.parametrize(
    "ann, ds",
    [("hnsw", 16), ("hnsw_sq8", 16), ("hnsw_sq8", 64), ("ivf", 8), ("ivf_sq8", 64), ("flat", 16)],
)
def test_fused_finds_the_staged_neighbours_and_one_query_matches_the_batch(data, ann, ds):
    x, q = data
    plan = Rerank(ds, D, 40)
    _, staged, fused, singles = staged_and_fused(
        x, q, plan, shortlist_dim=ds, ann=ann, ivf_lists=32
    )
    assert_array_equal(fused.ids, staged.ids)
    assert_allclose(fused.scores, staged.scores, atol=2e-6)
    assert fused.stats.flops_per_query == pytest.approx(staged.stats.flops_per_query)
    for i, one in enumerate(singles):  # bit for bit, as the staged paths agree
        assert_array_equal(one.ids, fused.ids[i])
        assert_array_equal(one.scores, fused.scores[i])


def test_a_repeated_fused_one_query_search_is_set_up_once_and_follows_the_index(data):
    """The second one-query call of a fused plan runs `PreparedOneQuery`: the first call's
    ids, scores and counted cost; turning the fused copy off (or adding rows) is seen."""
    x, q = data
    plan = Rerank(16, D, 40)
    index = MatryoshkaIndex(shortlist_dim=16, ann="hnsw").build(x).use_fused_rerank()
    first = index.search(q[0], K, plan, 32)
    prepared = index._one_query[(plan, K, 32)]
    assert prepared.fused and prepared.serves(index, q[0])
    again = index.search(q[0], K, plan, 32)
    assert_array_equal(again.ids, first.ids)
    assert_array_equal(again.scores, first.scores)
    assert again.stats.flops_per_query == first.stats.flops_per_query
    assert again.stats.bytes_per_query == first.stats.bytes_per_query
    assert again.stats.rerank_bytes_per_query == first.stats.rerank_bytes_per_query == 40 * D * 4
    index.use_fused_rerank(False)
    assert not prepared.serves(index, q[0])
    staged = index.search(q[0], K, plan, 32)  # stage by stage now, no prepared set-up
    assert_array_equal(staged.ids, first.ids)
    assert (plan, K, 32) not in index._one_query or not index._one_query[(plan, K, 32)].fused
    index.use_fused_rerank()
    index.add(q[:1], ids=np.array([10**6]))  # the query itself: first at every prefix
    assert index.search(q[0], K, plan, 32).ids[0] == 10**6
    assert index.search(q[0], K, plan, 32).ids[0] == 10**6  # and prepared again


@pytest.mark.parametrize("copies", [2, 3])
@pytest.mark.parametrize("shortlist", [20, 40])
def test_tied_scores_come_back_in_id_order_as_staged(data, monkeypatch, copies, shortlist):
    """Every row stored 2 or 3 times, so every score ties: pairs lie inside the k = 10 best,
    triples run across the cut (the 10th, 11th and 12th). Fused, batched or one query per
    call and prepared, the ids are the staged path's (the smallest id of a group first),
    with no staged search run for them: a 20-row shortlist comes back whole from faiss, a
    40-row one as k + 1 rows and, for a tie across the cut, whole from a second call."""
    x, _ = data
    dup = np.concatenate([x[:500]] * copies)
    q, plan, k = x[:20], Rerank(16, D, shortlist), K
    index = MatryoshkaIndex(shortlist_dim=16).build(dup)
    staged = index.search(q, k, plan, 32)
    index.use_fused_rerank()
    first = [index.search(v, k, plan, 32) for v in q]  # sets the one-query search up
    monkeypatch.setattr(search, "_search_one_steps", None)  # a staged search would fail
    monkeypatch.setattr(search, "search_steps", None)
    fused = index.search(q, k, plan, 32)
    assert_array_equal(fused.ids, staged.ids)
    assert_allclose(fused.scores, staged.scores, atol=2e-6)
    first_group = np.stack([np.arange(20) + 500 * c for c in range(copies)], 1)
    assert_array_equal(fused.ids[:, :copies], first_group)
    for i, v in enumerate(q):
        one = index.search(v, k, plan, 32)
        assert_array_equal(one.ids, fused.ids[i])
        assert_array_equal(one.scores, fused.scores[i])
        assert_array_equal(first[i].scores, fused.scores[i])


def test_tied_scores_with_removed_rows_come_back_as_staged(data):
    """Triples across the cut on an index with removed rows: the second faiss call for every
    candidate keeps the removal filter (no removed id comes back), the staged ids."""
    x, _ = data
    index = MatryoshkaIndex(shortlist_dim=16).build(np.concatenate([x[:500]] * 3))
    index.remove(np.arange(0, 1500, 7))
    q, plan = x[1:40:3], Rerank(16, D, 40)
    staged = index.search(q, K, plan, 32)
    index.use_fused_rerank()
    fused = index.search(q, K, plan, 32)
    assert_array_equal(fused.ids, staged.ids)
    assert not np.isin(fused.ids, np.arange(0, 1500, 7)).any()
    for i, v in enumerate(q):
        assert_array_equal(index.search(v, K, plan, 32).ids, fused.ids[i])


def test_fewer_rows_found_than_k_goes_the_staged_way(data):
    x, q = data
    # one IVF cell probed out of 64 over 200 rows: some queries reach fewer than k rows
    plan = Rerank(8, D, 12)
    index, staged, fused, singles = staged_and_fused(
        x[:200], q, plan, effort=1, shortlist_dim=8, ann="ivf", ivf_lists=64
    )
    short = (staged.ids == -1).any(axis=1)
    assert short.any(), "the case under test needs short results"
    assert_array_equal(fused.ids, staged.ids)
    assert_array_equal(fused.scores[short], staged.scores[short])  # searched again, staged
    assert_allclose(fused.scores, staged.scores, atol=2e-6)
    prepared = index._one_query[(plan, K, 1)]
    for i in np.flatnonzero(short):  # one query per call: the general way, set-up kept
        assert_array_equal(index.search(q[i], K, plan, 1).ids, singles[i].ids)
        assert index._one_query[(plan, K, 1)] is prepared


def test_add_remove_and_compact_keep_the_fused_copy_in_step(data):
    x, q = data
    plan = Rerank(16, D, 40)
    fused = MatryoshkaIndex(shortlist_dim=16, compact_at=0.9).build(x[:1500])
    fused.use_fused_rerank()
    staged = MatryoshkaIndex(shortlist_dim=16, compact_at=0.9).build(x[:1500])
    for index in (fused, staged):
        index.add(x[1500:])
    assert fused.fused_bytes == 4 * N * D
    assert_array_equal(fused.search(q, K, plan, 32).ids, staged.search(q, K, plan, 32).ids)
    gone = fused.search(q, K, plan, 32).ids[:, :3].ravel()
    for index in (fused, staged):
        index.remove(np.unique(gone))
    after = fused.search(q, K, plan, 32).ids
    assert not np.isin(after, gone).any()
    assert_array_equal(after, staged.search(q, K, plan, 32).ids)
    for index in (fused, staged):
        index.compact()
    assert fused.fused_bytes == 4 * fused.count * D
    assert_array_equal(fused.search(q, K, plan, 32).ids, staged.search(q, K, plan, 32).ids)


@pytest.mark.parametrize(
    "plan",
    [
        Funnel(16, ((32, 40), (64, 20))),  # two steps
        Rerank(16, 32, 40),  # the last step below D
        SingleShot(16, exact=False),  # no step
        Rerank(16, D, 40, exact=True),  # brute-force shortlist
        Rerank(16, D, N),  # the whole database
    ],
)
def test_plans_it_cannot_run_are_served_stage_by_stage_bit_for_bit(data, plan):
    x, q = data
    index = MatryoshkaIndex(shortlist_dim=16).build(x)
    staged = index.search(q, K, plan, 32)
    index.use_fused_rerank()
    assert not fused_applies(index, plan, K)
    again = index.search(q, K, plan, 32)
    assert_array_equal(again.ids, staged.ids)
    assert_array_equal(again.scores, staged.scores)


def test_the_copy_can_be_dropped_and_is_not_saved(data, tmp_path):
    x, _ = data
    index = MatryoshkaIndex(shortlist_dim=16).build(x).use_fused_rerank()
    assert index.fused_bytes == 4 * N * D
    index.save(tmp_path / "idx")
    assert MatryoshkaIndex.load(tmp_path / "idx").fused_bytes == 0
    assert index.use_fused_rerank(False).fused_bytes == 0
    with pytest.raises(ConfigError, match="enabled must be True or False"):
        index.use_fused_rerank("yes")
    with pytest.raises(ConfigError, match="not built"):
        MatryoshkaIndex().use_fused_rerank()
