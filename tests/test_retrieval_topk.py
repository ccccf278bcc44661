"""top_by_score_then_id against the plain reference, a full lexsort by (-score, id)."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mrl.retrieval.topk import top_by_score_then_id


@pytest.mark.parametrize("shared_ids", [False, True])
def test_top_by_score_then_id_matches_lexsort(shared_ids):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, (40, 30)).astype(np.float32)  # many ties
    ids = (
        rng.permutation(1000)[:30]
        if shared_ids
        else np.stack([rng.permutation(1000)[:30] for _ in range(40)])
    )
    full = np.broadcast_to(ids, scores.shape)
    for n in (1, 5, 30):
        ref = np.lexsort((full, -scores), axis=1)[:, :n]
        assert_array_equal(top_by_score_then_id(scores, ids, n), ref)
        assert_array_equal(top_by_score_then_id(scores, lambda: ids, n), ref)  # lazy ids


def test_one_row_lean_path_matches_lexsort():
    """A [1, m] call takes the lean one-row path; it must order exactly like the batch path."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        scores = rng.integers(0, 4, (1, 25)).astype(np.float32)
        scores[0, rng.integers(0, 25, 3)] = -np.inf
        ids = rng.permutation(100)[:25]
        for n in (1, 7, 25):
            ref = np.lexsort((ids, -scores[0]))[:n]
            assert_array_equal(top_by_score_then_id(scores, ids, n)[0], ref)
            assert_array_equal(top_by_score_then_id(scores, ids[None], n)[0], ref)
