import numpy as np
import pytest
from sklearn.base import clone

from mrl.adaptive import (
    PAPER_GRID,
    Cascade,
    budget_key,
    cascade_exits,
    cascade_totals,
    evaluate_splits,
    holdout_splits,
    joint_thresholds,
    max_confidence,
    pairwise_thresholds,
    shared_threshold,
    size_costs,
    target_key,
)
from mrl.nesting import Nesting

NESTING = Nesting((2, 4, 8))


def probabilities(conf, correct, labels, n_classes=4):
    """[G, N, C] rows whose max is `conf`, on the label where `correct` else on another class."""
    g, n = conf.shape
    rest = (1 - conf) / (n_classes - 1)
    probs = np.repeat(rest[..., None], n_classes, axis=2)
    cls = np.where(correct, labels[None, :], (labels[None, :] + 1) % n_classes)
    np.put_along_axis(probs, cls[..., None], conf[..., None], axis=2)
    return probs


def random_logits(rng, g, n, n_classes=6):
    """Logits whose accuracy rises with the size index, with per-example difficulty."""
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(g, n, n_classes))
    strength = np.linspace(0.6, 2.0, g)[:, None] * rng.uniform(0, 2.5, n)[None, :]
    logits[:, np.arange(n), labels] += strength
    return logits, labels


# A hand-made holdout: 4 examples, 3 sizes. Pair (2, 4): the two-model accuracy is 2/4 for
# t < .3, 3/4 up to .62, 4/4 from .62 to .95 and 3/4 above, so the rule takes the first grid
# point >= .62 (strict >: conf .62 must not stop). Pair (4, 8): example 1 (conf .75) is right
# only at 4 and example 3 (conf .71) only at 8, so 4/4 needs .71 <= t < .75.
CONF = np.array([[0.90, 0.62, 0.30, 0.95], [0.80, 0.75, 0.45, 0.71], [0.5, 0.5, 0.5, 0.5]])
CORRECT = np.array([[1, 0, 0, 1], [1, 1, 1, 0], [1, 0, 1, 1]], dtype=bool)
LABELS = np.array([0, 1, 2, 3])


def test_paper_rule_on_a_hand_made_case():
    t_first = PAPER_GRID[np.flatnonzero(PAPER_GRID >= 0.62)[0]]
    t_second = PAPER_GRID[np.flatnonzero(PAPER_GRID >= 0.71)[0]]
    assert 0.62 < t_first < 0.63 and 0.71 < t_second < 0.72
    np.testing.assert_allclose(pairwise_thresholds(CONF, CORRECT), [t_first, t_second])
    probs = probabilities(CONF, CORRECT, LABELS)
    cascade = Cascade(NESTING, inputs="probabilities").fit(probs, LABELS)
    np.testing.assert_allclose(cascade.thresholds_, [t_first, t_second])
    # 0 and 3 stop at size 2; 1 stops at size 4 (.75 > t_second); 2 is unsure until size 8
    np.testing.assert_array_equal(cascade.exit_index(probs), [0, 1, 2, 0])
    result = cascade.evaluate(probs, LABELS)
    assert result.accuracy == 1.0
    assert result.expected_dim == (2 + 4 + 8 + 2) / 4
    assert result.cumulative_dim == (2 + 6 + 14 + 2) / 4
    assert result.exit_fraction == (0.5, 0.25, 0.25)


def test_solvers_on_the_hand_made_case():
    """All 4 right at the least cost: joint needs .62 <= t0 < .9 and t1 < .45 (cost 3 per
    example); one shared t cannot send example 1 on and stop example 2 at size 4 (cost 4)."""
    cost = size_costs(NESTING.dims, "expected")
    np.testing.assert_array_equal(size_costs(NESTING.dims, "cumulative"), [2, 6, 14])
    seeds = [pairwise_thresholds(CONF, CORRECT)]
    t = joint_thresholds(CONF, CORRECT, cost, target_key(4), seeds, grid=4)
    assert 0.62 <= t[0] < 0.9 and t[1] < 0.45
    assert cascade_totals(CONF, CORRECT, cost, t) == (4, 12)
    shared = shared_threshold(CONF, CORRECT, cost, target_key(4))
    assert 0.62 <= shared[0] < 0.75 and shared[0] == shared[1]
    assert cascade_totals(CONF, CORRECT, cost, shared) == (4, 16)
    # with a budget of 2 per example only "always stop at size 2" fits: 2 of 4 right
    t = joint_thresholds(CONF, CORRECT, cost, budget_key(8), seeds, grid=4)
    assert cascade_totals(CONF, CORRECT, cost, t) == (2, 8)


def test_cap_stops_at_the_cap():
    probs = probabilities(CONF, CORRECT, LABELS)
    cascade = Cascade(NESTING, inputs="probabilities", cap=4).fit(probs, LABELS)
    assert cascade.dims_ == (2, 4)
    np.testing.assert_array_equal(cascade.exit_index(probs), [0, 1, 1, 0])
    assert cascade.evaluate(probs, LABELS).exit_fraction == (0.5, 0.5)


def notebook_pairwise(conf, correct):
    """The official notebook's loop, kept literal as the reference."""
    out = []
    for d1 in range(len(conf) - 1):
        acc = []
        for t in PAPER_GRID:
            use_small = conf[d1] > t
            acc.append(np.where(use_small, correct[d1], correct[d1 + 1]).mean() * 100)
        acc = np.asarray(acc)
        out.append(PAPER_GRID[np.nonzero(acc == acc.max())[0]].min())
    return np.asarray(out)


def notebook_exits(conf, thresholds):
    exits = []
    for i in range(conf.shape[1]):
        j_ = len(thresholds)
        for j in range(len(thresholds)):
            if conf[j, i] > thresholds[j]:
                j_ = j
                break
        exits.append(j_)
    return np.asarray(exits)


@pytest.mark.parametrize("seed", range(5))
def test_paper_rule_matches_the_notebook_loops(seed):
    rng = np.random.default_rng(seed)
    logits, labels = random_logits(rng, 4, 300)
    conf, pred = max_confidence(logits, Nesting((2, 4, 8, 16)))
    t = pairwise_thresholds(conf, pred == labels)
    np.testing.assert_array_equal(t, notebook_pairwise(conf, pred == labels))
    np.testing.assert_array_equal(cascade_exits(conf, t), notebook_exits(conf, t))


@pytest.mark.parametrize("cost", ["expected", "cumulative"])
def test_joint_never_costs_more_than_pairwise_at_equal_holdout_accuracy(cost):
    attr = f"{cost}_dim"
    for seed in range(12):
        rng = np.random.default_rng(seed)
        g = int(rng.integers(2, 7))
        nesting = Nesting(tuple(2 ** (i + 1) for i in range(g)))
        logits, labels = random_logits(rng, g, int(rng.integers(20, 400)))
        pairwise = Cascade(nesting).fit(logits, labels)
        joint = Cascade(nesting, policy="joint", target=pairwise.holdout_.accuracy, cost=cost).fit(
            logits, labels
        )
        assert joint.holdout_.accuracy >= pairwise.holdout_.accuracy
        assert getattr(joint.holdout_, attr) <= getattr(pairwise.holdout_, attr)
        # and the dual: at the pairwise cost, at least the pairwise accuracy
        budget = getattr(pairwise.holdout_, attr)
        dual = Cascade(nesting, policy="joint", budget=budget, cost=cost).fit(logits, labels)
        assert dual.holdout_.accuracy >= pairwise.holdout_.accuracy
        assert getattr(dual.holdout_, attr) <= budget + 1e-9


def test_joint_reaches_a_size_accuracy_for_less():
    rng = np.random.default_rng(0)
    nesting = Nesting((8, 16, 32, 64, 128))
    logits, labels = random_logits(rng, 5, 2000)
    cascade = Cascade(nesting, policy="joint", target_dim=128).fit(logits, labels)
    conf, pred = max_confidence(logits, nesting)
    assert cascade.target_accuracy_ == (pred[-1] == labels).mean()
    assert cascade.holdout_.accuracy >= cascade.target_accuracy_
    assert cascade.holdout_.expected_dim < 64


@pytest.mark.parametrize("seed", range(6))
def test_shared_policy_is_the_cheapest_single_threshold_reaching_the_target(seed):
    """Brute force over every distinct threshold gives the same least cost."""
    rng = np.random.default_rng(seed)
    nesting = Nesting((4, 8, 16, 32))
    logits, labels = random_logits(rng, 4, 300)
    cascade = Cascade(nesting, policy="shared", target_dim=32).fit(logits, labels)
    t = cascade.thresholds_
    assert np.all(t == t[0])
    assert cascade.holdout_.accuracy >= cascade.target_accuracy_
    conf, pred = max_confidence(logits, nesting)
    correct = pred == labels
    costs = []
    for u in np.unique(np.concatenate([[0.0, 1.0], conf[:-1].ravel()])):
        exits = cascade_exits(conf, [u] * 3)
        if correct[exits, np.arange(len(labels))].mean() >= cascade.target_accuracy_:
            costs.append(np.asarray(nesting.dims)[exits].mean())
    assert cascade.holdout_.expected_dim == pytest.approx(min(costs))


@pytest.mark.filterwarnings("ignore:accuracy target")  # small caps cannot reach the target
@pytest.mark.parametrize("policy", ["shared", "joint"])
@pytest.mark.parametrize("seed", range(4))
def test_cap_search_is_the_best_fixed_cap_on_the_holdout(policy, seed):
    """cap='search' == fitting each cap alone and keeping the cheapest reaching the target."""
    rng = np.random.default_rng(seed)
    nesting = Nesting((4, 8, 16, 32))
    logits, labels = random_logits(rng, 4, 300)
    goal = dict(policy=policy, target_dim=32, tolerance=0.01, grid=32)
    searched = Cascade(nesting, cap="search", **goal).fit(logits, labels)
    per_cap = [Cascade(nesting, cap=m, **goal).fit(logits, labels) for m in nesting.dims]
    feasible = [c for c in per_cap if c.holdout_.accuracy >= c.target_accuracy_]
    best = min(feasible, key=lambda c: (c.holdout_.expected_dim, -c.holdout_.accuracy))
    assert searched.holdout_.accuracy >= searched.target_accuracy_
    assert searched.holdout_.expected_dim == pytest.approx(best.holdout_.expected_dim)
    assert searched.holdout_.expected_dim <= per_cap[-1].holdout_.expected_dim


def test_cap_search_takes_a_smaller_cap_when_the_largest_size_adds_nothing():
    # size 8 is right exactly where size 4 is: capping at 4 reaches size 8's accuracy for less
    n = 200
    labels = np.arange(n) % 4
    correct = np.stack([np.arange(n) % 2 == 0, np.arange(n) % 5 != 0, np.arange(n) % 5 != 0])
    conf = np.full((3, n), 0.4)
    probs = probabilities(conf, correct, labels)
    searched = Cascade(NESTING, "shared", cap="search", target_dim=8, inputs="probabilities")
    searched = searched.fit(probs, labels)
    assert searched.dims_ == (2, 4)
    assert searched.holdout_.accuracy == correct[2].mean()
    assert searched.holdout_.expected_dim == 4


def test_cap_search_round_trips_and_is_joint_or_shared_only(tmp_path):
    rng = np.random.default_rng(4)
    logits, labels = random_logits(rng, 3, 200)
    cascade = Cascade(NESTING, "shared", cap="search", target_dim=4).fit(logits, labels)
    cascade.save(tmp_path / "t.json")
    loaded = Cascade.load(tmp_path / "t.json", NESTING)
    assert loaded.dims_ == cascade.dims_
    np.testing.assert_array_equal(loaded.predict(logits), cascade.predict(logits))
    with pytest.raises(ValueError, match="cap='search' applies to policy='joint' or 'shared'"):
        Cascade(NESTING, cap="search").fit(logits, labels)


def test_unreachable_target_warns_and_returns_the_most_accurate():
    rng = np.random.default_rng(1)
    logits, labels = random_logits(rng, 3, 300)
    with pytest.warns(UserWarning, match=r"accuracy target 99\.00% is not reached"):
        cascade = Cascade(NESTING, policy="joint", target=0.99).fit(logits, labels)
    conf, pred = max_confidence(logits, NESTING)
    assert cascade.holdout_.accuracy >= (pred == labels).mean(axis=1).max()


def test_splits_are_seeded_disjoint_and_complete():
    splits = holdout_splits(100, n_splits=3, holdout=0.2, seed=7)
    assert len(splits) == 3
    for hold, test in splits:
        assert len(hold) == 20 and len(test) == 80
        np.testing.assert_array_equal(np.sort(np.concatenate([hold, test])), np.arange(100))
    again = holdout_splits(100, n_splits=3, holdout=0.2, seed=7)
    np.testing.assert_array_equal(splits[2][0], again[2][0])
    assert not np.array_equal(splits[0][0], splits[1][0])


def test_evaluate_splits_means_and_reference_target():
    rng = np.random.default_rng(2)
    logits, labels = random_logits(rng, 3, 600)
    splits = holdout_splits(600, n_splits=4, seed=0)
    res = evaluate_splits(Cascade(NESTING), logits, labels, splits)
    assert res.accuracy.shape == (4,) and res.thresholds.shape == (4, 2)
    hold, test = splits[1]
    one = Cascade(NESTING).fit(logits[:, hold], labels[hold])
    one = one.evaluate(logits[:, test], labels[test])
    assert res.accuracy[1] == one.accuracy and res.cumulative_dim[1] == one.cumulative_dim
    assert res.summary()["expected_dim"]["mean"] == pytest.approx(res.expected_dim.mean())
    reference = rng.random(600) < 0.5
    matched = evaluate_splits(
        Cascade(NESTING, policy="joint", target=1.0), logits, labels, splits, reference, True
    )
    for (hold, _), acc in zip(splits, matched.holdout_accuracy, strict=True):
        assert acc >= reference[hold].mean()


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    logits, labels = random_logits(rng, 3, 200)
    cascade = Cascade(NESTING, policy="joint", target_dim=8, tolerance=0.01).fit(logits, labels)
    cascade.save(tmp_path / "t.json")
    loaded = Cascade.load(tmp_path / "t.json", NESTING)
    np.testing.assert_array_equal(loaded.thresholds_, cascade.thresholds_)
    np.testing.assert_array_equal(loaded.predict(logits), cascade.predict(logits))
    assert loaded.get_params() == cascade.get_params()
    assert loaded.holdout_ == cascade.holdout_


def test_a_budget_above_every_cost_gives_the_most_accurate_cascade():
    logits, labels = random_logits(np.random.default_rng(6), 3, 300)
    huge = Cascade(NESTING, policy="joint", budget=1e308).fit(logits, labels)
    ample = Cascade(NESTING, policy="joint", budget=14).fit(logits, labels)  # 2 + 4 + 8
    assert huge.holdout_ == ample.holdout_
    _, pred = max_confidence(logits, NESTING)
    assert huge.holdout_.accuracy >= (pred == labels).mean(axis=1).max()


def test_clone_gives_an_unfitted_copy():
    cascade = Cascade(NESTING, policy="joint", budget=4.0).fit(*random_logits_pair())
    copy = clone(cascade)
    assert copy.get_params() == cascade.get_params() and not hasattr(copy, "thresholds_")


def random_logits_pair():
    return random_logits(np.random.default_rng(4), 3, 50)


def test_probabilities_that_do_sum_to_one_are_accepted():
    logits, labels = random_logits_pair()
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    a = Cascade(NESTING).fit(logits, labels)
    b = Cascade(NESTING, inputs="probabilities").fit(probs.astype(np.float32), labels)
    np.testing.assert_array_equal(a.thresholds_, b.thresholds_)


def test_negative_tolerance_asks_for_a_margin():
    rng = np.random.default_rng(5)
    logits, labels = random_logits(rng, 3, 400)
    cascade = Cascade(NESTING, policy="joint", target=0.5, tolerance=-0.1).fit(logits, labels)
    assert cascade.target_accuracy_ == pytest.approx(0.6)
    assert cascade.holdout_.accuracy >= 0.6
