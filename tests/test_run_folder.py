"""The run folder: locked for the whole run, checked before any training, never stale."""

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from torch import nn
from training_helpers import digits_config, write_npy

from mrl.errors import InputError, LockedError, PathError
from mrl.models import BACKBONES
from mrl.training import load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

TESTS = Path(__file__).resolve().parent

# A run whose backbone blocks at the first training step of epoch 2 (batch 256: 5 steps per
# epoch), so the epoch-1 checkpoint exists while the process holds the run folder.
BLOCKING_RUN = textwrap.dedent(
    """
    import sys, time
    from torch import nn
    from mrl.models import BACKBONES
    from mrl.training import train
    from training_helpers import digits_config, write_npy
    from pathlib import Path

    class Stall(nn.Module):
        def __init__(self, in_shape, embed_dim):
            super().__init__()
            self.linear, self.calls = nn.Linear(64, embed_dim), 0
        def forward(self, x):
            if self.training:
                self.calls += 1
                if self.calls == 6:
                    print("holding", flush=True)
                    time.sleep(600)
            return self.linear(x.flatten(1))

    BACKBONES["stall"] = Stall
    train(digits_config(Path(sys.argv[1]), backbone="stall", batch_size=256))
    """
)


class Linear(nn.Module):
    """The stalling backbone's weights, without the stall (same parameter names)."""

    def __init__(self, in_shape, embed_dim):
        super().__init__()
        self.linear = nn.Linear(int(np.prod(in_shape)), embed_dim)

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_a_busy_run_folder_is_refused_and_free_again_after_a_crash(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(BACKBONES, "stall", Linear)
    config = digits_config(tmp_path, backbone="stall", batch_size=256)
    run_dir = Path(config.out_dir)
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    holder = subprocess.Popen(
        [sys.executable, "-c", BLOCKING_RUN, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        busy = f"run folder {run_dir} is in use by another process (process {holder.pid})"
        with pytest.raises(LockedError, match=busy.replace("(", r"\(").replace(")", r"\)")):
            train(config)
        with pytest.raises(LockedError, match="is in use by another process"):
            train(config, resume=True)
        yaml_path = tmp_path / "c.yaml"
        yaml_path.write_text(f"dataset: digits\nbackbone: stall\nout_dir: {run_dir}\n")
        for extra in ((), ("--resume",)):
            cli("train", "--config", yaml_path, *extra).assert_named_error(
                busy, "wait for it to finish or use another folder"
            )
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 1  # only the holder's epoch 1: the refused runs wrote nothing
    finally:
        holder.kill()  # kill -9 mid-run: the kernel drops the lock with the process
        holder.wait()
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 5
    resumed = train(config, resume=True)
    assert resumed.metrics["step"] == 10 and resumed.metrics["epoch"] == 2


def test_the_lock_is_released_when_a_run_fails(tmp_path, monkeypatch):
    config = digits_config(tmp_path, max_steps=2, epochs=1)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure inside the run")

    with monkeypatch.context() as m:
        m.setattr("mrl.training.loop.load_dataset", broken)
        with pytest.raises(RuntimeError, match="simulated failure"):
            train(config)
    assert train(config).metrics["step"] == 2  # the folder is free again, in this process too


def unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create: under /sys for root (which ignores file modes),
    else under a read-only folder."""
    if os.geteuid() == 0:
        return Path("/sys/mrl-test-run")
    locked = tmp_path / "read-only"
    locked.mkdir(mode=0o500)
    return locked / "run"


@pytest.mark.parametrize("case", ["a-file", "under-a-file", "not-writable"])
def test_unusable_out_dir_is_refused_before_any_training(tmp_path, cli, monkeypatch, case):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    out_dir, fragments = {
        "a-file": (a_file, [f"cannot use {a_file} as the run folder: it is a file"]),
        "under-a-file": (
            a_file / "run",
            [f"cannot use {a_file / 'run'} as the run folder: {a_file} is a file"],
        ),
        "not-writable": (
            None,
            ["cannot create the run folder", "choose a folder you can write to"],
        ),
    }[case]
    out_dir = out_dir or unwritable(tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("the path must be refused before any data is loaded")

    monkeypatch.setattr("mrl.training.loop.load_dataset", no_training)
    with pytest.raises(PathError, match=fragments[0].replace("(", r"\(")):
        train(digits_config(tmp_path, out_dir=str(out_dir)))
    cli("train", "--dataset=digits", "--backbone=mlp", "--out_dir", out_dir).assert_named_error(
        str(out_dir), *fragments
    )


@pytest.mark.parametrize(
    "train_shape, test_shape, test_labels, match",
    [
        ((16, 10), (8, 12), None, r"train inputs have shape \(10,\) but test inputs \(12,\)"),
        ((16, 1, 4, 4), (8, 16), None, r"shape \(1, 4, 4\) but test inputs \(16,\)"),
        ((16, 10), (8, 10), [0, 1, 2, 3, 0, 1, 2, 7], "label 7 is out of range for 4 classes"),
    ],
    ids=["widths", "layouts", "test-label-beyond-classes"],
)
def test_splits_that_do_not_fit_one_model_are_refused_before_training(
    tmp_path, cli, train_shape, test_shape, test_labels, match
):
    write_npy(tmp_path, train_shape, test_shape)
    if test_labels is not None:
        np.save(tmp_path / "test_y.npy", np.asarray(test_labels))
    config = digits_config(
        tmp_path, dataset="npy", data_root=str(tmp_path), embed_dim=8, batch_size=4
    )
    with pytest.raises(InputError, match=match):
        train(config)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # no step was taken
    argv = ["train", "--dataset=npy", "--data_root", tmp_path, "--backbone=mlp"]
    r = cli(*argv, "--embed_dim=8", "--batch_size=4", "--out_dir", tmp_path / "cli")
    r.assert_named_error("npy")
    assert not (tmp_path / "cli" / "checkpoint.pt").exists()


def test_resume_after_a_config_change_that_does_not_change_the_model(tmp_path):
    config = digits_config(tmp_path, max_steps=3)
    train(config)
    changed = replace(config, loss_check_every=2, checkpoint_every=1, eval_batch_size=100)
    assert train(replace(changed, max_steps=5), resume=True).metrics["step"] == 5
