"""Repeated random holdout/test splits for cascades (the paper averages 30 of them).

Thresholds are fitted on a random holdout and scored on the rest; repeating this over
seeded splits gives a mean and a spread for accuracy and both cost models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from mrl.adaptive.cascade import Cascade
from mrl.checks import check_int
from mrl.errors import ConfigError, InputError


def holdout_splits(
    n: int, n_splits: int = 30, holdout: float | int = 0.2, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded random (holdout, test) index splits of n examples.

    The official notebook holds out 10K of ImageNet's 50K validation images (0.2) per seed.

    Args:
        n: number of examples.
        n_splits: number of splits (the paper: 30).
        holdout: fraction in (0, 1) or count of examples used to fit the thresholds.
        seed: seed of the generator drawing every split.

    Returns:
        n_splits pairs of sorted int64 index arrays (holdout [H], test [n - H]).

    Raises:
        ConfigError: a parameter of the wrong type or range, or a holdout that leaves one
            side empty.
    """
    n = check_int("n (examples)", n, low=0)
    n_splits = check_int("n_splits", n_splits, low=1)
    seed = check_int("seed", seed, low=0)
    if isinstance(holdout, float):
        if not 0.0 < holdout < 1.0:
            raise ConfigError(
                f"a holdout fraction must be in (0, 1), got {holdout} (or give a count >= 1)"
            )
        size = round(holdout * n)
    else:
        size = check_int("holdout (a count of examples)", holdout, low=1)
    if size < 1:
        raise ConfigError(
            f"the holdout is empty: {holdout} of {n} examples is {size}; hold out more"
        )
    if size >= n:
        raise ConfigError(
            f"the holdout ({size}) leaves no test examples out of {n}; hold out fewer"
        )
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        splits.append((np.sort(perm[:size]), np.sort(perm[size:])))
    return splits


@dataclass(frozen=True)
class SplitResults:
    """Per-split test results of one cascade configuration.

    Attributes:
        accuracy, expected_dim, cumulative_dim, holdout_accuracy: [S], one per split.
        thresholds: [S, K - 1] the thresholds fitted on each split; a cascade capped below
            the largest size has 0 ("always stop") from its cap on.
        caps: [S] the largest size each split's cascade may use.
        reference_accuracy: [S] test accuracy of the reference classifier, if one was given.
    """

    accuracy: np.ndarray
    expected_dim: np.ndarray
    cumulative_dim: np.ndarray
    holdout_accuracy: np.ndarray
    thresholds: np.ndarray
    caps: np.ndarray
    reference_accuracy: np.ndarray | None = None

    def summary(self) -> dict[str, dict[str, float]]:
        """{metric: {"mean", "std"}} over splits (population std, as the notebook)."""
        names = ["accuracy", "expected_dim", "cumulative_dim", "holdout_accuracy"]
        if self.reference_accuracy is not None:
            names.append("reference_accuracy")
        out = {}
        for name in names:
            values = getattr(self, name)
            out[name] = {"mean": float(values.mean()), "std": float(values.std())}
        out["thresholds"] = {
            "mean": self.thresholds.mean(axis=0).tolist(),
            "std": self.thresholds.std(axis=0).tolist(),
        }
        caps, counts = np.unique(self.caps, return_counts=True)
        out["caps"] = {str(int(m)): int(c) for m, c in zip(caps, counts, strict=True)}
        return out


def evaluate_splits(
    cascade: Cascade,
    scores: np.ndarray,
    labels: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    reference: np.ndarray | None = None,
    match_reference: bool = False,
) -> SplitResults:
    """Fit a fresh copy of `cascade` on each split's holdout and score it on its test part.

    Args:
        cascade: an unfitted `Cascade` giving the parameters (cloned per split).
        scores: [G, N, C] per-size logits or probabilities of all N examples.
        labels: [N] int class ids.
        splits: (holdout, test) index pairs, e.g. from `holdout_splits`.
        reference: optional [N] bool, whether another classifier (e.g. FF-2048, run on the
            same examples in the same order) is right; its test accuracy is recorded.
        match_reference: fit a joint cascade to each holdout's reference accuracy (minus
            the cascade's tolerance) instead of its own target.

    Returns:
        `SplitResults` with one entry per split.
    """
    if not isinstance(cascade, Cascade):
        raise ConfigError(f"cascade must be an unfitted Cascade, got {type(cascade).__name__}")
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 3 or labels.ndim != 1 or scores.shape[1] != len(labels):
        raise InputError(
            f"scores [G, N, C] and labels [N] disagree: shapes {scores.shape} and {labels.shape}"
        )
    if reference is not None:
        reference = np.asarray(reference)
        if reference.dtype != bool or reference.shape != labels.shape:
            raise InputError(
                f"reference must be [N] = {labels.shape} bool like the labels, got "
                f"{reference.shape} {reference.dtype}"
            )
    if match_reference and reference is None:
        raise ConfigError("match_reference needs a reference: [N] bool correctness")
    for hold, test in splits:
        for part in (hold, test):
            part = np.asarray(part)
            if part.ndim != 1 or len(part) == 0 or not np.issubdtype(part.dtype, np.integer):
                raise InputError("each split must be two non-empty 1-D int index arrays")
            if part.min() < 0 or part.max() >= len(labels):
                raise InputError(
                    f"split index {part.min() if part.min() < 0 else part.max()} is outside "
                    f"0..{len(labels) - 1} (the examples)"
                )
    rows = {k: [] for k in ("accuracy", "expected_dim", "cumulative_dim", "holdout_accuracy")}
    thresholds, caps, ref_acc = [], [], []
    n_thresholds = len(cascade.nesting) - 1
    for hold, test in splits:
        model = clone(cascade)
        if match_reference:
            model.set_params(target=float(reference[hold].mean()), target_dim=None, budget=None)
        model.fit(scores[:, hold], labels[hold])
        result = model.evaluate(scores[:, test], labels[test])
        rows["accuracy"].append(result.accuracy)
        rows["expected_dim"].append(result.expected_dim)
        rows["cumulative_dim"].append(result.cumulative_dim)
        rows["holdout_accuracy"].append(model.holdout_.accuracy)
        t = np.zeros(n_thresholds)  # from the cap on: always stop
        t[: len(model.thresholds_)] = model.thresholds_
        thresholds.append(t)
        caps.append(model.dims_[-1])
        if reference is not None:
            ref_acc.append(reference[test].mean())
    return SplitResults(
        **{k: np.asarray(v) for k, v in rows.items()},
        thresholds=np.asarray(thresholds),
        caps=np.asarray(caps),
        reference_accuracy=np.asarray(ref_acc) if reference is not None else None,
    )
