"""Ranked retrieval with known relevant items (text search), at every nested size.

Label-based retrieval (`knn_metrics`) counts a neighbour as relevant when it shares the
query's class. Text search has explicit judgements instead: query q's relevant items are
given corpus rows (one, for a (query, positive) pair; several, from a qrels file). At every
size m this module searches the corpus exactly on L2-normalised m-prefixes (`knn_search`)
and scores the ranking with the pure metric functions: MRR@10, nDCG@10, recall@10/100 and
AP@10, the figures MTEB and BEIR report.

Relevance comes as `Qrels`: `Qrels.paired(n)` (query i <-> corpus row i, the layout of a
pairs file embedded side by side) or `read_qrels(path)` (JSONL, one query per line).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl.checks import check_int
from mrl.errors import FormatError, InputError
from mrl.evaluation import metrics
from mrl.evaluation.knn import knn_search

RANKING_KS = (10, 100)  # recall@k cut-offs; MRR, nDCG and AP are read at the first one


@dataclass(frozen=True)
class Qrels:
    """Relevant corpus rows per query: `relevant[q]` is a sorted int64 array (maybe empty)."""

    relevant: tuple[np.ndarray, ...]

    @classmethod
    def paired(cls, n_queries: int) -> Qrels:
        """Query i's one relevant item is corpus row i (queries and positives side by side)."""
        check_int("number of queries", n_queries)
        return cls(tuple(np.array([i], dtype=np.int64) for i in range(n_queries)))

    def __len__(self) -> int:
        return len(self.relevant)

    def check(self, n_queries: int, n_corpus: int, where: str = "qrels") -> None:
        """Raise `InputError` unless there is one entry per query and every row is in the corpus."""
        if len(self) != n_queries:
            raise InputError(
                f"{where} judge {len(self)} queries but there are {n_queries} query "
                "embeddings; give one judgement per query row"
            )
        for q, rows in enumerate(self.relevant):
            if len(rows) and (rows.min() < 0 or rows.max() >= n_corpus):
                bad = int(rows[(rows < 0) | (rows >= n_corpus)][0])
                raise InputError(
                    f"{where}: query {q} names corpus row {bad}, but the corpus has rows "
                    f"0..{n_corpus - 1}; judgements are corpus row numbers"
                )

    def relevance(self, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([Q, K] bool hits of the found rows, [Q] relevant counts) for the metric functions."""
        rel = np.zeros(found.shape, dtype=bool)
        for q, rows in enumerate(self.relevant):
            if len(rows):
                rel[q] = np.isin(found[q], rows)
        counts = np.array([len(rows) for rows in self.relevant], dtype=np.int64)
        return rel, counts


def read_qrels(path: str | os.PathLike, n_queries: int | None = None) -> Qrels:
    """Judgements from JSONL lines `{"query": q, "relevant": [row, ...]}` (rows of the corpus).

    Queries may come in any order; a query without a line has no relevant item (it is left
    out of recall, nDCG and AP, and scores 0 in MRR). `n_queries` (default: the largest query
    number + 1) fixes how many queries there are.

    Raises:
        MissingPathError / PathError: no such file, or a folder (from `open`).
        FormatError: a line that is not a JSON object (named by line).
        InputError: a missing or non-integer field, a query judged twice (named by line).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give the qrels JSONL file")
    by_query: dict[int, np.ndarray] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{where}: not JSON ({e.msg}); one object a line") from None
            if not isinstance(record, dict) or not {"query", "relevant"} <= record.keys():
                raise InputError(
                    f'{where}: each line needs {{"query": <row>, "relevant": [<row>, ...]}}'
                )
            q, rows = record["query"], record["relevant"]
            if not _is_row(q) or not isinstance(rows, list) or not all(map(_is_row, rows)):
                raise InputError(f"{where}: query and relevant must be row numbers >= 0")
            if q in by_query:
                raise InputError(f"{where}: query {q} is judged twice; merge its lines")
            by_query[q] = np.unique(np.array(rows, dtype=np.int64))
    if not by_query:
        raise InputError(f"{path} holds no judgements; expected JSONL query/relevant lines")
    n = max(by_query) + 1 if n_queries is None else n_queries
    empty = np.empty(0, dtype=np.int64)
    return Qrels(tuple(by_query.get(q, empty) for q in range(n)))


def _is_row(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def ranking_metrics(
    corpus: np.ndarray,
    queries: np.ndarray,
    qrels: Qrels,
    dims: Sequence[int],
    ks: Sequence[int] = RANKING_KS,
    chunk_size: int = 65536,
) -> dict[int, dict[str, float]]:
    """MRR@k0, nDCG@k0, AP@k0 and recall@k for every k, at every size, by exact search.

    k0 is the smallest k; every k is capped at the corpus size (the key keeps the asked k).

    Args:
        corpus: [N, d] embeddings (a memmap is fine: searched in chunks).
        queries: [Q, d] embeddings of the same model.
        qrels: one judgement per query (`Qrels.paired`, `read_qrels`).
        dims: the sizes m to evaluate, each 1..d (each prefix L2-normalised).

    Returns:
        {m: {"mrr_at_10", "ndcg_at_10", "map_at_10", "recall_at_10", "recall_at_100"}}.
    """
    if not len(dims) or not len(ks):
        raise InputError("give at least one size and one k")
    qrels.check(len(queries), len(corpus))
    ks = sorted({check_int("k", k) for k in ks})
    depth = min(ks[-1], len(corpus))
    k0 = min(ks[0], depth)
    out: dict[int, dict[str, float]] = {}
    for m in dims:
        _, found = knn_search(corpus, queries, depth, dim=m, chunk_size=chunk_size)
        rel, counts = qrels.relevance(found)
        row = {
            f"mrr_at_{ks[0]}": metrics.mrr_at_k(rel, k0, counts),
            f"ndcg_at_{ks[0]}": metrics.ndcg_at_k(rel, counts, k0),
            f"map_at_{ks[0]}": metrics.map_at_k(rel, counts, k0),
        }
        for k in ks:
            row[f"recall_at_{k}"] = metrics.recall_at_k(rel, counts, min(k, depth))
        out[int(m)] = row
    return out
