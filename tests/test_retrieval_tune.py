"""Plan tuning: Pareto set, cheapest plan meeting the target, recall helper vs a naive count."""

import numpy as np
import pytest

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Rerank, SingleShot
from mrl.retrieval.tune import neighbor_recall, pareto_front

SPEC = GeneratedNestedSpec(dim=64, n_classes=20, seed=3)


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


def test_tuner_with_labels_uses_map_relative_to_exact(setup):
    index, q, yq, y = setup
    tuner = index.tune(
        q,
        0.99,
        10,
        query_labels=yq,
        id_labels=y,
        repeats=1,
        plans=[SingleShot(64), Rerank(8, 64, 100)],
    )
    exact = tuner.table_[0]
    assert exact.relative_quality == 1.0 and 0 < exact.quality <= 1


def test_tuner_errors(setup):
    index, q, yq, _ = setup
    with pytest.raises(ValueError, match="no plan reaches 1.0000 of exact search"):
        index.tune(q, 1.0, 10, plans=[SingleShot(8, exact=False)], repeats=1)
    with pytest.raises(ValueError, match="target must be in"):
        index.tune(q, 1.5)
    with pytest.raises(ValueError, match="give both query_labels and id_labels"):
        index.tune(q, 0.9, query_labels=yq)
