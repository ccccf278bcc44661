"""Per-size scores in, confidences out: the one place cascade inputs are validated.

Every cascade works on per-size scores [G, N, C] computed once (saved logits or
probabilities). `max_confidence` checks them (shape against the nesting, NaN/inf by row,
probabilities that are not, logits that are probabilities) and returns each size's max
softmax probability and predicted class; `correctness` adds the labels.
"""

from __future__ import annotations

import numpy as np

from mrl.checks import check_finite_rows, check_labels
from mrl.errors import ConfigError, InputError
from mrl.nesting import Nesting

INPUTS = ("logits", "probabilities")
PROBABILITY_ATOL = 1e-3  # float16/float32 softmax rows sum to 1 only this closely


def _is_probability(s: np.ndarray) -> tuple[bool, np.ndarray]:
    """Whether every row of s [N, C] lies in [0, 1] and sums to 1, and the row sums [N]."""
    sums = s.sum(axis=1)
    ok = (
        s.min() >= 0
        and s.max() <= 1 + PROBABILITY_ATOL
        and np.abs(sums - 1).max() <= PROBABILITY_ATOL
    )
    return bool(ok), sums


def max_confidence(
    scores: np.ndarray, nesting: Nesting, inputs: str = "logits"
) -> tuple[np.ndarray, np.ndarray]:
    """Max softmax probability and predicted class of every size, validating the scores.

    Logits are refused when every row of every size already lies in [0, 1] and sums to 1:
    softmax of probabilities squeezes all confidences towards 1/C, and the thresholds fitted
    on them would be silently wrong. Real logits pass unless all N x G rows happen to look
    like probabilities, which only a handful of rows with 2 classes can do by chance.

    Args:
        scores: [G, N, C] per-size logits or probabilities, one slice per size of `nesting`,
            C >= 2 classes.
        nesting: the sizes the G slices belong to.
        inputs: "logits" (the softmax is taken here, in float64) or "probabilities"
            (rows in [0, 1] that sum to 1 within 1e-3).

    Returns:
        conf [G, N] float64 in [0, 1] and pred [G, N] int64.

    Raises:
        ConfigError: `inputs` is not one of `INPUTS`.
        InputError: wrong shape, no examples, fewer than 2 classes, NaN/inf (first bad row
            named), probabilities that are not, or logits that are probabilities.
    """
    if inputs not in INPUTS:
        raise ConfigError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    scores = np.asarray(scores)
    if scores.ndim != 3:
        raise InputError(f"expected per-size scores of shape [G, N, C], got shape {scores.shape}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise InputError(f"scores must be a float array, got dtype {scores.dtype}")
    g, n, c = scores.shape
    if g != len(nesting):
        raise InputError(
            f"scores have {g} sizes but the nesting {list(nesting.dims)} has {len(nesting)}; "
            "give one [N, C] slice per nested size"
        )
    if n == 0:
        raise InputError("scores hold no examples (N = 0); give at least one example")
    if c < 2:
        raise InputError(f"scores have {c} class(es); a confidence cascade needs C >= 2 classes")
    conf = np.empty((g, n))
    pred = np.empty((g, n), dtype=np.int64)
    rows = np.arange(n)
    all_probability = True  # for inputs="logits": does every size look like probabilities?
    for i, m in enumerate(nesting):
        s = scores[i].astype(np.float64)  # one size at a time bounds the float64 copy
        check_finite_rows(s, what=f"scores for size {m}")
        pred[i] = s.argmax(axis=1)
        top = s[rows, pred[i]]
        if inputs == "probabilities":
            ok, sums = _is_probability(s)
            if not ok:
                raise InputError(
                    f"probabilities for size {m} must be >= 0 and sum to 1 over the classes; "
                    f"row sums range {sums.min():.4g}..{sums.max():.4g}, min value "
                    f"{s.min():.4g} (pass inputs='logits' for raw scores)"
                )
            conf[i] = np.minimum(top, 1.0)
        else:
            all_probability = all_probability and _is_probability(s)[0]
            conf[i] = 1.0 / np.exp(s - top[:, None]).sum(axis=1)  # softmax at the argmax
    if inputs == "logits" and all_probability:
        raise InputError(
            "scores given as logits are already probabilities (every row lies in [0, 1] and "
            "sums to 1); pass inputs='probabilities' (`mrl cascade --inputs probabilities`) "
            "or the raw logits"
        )
    return conf, pred


def correctness(
    scores: np.ndarray, labels: np.ndarray, nesting: Nesting, inputs: str = "logits"
) -> tuple[np.ndarray, np.ndarray]:
    """conf [G, N] and correct [G, N] bool of every size, scores and labels validated.

    Args:
        scores: [G, N, C] as in `max_confidence`.
        labels: [N] int class ids in 0..C-1.
        nesting, inputs: as in `max_confidence`.

    Raises:
        InputError: bad scores (see `max_confidence`), labels of another length, not
            integers, negative or >= C.
    """
    conf, pred = max_confidence(scores, nesting, inputs)
    n, c = conf.shape[1], np.shape(scores)[2]
    labels = check_labels(labels, "labels", num_classes=c)
    if len(labels) != n:
        raise InputError(
            f"labels have {len(labels)} entries but the scores hold {n} examples; give one "
            "label per example, in the same order"
        )
    return conf, pred == labels[None, :]
