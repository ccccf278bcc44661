"""`mrl cascade` end to end on tiny `mrl embed --save-logits` folders."""

import json
import shutil

import numpy as np
import pytest
import torch

from mrl.adaptive import Cascade, evaluate_splits, holdout_splits
from mrl.adaptive.report import Reference, cascade_report
from mrl.cli.main import main
from mrl.data import InMemoryDataset
from mrl.evaluation.embed import embed_dataset
from mrl.models import create_model
from mrl.nesting import Nesting

NESTING = Nesting((2, 4, 8))


def folders(tmp_path, n=240):
    torch.manual_seed(0)
    x = torch.randn(n, 1, 4, 4)
    mrl = create_model("mlp", (1, 4, 4), NESTING, 3).eval()
    ff = create_model("mlp", (1, 4, 4), NESTING, 3, head="ff", ff_dim=8).eval()
    with torch.no_grad():
        labels = mrl(x)[-1].argmax(dim=1).numpy()  # the largest size is right: sizes differ
    ds = InMemoryDataset(x.numpy(), labels, 3)
    a = embed_dataset(mrl, ds, tmp_path / "mrl", save_logits=True, progress=False)
    b = embed_dataset(ff, ds, tmp_path / "ff", save_logits=True, progress=False)
    return a, b, labels


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """Logits folders of an MRL model and an FF reference on the same split, and variants."""
    tmp = tmp_path_factory.mktemp("cascade_cli")
    a, b, labels = folders(tmp)
    torch.manual_seed(0)
    x = torch.randn(len(labels), 1, 4, 4)
    model = create_model("mlp", (1, 4, 4), NESTING, 3).eval()
    shuffled = InMemoryDataset(x.numpy(), np.roll(labels, 1), 3)
    embed_dataset(model, shuffled, tmp / "other", save_logits=True, progress=False)
    embed_dataset(model, shuffled, tmp / "nologits", progress=False)
    logits = np.load(a / "logits.npy")
    for name, values in [
        ("probs", (np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True))),
        ("nan", np.where(np.arange(len(labels))[None, :, None] == 7, np.nan, logits)),
    ]:
        shutil.copytree(a, tmp / name)
        np.save(tmp / name / "logits.npy", values.astype(np.float32))
    (tmp / "afile").write_text("not a folder")
    return tmp


def test_cli_writes_report_and_thresholds(tmp_path, capsys):
    a, b, labels = folders(tmp_path)
    argv = ["cascade", str(a), "--out", str(tmp_path / "r"), "--splits", "3", "--ff", str(b)]
    argv += ["--ff-accuracy", "4=50", "--save-thresholds", str(tmp_path / "t.json")]
    assert main([*argv, "--target-dim", "8", "--grid", "32"]) == 0
    report = json.loads((tmp_path / "r" / "cascade.json").read_text())
    refs = {(r["reference"], r["minimises"]) for r in report["headline"]}
    assert {("MRL-8", "expected"), ("FF-8", "cumulative"), ("FF-4", "expected")} <= refs
    assert set(report["pairwise"]) == {"4", "8"} and set(report["joint"]["expected"]) == {
        "2",
        "4",
        "8",
    }
    assert (tmp_path / "r" / "cascade.png").read_bytes()[:4] == b"\x89PNG"
    assert "| MRL-8 |" in (tmp_path / "r" / "cascade.md").read_text()
    cascade = Cascade.load(tmp_path / "t.json", NESTING)
    assert cascade.target_dim == 8 and len(cascade.thresholds_) == 2
    assert "MRL-8" in capsys.readouterr().out


def test_cli_names_an_mrl_e_model_and_searches_caps(tmp_path, capsys):
    torch.manual_seed(1)
    x = torch.randn(200, 1, 4, 4)
    model = create_model("mlp", (1, 4, 4), NESTING, 3, head="mrl-e").eval()
    with torch.no_grad():
        labels = model(x)[-1].argmax(dim=1).numpy()
    folder = embed_dataset(
        model,
        InMemoryDataset(x.numpy(), labels, 3),
        tmp_path / "e",
        save_logits=True,
        progress=False,
    )
    argv = ["cascade", str(folder), "--out", str(tmp_path / "r"), "--splits", "2", "--grid", "8"]
    argv += ["--save-thresholds", str(tmp_path / "t.json"), "--policy", "shared"]
    assert main([*argv, "--cap", "search", "--target-dim", "4"]) == 0
    report = json.loads((tmp_path / "r" / "cascade.json").read_text())
    assert {r["reference"] for r in report["headline"]} == {"MRL-E-8"}
    assert "shared, cap searched" in {r["policy"] for r in report["headline"]}
    assert set(report["shared"]) == {"2", "4", "8"}
    assert "| MRL-E | 2 |" in (tmp_path / "r" / "cascade.md").read_text()
    assert Cascade.load(tmp_path / "t.json", NESTING).cap == "search"


SAVE = ("--save-thresholds", "{tmp}/t.json")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("--splits", "0"), ["--splits must be >= 1, got 0"]),
        (("--splits", "x"), ["--splits", "invalid int value: 'x'"]),
        (("--holdout", "0"), ["--holdout must be a finite number in (0, inf], got 0.0"]),
        (("--holdout", "2.5"), ["--holdout is a fraction below 1 or a whole count, got 2.5"]),
        (("--holdout", "240"), ["the holdout (240) leaves no test examples out of 240"]),
        (("--seed", "-1"), ["--seed must be >= 0, got -1"]),
        (("--tolerance", "500"), ["--tolerance (accuracy points) must be", "got 500.0"]),
        (("--margin", "nan"), ["--margin (accuracy points) must be a finite number"]),
        (("--grid", "1"), ["grid (confidence quantiles per threshold) must be >= 2, got 1"]),
        (("--target", "0.9"), ["--target sets the cascade of --save-thresholds"]),
        (("--policy", "shared"), ["--policy sets the cascade of --save-thresholds"]),
        (("--cap", "foo"), ["--cap", "expects a size or 'search', got 'foo'"]),
        ((*SAVE, "--target", "2"), ["target (an accuracy fraction) must be", "got 2.0"]),
        ((*SAVE, "--target-dim", "3"), ["target_dim must be one of the nesting's sizes [2, 4, 8]"]),
        ((*SAVE, "--budget", "-1"), ["budget (a cost in dims) must be", "got -1.0"]),
        ((*SAVE, "--budget", "1"), ["below the cheapest cascade", "at least 2"]),
        ((*SAVE, "--cap", "3", "--target", "0.5"), ["cap must be one of the nesting's sizes"]),
        ((*SAVE,), ["policy='joint' needs exactly one of target, target_dim or budget"]),
        (("--no-report",), ["--no-report needs --save-thresholds"]),
        (("--ff-accuracy", "256"), ["--ff-accuracy takes DIM=ACC"]),
        (("--ff-accuracy", "256=abc"), ["--ff-accuracy takes DIM=ACC"]),
        (("--ff-accuracy", "0=50"), ["--ff-accuracy '0=50': DIM must be >= 1"]),
        (("--ff-accuracy", "8=150"), ["ACC a fraction or a percentage in 0..100"]),
        (("--ff", "{tmp}/other"), ["other holds other examples (labels differ)"]),
        (("--ff", "{tmp}/nologits"), ["nologits holds no logits", "--save-logits"]),
        (("--ff", "{tmp}/nan"), ["nan: scores for size 8 contain NaN or inf; first bad row is 7"]),
        (("--ff", "{tmp}/ff", "--ff-accuracy", "8=50"), ["two references are named 'FF-8'"]),
        (("--out", "{tmp}/afile"), ["as the report folder: it is a file", "afile"]),
        (("--save-thresholds", "{tmp}", "--no-report", "--target", "0.5"), ["is a folder"]),
        (("--inputs", "probabilities"), ["probabilities for size 2 must be >= 0 and sum to 1"]),
    ],
)
def test_cli_bad_option(embedded, cli, args, fragments):
    args = [a.format(tmp=embedded) for a in args]
    cli("cascade", embedded / "mrl", "--out", embedded / "r", *args).assert_named_error(*fragments)


@pytest.mark.parametrize(
    "folder, fragments",
    [
        ("missing", ["missing"]),
        ("afile", ["afile"]),
        ("nologits", ["nologits holds no logits; rerun `mrl embed` with --save-logits"]),
        ("probs", ["already probabilities", "--inputs probabilities"]),
        ("nan", ["NaN or inf"]),
    ],
)
def test_cli_bad_logits_folder(embedded, cli, folder, fragments):
    cli("cascade", embedded / folder).assert_named_error(*fragments)
    assert not (embedded / "missing").exists()  # nothing created for a folder that is not there


def test_cli_reads_probabilities_with_inputs_probabilities(embedded, cli):
    args = ("--save-thresholds", embedded / "p.json", "--no-report", "--policy", "pairwise")
    assert cli("cascade", embedded / "probs", "--inputs", "probabilities", *args).code == 0
    assert cli("cascade", embedded / "mrl", *args[:1], embedded / "l.json", *args[2:]).code == 0
    from_probs = Cascade.load(embedded / "p.json", NESTING)
    from_logits = Cascade.load(embedded / "l.json", NESTING)
    np.testing.assert_allclose(from_probs.thresholds_, from_logits.thresholds_)
    assert from_probs.inputs == "probabilities"


def test_report_headline_is_within_tolerance_of_the_largest_size():
    rng = np.random.default_rng(0)
    n, labels = 1500, rng.integers(0, 5, 1500)
    logits = rng.normal(size=(3, n, 5))
    logits[:, np.arange(n), labels] += np.array([1.0, 2.0, 3.0])[:, None] * rng.uniform(0, 2, n)
    ref = Reference("FF-8", 8, accuracy=0.5)
    report = cascade_report(logits, labels, NESTING, [ref], n_splits=4, grid=32)
    own = [r for r in report["headline"] if r["reference"] == "MRL-8" and r["policy"] == "joint"]
    assert len(own) == 2
    for r in own:
        assert r["expected_dim"]["mean"] < 8 and r["expected_ratio"] > 1
    ff = [r for r in report["headline"] if r["reference"] == "FF-8" and r["policy"] == "joint"]
    assert all(r["accuracy"]["mean"] > 0.45 for r in ff)
    # every row is what the splits give when run by hand
    splits = holdout_splits(n, n_splits=4)
    by_hand = evaluate_splits(Cascade(NESTING, cap=4), logits, labels, splits).summary()
    assert report["pairwise"][4]["accuracy"] == by_hand["accuracy"]
    assert report["pairwise"][4]["expected_dim"] == by_hand["expected_dim"]
    tests = [t for _, t in splits]
    fixed = [(logits[0, t].argmax(axis=1) == labels[t]).mean() for t in tests]
    assert report["fixed"]["mrl"][2]["mean"] == pytest.approx(np.mean(fixed))
    for r in report["headline"]:
        assert r["gap"] == pytest.approx(r["accuracy"]["mean"] - r["reference_accuracy"]["mean"])
        assert r["expected_ratio"] == pytest.approx(8 / r["expected_dim"]["mean"])
