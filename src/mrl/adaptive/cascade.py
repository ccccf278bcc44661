"""Adaptive classification: confidence cascades over the nested sizes of one model.

A cascade reads the smallest size first and moves on to the next size only while the max
softmax probability is at or below that size's threshold, so easy inputs are classified with
few dims. Everything here works on per-size scores [G, N, C] computed once (saved logits);
`mrl.adaptive.inference.AdaptiveClassifier` applies a fitted cascade to new inputs.

Two policies choose the thresholds on a held-out split:

- "pairwise" (the paper's rule, `Model_Cascades.ipynb`): for each consecutive pair of sizes,
  alone, grid-search t over `np.linspace(0.1, 1, 100)` for the two-model cascade "size j if
  conf_j > t else size j+1" and keep the smallest t reaching the best held-out accuracy.
- "joint" (ours): all thresholds together, minimising the expected cost subject to an accuracy
  target ("the accuracy of size 256 at the least cost"), or maximising accuracy under a cost
  budget. Exact coordinate descent: with the other thresholds fixed, accuracy and cost as a
  function of one threshold are step functions that one sort evaluates for every candidate.
  The search starts from the pairwise solution (and from points of the accuracy-cost
  trade-off curve) and only accepts strict improvements, so on the holdout it never does
  worse than the pairwise rule.

Two cost models are reported for every cascade: "expected" is E[final size] (one shared
MRL-E head, or any head where a larger size's logits cost the same as computing them alone);
"cumulative" is E[sum of the sizes tried on the way] (separate MRL heads, each evaluated).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.base import BaseEstimator

from mrl.io import atomic_write_json
from mrl.nesting import Nesting

PAPER_GRID = np.linspace(0.1, 1.0, 100)  # the official notebook's threshold grid
POLICIES = ("pairwise", "joint", "shared")
CAP_SEARCH = "search"  # Cascade(cap=...): fit every cap and keep the best on the holdout
INPUTS = ("logits", "probabilities")
COSTS = ("expected", "cumulative")
FILE_FORMAT = "mrl-cascade"  # tag written into thresholds files
PROBABILITY_ATOL = 1e-3  # float16/float32 softmax rows sum to 1 only this closely
# Trade-off weights (accuracy per unit of cost / largest cost) whose optima seed the joint
# search; 0 is the most accurate cascade, 1 already prefers the smallest size almost always.
_LAGRANGE_MUS = (0.0, *np.geomspace(1e-4, 1.0, 13))


def max_confidence(
    scores: np.ndarray, nesting: Nesting, inputs: str = "logits"
) -> tuple[np.ndarray, np.ndarray]:
    """Max softmax probability and predicted class of every size, validating the scores.

    Args:
        scores: [G, N, C] per-size logits or probabilities, one slice per size of `nesting`.
        nesting: the sizes the G slices belong to.
        inputs: "logits" (the softmax is taken here, in float64) or "probabilities"
            (non-negative rows that sum to 1 within 1e-3).

    Returns:
        conf [G, N] float64 in [0, 1] and pred [G, N] int64.
    """
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    scores = np.asarray(scores)
    if scores.ndim != 3:
        raise ValueError(f"expected per-size scores of shape [G, N, C], got shape {scores.shape}")
    g, n, c = scores.shape
    if g != len(nesting):
        raise ValueError(
            f"scores have {g} sizes but the nesting {list(nesting.dims)} has {len(nesting)}; "
            "give one [N, C] slice per nested size"
        )
    if n == 0:
        raise ValueError("scores hold no examples (N = 0)")
    if c == 0:
        raise ValueError("scores have no classes (C = 0)")
    conf = np.empty((g, n))
    pred = np.empty((g, n), dtype=np.int64)
    rows = np.arange(n)
    for i, m in enumerate(nesting):
        s = scores[i].astype(np.float64)  # one size at a time bounds the float64 copy
        if not np.isfinite(s).all():
            raise ValueError(f"scores for size {m} contain NaN or inf")
        pred[i] = s.argmax(axis=1)
        top = s[rows, pred[i]]
        if inputs == "probabilities":
            sums = s.sum(axis=1)
            if s.min() < 0 or np.abs(sums - 1).max() > PROBABILITY_ATOL:
                raise ValueError(
                    f"probabilities for size {m} must be >= 0 and sum to 1 over the classes; "
                    f"row sums range {sums.min():.4g}..{sums.max():.4g}, min value "
                    f"{s.min():.4g} (pass inputs='logits' for raw scores)"
                )
            conf[i] = np.minimum(top, 1.0)
        else:
            conf[i] = 1.0 / np.exp(s - top[:, None]).sum(axis=1)  # softmax at the argmax
    return conf, pred


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
    t = np.asarray(thresholds, dtype=np.float64)
    k = len(t)
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
    """
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


class _Search:
    """Exact accuracy/cost bookkeeping for the joint policy's coordinate descent.

    Counts are integers (correct examples, summed dims), so feasibility tests are exact.
    """

    def __init__(self, conf: np.ndarray, correct: np.ndarray, cost: np.ndarray) -> None:
        self.conf, self.correct, self.cost = conf, correct, cost  # (K, n), (K, n), (K,)
        self.n = conf.shape[1]
        self.rows = np.arange(self.n)

    def totals(self, t: np.ndarray) -> tuple[int, int]:
        exits = cascade_exits(self.conf, t)
        return int(self.correct[exits, self.rows].sum()), int(self.cost[exits].sum())

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


def _target_key(need: int) -> Callable:
    """Feasible (>= need correct) first, then least cost, then most correct."""

    def key(n_correct, cost):
        ok = np.asarray(n_correct >= need, dtype=np.float64)
        return (ok, np.where(ok, -cost, n_correct), np.where(ok, n_correct, -cost))

    return key


def _budget_key(limit: int) -> Callable:
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
    quantiles = np.linspace(0.0, 1.0, grid)
    cands = [
        np.unique(np.concatenate([[0.0, 1.0], PAPER_GRID, np.quantile(conf[j], quantiles)]))
        for j in range(len(conf) - 1)
    ]
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
        key: as in `joint_thresholds`.

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


class Cascade(BaseEstimator):
    """Confidence cascade over nested sizes: stop at the first size confident enough.

    At prediction time size j's answer is used when its max softmax probability exceeds
    `thresholds_[j]`; otherwise the next size is tried, up to the cap. Follows the
    scikit-learn contract: `__init__` stores parameters, `fit` validates them and sets the
    attributes ending in `_`.

    Args:
        nesting: the model's nested sizes; scores are [G, N, C] with G = len(nesting).
        policy: "pairwise" (the paper's rule), "joint" (all thresholds together) or
            "shared" (one threshold for every size: less holdout variance, see
            `shared_threshold`). Joint and shared take one of target, target_dim or budget.
        cap: largest size the cascade may use (one of the nesting's); default the largest.
            "search" (joint and shared policies): fit the thresholds under every cap and keep
            the best for the goal on the holdout; a smaller cap often reaches a target more
            cheaply because the largest sizes add little accuracy for much cost.
        inputs: whether scores are "logits" or "probabilities" (checked to sum to 1).
        target: joint or shared policy: held-out accuracy (fraction) to reach at the least cost.
        target_dim: joint or shared: take the target as this size's held-out accuracy.
        tolerance: accuracy (fraction, 0.002 = 0.2 points) the target may be missed by on
            the holdout; negative asks for a margin above it, which offsets the optimism of
            thresholds fitted on a finite holdout (the test accuracy lands a little lower).
        budget: joint or shared: maximise accuracy with a cost of at most this many dims.
        cost: what the joint or shared policy minimises or budgets: "expected" (final size) or
            "cumulative" (every size tried). Both are always reported.
        grid: joint policy: held-out confidence quantiles tried per threshold.

    Attributes (after fit):
        dims_: the sizes up to the cap; thresholds_: [len(dims_) - 1] thresholds.
        target_accuracy_: the held-out accuracy the policy had to reach (or None).
        holdout_: `CascadeScores` on the fitting split.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
        arXiv 2205.13147, Section 4.2.2 (adaptive classification) and the official
        `model_analysis/Model_Cascades.ipynb`.

    Example:
        >>> nesting = Nesting((8, 16, 32))
        >>> rng = np.random.default_rng(0)
        >>> logits, labels = rng.normal(size=(3, 500, 4)), rng.integers(0, 4, 500)
        >>> cascade = Cascade(nesting, policy="joint", target_dim=32).fit(logits, labels)
        >>> cascade.predict(logits).shape
        (500,)
        >>> cascade.evaluate(logits, labels).expected_dim <= 32
        True
    """

    def __init__(
        self,
        nesting: Nesting,
        policy: str = "pairwise",
        cap: int | None = None,
        inputs: str = "logits",
        target: float | None = None,
        target_dim: int | None = None,
        tolerance: float = 0.0,
        budget: float | None = None,
        cost: str = "expected",
        grid: int = 256,
    ) -> None:
        self.nesting = nesting
        self.policy = policy
        self.cap = cap
        self.inputs = inputs
        self.target = target
        self.target_dim = target_dim
        self.tolerance = tolerance
        self.budget = budget
        self.cost = cost
        self.grid = grid

    def _check_params(self) -> None:
        if not isinstance(self.nesting, Nesting):
            raise ValueError(f"nesting must be a Nesting, got {type(self.nesting).__name__}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.cost not in COSTS:
            raise ValueError(f"cost must be one of {', '.join(COSTS)}, got {self.cost!r}")
        if self.cap == CAP_SEARCH:
            if self.policy == "pairwise":
                raise ValueError("cap='search' applies to policy='joint' or 'shared'")
        elif self.cap is not None:
            self.nesting.index(self.cap)
        if self.target_dim is not None:
            self.nesting.index(self.target_dim)
        goals = [g for g in ("target", "target_dim", "budget") if getattr(self, g) is not None]
        if self.policy == "pairwise" and goals:
            raise ValueError(f"{goals[0]} applies to policy='joint' or 'shared', not 'pairwise'")
        if self.policy != "pairwise" and len(goals) != 1:
            raise ValueError(
                f"policy={self.policy!r} needs exactly one of target, target_dim or budget, "
                f"got {goals or 'none'}"
            )
        if self.target is not None and not 0.0 <= self.target <= 1.0:
            raise ValueError(f"target is an accuracy fraction in [0, 1], got {self.target}")
        if not -1.0 < self.tolerance < 1.0:
            raise ValueError(f"tolerance is an accuracy fraction in (-1, 1), got {self.tolerance}")
        if self.budget is not None and self.budget <= 0:
            raise ValueError(f"budget is a cost in dims and must be positive, got {self.budget}")
        if self.grid < 2:
            raise ValueError(f"grid must be >= 2 quantiles, got {self.grid}")

    def _correct(self, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """conf [G, N] and correct [G, N] bool of every size, the labels validated."""
        conf, pred = max_confidence(scores, self.nesting, self.inputs)
        labels = np.asarray(labels)
        if labels.shape != (conf.shape[1],):
            raise ValueError(
                f"labels must have shape [{conf.shape[1]}] to match the scores, got {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
        return conf, pred == labels[None, :]

    def _dims(self) -> tuple[int, ...]:
        cap = self.nesting.embed_dim if self.cap is None else self.cap
        return self.nesting.dims[: self.nesting.index(cap) + 1]

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> Cascade:
        """Choose the thresholds (and, with `cap="search"`, the cap) on a held-out split.

        Args:
            scores: [G, N, C] held-out per-size logits or probabilities (see `inputs`).
            labels: [N] int class ids.

        Returns:
            self, with `dims_`, `thresholds_`, `target_accuracy_` and `holdout_` set.
        """
        self._check_params()
        scores = np.asarray(scores)
        if scores.ndim == 3 and scores.shape[1] == 0:
            raise ValueError("the holdout is empty: fit needs at least one held-out example")
        conf_all, correct_all = self._correct(scores, labels)
        n = conf_all.shape[1]
        self.target_accuracy_ = None
        if self.policy == "pairwise":
            dims = self._dims()
            thresholds = pairwise_thresholds(conf_all[: len(dims)], correct_all[: len(dims)])
        else:
            key = self._goal_key(correct_all, n)
            caps = self.nesting.dims if self.cap == CAP_SEARCH else (self._dims()[-1],)
            best_key = None
            for cap in caps:  # every cap under the same goal: keep the best on the holdout
                cap_dims = self.nesting.dims[: self.nesting.index(cap) + 1]
                t, k = self._fit_goal(conf_all, correct_all, cap_dims, key)
                if best_key is None or k > best_key:
                    dims, thresholds, best_key = cap_dims, t, k
        conf, correct = conf_all[: len(dims)], correct_all[: len(dims)]
        self.dims_ = dims
        self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        self.holdout_ = score_exits(cascade_exits(conf, self.thresholds_), correct, dims)
        if self.target_accuracy_ is not None and self.holdout_.accuracy < self.target_accuracy_:
            best_size = int(np.argmax(correct.mean(axis=1)))
            warnings.warn(
                f"accuracy target {100 * self.target_accuracy_:.2f}% is not reached on the "
                f"holdout by any cascade searched (best single size up to the cap: "
                f"{dims[best_size]} at {100 * correct[best_size].mean():.2f}%); returning the "
                f"most accurate cascade found: {100 * self.holdout_.accuracy:.2f}% at "
                f"{self.holdout_.expected_dim:.1f} expected dims",
                UserWarning,
                stacklevel=2,
            )
        return self

    def _goal_key(self, correct_all: np.ndarray, n: int) -> Callable:
        """The joint/shared policies' objective on n held-out examples (sets the target)."""
        if self.budget is not None:
            limit = math.floor(self.budget * n + 1e-9)
            if limit < self.nesting.dims[0] * n:
                raise ValueError(
                    f"budget {self.budget} dims is below the cheapest cascade (stopping "
                    f"at size {self.nesting.dims[0]} always costs {self.nesting.dims[0]})"
                )
            return _budget_key(limit)
        if self.target_dim is not None:
            goal = float(correct_all.mean(axis=1)[self.nesting.index(self.target_dim)])
        else:
            goal = float(self.target)
        self.target_accuracy_ = min(max(goal - self.tolerance, 0.0), 1.0)
        return _target_key(math.ceil(self.target_accuracy_ * n - 1e-9))

    def _fit_goal(
        self, conf_all: np.ndarray, correct_all: np.ndarray, dims: tuple[int, ...], key: Callable
    ) -> tuple[np.ndarray, tuple[float, ...]]:
        """Joint or shared thresholds for the sizes `dims`, and their value under `key`."""
        conf, correct = conf_all[: len(dims)], correct_all[: len(dims)]
        unit = np.asarray(dims, dtype=np.int64)
        cost = unit if self.cost == "expected" else np.cumsum(unit)
        if len(dims) == 1:
            thresholds = np.empty(0)
        elif self.policy == "shared":
            thresholds = shared_threshold(conf, correct, cost, key)
        else:
            never = np.ones(len(dims) - 1)  # always the cap: the cap's own accuracy
            seeds = [pairwise_thresholds(conf, correct), never]
            thresholds = joint_thresholds(conf, correct, cost, key, seeds, self.grid)
        totals = _Search(conf, correct, cost).totals(thresholds)
        return thresholds, tuple(float(x) for x in key(*totals))

    def _check_fitted(self) -> None:
        if not hasattr(self, "thresholds_"):
            raise ValueError("this Cascade is not fitted yet; call fit(scores, labels) first")

    def exit_index(self, scores: np.ndarray) -> np.ndarray:
        """Index (into `dims_`) of the size each example stops at. scores [G, N, C] -> [N]."""
        self._check_fitted()
        conf, _ = max_confidence(scores, self.nesting, self.inputs)
        return cascade_exits(conf, self.thresholds_)

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """Class of each example from the size it stops at. scores [G, N, C] -> [N] int64."""
        self._check_fitted()
        conf, pred = max_confidence(scores, self.nesting, self.inputs)
        exits = cascade_exits(conf, self.thresholds_)
        return pred[exits, np.arange(len(exits))]

    def evaluate(self, scores: np.ndarray, labels: np.ndarray) -> CascadeScores:
        """Accuracy, expected and cumulative dims on [G, N, C] scores with [N] labels."""
        self._check_fitted()
        conf, correct = self._correct(scores, labels)
        return score_exits(cascade_exits(conf, self.thresholds_), correct, self.dims_)

    def save(self, path: str | os.PathLike) -> None:
        """Write the nesting, parameters and thresholds as JSON, atomically."""
        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k != "nesting"}
        atomic_write_json(
            path,
            {
                "format": FILE_FORMAT,
                "version": 1,
                "nesting": self.nesting.to_dict(),
                "params": params,
                "dims": list(self.dims_),
                "thresholds": self.thresholds_.tolist(),
                "target_accuracy": self.target_accuracy_,
                "holdout": asdict(self.holdout_),
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike, nesting: Nesting | None = None) -> Cascade:
        """Read a fitted cascade; with `nesting`, refuse a file fitted for another nesting."""
        with open(path) as f:
            d = json.load(f)
        if not isinstance(d, dict) or d.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a cascade thresholds file (no '{FILE_FORMAT}' tag)")
        saved = Nesting.from_dict(d["nesting"])
        if nesting is not None and saved.dims != nesting.dims:
            raise ValueError(
                f"thresholds file {path} was fitted for nesting {list(saved.dims)}, not "
                f"{list(nesting.dims)}; refit the cascade on this model's scores"
            )
        cascade = cls(saved, **d["params"])
        cascade._check_params()
        cascade.dims_ = tuple(d["dims"])
        allowed = cascade._dims() if cascade.cap != CAP_SEARCH else cascade.dims_
        prefix = cascade.nesting.dims[: len(cascade.dims_)]
        if (
            cascade.dims_ != allowed
            or cascade.dims_ != prefix
            or len(d["thresholds"]) != len(cascade.dims_) - 1
        ):
            raise ValueError(f"thresholds file {path} is inconsistent: dims {cascade.dims_}")
        cascade.thresholds_ = np.asarray(d["thresholds"], dtype=np.float64)
        cascade.target_accuracy_ = d["target_accuracy"]
        cascade.holdout_ = CascadeScores(
            **{**d["holdout"], "exit_fraction": tuple(d["holdout"]["exit_fraction"])}
        )
        return cascade
