"""benchmarks/pgvector_funnel.py run once, tiny, on its own embedded server: sane outputs."""

from __future__ import annotations

import json

import pytest
from bench_helpers import load_benchmark
from pg_helpers import pg_data_dir  # noqa: F401 (fixture)

pytest.importorskip("pgserver")
pytest.importorskip("psycopg_pool")


@pytest.mark.slow
def test_tiny_run_writes_sane_outputs(pg_data_dir, tmp_path, capsys):  # noqa: F811
    bench = load_benchmark("pgvector_funnel")
    out = tmp_path / "out"
    argv = (
        "--n 1500 --dim 64 --queries 6 --warm 2 --shortlist-dims 16 --shortlists 10,40 "
        "--funnel-efs 10,40 --efs 10,40 --ivf-dims 16 --ivf-lists 2 --ivf-probes 4 "
        "--ivf-shortlists 20 --repeats 1 --shared-buffers 128MB --maintenance-work-mem 64MB "
        f"--data-dir {pg_data_dir / 'db'} --out {out}"
    ).split()
    assert bench.main(argv) == 0
    res = json.loads((out / "pgvector_funnel.json").read_text())
    families = {(r["method"], r["family"]) for r in res["rows"]}
    assert families == {
        ("sql_funnel", "hnsw_ds16"),
        ("sql_funnel_ivf", "ivf_ds16_lists77"),
        ("full_hnsw", "full"),
    }
    for r in res["rows"]:
        assert 0 <= r["recall"] <= 1 and 0 < r["ms_p50"] <= r["ms_p99"]
        assert r["server_ms_p50"] > 0 and r["buffers_hit"] + r["buffers_read"] > 0
        assert r["regime"] == "128MB"
    assert res["exact_sql_matches_numpy"].startswith("3/3")
    for key in ("hnsw_ds16", "ivf_ds16_lists77"):
        assert 0 < res["sizes"][key] < res["sizes"]["full_index"]
    bars = res["bars"]["128MB"]
    assert set(bars) >= {"hnsw_ds16", "ivf_ds16_lists77", "best_ms_mean", "best_server_ms_p50"}
    assert set(bars["hnsw_ds16"]) >= {"ms_mean", "server_ms_p50", "index_ratio", "index_pass"}
    for key in ("ms_mean", "server_ms_p50"):  # the threshold reading is never the kinder one
        best = bars[f"best_{key}"]
        if best["funnel"] is not None and best["hnsw"] is not None:
            assert best["hnsw_at_target"]["recall"] >= 0.95
            assert best["speedup_at_target"] <= best["speedup"]
    assert res["service_path"]["128MB"]["ms_mean"] > 0
    assert (out / "recall_latency.png").stat().st_size > 0
    assert "| full_hnsw | full | ef=40 |" in capsys.readouterr().out
