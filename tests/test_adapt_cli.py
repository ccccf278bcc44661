"""`mrl adapt fit` / `apply`: the adapted folder is read by `mrl eval`; bad input is named."""

import json

import numpy as np
import pytest

from mrl.evaluation.embed import load_embeddings


def write_embed_folder(folder, x, labels, num_classes):
    """An `mrl embed`-layout folder of x [N, d] and labels, as `embed_dataset` writes it."""
    folder.mkdir()
    np.save(folder / "embeddings.npy", x)
    np.save(folder / "labels.npy", labels)
    d = x.shape[1]
    manifest = {
        "model": "api-model",
        "dataset": "toy",
        "split": "train",
        "count": len(x),
        "dtype": "float32",
        "embed_dim": d,
        "nesting": {"dims": [d], "weights": [1.0]},
        "dims": [d],
        "num_classes": num_classes,
        "head": "ff",
        "files": {"embeddings": "embeddings.npy", "labels": "labels.npy", "logits": None},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    centres = rng.normal(size=(4, 32)) * 2
    x = (centres[labels] + rng.normal(size=(400, 32))).astype(np.float32)
    np.save(tmp_path / "train.npy", x[:300])
    write_embed_folder(tmp_path / "test", x[300:], labels[300:], 4)
    return tmp_path


FIT = ("--nesting", "8,16,32", "--epochs", "1", "--batch-size", "100")


def test_fit_then_apply_writes_a_folder_mrl_eval_reads(cli, data, one_thread):
    r = cli("adapt", "fit", data / "train.npy", "--out", data / "adaptor", *FIT)
    assert r.code == 0, r.err
    assert "unsupervised adaptor 32 -> 32 dims" in r.out
    r = cli("adapt", "apply", data / "adaptor", data / "test", "--out", data / "adapted")
    assert r.code == 0, r.err
    adapted = load_embeddings(data / "adapted")
    assert adapted.embeddings.shape == (100, 32)
    assert adapted.nesting.dims == (8, 16, 32) and adapted.head_dims == (8, 16, 32)
    np.testing.assert_array_equal(adapted.labels, load_embeddings(data / "test").labels)
    assert adapted.manifest["model"] == "api-model"
    assert adapted.manifest["adaptor"] == str(data / "adaptor")
    r = cli("eval", "--train", data / "adapted", "--test", data / "adapted", "--knn-k", "1")
    assert r.code == 0, r.err
    assert "| 8 |" in r.out and "| 32 |" in r.out


def test_apply_npy_with_and_without_labels(cli, data, one_thread):
    assert cli("adapt", "fit", data / "train.npy", "--out", data / "a", *FIT).code == 0
    np.save(data / "labels.npy", np.arange(300) % 3)
    r = cli(
        "adapt",
        "apply",
        data / "a",
        data / "train.npy",
        "--labels",
        data / "labels.npy",
        "--out",
        data / "with",
        "--dtype",
        "float16",
    )
    assert r.code == 0, r.err
    with_labels = load_embeddings(data / "with")
    assert with_labels.embeddings.dtype == np.float16 and with_labels.manifest["num_classes"] == 3
    r = cli("adapt", "apply", data / "a", data / "train.npy", "--out", data / "bare")
    assert r.code == 0, r.err
    assert np.load(data / "bare" / "embeddings.npy").shape == (300, 32)
    assert not (data / "bare" / "labels.npy").exists()
    manifest = json.loads((data / "bare" / "manifest.json").read_text())
    assert manifest["files"]["labels"] is None and manifest["nesting"]["dims"] == [8, 16, 32]
    r = cli("index", "build", data / "bare", "--out", data / "index", "--shortlist-dim", "8")
    assert r.code == 0, r.err


def test_supervised_fit(cli, data, one_thread):
    x = np.load(data / "train.npy")
    np.save(data / "pos.npy", x + 0.1)
    r = cli(
        "adapt",
        "fit",
        data / "train.npy",
        "--out",
        data / "s",
        "--mode",
        "supervised",
        "--positives",
        data / "pos.npy",
        *FIT,
    )
    assert r.code == 0, r.err
    assert "supervised adaptor" in r.out


def test_apply_to_another_width_names_both(cli, data, one_thread):
    assert cli("adapt", "fit", data / "train.npy", "--out", data / "a", *FIT).code == 0
    np.save(data / "wide.npy", np.zeros((5, 48), np.float32))
    r = cli("adapt", "apply", data / "a", data / "wide.npy", "--out", data / "o")
    r.assert_named_error("have 48 dims", "fitted on 32-dim")
    assert not (data / "o").exists()


def test_nan_rows_are_named_before_writing(cli, data, one_thread):
    assert cli("adapt", "fit", data / "train.npy", "--out", data / "a", *FIT).code == 0
    bad = np.ones((5, 32), np.float32)
    bad[3, 1] = np.nan
    np.save(data / "nan.npy", bad)
    cli("adapt", "apply", data / "a", data / "nan.npy", "--out", data / "o").assert_named_error(
        "NaN or inf", "first bad row is 3"
    )
    assert not (data / "o").exists()
    cli("adapt", "fit", data / "nan.npy", "--out", data / "b").assert_named_error(
        "first bad row is 3"
    )


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (("--nesting", "8,x"), ("--nesting expects comma-separated ints", "'8,x'")),
        (("--nesting", "16,8"), ("--nesting '16,8'", "strictly increasing")),
        (("--nesting", "8,16"), ("ends at 16 but the adapted embeddings have 32 dims",)),
        (("--epochs", "0"), ("epochs must be >= 1, got 0",)),
        (("--lr", "0"), ("lr must be a finite number in (0",)),
        (("--hidden", "-2"), ("hidden (MLP width", "got -2")),
        (("--out-dim", "64"), ("out_dim (the adapted width, at most d = 32)",)),
        (("--mode", "supervised"), ("--mode supervised needs --positives",)),
    ],
    ids=[
        "nesting-token",
        "nesting-order",
        "nesting-end",
        "epochs",
        "lr",
        "hidden",
        "out-dim",
        "no-positives",
    ],
)
def test_fit_bad_params_are_named(cli, data, extra, fragments):
    r = cli("adapt", "fit", data / "train.npy", "--out", data / "a", *extra)
    r.assert_named_error(*fragments)


def test_bad_paths_are_named(cli, data):
    (data / "file").write_text("x")
    np.save(data / "empty.npy", np.zeros((0, 32), np.float32))
    cli("adapt", "fit", data / "train.npy", "--out", data / "file").assert_named_error(
        "--out", "is a file"
    )
    cli("adapt", "fit", data / "empty.npy", "--out", data / "a").assert_named_error(
        "empty.npy", "non-empty"
    )
    cli("adapt", "fit", data / "nowhere.npy", "--out", data / "a").assert_named_error(
        "does not exist"
    )
    cli(
        "adapt", "apply", data / "nowhere", data / "train.npy", "--out", data / "o"
    ).assert_named_error("manifest.json not found", "mrl adapt fit")
    cli(
        "adapt", "apply", data / "test", data / "train.npy", "--out", data / "o"
    ).assert_named_error("not an mrl adaptor")
