"""benchmarks/one_query_overhead.py run once, tiny: both collections and plans, the files."""

import json
import subprocess
import sys

import numpy as np
import pytest
from bench_helpers import BENCHMARKS, load_benchmark

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("one_query_overhead")


def test_tiny_run_times_both_plans_with_and_without_duplicates(bench, tmp_path):
    x, _ = generated_nested_embeddings(1500, GeneratedNestedSpec(dim=32, num_classes=10, seed=2))
    x = np.concatenate([x, x[:500]])  # a third of the rows twice: their scores tie
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    argv = f"--database {tmp_path / 'x.npy'} --out {out} --ours hnsw_sq8@16/m8/efc40 "
    assert bench.main((argv + "--queries 40 --repeats 1 --threads 1 --effort 32").split()) == 0
    res = json.loads((out / "one_query_overhead.json").read_text())
    rows = res["rows"]
    assert [(r["collection"], r["plan"]) for r in rows] == [
        ("as stored", "single:16:ann"),
        ("as stored", "rerank:16:32:20"),
        ("duplicates dropped", "single:16:ann"),
        ("duplicates dropped", "rerank:16:32:20"),
    ]
    assert rows[0]["rows"] == 2000 - 40 and rows[2]["rows"] < rows[0]["rows"]
    for r in rows:
        assert r["bare_us"] > 0 and r["ours_us"] > 0
        assert r["ratio"] == pytest.approx(r["ours_us"] / r["bare_us"])
    assert rows[0]["tied_share"] > 0.2  # the copies tie
    assert rows[2]["tied_share"] < rows[0]["tied_share"]
    assert rows[3]["same_ids_share"] >= 0.9  # the same faiss call: the same neighbours
    assert "| duplicates dropped |" in (out / "one_query_overhead.md").read_text()


def test_a_fused_spec_is_refused_in_one_line(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((50, 8), np.float32))
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "one_query_overhead.py"), "--database",
         str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"), "--ours", "hnsw@8+fused"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "one_query_overhead.py: error: --ours 'hnsw@8+fused': leave out +fused "
        "(the rerank plan turns it on)"
    ]
