"""Threshold rules over per-size confidences: where examples exit, and how to choose where.

A cascade stops an example at the first size whose max softmax probability exceeds that
size's threshold (`cascade_exits`). Three solvers choose the thresholds on a held-out split
from conf [K, n] and correct [K, n]:

- `pairwise_thresholds` (the paper's rule, `Model_Cascades.ipynb`): for each consecutive
  pair of sizes, alone, grid-search t over `np.linspace(0.1, 1, 100)` for the two-model
  cascade "size j if conf_j > t else size j+1" and keep the smallest t reaching the best
  held-out accuracy.
- `joint_thresholds` (ours): all thresholds together, under a goal `key` (least cost reaching
  an accuracy target, or most accuracy within a cost budget). Exact coordinate descent: with
  the other thresholds fixed, accuracy and cost as a function of one threshold are step
  functions that one sort evaluates for every candidate. The search starts from the pairwise
  solution (and from points of the accuracy-cost trade-off curve) and only accepts strict
  improvements, so on the holdout it never does worse than the pairwise rule.
- `shared_threshold`: one threshold for every size, the exact best under the goal.

Two cost models (`COSTS`): "expected" is E[final size] (one shared MRL-E head, or any head
where a larger size's logits cost the same as computing them alone); "cumulative" is
E[sum of the sizes tried on the way] (separate MRL heads, each evaluated).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mrl.errors import ConfigError, InputError

PAPER_GRID = np.linspace(0.1, 1.0, 100)  # the official notebook's threshold grid
COSTS = ("expected", "cumulative")
# Trade-off weights (accuracy per unit of cost / largest cost) whose optima seed the joint
# search; 0 is the most accurate cascade, 1 already prefers the smallest size almost always.
_LAGRANGE_MUS = (0.0, *np.geomspace(1e-4, 1.0, 13))


def size_costs(dims: Sequence[int], cost: str = "expected") -> np.ndarray:
    """[K] int cost of stopping at each size: the size ("expected") or the sizes tried so far.

    Raises:
        ConfigError: `cost` is not one of `COSTS`.
    """
    if cost not in COSTS:
        raise ConfigError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")
    unit = np.asarray(dims, dtype=np.int64)
    return unit if cost == "expected" else np.cumsum(unit)


def threshold_candidates(conf: np.ndarray, grid: int) -> np.ndarray:
    """Sorted thresholds the joint search tries for one size: 0, 1, the paper's grid and
    `grid` quantiles of that size's held-out confidences conf [n]."""
    quantiles = np.quantile(conf, np.linspace(0.0, 1.0, grid))
    return np.unique(np.concatenate([[0.0, 1.0], PAPER_GRID, quantiles]))


def cascade_exits(conf: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Index of the size each example stops at under the cascade rule.

    The rule (strict `>`, as in the official notebook): stop at the first size j whose
    confidence exceeds `thresholds[j]`; an example confident nowhere uses the last size
    `len(thresholds)` (the cap). A threshold of 0 always stops, 1 never does.

    Args:
        conf: [K, N] max softmax probabilities, K >= len(thresholds) + 1; rows past
            len(thresholds) + 1 are not read.
        thresholds: [K' - 1] thresholds of the sizes before the cap.

    Returns:
        [N] int64 size indices in 0..len(thresholds).
    """
    conf, t = np.asarray(conf), np.asarray(thresholds, dtype=np.float64)
    k = len(t)
    if t.ndim != 1 or conf.ndim != 2 or k >= len(conf):
        raise InputError(
            f"cascade_exits needs conf [K, N] and at most K - 1 thresholds, got conf shape "
            f"{conf.shape} and {t.shape} thresholds"
        )
    if k == 0:
        return np.zeros(conf.shape[1], dtype=np.int64)
    confident = conf[:k] > t[:, None]  # (k, N)
    return np.where(confident.any(axis=0), confident.argmax(axis=0), k).astype(np.int64)


def pairwise_thresholds(
    conf: np.ndarray, correct: np.ndarray, grid: np.ndarray = PAPER_GRID
) -> np.ndarray:
    """The paper's rule: each consecutive pair's smallest grid threshold of best accuracy.

    Args:
        conf: [K, n] held-out max softmax probabilities of K consecutive sizes.
        correct: [K, n] bool, whether each size's prediction is right.
        grid: ascending candidate thresholds (the notebook's `np.linspace(0.1, 1, 100)`).

    Returns:
        [K - 1] thresholds; t_j is fitted on the two-model cascade (size j, size j + 1) alone.

    Raises:
        ConfigError: `grid` is not an ascending 1-D array of thresholds in [0, 1].
    """
    grid = np.asarray(grid)
    if (
        not np.issubdtype(grid.dtype, np.number)
        or grid.ndim != 1
        or len(grid) == 0
        or not (np.all(grid >= 0) and np.all(grid <= 1))
    ):
        raise ConfigError(f"grid must be a non-empty 1-D array of thresholds in [0, 1], got {grid}")
    if np.any(np.diff(grid) <= 0):
        raise ConfigError("grid must be strictly ascending (the smallest best threshold wins)")
    thresholds = np.empty(len(conf) - 1)
    for j in range(len(conf) - 1):
        stop = conf[j][None, :] > grid[:, None]  # (len(grid), n)
        n_correct = np.where(stop, correct[j], correct[j + 1]).sum(axis=1)  # exact counts
        thresholds[j] = grid[np.flatnonzero(n_correct == n_correct.max())[0]]
    return thresholds


@dataclass(frozen=True)
class CascadeScores:
    """Accuracy and cost of a cascade on one set of examples.

    Attributes:
        accuracy: fraction of examples classified correctly.
        expected_dim: E[final size], in dims.
        cumulative_dim: E[sum of every size tried on the way], in dims.
        exit_fraction: share of examples stopping at each size up to the cap.
    """

    accuracy: float
    expected_dim: float
    cumulative_dim: float
    exit_fraction: tuple[float, ...]


def score_exits(exits: np.ndarray, correct: np.ndarray, dims: Sequence[int]) -> CascadeScores:
    """Score given exits. exits [N] in 0..K-1, correct [K, N] bool, dims the K sizes."""
    n = len(exits)
    dims = np.asarray(dims, dtype=np.float64)
    return CascadeScores(
        accuracy=float(correct[exits, np.arange(n)].mean()),
        expected_dim=float(dims[exits].mean()),
        cumulative_dim=float(np.cumsum(dims)[exits].mean()),
        exit_fraction=tuple(float(f) for f in np.bincount(exits, minlength=len(dims)) / n),
    )


def cascade_totals(
    conf: np.ndarray, correct: np.ndarray, cost: np.ndarray, thresholds: Sequence[float]
) -> tuple[int, int]:
    """Exact (correct count, total cost) of a cascade on conf/correct [K, n], cost [K]."""
    exits = cascade_exits(conf, thresholds)
    return int(correct[exits, np.arange(len(exits))].sum()), int(cost[exits].sum())


class _Search:
    """Exact accuracy/cost bookkeeping for the joint policy's coordinate descent.

    Counts are integers (correct examples, summed dims), so feasibility tests are exact.
    """

    def __init__(self, conf: np.ndarray, correct: np.ndarray, cost: np.ndarray) -> None:
        self.conf, self.correct, self.cost = conf, correct, cost  # (K, n), (K, n), (K,)
        self.n = conf.shape[1]
        self.rows = np.arange(self.n)

    def totals(self, t: np.ndarray) -> tuple[int, int]:
        return cascade_totals(self.conf, self.correct, self.cost, t)

    def coordinate(self, j: int, t: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, ...]:
        """Correct count and total cost [M] for every candidate value of t_j, others fixed."""
        exits = cascade_exits(self.conf, t)
        reach = exits >= j  # which examples reach size j does not depend on t_j
        fixed = ~reach
        fixed_correct = self.correct[exits[fixed], self.rows[fixed]].sum()
        fixed_cost = self.cost[exits[fixed]].sum()
        t_never = t.copy()
        t_never[j] = 1.0  # conf <= 1, so nobody stops at j: where the others go on to
        idx = np.flatnonzero(reach)
        cont = cascade_exits(self.conf, t_never)[idx]
        order = np.argsort(self.conf[j, idx], kind="stable")
        sorted_conf = self.conf[j, idx][order]
        cont_correct = np.concatenate([[0], np.cumsum(self.correct[cont, idx][order])])
        stop_correct = np.concatenate([[0], np.cumsum(self.correct[j, idx][order])])
        cont_cost = np.concatenate([[0], np.cumsum(self.cost[cont][order])])
        m = np.searchsorted(sorted_conf, cand, side="right")  # conf <= t: these go on
        n_stop = len(idx) - m
        n_correct = fixed_correct + cont_correct[m] + stop_correct[-1] - stop_correct[m]
        total_cost = fixed_cost + cont_cost[m] + n_stop * self.cost[j]
        return n_correct, total_cost

    def descend(
        self, t: np.ndarray, key: Callable, cands: list[np.ndarray], max_passes: int = 100
    ) -> np.ndarray:
        """Coordinate descent: move one threshold at a time while `key` strictly improves."""
        t = t.copy()
        current = tuple(float(x) for x in key(*self.totals(t)))
        for _ in range(max_passes):
            changed = False
            for j in range(len(t)):
                keys = key(*self.coordinate(j, t, cands[j]))
                best = np.lexsort(keys[::-1])[-1]  # lexicographic max, first key primary
                candidate = tuple(float(x[best]) for x in keys)
                if candidate > current:
                    t[j], current, changed = cands[j][best], candidate, True
            if not changed:
                break
        return t


def target_key(need: int) -> Callable:
    """Feasible (>= need correct) first, then least cost, then most correct."""

    def key(n_correct, cost):
        ok = np.asarray(n_correct >= need, dtype=np.float64)
        return (ok, np.where(ok, -cost, n_correct), np.where(ok, n_correct, -cost))

    return key


def budget_key(limit: int) -> Callable:
    """Within budget (total cost <= limit) first, then most correct, then least cost."""

    def key(n_correct, cost):
        ok = np.asarray(cost <= limit, dtype=np.float64)
        return (ok, np.where(ok, n_correct, -cost), np.where(ok, -cost, n_correct))

    return key


def _lagrange_key(mu: float, cost_scale: float) -> Callable:
    """Correct count minus mu per example-at-the-cap's worth of cost."""

    def key(n_correct, cost):
        return (n_correct - mu * cost / cost_scale, -np.asarray(cost, dtype=np.float64))

    return key


def joint_thresholds(
    conf: np.ndarray,
    correct: np.ndarray,
    cost: np.ndarray,
    key: Callable,
    seeds: Sequence[np.ndarray],
    grid: int = 256,
) -> np.ndarray:
    """All thresholds together: the best cascade under `key` found from several starts.

    Candidates for t_j are 0, 1, the paper's grid and `grid` quantiles of the held-out
    confidences of size j. Starts are `seeds` and the optima of accuracy-minus-mu-cost for a
    range of mu (points of the trade-off curve); each is polished by coordinate descent under
    `key` and the best polished result is returned, so it is never worse than any seed.

    Args:
        conf: [K, n] held-out max softmax probabilities; correct: [K, n] bool.
        cost: [K] int cost of stopping at each size (dims or cumulative dims).
        key: maps (correct counts [M], total costs [M]) to a tuple of arrays to maximise
            lexicographically.
        seeds: starting threshold vectors [K - 1], e.g. the pairwise rule's.
        grid: number of confidence quantiles per size.

    Returns:
        [K - 1] thresholds.
    """
    search = _Search(conf, correct, cost)
    cands = [threshold_candidates(conf[j], grid) for j in range(len(conf) - 1)]
    starts = [np.asarray(s, dtype=np.float64) for s in seeds]
    for mu in _LAGRANGE_MUS:
        starts.append(search.descend(starts[0], _lagrange_key(mu, float(cost[-1])), cands))
    best, best_key = None, None
    for start in starts:
        t = search.descend(start, key, cands)
        k = tuple(float(x) for x in key(*search.totals(t)))
        if best_key is None or k > best_key:
            best, best_key = t, k
    return best


def shared_threshold(
    conf: np.ndarray, correct: np.ndarray, cost: np.ndarray, key: Callable
) -> np.ndarray:
    """One threshold for every size: the exact best under `key` over all thresholds.

    One degree of freedom instead of K - 1, so a small holdout fits it with far less
    variance than the joint search; the better choice when the holdout is small relative to
    the accuracy differences that matter (0.2 points is 4 of 2,000 examples).

    An example goes past size j exactly when the running max of its confidences up to j is
    <= t, so accuracy and cost are step functions of t with steps at those running maxima:
    one sort and two cumulative sums evaluate every distinct threshold.

    Args:
        conf: [K, n] held-out max softmax probabilities; correct: [K, n] bool.
        cost: [K] int cost of stopping at each size.
        key: as in `joint_thresholds` (e.g. `target_key`, `budget_key`).

    Returns:
        [K - 1] thresholds, all equal.
    """
    k, n = conf.shape
    running_max = np.maximum.accumulate(conf[:-1], axis=0).ravel()  # (K-1)*n step points
    order = np.argsort(running_max, kind="stable")
    steps = running_max[order]
    # crossing a step moves one example from size j to size j + 1
    gain_correct = (correct[1:].astype(np.int64) - correct[:-1]).ravel()[order]
    gain_cost = np.repeat(np.diff(cost), n)[order]
    cands = np.concatenate([[0.0], np.unique(steps)])
    moved = np.searchsorted(steps, cands, side="right")  # steps <= t have been crossed
    n_correct = int(correct[0].sum()) + np.concatenate([[0], np.cumsum(gain_correct)])[moved]
    total_cost = int(cost[0]) * n + np.concatenate([[0], np.cumsum(gain_cost)])[moved]
    keys = key(n_correct, total_cost)
    return np.full(k - 1, cands[np.lexsort(keys[::-1])[-1]])
