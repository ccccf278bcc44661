"""`mrl train` through the CLI: the per-size table, resume, overrides, and named errors."""

import numpy as np
import pytest
from torch import nn

from mrl.models import BACKBONES


def write_config(tmp_path, extra=""):
    path = tmp_path / "c.yaml"
    path.write_text(
        "dataset: digits\nbackbone: mlp\nembed_dim: 16\nmin_dim: 4\nepochs: 1\n"
        f"batch_size: 64\nprogress: false\nout_dir: {tmp_path / 'run'}\n{extra}"
    )
    return path


def test_train_prints_top1_per_size_and_resume_reuses(tmp_path, cli):
    config = write_config(tmp_path)
    r = cli("train", "--config", config, "--lr=0.05", "--max_steps", "5")
    assert r.code == 0, r.err
    assert "dim   top-1 %" in r.out and "step 5" in r.out
    assert [line.split()[0] for line in r.out.splitlines()[2:]] == ["4", "8", "16"]
    # the finished run is reused; without --resume the folder is protected (exit 2)
    r = cli("train", "--config", config, "--lr", "0.05", "--max_steps=5", "--resume")
    assert r.code == 0 and "step 5" in r.out
    cli("train", "--config", config, "--lr=0.05").assert_named_error(
        f"{tmp_path / 'run'} already holds a checkpoint; resume it (--resume)"
    )


def test_out_dir_as_a_separate_argument(tmp_path, cli):
    other = tmp_path / "elsewhere"
    r = cli("train", "--config", write_config(tmp_path), "--out_dir", other, "--max_steps", "2")
    assert r.code == 0, r.err
    assert (other / "checkpoint.pt").exists() and not (tmp_path / "run").exists()


class NanBackbone(nn.Module):
    def __init__(self, in_shape, embed_dim):
        super().__init__()
        self.linear = nn.Linear(int(np.prod(in_shape)), embed_dim)

    def forward(self, x):
        return self.linear(x.flatten(1)) * float("nan")


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--lrr=0.1"], ["unknown config key 'lrr' (did you mean 'lr'?)"]),
        (["--lr"], ["override '--lr' has no value; write --lr=VALUE or --lr VALUE"]),
        (["--out_dir", "--resume"], ["override '--out_dir' has no value"]),
        (["stray"], ["override 'stray' must look like --key=value or --key value"]),
        (["--epochs", "1.5"], ["epochs must be an int, got 1.5 (float)"]),
        (["--backbone=nan"], ["loss is nan at step 1 (epoch 1, batch 1/22)", "no checkpoint"]),
    ],
    ids=["unknown-key", "no-value", "value-is-a-flag", "stray-word", "bad-type", "nan-loss"],
)
def test_bad_invocations_are_named_errors(tmp_path, cli, monkeypatch, argv, fragments):
    monkeypatch.setitem(BACKBONES, "nan", NanBackbone)
    cli("train", "--config", write_config(tmp_path), *argv).assert_named_error(*fragments)


@pytest.mark.parametrize(
    "content, fragments",
    [
        (None, ["config file", "missing.yaml does not exist; check the path"]),
        ("lr: 0.1\n  epochs: 3\n", ["c.yaml line 2, column 9: YAML syntax error"]),
        ("nesting: [4, 8\n", ["c.yaml line 2, column 1: YAML syntax error", "opened on line 1"]),
        ("[1, 2]\n", ["c.yaml must be a YAML mapping"]),
        ("batchsize: 3\n", ["unknown config key 'batchsize' (did you mean 'batch_size'?)"]),
    ],
    ids=["missing", "indent", "unclosed", "not-a-mapping", "unknown-key"],
)
def test_bad_config_files_are_named_errors(tmp_path, cli, content, fragments):
    path = tmp_path / ("missing.yaml" if content is None else "c.yaml")
    if content is not None:
        path.write_text(content)
    cli("train", "--config", path).assert_named_error(*fragments)


def test_a_command_loads_only_its_own_module():
    """`mrl serve` (or any command) starts without importing the other commands' stacks."""
    import subprocess
    import sys

    code = (
        "import sys; from mrl.cli.main import build_parser; build_parser('serve'); "
        "print(sorted(m for m in sys.modules if m.startswith(('torch', 'sklearn', 'mrl.cli.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['mrl.cli.main', 'mrl.cli.serve']"
