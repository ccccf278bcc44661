"""benchmarks/fused_structures.py run tiny: raw faiss points for HNSW and the fused structures."""

import json

import faiss
import numpy as np
import pytest
from bench_helpers import load_benchmark

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.errors import ConfigError


def test_tiny_run_times_hnsw_and_the_fused_structures(tmp_path):
    bench = load_benchmark("fused_structures")
    x, _ = generated_nested_embeddings(1500, GeneratedNestedSpec(dim=32, num_classes=10))
    np.save(tmp_path / "x.npy", x)
    threads = faiss.omp_get_max_threads()
    argv = f"--database {tmp_path / 'x.npy'} --candidates hnsw@8 --queries 20 --repeats 1"
    assert bench.main([*argv.split(), "--out", str(tmp_path / "o")]) == 0
    assert faiss.omp_get_max_threads() == threads  # one thread inside, restored after
    res = json.loads((tmp_path / "o" / "structures.json").read_text())
    kinds = {p["structure"] for p in res["points"]}
    assert kinds == {"faiss HNSWFlat full D", "fused hnsw@8"}
    fused = [p for p in res["points"] if p["structure"] == "fused hnsw@8"]
    assert len(fused) == len(bench.SHORTLISTS) * len(bench.EFFORTS)
    assert all(0 < p["us"] and 0 <= p["recall"] <= 1 for p in res["points"])
    assert max(p["recall"] for p in fused) > 0.9  # 100 candidates re-scored at full D
    with pytest.raises(ConfigError, match="hnsw@D_s or hnsw_sq8@D_s"):
        bench.main([*argv.split(), "--candidates", "ivf@8", "--out", str(tmp_path / "p")])
