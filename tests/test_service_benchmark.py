"""benchmarks/service.py run once, tiny, against a real `mrl serve`: table, JSON, no errors."""

import json

import pytest
from bench_helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("service")


@pytest.mark.slow
def test_tiny_load_run_loses_nothing(bench, tmp_path, capsys):
    out = tmp_path / "out"
    argv = (
        "--seconds 1 --clients 8 --n 300 --dim 32 --shortlist-dim 8 --queries 20 "
        f"--sequential 5 --add-fraction 0.3 --out {out}"
    ).split()
    assert bench.main(argv) == 0
    result = json.loads((out / "service.json").read_text())
    (row,) = result["backends"]
    assert row["backend"] == "memory" and row["errors"] == 0 and row["nothing_lost"]
    check = row["count_check"]
    assert check["count"] == check["expected"] > 300 and not check["missing"]
    assert row["requests"] > 0
    assert "| memory |" in capsys.readouterr().out
    assert (out / "service.md").read_text().startswith("# mrl serve load benchmark")
