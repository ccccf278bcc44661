"""benchmarks/retrieval.py run once, tiny: its table, JSON and PNG, thread counts restored."""

import json

import faiss
import numpy as np
import pytest
import torch
from bench_helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("retrieval")


def test_tiny_run_writes_sane_outputs_and_restores_threads(bench, tmp_path, capsys):
    threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    out = tmp_path / "out"
    argv = (
        f"--n 2000 --dim 32 --num-classes 10 --n-queries 30 --shortlist-dim 8 --dtype float16 "
        f"--fig8-queries 10 --hnsw-full-rows 500 --ivf-lists 16 --tune-queries 20 "
        f"--tune-target 0.9 --threads 1 --bandwidth-mib 1 --repeats 1 "
        f"--data-dir {tmp_path / 'data'} --out {out}"
    ).split()
    assert bench.main(argv) == 0
    assert (faiss.omp_get_max_threads(), torch.get_num_threads()) == threads
    res = json.loads((out / "retrieval_bench.json").read_text())
    assert (res["n"], res["dim"], res["queries"], res["threads"]) == (2000, 32, 30, 1)
    assert res["memory_bandwidth"]["array_mib"] == 1
    assert res["memory_bandwidth"]["read_bytes_per_s"] > 1e8  # a real measurement, not 0
    flat = res["table"][0]
    assert flat["method"] == "faiss IndexFlatIP @ 32 (exact)" and flat["map_ratio"] == 1.0
    ours = {r["method"]: r for r in res["table"] if r["method"].startswith("ours")}
    # the rerank at full D over a 200-shortlist of 2000 rows equals exact search here
    full = ours["ours rerank:8:32:200 [HNSW32]"]
    assert full["mflops_per_query"] > 32 * 200 / 1e6 and full["recall_vs_exact"] >= 0.95
    tuned = [r for r in res["table"] if r["method"].endswith(", tuned]")]
    assert len(tuned) == 2 and res["tuning"]["IVF16"]["efforts"] == [8, 16]
    assert res["hnsw_build"]["rows"] == 500 and res["hnsw_build"]["extrapolated_to"] == 2000
    f8 = res["figure8"]
    assert [p["dim"] for p in f8["single_shot"]] == [8, 16, 32]
    assert [p["mflops"] for p in f8["single_shot"]] == [8 * 2000 / 1e6, 16 * 2000 / 1e6, 0.064]
    assert {(g["shortlist_dim"], g["rerank_dim"]) for g in f8["grid"]} == {
        (8, 16),
        (8, 32),
        (16, 32),
    }
    # exact single shot at full D on the first 10 queries: the exact search's ranking
    assert f8["single_shot"][-1]["map"] == pytest.approx(
        bench.labelled_map_at_k(*_exact_top(bench, tmp_path), 10)
    )
    png = (out / "figure8.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    md = (out / "retrieval_bench.md").read_text()
    assert "| faiss IndexFlatIP @ 32 (exact) |" in md and "| D_s=8, D_r=32 |" in md
    assert md in capsys.readouterr().out
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def _exact_top(bench, tmp_path):
    """Exact full-dim top-10 ids of the first 10 generated queries, with their labels."""
    spec = bench.GeneratedNestedSpec(dim=32, num_classes=10, seed=0)
    x = np.load(next((tmp_path / "data").glob("*-X.npy"))).astype(np.float32)
    y = np.load(next((tmp_path / "data").glob("*-y.npy")))
    q, yq = bench.generated_nested_embeddings(10, spec, "queries")
    index = bench.MatryoshkaIndex(shortlist_dim=8).build(x)
    return index.search(q, 10, bench.SingleShot(32)).ids, yq, y


def test_given_embeddings_hold_out_the_last_rows_as_queries(bench, tmp_path):
    folder = tmp_path / "embed"
    folder.mkdir()
    np.save(folder / "embeddings.npy", np.ones((1200, 16), np.float32))
    np.save(folder / "labels.npy", np.arange(1200) % 7)
    args = bench.parser().parse_args(
        ["--database", str(folder), "--n-queries", "100", "--out", "x"]
    )
    (database, db_labels, queries, query_labels), tuning, title = bench._given(args)
    assert (len(database), len(db_labels), len(queries), len(query_labels)) == (
        1100,
        1100,
        100,
        100,
    )
    assert tuning is None and "real embeddings" in title and "D=16" in title
