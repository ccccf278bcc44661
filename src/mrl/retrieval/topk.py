"""Top-n selection with a deterministic order: score descending, then id ascending.

Every stage of a search (shortlist, each rerank step, the merge of brute-force blocks) keeps
its best candidates through `top_by_score_then_id`, so equal scores always come back in the
same order whichever stage, chunk or batch produced them.
"""

from __future__ import annotations

import numpy as np

# Rows up to this length are sorted whole by `top_of_one_row` (fewer calls than a partition
# first; a lexsort of 256 floats costs about what the partition and gathers would).
_WHOLE_ROW_SORT = 256


def top_by_score_then_id(scores: np.ndarray, ids, n: int) -> np.ndarray:
    """Columns of the best `n` entries per row, ordered by score desc, then id asc.

    Vectorised over rows: a partition keeps everything >= the n-th score (so boundary ties are
    all seen), a stable argsort orders it, and only rows with equal scores are re-sorted by
    `np.lexsort` (rare with real-valued data, exact when they occur).

    Args:
        scores: [Q, m] float32.
        ids: [Q, m] int64 tie-breakers, or [m] shared by every row, or a function returning
            either: it is called only when some scores tie, so callers skip gathering ids
            in the usual case.
        n: how many to keep, <= m.

    Returns:
        [Q, n] int64 column indices into `scores`.
    """
    q, m = scores.shape
    if q == 1:  # one query per call (the service's case): the lean path, same order
        one = ids() if callable(ids) else ids
        return top_of_one_row(scores[0], np.broadcast_to(one, (1, m))[0], n)[None]

    def tie_ids() -> np.ndarray:  # a view: a shared [m] row is never copied Q times
        return np.broadcast_to(ids() if callable(ids) else ids, (q, m))

    cols = np.broadcast_to(np.arange(m), (q, m))
    if m > n:
        nth = np.partition(scores, m - n, axis=1)[:, m - n]  # (Q,) n-th largest
        keep = scores >= nth[:, None]
        counts = keep.sum(axis=1)
        sel = np.empty((q, n), dtype=np.int64)
        plain = counts == n
        sel[plain] = np.nonzero(keep[plain])[1].reshape(-1, n)
        if not plain.all():  # ties straddle the cut: order the whole row by (score, id)
            rows = ~plain
            sel[rows] = np.lexsort((tie_ids()[rows], -scores[rows]), axis=1)[:, :n]
        cols = sel
    s = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-s, axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1)
    s = np.take_along_axis(s, order, axis=1)
    tied = (s[:, 1:] == s[:, :-1]).any(axis=1)
    if tied.any():
        i = np.take_along_axis(tie_ids()[tied], cols[tied], axis=1)
        fix = np.lexsort((i, -s[tied]), axis=1)
        cols[tied] = np.take_along_axis(cols[tied], fix, axis=1)
    return cols


def top_of_one_row(scores: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """`top_by_score_then_id` of one [m] row: its best `n` columns by (score desc, id asc).

    A row of a rerank (tens to a few hundred candidates) is ordered whole by one lexsort: two
    NumPy calls, where one query's cost is mostly the count of calls. A longer row first keeps
    everything >= the n-th largest score (boundary ties included) and orders only those. Both
    give the first `n` columns of the same total order, so the same columns.
    """
    m = len(scores)
    if m <= _WHOLE_ROW_SORT:
        return np.lexsort((ids, -scores))[:n]
    cand = np.flatnonzero(scores >= np.partition(scores, m - n)[m - n])
    return cand[np.lexsort((ids[cand], -scores[cand]))[:n]]
