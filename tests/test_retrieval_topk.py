"""top_by_score_then_id against the plain reference, a full lexsort by (-score, id)."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mrl.retrieval.topk import top_by_score_then_id, top_of_one_row


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


@pytest.mark.parametrize("m", [25, 256, 257, 1000])
def test_one_row_orders_short_rows_whole_and_long_rows_after_a_partition(m):
    """`top_of_one_row` sorts rows of up to 256 whole and partitions longer ones first; on
    either side of that length, with ties straddling the cut, it is the reference order."""
    rng = np.random.default_rng(m)
    for _ in range(20):
        scores = rng.integers(0, 6, m).astype(np.float32)  # many ties at every cut
        ids = rng.permutation(10 * m)[:m]
        for n in (1, 10, m // 2, m):
            assert_array_equal(top_of_one_row(scores, ids, n), np.lexsort((ids, -scores))[:n])
