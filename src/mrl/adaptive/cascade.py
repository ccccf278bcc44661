"""The `Cascade` estimator: fit confidence-cascade thresholds on saved per-size scores.

A cascade reads the smallest size first and moves on to the next size only while the max
softmax probability is at or below that size's threshold, so easy inputs are classified with
few dims. `Cascade` follows the scikit-learn contract over per-size scores [G, N, C]
(validated by `mrl.adaptive.confidence`), chooses its thresholds with one of the solvers of
`mrl.adaptive.thresholds` and saves them as a small JSON file;
`mrl.adaptive.inference.AdaptiveClassifier` applies a fitted cascade to new inputs.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from mrl.adaptive.confidence import INPUTS, correctness, max_confidence
from mrl.adaptive.thresholds import (
    COSTS,
    CascadeScores,
    budget_key,
    cascade_exits,
    cascade_totals,
    joint_thresholds,
    pairwise_thresholds,
    score_exits,
    shared_threshold,
    size_costs,
    target_key,
)
from mrl.checks import check_int, check_number, check_tag, require_keys
from mrl.errors import ConfigError, FormatError, MissingPathError, NotFittedError, PathError
from mrl.io import atomic_write_json
from mrl.nesting import Nesting, check_nesting

POLICIES = ("pairwise", "joint", "shared")
CAP_SEARCH = "search"  # Cascade(cap=...): fit every cap and keep the best on the holdout
FILE_FORMAT = "mrl-cascade"  # tag written into thresholds files
FILE_VERSION = 1
_FILE_KEYS = ("nesting", "params", "dims", "thresholds", "target_accuracy", "holdout")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_size(name: str, value: object, nesting: Nesting, extra: str = "") -> None:
    """`value` is one of the nesting's sizes (an int), else a ConfigError naming `name`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value not in nesting.dims
    ):
        raise ConfigError(
            f"{name} must be one of the nesting's sizes {list(nesting.dims)}{extra}, got {value!r}"
        )


def check_thresholds_path(path: str | os.PathLike) -> Path:
    """`path` as a Path once it can be written as a thresholds file (check before fitting).

    Raises:
        PathError: `path` is a folder or lies under a file.
    """
    path = Path(path)
    if path.is_dir():
        raise PathError(
            f"{path} is a folder; give the thresholds file's path, e.g. {path / 'cascade.json'}"
        )
    for parent in path.parents:  # the nearest existing parent must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise PathError(f"cannot write {path}: its parent {parent} is a file")
            break
    return path


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
        """Every parameter's type and range (ConfigError naming it), as `fit` requires."""
        check_nesting(self.nesting)
        _check_choice("policy", self.policy, POLICIES)
        _check_choice("cost", self.cost, COSTS)
        _check_choice("inputs", self.inputs, INPUTS)
        if self.cap == CAP_SEARCH:
            if self.policy == "pairwise":
                raise ConfigError("cap='search' applies to policy='joint' or 'shared'")
        elif self.cap is not None:
            _check_size("cap", self.cap, self.nesting, f" or {CAP_SEARCH!r}")
        if self.target_dim is not None:
            _check_size("target_dim", self.target_dim, self.nesting)
        goals = [g for g in ("target", "target_dim", "budget") if getattr(self, g) is not None]
        if self.policy == "pairwise" and goals:
            raise ConfigError(f"{goals[0]} applies to policy='joint' or 'shared', not 'pairwise'")
        if self.policy != "pairwise" and len(goals) != 1:
            raise ConfigError(
                f"policy={self.policy!r} needs exactly one of target, target_dim or budget, "
                f"got {goals or 'none'}"
            )
        if self.target is not None:
            check_number("target (an accuracy fraction)", self.target, 0.0, 1.0)
        check_number("tolerance (an accuracy fraction)", self.tolerance, -1.0, 1.0)
        if self.budget is not None:
            check_number("budget (a cost in dims)", self.budget, 0.0, low_open=True)
        check_int("grid (confidence quantiles per threshold)", self.grid, low=2)

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

        Raises:
            ConfigError: a parameter of the wrong type or range (each one named).
            InputError: scores or labels that cannot be used (see `correctness`).
        """
        self._check_params()
        conf_all, correct_all = correctness(scores, labels, self.nesting, self.inputs)
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
            # no cascade costs more than every size in turn: a larger budget does not bind
            budget = min(self.budget, float(sum(self.nesting.dims)))
            limit = math.floor(budget * n + 1e-9)
            if limit < self.nesting.dims[0] * n:
                raise ConfigError(
                    f"budget {self.budget} dims is below the cheapest cascade (stopping "
                    f"at size {self.nesting.dims[0]} always costs {self.nesting.dims[0]}); "
                    f"raise the budget to at least {self.nesting.dims[0]}"
                )
            return budget_key(limit)
        if self.target_dim is not None:
            goal = float(correct_all.mean(axis=1)[self.nesting.index(self.target_dim)])
        else:
            goal = float(self.target)
        self.target_accuracy_ = min(max(goal - self.tolerance, 0.0), 1.0)
        return target_key(math.ceil(self.target_accuracy_ * n - 1e-9))

    def _fit_goal(
        self, conf_all: np.ndarray, correct_all: np.ndarray, dims: tuple[int, ...], key: Callable
    ) -> tuple[np.ndarray, tuple[float, ...]]:
        """Joint or shared thresholds for the sizes `dims`, and their value under `key`."""
        conf, correct = conf_all[: len(dims)], correct_all[: len(dims)]
        cost = size_costs(dims, self.cost)
        if len(dims) == 1:
            thresholds = np.empty(0)
        elif self.policy == "shared":
            thresholds = shared_threshold(conf, correct, cost, key)
        else:
            never = np.ones(len(dims) - 1)  # always the cap: the cap's own accuracy
            seeds = [pairwise_thresholds(conf, correct), never]
            thresholds = joint_thresholds(conf, correct, cost, key, seeds, self.grid)
        totals = cascade_totals(conf, correct, cost, thresholds)
        return thresholds, tuple(float(x) for x in key(*totals))

    def _check_fitted(self) -> None:
        if not hasattr(self, "thresholds_"):
            raise NotFittedError("this Cascade is not fitted yet; call fit(scores, labels) first")

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
        conf, correct = correctness(scores, labels, self.nesting, self.inputs)
        return score_exits(cascade_exits(conf, self.thresholds_), correct, self.dims_)

    def save(self, path: str | os.PathLike) -> None:
        """Write the nesting, parameters and thresholds as JSON, atomically.

        Raises:
            PathError: `path` is a folder, under a file, or not writable.
        """
        self._check_fitted()
        path = check_thresholds_path(path)
        params = {k: v for k, v in self.get_params().items() if k != "nesting"}
        record = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "nesting": self.nesting.to_dict(),
            "params": params,
            "dims": list(self.dims_),
            "thresholds": self.thresholds_.tolist(),
            "target_accuracy": self.target_accuracy_,
            "holdout": asdict(self.holdout_),
        }
        try:
            atomic_write_json(path, record)
        except (FileExistsError, NotADirectoryError):
            raise PathError(f"cannot write {path}: a parent path is a file") from None
        except PermissionError:
            raise PathError(f"cannot write {path}: permission denied") from None

    @classmethod
    def load(cls, path: str | os.PathLike, nesting: Nesting | None = None) -> Cascade:
        """Read a fitted cascade; with `nesting`, refuse a file fitted for another nesting.

        Raises:
            MissingPathError, PathError: no such file, or a folder.
            FormatError: not JSON, not a cascade file of this version, a key missing, or
                contents that disagree (thresholds vs dims, parameters out of range).
            ConfigError: the file was fitted for another nesting than `nesting`.
        """
        if nesting is not None and not isinstance(nesting, Nesting):
            raise ConfigError(f"nesting must be a Nesting or None, got {type(nesting).__name__}")
        path = Path(path)
        if path.is_dir():
            raise PathError(f"{path} is a folder; give a thresholds file saved by Cascade.save")
        if not path.exists():
            raise MissingPathError(
                f"{path} does not exist; fit and save one first (Cascade.save or "
                "`mrl cascade --save-thresholds`)"
            )
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FormatError(
                f"{path} is not a cascade thresholds file (invalid or truncated JSON: {e}); "
                "refit and save it"
            ) from None
        check_tag(d, FILE_FORMAT, FILE_VERSION, path, "cascade thresholds file")
        require_keys(d, _FILE_KEYS, path)
        try:
            cascade = cls._from_record(d)
        except (ConfigError, ValueError, TypeError, KeyError) as e:
            raise FormatError(
                f"{path} is damaged or was edited: {e}; refit and save the cascade again"
            ) from None
        if nesting is not None and cascade.nesting.dims != nesting.dims:
            raise ConfigError(
                f"thresholds file {path} was fitted for nesting {list(cascade.nesting.dims)}, not "
                f"{list(nesting.dims)}; refit the cascade on this model's scores"
            )
        return cascade

    @classmethod
    def _from_record(cls, d: dict) -> Cascade:
        """A fitted cascade from a thresholds file's contents, each field checked."""
        if not isinstance(d["params"], dict) or not isinstance(d["holdout"], dict):
            raise ValueError("params and holdout must be JSON objects")
        cascade = cls(Nesting.from_dict(d["nesting"]), **d["params"])
        cascade._check_params()
        dims = tuple(d["dims"])
        allowed = cascade._dims() if cascade.cap != CAP_SEARCH else dims
        if not dims or dims != allowed or dims != cascade.nesting.dims[: len(dims)]:
            raise ValueError(
                f"dims {list(dims)} are not the nesting's sizes up to the cap {list(allowed)}"
            )
        t = d["thresholds"]
        if not isinstance(t, list) or len(t) != len(dims) - 1:
            raise ValueError(f"{len(dims)} dims need {len(dims) - 1} thresholds, got {t!r}")
        for x in t:
            check_number("a threshold", x, 0.0, 1.0)
        if d["target_accuracy"] is not None:
            check_number("target_accuracy", d["target_accuracy"], 0.0, 1.0)
        missing = {f.name for f in fields(CascadeScores)} - set(d["holdout"])
        if missing:
            raise ValueError(f"holdout lacks {', '.join(sorted(missing))}")
        cascade.dims_ = dims
        cascade.thresholds_ = np.asarray(t, dtype=np.float64)
        cascade.target_accuracy_ = d["target_accuracy"]
        cascade.holdout_ = CascadeScores(
            **{**d["holdout"], "exit_fraction": tuple(d["holdout"]["exit_fraction"])}
        )
        return cascade
