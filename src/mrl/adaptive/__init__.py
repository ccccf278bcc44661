"""Adaptive classification: confidence cascades over nested sizes, and early-exit inference.

Modules: `confidence` (per-size scores validated, max softmax probability), `thresholds`
(the exit rule and the pairwise / joint / shared threshold solvers), `cascade` (the
scikit-learn-style `Cascade` estimator and its thresholds file), `splits` (repeated
holdout/test splits), `report` (`mrl cascade`'s report) and `inference` (early exit with a
model).
"""

from mrl.adaptive.cascade import CAP_SEARCH, POLICIES, Cascade
from mrl.adaptive.confidence import INPUTS, correctness, max_confidence
from mrl.adaptive.inference import AdaptiveClassifier, EarlyExit
from mrl.adaptive.splits import SplitResults, evaluate_splits, holdout_splits
from mrl.adaptive.thresholds import (
    COSTS,
    PAPER_GRID,
    CascadeScores,
    budget_key,
    cascade_exits,
    cascade_totals,
    joint_thresholds,
    pairwise_thresholds,
    shared_threshold,
    size_costs,
    target_key,
)

__all__ = [
    "CAP_SEARCH",
    "COSTS",
    "INPUTS",
    "PAPER_GRID",
    "POLICIES",
    "AdaptiveClassifier",
    "Cascade",
    "CascadeScores",
    "EarlyExit",
    "SplitResults",
    "budget_key",
    "cascade_exits",
    "cascade_totals",
    "correctness",
    "evaluate_splits",
    "holdout_splits",
    "joint_thresholds",
    "max_confidence",
    "pairwise_thresholds",
    "shared_threshold",
    "size_costs",
    "target_key",
]
