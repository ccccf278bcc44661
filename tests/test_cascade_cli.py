"""`mrl cascade` end to end on tiny `mrl embed --save-logits` folders."""

import json

import numpy as np
import torch

from mrl.adaptive import Cascade
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


def test_cli_bad_input(tmp_path, capsys):
    a, b, _ = folders(tmp_path)
    (tmp_path / "nologits").mkdir()
    assert main(["cascade", str(tmp_path / "nologits")]) == 2
    assert "manifest.json not found" in capsys.readouterr().err
    assert main(["cascade", str(a), "--ff-accuracy", "256"]) == 2
    assert "--ff-accuracy takes DIM=ACC" in capsys.readouterr().err
    assert main(["cascade", str(a), "--no-report"]) == 2
    assert "--no-report needs --save-thresholds" in capsys.readouterr().err


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
