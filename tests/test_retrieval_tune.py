"""Plan tuning: Pareto set, cheapest plan meeting the target, recall helper vs a naive count."""

import numpy as np
import pytest

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.errors import ConfigError, InputError
from mrl.evaluation import metrics
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Rerank, SingleShot
from mrl.retrieval.tune import (
    choose_index,
    default_plans,
    lower_bound,
    neighbor_recall,
    pareto_front,
)

SPEC = GeneratedNestedSpec(dim=64, num_classes=20, seed=3)


@pytest.fixture(scope="module")
def setup():
    x, y = generated_nested_embeddings(2000, SPEC)
    q, yq = generated_nested_embeddings(40, SPEC, "queries")
    return MatryoshkaIndex(shortlist_dim=8).build(x), q, yq, y


def test_neighbor_recall_matches_naive():
    rng = np.random.default_rng(0)
    truth = np.stack([rng.permutation(50)[:10] for _ in range(30)])
    found = np.stack([rng.permutation(50)[:10] for _ in range(30)])
    found[0, :3] = -1
    naive = np.mean([len(set(f[f >= 0]) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert neighbor_recall(found, truth) == pytest.approx(naive)
    assert neighbor_recall(truth, truth) == 1.0


def test_pareto_front_matches_naive():
    rng = np.random.default_rng(1)
    lat, qual = rng.random(40), rng.random(40)
    naive = [
        not any(
            (lat[j] <= lat[i] and qual[j] > qual[i]) or (lat[j] < lat[i] and qual[j] >= qual[i])
            for j in range(40)
        )
        for i in range(40)
    ]
    assert pareto_front(lat, qual).tolist() == naive


def test_tuner_picks_the_fastest_plan_meeting_the_target(setup):
    index, q, _, _ = setup
    tuner = index.tune(q, target=0.9, k=10, repeats=1)
    best = tuner.best_
    assert best.meets_target and best.relative_quality >= 0.9
    assert best.latency_ms == min(r.latency_ms for r in tuner.table_ if r.meets_target)
    assert best in tuner.pareto_ and all(r.pareto for r in tuner.pareto_)
    assert str(tuner.best_plan_) == best.plan
    exact = next(r for r in tuner.table_ if r.plan == "single:64")
    assert exact.quality == 1.0 and exact.flops_per_query == 64 * index.count


def test_tuner_tries_each_effort_with_every_ann_plan(setup):
    index, q, _, _ = setup
    plans = [SingleShot(64), Rerank(8, 64, 50), Rerank(8, 32, 20)]
    tuner = index.tune(q, target=0.9, k=10, plans=plans, repeats=1, efforts=[16, 200])
    rows = [(r.plan, r.effort) for r in tuner.table_]
    assert rows == [
        ("single:64", None),  # exact: measured once
        ("rerank:8:64:50", 16),
        ("rerank:8:64:50", 200),
        ("rerank:8:32:20", 16),
        ("rerank:8:32:20", 200),
    ]
    assert tuner.best_effort_ == tuner.best_.effort and index.ef_search == 64  # not changed
    again = index.search(q, 10, tuner.best_plan_, effort=tuner.best_effort_)
    assert again.ids.shape == (len(q), 10)


def test_tuner_with_labels_scores_the_paper_map_of_exact_search(setup):
    index, q, yq, y = setup
    y = np.where(np.arange(len(y)) % 3 == 0, (y + 1) % 20, y)  # a third mislabelled: mAP < 1
    plans = [SingleShot(64), Rerank(8, 64, 100)]
    tuner = index.tune(q, 0.9, 10, query_labels=yq, id_labels=y, repeats=1, plans=plans)
    exact_ids = index.search(q, 10, SingleShot(64)).ids
    expected = metrics.map_at_k_paper(metrics.relevance(y[exact_ids], yq), 10)
    exact = tuner.table_[0]
    assert expected < 0.9  # so a tuner that ignored the labels (recall 1.0) would fail here
    assert exact.quality == pytest.approx(expected) and exact.relative_quality == 1.0


def test_tuner_picks_the_only_effort_that_reaches_the_target():
    """An IVF shortlist probing every cell is exact; probing one cell is not. With the exact
    plan left out, target 1.0 is reached by effort = ivf_lists alone."""
    rng = np.random.default_rng(0)
    x = np.zeros((2000, 32), np.float32)
    x[:, :8] = rng.standard_normal((2000, 8))  # nothing beyond D_s: the 8-prefix ranks exactly
    index = MatryoshkaIndex(shortlist_dim=8, ann="ivf", ivf_lists=16, ivf_probe=1).build(x)
    q = rng.standard_normal((40, 32)).astype(np.float32)
    tuner = index.tune(q, 1.0, 10, plans=[SingleShot(8, exact=False)], repeats=1, efforts=[1, 16])
    assert [(r.effort, r.meets_target) for r in tuner.table_] == [(1, False), (16, True)]
    assert tuner.best_effort_ == 16 and tuner.best_.quality == 1.0


BAD_TUNES = [  # (name, tune kwargs from (yq, y), error, message)
    ("k-zero", lambda yq, y: dict(target=0.9, k=0), ConfigError, "k must be a positive int .* 0"),
    ("k-big", lambda yq, y: dict(target=0.9, k=5000), ConfigError, "k=5000 exceeds the 2000 in"),
    ("target-zero", lambda yq, y: dict(target=0.0), ConfigError, r"target must be .* \(0, 1\]"),
    ("target-big", lambda yq, y: dict(target=1.5), ConfigError, "target must be a finite numb"),
    ("target-str", lambda yq, y: dict(target="0.9"), ConfigError, "target must be a number"),
    ("repeats", lambda yq, y: dict(target=0.9, repeats=0), ConfigError, "repeats must be >= 1"),
    ("efforts-empty", lambda yq, y: dict(target=0.9, efforts=[]), ConfigError, "efforts is emp"),
    ("efforts-0", lambda yq, y: dict(target=0.9, efforts=[8, 0]), ConfigError, r"efforts\[1\]"),
    ("plans-empty", lambda yq, y: dict(target=0.9, plans=[]), ConfigError, "plans is empty"),
    ("confidence-low", lambda yq, y: dict(target=0.9, confidence=0.3), ConfigError, "confidenc"),
    ("confidence-1", lambda yq, y: dict(target=0.9, confidence=1), ConfigError, "below 1"),
    ("per-query-str", lambda yq, y: dict(target=0.9, per_query="y"), ConfigError, "per_query"),
    ("labels-alone", lambda yq, y: dict(target=0.9, query_labels=yq), ConfigError, "give both"),
    (
        "few-query-labels",
        lambda yq, y: dict(target=0.9, query_labels=yq[:5], id_labels=y),
        InputError,
        "query_labels has 5 labels for 40 queries",
    ),
    (
        "few-id-labels",
        lambda yq, y: dict(target=0.9, query_labels=yq, id_labels=y[:-1]),
        InputError,
        r"id_labels has 1999 labels \(too few\): the index's largest id is 1999, so give 2000",
    ),
    (
        "many-id-labels",
        lambda yq, y: dict(target=0.9, query_labels=yq, id_labels=np.r_[y, y[:5]]),
        InputError,
        r"id_labels has 2005 labels \(too many\)",
    ),
    (
        "float-labels",
        lambda yq, y: dict(target=0.9, query_labels=yq + 0.5, id_labels=y),
        InputError,
        "query_labels must be integer class ids",
    ),
    (
        "unreachable",
        lambda yq, y: dict(target=1.0, plans=[SingleShot(8, exact=False)]),
        InputError,
        "no plan reaches 1.0000 of exact search",
    ),
]


@pytest.mark.parametrize(
    "make, error, match", [b[1:] for b in BAD_TUNES], ids=[b[0] for b in BAD_TUNES]
)
def test_tuner_errors_are_named(setup, make, error, match):
    index, q, yq, y = setup
    with pytest.raises(error, match=match):
        index.tune(q, **{"repeats": 1, **make(yq, y)})


@pytest.mark.parametrize("dim, shortlist_dim", [(1, 1), (5, 2), (6, 6), (12, 12)])
def test_default_plans_and_search_work_for_small_dims(dim, shortlist_dim):
    """Below the halving's 8 dims, and with D_s = D (nothing to rerank), defaults still run."""
    x = np.random.default_rng(0).standard_normal((300, dim)).astype(np.float32)
    index = MatryoshkaIndex(shortlist_dim=shortlist_dim).build(x)
    tuner = index.tune(x[:5], 0.9, 5, repeats=1)
    assert SingleShot(dim) in [p for p in default_plans(dim, shortlist_dim, 5, 300)]
    assert tuner.best_.meets_target
    best = index.search(x[:3], 1, SingleShot(dim)).scores[:, 0]
    np.testing.assert_allclose(best, 1.0, rtol=1e-6)  # each query finds itself (or a tie)
    assert index.search(x[:3], 5).ids.shape == (3, 5)  # the default plan


def test_default_plans_shortlist_k_to_50k_below_the_count():
    """Shortlists of k, 2k, 3k, 5k, 10k, 20k and 50k rows, each reranked at every halving
    dim above D_s; sizes not below the count are left out (exact search covers them)."""
    plans = default_plans(2048, 64, 10, 300)
    sizes = sorted({p.shortlist_size(10) for p in plans if isinstance(p, Rerank)})
    assert sizes == [10, 20, 30, 50, 100, 200]
    reranks = {(p.rerank_dim, p.shortlist_size(10)) for p in plans if isinstance(p, Rerank)}
    assert reranks == {(d, s) for d in (128, 256, 512, 1024, 2048) for s in sizes}


def test_lower_bound_matches_the_normal_formula():
    values = np.array([1.0, 0.9, 0.8, 1.0, 0.7])
    z = 1.6448536269514722  # the 0.95 quantile of N(0, 1)
    naive = values.mean() - z * values.std(ddof=1) / np.sqrt(len(values))
    assert lower_bound(values, 0.95) == pytest.approx(naive)
    assert lower_bound(values, None) == pytest.approx(values.mean())
    assert lower_bound(np.ones(50), 0.99) == 1.0  # no spread: no margin


def test_the_bound_makes_the_tuner_demand_more_than_the_sample_mean(setup):
    """A plan whose sample mean reaches the target but whose lower bound does not is refused."""
    index, q, _, _ = setup
    plans = [SingleShot(64), Rerank(8, 64, 10), Rerank(8, 64, 20), Rerank(8, 64, 50)]
    plain = index.tune(q, 0.9, 10, plans=plans, repeats=1, confidence=None)
    bounded = index.tune(q, 0.9, 10, plans=plans, repeats=1, confidence=0.95)
    for a, b in zip(plain.table_, bounded.table_, strict=True):
        assert a.meets_target == (a.relative_quality >= 0.9)
        assert b.meets_target == (b.quality_bound >= 0.9) and b.quality_bound <= b.quality
    assert bounded.best_.quality_bound >= 0.9


def test_per_query_timing_returns_what_batches_return(setup):
    index, q, _, _ = setup
    plans = [Rerank(8, 64, 50)]
    one = index.tune(q, 0.5, 10, plans=plans, repeats=1, per_query=True)
    batch = index.tune(q, 0.5, 10, plans=plans, repeats=1)
    assert one.table_[0].quality == batch.table_[0].quality


def test_choose_index_keeps_the_fastest_candidate_and_skips_those_that_cannot(setup):
    index, q, _, _ = setup
    x = index.store_.vectors
    ivf = MatryoshkaIndex(shortlist_dim=8, ann="ivf", ivf_lists=16).build(x)
    plans = [Rerank(8, 64, 50)]
    chosen, tuner, tuners = choose_index(
        [(index, [64]), (ivf, [1, 16])], q, 0.8, plans=plans, repeats=1
    )
    fitted = [t for t in tuners if t is not None]
    assert tuner.best_.latency_ms == min(t.best_.latency_ms for t in fitted)
    assert chosen is (index if tuner is tuners[0] else ivf)
    with pytest.raises(InputError, match="no candidate index reaches 1.0000"):
        choose_index([(ivf, [1])], q, 1.0, plans=[SingleShot(8, exact=False)], repeats=1)
    with pytest.raises(ConfigError, match="at least one"):
        choose_index([], q, 0.9)


def test_efforts_faiss_would_raise_to_the_same_value_are_measured_once(setup):
    """HNSW efSearch below the shortlist size is raised to it: 16 and 32 both run at 50."""
    index, q, _, _ = setup
    plans = [Rerank(8, 64, 50)]
    tuner = index.tune(q, 0.5, 10, plans=plans, repeats=1, efforts=[16, 32, 64])
    assert [r.effort for r in tuner.table_] == [16, 64]


def test_default_plans_re_score_at_d_s_only_for_an_index_over_codes():
    """`rescore=True` (an `hnsw_sq8` / `ivf_sq8` index) adds `Rerank(D_s, D_s, s)` for every
    shortlist size; at D_s = D it is the only rerank there is."""
    plain = default_plans(256, 64, 10, 1000)
    coded = default_plans(256, 64, 10, 1000, rescore=True)
    added = set(map(str, coded)) - set(map(str, plain))
    assert added == {f"rerank:64:64:{s}" for s in (10, 20, 30, 50, 100, 200, 500)}
    full = default_plans(256, 256, 10, 1000, rescore=True)
    assert {p.steps for p in full if isinstance(p, Rerank)} == {
        ((256, s),) for s in (10, 20, 30, 50, 100, 200, 500)
    }
    x = np.random.default_rng(0).standard_normal((1000, 32)).astype(np.float32)
    index = MatryoshkaIndex(shortlist_dim=32, ann="hnsw_sq8").build(x)
    tuner = index.tune(x[:40], 0.99, 10, repeats=1, confidence=None)
    assert any(row.plan.startswith("rerank:32:32:") for row in tuner.table_)
    assert tuner.best_.meets_target
