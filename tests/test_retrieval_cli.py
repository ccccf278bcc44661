"""`mrl index build|tune`, `mrl search`, `mrl bench retrieval` end to end on tiny generated data."""

import json

import numpy as np
import pytest

from mrl.cli.main import main
from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings

SPEC = GeneratedNestedSpec(dim=64, n_classes=10, seed=2)


def test_build_search_tune(tmp_path, capsys):
    x, y = generated_nested_embeddings(1500, SPEC)
    q, yq = generated_nested_embeddings(20, SPEC, "queries")
    for name, arr in [("x", x), ("y", y), ("q", q), ("yq", yq)]:
        np.save(tmp_path / f"{name}.npy", arr)
    idx = str(tmp_path / "idx")
    assert (
        main(
            [
                "index",
                "build",
                str(tmp_path / "x.npy"),
                "--out",
                idx,
                "--shortlist-dim",
                "8",
                "--dtype",
                "float16",
            ]
        )
        == 0
    )
    out = tmp_path / "res.npz"
    assert (
        main(
            [
                "search",
                idx,
                str(tmp_path / "q.npy"),
                "--k",
                "5",
                "--plan",
                "rerank:8:64:100",
                "--out",
                str(out),
                "--mmap",
            ]
        )
        == 0
    )
    assert np.load(out)["ids"].shape == (20, 5)
    tune = tmp_path / "tune.json"
    assert (
        main(
            [
                "index",
                "tune",
                idx,
                str(tmp_path / "q.npy"),
                "--target",
                "0.9",
                "--k",
                "5",
                "--query-labels",
                str(tmp_path / "yq.npy"),
                "--id-labels",
                str(tmp_path / "y.npy"),
                "--out",
                str(tune),
                "--efforts",
                "16,200",
            ]
        )
        == 0
    )
    assert "cheapest plan reaching 0.9" in capsys.readouterr().out
    tuned = json.loads(tune.read_text())
    assert tuned["best_plan"] and tuned["best_effort"] in (16, 200, None)
    assert {r["effort"] for r in tuned["table"]} == {None, 16, 200}  # exact plans: None
    with pytest.raises(SystemExit):
        main(["index", "tune", idx, str(tmp_path / "q.npy"), "--efforts", "8,x"])
    assert "expects comma-separated ints like 16,32,64" in capsys.readouterr().err
    assert main(["search", idx, str(tmp_path / "q.npy"), "--plan", "single:8:exact"]) == 2
    assert "cannot read plan" in capsys.readouterr().err


def test_bench_retrieval_on_generated_and_on_given_embeddings(tmp_path):
    out = tmp_path / "bench"
    args = [
        "bench",
        "retrieval",
        "--n",
        "3000",
        "--dim",
        "64",
        "--classes",
        "10",
        "--n-queries",
        "50",
        "--fig8-queries",
        "20",
        "--hnsw-full-rows",
        "500",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(out),
        "--threads",
        "1",
        "--tune-queries",
        "40",
        "--tune-target",
        "0.9",
    ]
    assert main(args) == 0
    res = json.loads((out / "retrieval_bench.json").read_text())
    assert res["table"][0]["method"].startswith("faiss IndexFlatIP")
    assert "generated" in res["title"] and (out / "figure8.png").stat().st_size > 0
    assert res["hnsw_build"]["extrapolated_to"] == 3000
    tuned = [r for r in res["table"] if r["method"].endswith(", tuned]")]
    assert len(tuned) == 2 and res["tuning"]["HNSW32"]["queries"] == 40
    assert tuned[0]["method"] == f"ours {res['tuning']['HNSW32']['best_plan']} [HNSW32, tuned]"
    ivf = res["tuning"]["IVF512"]
    assert ivf["efforts"] == [8, 16, 32, 48, 64, 96, 128] and ivf["best_effort"] in ivf["efforts"]
    assert (
        tuned[1]["method"] == f"ours {ivf['best_plan']} [IVF512 effort {ivf['best_effort']}, tuned]"
    )
    ivf_rows = [r for r in res["table"] if "[IVF512 nprobe 64]" in r["method"]]  # 8 sqrt(3000)
    assert len(ivf_rows) == 2 and all(r["map_ratio"] > 0.5 for r in ivf_rows)
    # an `mrl embed`-style folder: queries held out from the end of the database
    folder = tmp_path / "embed"
    folder.mkdir()
    x, y = generated_nested_embeddings(1200, SPEC)
    np.save(folder / "embeddings.npy", x)
    np.save(folder / "labels.npy", y)
    assert (
        main(
            [
                "bench",
                "retrieval",
                "--database",
                str(folder),
                "--n-queries",
                "100",
                "--no-figure8",
                "--out",
                str(tmp_path / "b2"),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "b2" / "retrieval_bench.json").read_text())
    assert (res["n"], res["queries"]) == (1100, 100)
