"""mrl.evaluation.metrics: hand-built cases with known answers and naive loop references."""

import math

import numpy as np
import pytest

from mrl.errors import InputError
from mrl.evaluation import metrics

# Two queries (labels 0 and 1) against a database with 3 items of class 0 and 1 of class 1.
DB_LABELS = np.array([0, 0, 0, 1, 2, 2])
QUERY_LABELS = np.array([0, 1])
NEIGHBOR_LABELS = np.array(
    [
        [0, 2, 0, 2],  # hits at ranks 1 and 3
        [2, 1, 2, 2],  # hit at rank 2
    ]
)


def naive_retrieval(neighbor_labels, query_labels, db_labels, k):
    """Loop reference: (paper mAP, usual mAP, precision, recall, hit rate) at k."""
    paper, usual, prec, rec, hit = [], [], [], [], []
    for nbrs, q in zip(neighbor_labels, query_labels, strict=True):
        n_rel = int(sum(1 for b in db_labels if b == q))
        hits, ap = 0, 0.0
        for i in range(k):
            if nbrs[i] == q:
                hits += 1
                ap += hits / (i + 1)
        paper.append(ap / k)
        prec.append(hits / k)
        hit.append(float(hits > 0))
        if n_rel:
            usual.append(ap / min(k, n_rel))
            rec.append(hits / n_rel)
    return np.mean(paper), np.mean(usual), np.mean(prec), np.mean(rec), np.mean(hit)


def test_hand_built_retrieval_metrics():
    out = metrics.retrieval_metrics(NEIGHBOR_LABELS, QUERY_LABELS, DB_LABELS, ks=(1, 2, 4))
    # Query 0: P@1 = 1, P@3 = 2/3; 3 relevant. Query 1: P@2 = 1/2; 1 relevant.
    assert out["map_at_4_paper"] == pytest.approx(((1 + 2 / 3) / 4 + 0.5 / 4) / 2)
    assert out["map_at_4"] == pytest.approx(((1 + 2 / 3) / 3 + 0.5 / 1) / 2)
    assert out["map_at_2_paper"] == pytest.approx((1 / 2 + 0.5 / 2) / 2)
    assert out["map_at_2"] == pytest.approx((1 / 2 + 0.5 / 1) / 2)
    assert out["precision_at_4"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert out["precision_at_1"] == pytest.approx(0.5)
    assert out["hit_rate_at_1"] == pytest.approx(0.5)
    assert out["hit_rate_at_2"] == pytest.approx(1.0)


def test_recall_counts_relevant_items_per_class_with_unequal_class_sizes():
    # Class 0 has 3 database items, class 1 has 1: recall@4 = (2/3 + 1/1) / 2, not hits / const.
    rel = metrics.relevance(NEIGHBOR_LABELS, QUERY_LABELS)
    n_rel = metrics.count_relevant(QUERY_LABELS, DB_LABELS)
    np.testing.assert_array_equal(n_rel, [3, 1])
    assert metrics.recall_at_k(rel, n_rel, 4) == pytest.approx((2 / 3 + 1) / 2)
    assert metrics.recall_at_k(rel, n_rel, 1) == pytest.approx((1 / 3 + 0) / 2)


def test_query_class_absent_from_database_is_left_out_of_recall_and_map():
    rel = metrics.relevance(np.array([[0, 0], [0, 0]]), np.array([0, 5]))
    n_rel = metrics.count_relevant(np.array([0, 5]), np.array([0, 0, 1]))
    np.testing.assert_array_equal(n_rel, [2, 0])
    assert metrics.recall_at_k(rel, n_rel, 2) == 1.0
    assert metrics.map_at_k(rel, n_rel, 2) == 1.0
    assert metrics.map_at_k_paper(rel, 2) == 0.5  # defined for every query: /k


def test_retrieval_metrics_match_naive_loops_on_random_data():
    rng = np.random.default_rng(0)
    db = rng.integers(0, 7, 300)
    q = rng.integers(0, 7, 50)
    nbrs = rng.choice(db, size=(50, 30))
    out = metrics.retrieval_metrics(nbrs, q, db, ks=(1, 10, 30))
    for k in (1, 10, 30):
        paper, usual, prec, rec, hit = naive_retrieval(nbrs, q, db, k)
        assert out[f"map_at_{k}_paper"] == pytest.approx(paper)
        assert out[f"map_at_{k}"] == pytest.approx(usual)
        assert out[f"precision_at_{k}"] == pytest.approx(prec)
        assert out[f"recall_at_{k}"] == pytest.approx(rec)
        assert out[f"hit_rate_at_{k}"] == pytest.approx(hit)


def test_topk_accuracy_hand_built():
    logits = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    labels = np.array([1, 2, 0])
    assert metrics.topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert metrics.topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)
    assert metrics.topk_accuracy(logits, labels, 3) == 1.0


def test_topk_accuracy_matches_argsort_reference():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 12))
    labels = rng.integers(0, 12, 200)
    for k in (1, 5):
        top = np.argsort(-logits, axis=1)[:, :k]
        expected = np.mean([labels[i] in top[i] for i in range(200)])
        assert metrics.topk_accuracy(logits, labels, k) == pytest.approx(expected)


def test_knn_majority_vote_ties_go_to_smallest_label():
    nbrs = np.array([[2, 1, 1, 2, 0], [3, 3, 0, 0, 0]])
    np.testing.assert_array_equal(metrics.knn_predict(nbrs, 1), [2, 3])
    np.testing.assert_array_equal(metrics.knn_predict(nbrs, 4), [1, 0])
    np.testing.assert_array_equal(metrics.knn_predict(nbrs, 5), [1, 0])
    assert metrics.knn_accuracy(nbrs, np.array([1, 3]), 2) == 1.0


def test_knn_predict_chunking_does_not_change_votes():
    rng = np.random.default_rng(2)
    nbrs = rng.integers(0, 9, size=(1000, 15))
    np.testing.assert_array_equal(
        metrics.knn_predict(nbrs, 15, chunk_size=7), metrics.knn_predict(nbrs, 15)
    )


@pytest.mark.parametrize("k", [0, -1, 5])
def test_bad_k_is_a_clear_error(k):
    rel = np.ones((2, 4), dtype=bool)
    with pytest.raises(ValueError, match="k must be a positive int|exceeds the 4 neighbours"):
        metrics.precision_at_k(rel, k)


def test_float_labels_are_rejected():
    with pytest.raises(ValueError, match="must be integer class ids"):
        metrics.topk_accuracy(np.zeros((2, 3)), np.array([1.0, 2.0], dtype=np.float16))


def test_mismatched_lengths_are_a_clear_error():
    with pytest.raises(ValueError, match="logits has 3 rows but labels has 2"):
        metrics.topk_accuracy(np.zeros((3, 4)), np.array([0, 1]))


@pytest.mark.parametrize(
    "rel, message",
    [
        (np.full((2, 3), 0.5), "relevance must be bool"),
        (np.array([[0, 2, 1]]), "relevance must be bool"),
        (np.ones(3, dtype=bool), r"\[Q, K\] array"),
    ],
)
def test_relevance_that_is_not_a_bool_matrix_is_named(rel, message):
    with pytest.raises(ValueError, match=message):
        metrics.map_at_k_paper(rel, 1)


def test_relevance_as_zero_one_ints_equals_bools():
    rel = np.array([[1, 0, 1], [0, 0, 1]])
    assert metrics.map_at_k_paper(rel, 3) == metrics.map_at_k_paper(rel.astype(bool), 3)


def naive_text_metrics(rel, num_relevant, k):
    """Loop reference: (MRR@k over all queries, MRR@k, nDCG@k, recall@k over defined ones)."""
    rr_all, rr, ndcg, rec = [], [], [], []
    for row, n_rel in zip(rel.tolist(), num_relevant.tolist(), strict=True):
        first = next((i for i in range(k) if row[i]), None)
        rr_all.append(0.0 if first is None else 1.0 / (first + 1))
        if n_rel == 0:
            continue
        rr.append(rr_all[-1])
        dcg = sum(1.0 / math.log2(i + 2) for i in range(k) if row[i])
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(n_rel, k)))
        ndcg.append(dcg / ideal)
        rec.append(sum(row[:k]) / n_rel)
    return tuple(sum(v) / len(v) if v else float("nan") for v in (rr_all, rr, ndcg, rec))


@pytest.mark.parametrize("several", [False, True], ids=["one-relevant", "several-relevant"])
def test_mrr_ndcg_recall_match_naive_loops(several):
    rng = np.random.default_rng(3)
    q, big_k = 60, 20
    if several:  # up to 5 relevant per query, some absent from the top K, some queries with none
        rel = rng.random((q, big_k)) < 0.15
        num_relevant = rel.sum(1) + rng.integers(0, 3, q)
        num_relevant[:4] = 0
        rel[:4] = False
    else:  # one relevant item per query (a text pair), found at a random rank or not at all
        rel = np.zeros((q, big_k), dtype=bool)
        found = rng.random(q) < 0.7
        rel[np.flatnonzero(found), rng.integers(0, big_k, found.sum())] = True
        num_relevant = np.ones(q, dtype=np.int64)
    for k in (1, 3, 10, 20):
        rr_all, rr, ndcg, rec = naive_text_metrics(rel, num_relevant, k)
        assert metrics.mrr_at_k(rel, k) == pytest.approx(rr_all)
        assert metrics.mrr_at_k(rel, k, num_relevant) == pytest.approx(rr)
        assert metrics.ndcg_at_k(rel, num_relevant, k) == pytest.approx(ndcg)
        assert metrics.recall_at_k(rel, num_relevant, k) == pytest.approx(rec)


def test_text_metrics_hand_built():
    rel = np.array([[False, True, False], [True, False, True]])
    n_rel = np.array([1, 3])
    assert metrics.mrr_at_k(rel, 3) == pytest.approx((1 / 2 + 1) / 2)
    ideal_2 = 1 + 1 / math.log2(3) + 1 / 2  # 3 relevant, k = 3
    expected = (1 / math.log2(3) / 1 + (1 + 1 / 2) / ideal_2) / 2
    assert metrics.ndcg_at_k(rel, n_rel, 3) == pytest.approx(expected)
    assert metrics.ndcg_at_k(np.ones((1, 2), dtype=bool), np.array([5]), 2) == 1.0


def test_queries_without_relevant_items_are_left_out_like_recall_and_map():
    rel = np.array([[True, False], [False, False]])
    n_rel = np.array([1, 0])
    assert metrics.ndcg_at_k(rel, n_rel, 2) == 1.0
    assert metrics.mrr_at_k(rel, 2, n_rel) == 1.0
    assert metrics.mrr_at_k(rel, 2) == 0.5  # without num_relevant every query counts
    none = np.zeros(2, dtype=np.int64)
    for value in (
        metrics.ndcg_at_k(rel & False, none, 2),
        metrics.mrr_at_k(rel & False, 2, none),
        metrics.recall_at_k(rel & False, none, 2),
        metrics.map_at_k(rel & False, none, 2),
    ):
        assert math.isnan(value)


@pytest.mark.parametrize(
    "fn", [metrics.ndcg_at_k, metrics.recall_at_k, metrics.map_at_k, metrics.mrr_at_k]
)
@pytest.mark.parametrize(
    "num_relevant, match",
    [
        (np.array([1.0, 2.0]), "num_relevant must be a 1-D int array"),
        (np.array([[1, 2]]), "num_relevant must be a 1-D int array"),
        (np.array([1, 2, 3]), "relevance has 2 rows but num_relevant has 3"),
        (np.array([1, 0]), r"query 0 has 2 relevant results but num_relevant\[0\] = 1"),
    ],
)
def test_bad_num_relevant_is_named(fn, num_relevant, match):
    rel = np.array([[True, True], [False, False]])
    with pytest.raises(InputError, match=match):
        if fn is metrics.mrr_at_k:
            fn(rel, 2, num_relevant)
        else:
            fn(rel, num_relevant, 2)


@pytest.mark.parametrize(
    "call",
    [lambda rel, k: metrics.ndcg_at_k(rel, np.array([1]), k), metrics.mrr_at_k],
    ids=["ndcg", "mrr"],
)
def test_text_metrics_check_k_and_relevance(call):
    with pytest.raises(ValueError, match="exceeds the 2 neighbours"):
        call(np.ones((1, 2), dtype=bool), 3)
    with pytest.raises(ValueError, match="relevance must be bool"):
        call(np.full((1, 2), 0.5), 1)
