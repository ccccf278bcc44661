"""Adaptive classification: confidence cascades over nested sizes, and early-exit inference."""

from mrl.adaptive.cascade import (
    COSTS,
    PAPER_GRID,
    POLICIES,
    Cascade,
    CascadeScores,
    cascade_exits,
    max_confidence,
    pairwise_thresholds,
)
from mrl.adaptive.inference import AdaptiveClassifier, EarlyExit
from mrl.adaptive.splits import SplitResults, evaluate_splits, holdout_splits

__all__ = [
    "COSTS",
    "PAPER_GRID",
    "POLICIES",
    "AdaptiveClassifier",
    "Cascade",
    "CascadeScores",
    "EarlyExit",
    "SplitResults",
    "cascade_exits",
    "evaluate_splits",
    "holdout_splits",
    "max_confidence",
    "pairwise_thresholds",
]
