"""benchmarks/graph_build.py run once, tiny: a row per (graph, width), the files, bad specs."""

import json

import numpy as np
import pytest
from bench_helpers import load_benchmark

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.errors import ConfigError


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("graph_build")


def test_tiny_run_writes_a_row_per_graph_and_width(bench, tmp_path):
    x, _ = generated_nested_embeddings(2500, GeneratedNestedSpec(dim=32, num_classes=10, seed=1))
    np.save(tmp_path / "x.npy", x)  # 1,500 rows held out as the frontier's queries
    out = tmp_path / "out"
    argv = f"--database {tmp_path / 'x.npy'} --out {out} --widths 8 16 64 --graphs m8/efc20 "
    assert bench.main((argv + "--queries 40 --threads 1 --repeats 1").split()) == 0
    res = json.loads((out / "graph_build.json").read_text())
    assert (res["rows_n"], res["dim"], res["queries"]) == (1000, 32, 40)
    rows = res["rows"]
    assert [(r["graph"], r["width"]) for r in rows] == [
        ("HNSWFlat m32/efc40", 32),
        ("m8/efc20", 8),
        ("m8/efc20", 16),
        ("m8/efc20", 32),  # 64 > D is dropped, D itself always kept
    ]
    assert rows[0]["build_speedup"] == 1.0
    for row in rows:
        assert len(row["points"]) == len(bench.EF_SWEEP)
        assert row["build_speedup"] == pytest.approx(rows[0]["build_s"] / row["build_s"])
        assert all(0 <= p["recall"] <= 1 for p in row["points"])
    assert max(p["recall"] for p in rows[-1]["points"]) >= 0.9  # a real graph, searched at D
    text = (out / "graph_build.md").read_text()
    assert "| m8/efc20 | 8 |" in text and "| HNSWFlat m32/efc40 | 32 |" in text
    assert (out / "graph_build.png").stat().st_size > 10_000


@pytest.mark.parametrize("spec", ["m16", "m16/efcx", "x16/efc40", "m1/efc40"])
def test_bad_graph_specs_are_refused_by_name(bench, spec):
    with pytest.raises(ConfigError, match="M must be|is not mM/efcE"):
        bench.parse_graph(spec)
