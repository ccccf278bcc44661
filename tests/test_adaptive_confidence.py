"""`mrl.adaptive.confidence`: max softmax probability against a plain reference."""

import numpy as np
import pytest

from mrl.adaptive import correctness, max_confidence
from mrl.errors import InputError
from mrl.nesting import Nesting

NESTING = Nesting((2, 4, 8))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_confidence_is_the_max_softmax_probability():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4, size=(3, 40, 5)).astype(np.float32)
    conf, pred = max_confidence(logits, NESTING)
    ref = softmax(logits.astype(np.float64))
    np.testing.assert_allclose(conf, ref.max(axis=-1), rtol=1e-12)
    np.testing.assert_array_equal(pred, logits.argmax(axis=-1))
    conf_p, pred_p = max_confidence(ref, NESTING, inputs="probabilities")
    np.testing.assert_allclose(conf_p, conf, rtol=1e-12)
    np.testing.assert_array_equal(pred_p, pred)


def test_correctness_compares_each_size_with_the_labels():
    logits = np.zeros((3, 3, 4))
    logits[0, [0, 1, 2], [1, 1, 1]] = 3  # size 2 always says 1
    logits[1, [0, 1, 2], [0, 1, 3]] = 3
    logits[2, [0, 1, 2], [0, 1, 2]] = 3
    _, correct = correctness(logits, np.array([0, 1, 2]), NESTING)
    np.testing.assert_array_equal(correct, [[0, 1, 0], [1, 1, 0], [1, 1, 1]])


def test_real_logits_that_look_like_probabilities_in_some_sizes_are_accepted():
    """The probabilities-as-logits refusal needs every row of every size to sum to 1."""
    rng = np.random.default_rng(1)
    probs = softmax(rng.normal(size=(3, 20, 2)))
    mixed = probs.copy()
    mixed[2] = rng.normal(size=(20, 2))  # one size of real logits
    conf, _ = max_confidence(mixed, NESTING)
    np.testing.assert_allclose(conf[0], softmax(probs[0]).max(axis=-1))
    one_row = probs.copy()
    one_row[1, 7] = [2.0, -1.0]  # a single row that is not a probability
    max_confidence(one_row, NESTING)
    with pytest.raises(InputError, match="pass inputs='probabilities'"):
        max_confidence(probs, NESTING)


def test_two_class_logits_are_not_mistaken_for_probabilities():
    rng = np.random.default_rng(2)
    for _ in range(20):
        max_confidence(rng.normal(size=(3, 50, 2)), NESTING)
