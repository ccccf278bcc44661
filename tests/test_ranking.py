"""Judged text retrieval per size: `ranking_metrics` against a naive loop, qrels, `mrl eval`."""

import json
import math

import numpy as np
import pytest

from mrl.errors import FormatError, InputError
from mrl.evaluation.embed import load_embeddings
from mrl.evaluation.ranking import Qrels, ranking_metrics, read_qrels


def _naive(corpus, queries, relevant, m, k):
    """Per-query loops: cosine ranking on the m-prefix, then each metric by its definition."""
    c = corpus[:, :m] / np.linalg.norm(corpus[:, :m], axis=1, keepdims=True)
    rr, ndcg, ap, rec10, rec_k = [], [], [], [], []
    for q, rows in enumerate(relevant):
        x = queries[q, :m] / np.linalg.norm(queries[q, :m])
        order = sorted(range(len(c)), key=lambda j: -float(c[j] @ x))
        hits = [j in rows for j in order]
        first = next((i for i, h in enumerate(hits[:10]) if h), None)
        rr.append(0.0 if first is None else 1 / (first + 1))
        if not rows:
            continue
        dcg = sum(1 / math.log2(i + 2) for i, h in enumerate(hits[:10]) if h)
        ndcg.append(dcg / sum(1 / math.log2(i + 2) for i in range(min(len(rows), 10))))
        precisions = [sum(hits[: i + 1]) / (i + 1) for i in range(10) if hits[i]]
        ap.append(sum(precisions) / min(len(rows), 10))
        rec10.append(sum(hits[:10]) / len(rows))
        rec_k.append(sum(hits[:k]) / len(rows))
    defined = [i for i, rows in enumerate(relevant) if rows]
    return {
        "mrr_at_10": float(np.mean([rr[i] for i in defined])),
        "ndcg_at_10": float(np.mean(ndcg)),
        "map_at_10": float(np.mean(ap)),
        "recall_at_10": float(np.mean(rec10)),
        "recall_at_100": float(np.mean(rec_k)),
    }


@pytest.mark.parametrize("several", [False, True])
def test_ranking_metrics_match_a_naive_loop_at_every_size(several):
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((60, 16)).astype(np.float32)
    queries = (corpus[:25] + 0.8 * rng.standard_normal((25, 16))).astype(np.float32)
    if several:  # 0-4 relevant rows each, some queries with none
        draws = (rng.integers(0, 60, rng.integers(0, 5)) for _ in range(25))
        relevant = [sorted(set(d.tolist())) for d in draws]
        relevant[0] = [0]
        qrels = Qrels(tuple(np.array(r, dtype=np.int64) for r in relevant))
    else:
        relevant = [[i] for i in range(25)]
        qrels = Qrels.paired(25)
    got = ranking_metrics(corpus, queries, qrels, dims=(4, 8, 16))
    assert set(got) == {4, 8, 16}
    for m in (4, 8, 16):
        want = _naive(corpus, queries, relevant, m, k=60)  # k=100 is capped at the corpus size
        assert got[m] == pytest.approx(want, abs=1e-9)
    if not several:  # a longer prefix finds a query's own noisy copy more often
        assert got[16]["mrr_at_10"] > got[4]["mrr_at_10"]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_read_qrels_accepts_any_order_and_leaves_unjudged_queries_empty(tmp_path):
    path = _write(
        tmp_path / "q.jsonl",
        ['{"query": 2, "relevant": [5, 1, 5]}', "", '{"query": 0, "relevant": [3]}'],
    )
    qrels = read_qrels(path, n_queries=4)
    assert [r.tolist() for r in qrels.relevant] == [[3], [], [1, 5], []]


@pytest.mark.parametrize(
    ("lines", "error", "fragment"),
    [
        (['{"query": 0, "relevant": [1]}', "{oops"], FormatError, "q.jsonl:2: not JSON"),
        (['{"query": 0}'], InputError, "q.jsonl:1: each line needs"),
        (['{"query": -1, "relevant": [1]}'], InputError, "row numbers >= 0"),
        (['{"query": 0, "relevant": ["a"]}'], InputError, "row numbers >= 0"),
        (['{"query": 0, "relevant": [1]}', '{"query": 0, "relevant": [2]}'], InputError, "twice"),
        ([""], InputError, "holds no judgements"),
    ],
)
def test_bad_qrels_lines_are_named(tmp_path, lines, error, fragment):
    with pytest.raises(error, match=fragment):
        read_qrels(_write(tmp_path / "q.jsonl", lines))


def test_qrels_that_do_not_fit_the_embeddings_are_named():
    x = np.ones((5, 4), dtype=np.float32)
    with pytest.raises(InputError, match="judge 3 queries but there are 5"):
        ranking_metrics(x, x, Qrels.paired(3), dims=(4,))
    qrels = Qrels((np.array([7]),) * 5)
    with pytest.raises(InputError, match="query 0 names corpus row 7.*rows 0..4"):
        ranking_metrics(x, x, qrels, dims=(4,))


def test_pairs_file_through_mrl_embed_and_mrl_eval_with_a_report(tmp_path, tiny_bert_path, cli):
    pairs = [{"query": f"tool {i}", "positive": f"the {i} tool does {i} things"} for i in range(20)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    for side in ("query", "positive"):
        r = cli(
            "embed", tiny_bert_path, "--texts", tmp_path / "pairs.jsonl", "--pair-side", side,
            "--nesting", "8,16,32", "--out", tmp_path / side,
        )  # fmt: skip
        assert r.code == 0, r.err
    assert load_embeddings(tmp_path / "query").embeddings.shape == (20, 32)
    r = cli(
        "eval", "--queries", tmp_path / "query", "--corpus", tmp_path / "positive",
        "--out", tmp_path / "r.json", "--report", tmp_path / "report",
    )  # fmt: skip
    assert r.code == 0, r.err
    sizes = json.loads((tmp_path / "r.json").read_text())["sizes"]
    assert set(sizes) == {"8", "16", "32"} and 0 <= sizes["32"]["mrr_at_10"] <= 1
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## MRR@10 (%)" in report and "Top-1" not in report
    assert (tmp_path / "report" / "mrr10_vs_size.png").stat().st_size > 1000
    assert not (tmp_path / "report" / "top1_vs_size.png").exists()


def test_mrl_eval_modes_are_named_errors(tmp_path, cli):
    cli("eval", "--train", "a", "--queries", "b").assert_named_error("not both")
    cli("eval", "--queries", "b").assert_named_error("--queries and --corpus")
    cli("eval", "--train", "a", "--test", "b", "--qrels", "q").assert_named_error("--train and")
