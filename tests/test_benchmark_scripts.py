"""Every benchmark script answers a named problem as `mrl` does: one line, exit 2."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if "__main__" in p.read_text())


def _main_block(path: Path) -> list[str]:
    """The source lines of the statements under `if __name__ == "__main__":`."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return [ast.unparse(s) for s in node.body]
    return []


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_each_script_runs_its_main_through_the_harness(path):
    assert _main_block(path) == ["run_script(main)"]


def test_a_named_problem_is_one_line_and_exit_2_with_nothing_touched(tmp_path):
    (tmp_path / "db").mkdir()
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "pgvector_funnel.py"), "--shortlist-dims", "16"]
        + ["--ivf-dims", "32", "--data-dir", str(tmp_path / "db"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "pgvector_funnel.py: error: --ivf-dims 32 must be among --shortlist-dims 16"
    ]
    assert (tmp_path / "db").is_dir() and not (tmp_path / "o").exists()


def test_thread_count_sets_and_restores_threads_with_or_without_faiss(monkeypatch):
    import faiss
    import torch
    from bench_helpers import load_benchmark

    harness = load_benchmark("harness")
    before = (faiss.omp_get_max_threads(), torch.get_num_threads())
    with harness.thread_count(1):
        assert (faiss.omp_get_max_threads(), torch.get_num_threads()) == (1, 1)
    assert (faiss.omp_get_max_threads(), torch.get_num_threads()) == before
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails
    with harness.thread_count(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before[1]
