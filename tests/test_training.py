import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from training_helpers import digits_config, same_weights, write_npy

from mrl.errors import FormatError, InputError
from mrl.models import BACKBONES
from mrl.training import (
    CheckpointError,
    NonFiniteLossError,
    RunExistsError,
    load_checkpoint,
    load_model,
    train,
)
from mrl.training.checkpoint import save_checkpoint
from mrl.training.optim import lr_multiplier

pytestmark = pytest.mark.usefixtures("one_thread")


def test_short_digits_run_is_well_above_chance_at_every_size(tmp_path):
    result = train(digits_config(tmp_path, epochs=3))
    top1 = result.metrics["top1"]
    assert list(top1) == ["4", "8", "16", "32"]
    assert all(acc > 0.85 for acc in top1.values()), top1  # chance is 0.10
    lines = [json.loads(s) for s in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3] and lines[-1] == result.metrics
    assert lines[0]["test_loss"] > lines[-1]["test_loss"]
    assert (result.run_dir / "config.yaml").exists()


@pytest.mark.parametrize("stop_at", [22, 30], ids=["epoch-boundary", "mid-epoch"])
def test_resume_continues_exactly(tmp_path, stop_at):
    straight = train(digits_config(tmp_path, out_dir=str(tmp_path / "a")))
    interrupted = digits_config(tmp_path, out_dir=str(tmp_path / "b"))
    assert train(replace(interrupted, max_steps=stop_at)).metrics["step"] == stop_at
    resumed = train(interrupted, resume=True)
    assert same_weights(load_model(straight.run_dir)[0], load_model(resumed.run_dir)[0])
    drop_time = lambda m: {k: v for k, v in m.items() if k not in ("time_s", "examples_per_s")}  # noqa: E731
    assert drop_time(resumed.metrics) == drop_time(straight.metrics)  # train loss included
    steps = [
        json.loads(s)["step"] for s in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(steps) and steps[-1] == 44


def test_resume_of_a_finished_run_returns_stored_metrics_without_training(tmp_path, monkeypatch):
    config = digits_config(tmp_path, epochs=1)
    first = train(config)

    def no_data(*args, **kwargs):
        raise AssertionError("a finished run must not load data")

    monkeypatch.setattr("mrl.training.loop.load_dataset", no_data)
    assert train(config, resume=True).metrics == first.metrics


def test_existing_run_needs_resume(tmp_path):
    config = digits_config(tmp_path, epochs=1, max_steps=2)
    train(config)
    with pytest.raises(RunExistsError, match="already holds a checkpoint; resume it"):
        train(config)
    assert issubclass(RunExistsError, FileExistsError)  # what callers caught before


def test_resume_refuses_an_incompatible_config(tmp_path):
    config = digits_config(tmp_path, max_steps=2)
    train(config)
    with pytest.raises(
        CheckpointError, match=r"config differs in head \('mrl' in the checkpoint, now 'mrl-e'\)"
    ):
        train(replace(config, head="mrl-e"), resume=True)


class NotOurs:
    """A pickled object that is not a tensor: torch's weights-only reader refuses it."""


@pytest.mark.parametrize(
    "content, match",
    [
        ("truncated", "is not an mrl checkpoint, or it is truncated or corrupt"),
        ("random-bytes", "is not an mrl checkpoint, or it is truncated or corrupt"),
        ("text", "is not an mrl checkpoint, or it is truncated or corrupt"),
        ("pickled-object", "is not an mrl checkpoint, or it is truncated or corrupt"),
        ("foreign-dict", "is not an mrl checkpoint \\(no 'mrl-checkpoint' format tag\\)"),
        ("other-version", "is an mrl checkpoint of format version 99; this mrl reads version 1"),
        ("missing-key", "is missing the key\\(s\\) 'optimizer'"),
    ],
)
def test_resume_refuses_truncated_or_foreign_checkpoints(tmp_path, content, match):
    config = digits_config(tmp_path, max_steps=2)
    path = train(config).checkpoint
    state = load_checkpoint(path)
    if content == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "text":
        path.write_text("step: 3\n")
    elif content == "pickled-object":
        torch.save({"format": "mrl-checkpoint", "object": NotOurs()}, path)
    elif content == "foreign-dict":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    elif content == "other-version":
        torch.save({**state, "version": 99}, path)
    else:
        del state["optimizer"]
        torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"{path}.* {match}") as caught:
        train(config, resume=True)
    # torch's own advice (weights_only=False) would run code from the file: never relayed
    assert "weights_only" not in str(caught.value)
    assert isinstance(caught.value, FormatError)


class FaultAfter(nn.Module):
    """A linear backbone that fails from its `plan["after"]`+1-th training forward on.

    `plan["fault"]` is "nan" (the output turns NaN) or "raise" (a simulated crash); the plan
    is a dict so a test can change it between runs; `plan["after"]` None never fails.
    """

    def __init__(self, in_shape, embed_dim, plan):
        super().__init__()
        self.linear = nn.Linear(int(np.prod(in_shape)), embed_dim)
        self.plan, self.calls = plan, 0

    def forward(self, x):
        z = self.linear(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.plan["after"] is not None and self.calls > self.plan["after"]:
                if self.plan["fault"] == "raise":
                    raise RuntimeError("simulated crash")
                z = z * float("nan")
        return z


@pytest.mark.parametrize("check_every", [1, 5, 32])
def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(
    tmp_path, monkeypatch, check_every
):
    # Losses are read back every `check_every` steps; the first bad step is named all the same.
    plan = {"after": 24, "fault": "nan"}
    monkeypatch.setitem(BACKBONES, "nan-after-24", lambda s, d: FaultAfter(s, d, plan))
    config = digits_config(
        tmp_path, backbone="nan-after-24", epochs=3, loss_check_every=check_every
    )
    with pytest.raises(
        NonFiniteLossError,
        match=r"loss is nan at step 25 \(epoch 2, batch 3/22\); training stopped and "
        r"the last good checkpoint .* is kept",
    ):
        train(config)
    kept = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert kept["step"] == 22 and all(torch.isfinite(v).all() for v in kept["model"].values())


def test_mid_epoch_checkpoints_resume_exactly_after_a_crash(tmp_path, monkeypatch):
    plan = {"after": None, "fault": "raise"}
    monkeypatch.setitem(BACKBONES, "crashy", lambda s, d: FaultAfter(s, d, plan))
    straight = train(digits_config(tmp_path / "a", backbone="crashy"))
    config = digits_config(tmp_path / "b", backbone="crashy", checkpoint_every=5)
    plan["after"] = 28  # dies during step 29, in epoch 2 (22 steps per epoch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config)
    kept = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")
    assert kept["step"] == 25 and kept["metrics"]["epoch"] == 1  # the last mid-epoch save
    plan["after"] = None
    resumed = train(config, resume=True)
    assert resumed.metrics["train_loss"] == straight.metrics["train_loss"]
    assert same_weights(load_model(resumed.run_dir)[0], load_model(straight.run_dir)[0])


def test_loss_check_interval_changes_nothing_but_when_losses_are_read(tmp_path):
    every_step = train(digits_config(tmp_path / "a", loss_check_every=1))
    every_7 = train(digits_config(tmp_path / "b", loss_check_every=7))
    assert every_7.metrics["train_loss"] == every_step.metrics["train_loss"]
    assert every_7.metrics["top1"] == every_step.metrics["top1"]
    assert same_weights(load_model(every_7.run_dir)[0], load_model(every_step.run_dir)[0])


KILL_WRITER = textwrap.dedent(
    """
    import sys, torch
    from mrl.training.checkpoint import save_checkpoint
    payload = torch.randn(8_000_000)  # 32 MB, so a write is long enough to be caught mid-way
    i = 0
    while True:
        save_checkpoint(sys.argv[1], {"i": i, "payload": payload})
        if i == 0:
            print("ready", flush=True)
        i += 1
    """
)


@pytest.mark.slow
def test_kill_9_during_checkpoint_write_leaves_previous_loadable(tmp_path):
    path = tmp_path / "checkpoint.pt"
    caught_mid_write = False
    for attempt in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2 + 0.15 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        state = load_checkpoint(path)
        assert state["payload"].shape == (8_000_000,) and state["i"] >= 0
        leftovers = list(tmp_path.glob(".checkpoint.pt.*.tmp"))
        caught_mid_write |= bool(leftovers)
        for p in leftovers:
            p.unlink()
        if caught_mid_write:
            break
    assert caught_mid_write, "never killed during a write; the test proved nothing"


def test_crash_between_temp_write_and_rename_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def crash(*args):
        raise KeyboardInterrupt("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]  # the temp file was removed


def test_load_model_round_trip_and_ff_head(tmp_path):
    result = train(digits_config(tmp_path, head="ff", ff_dim=8, epochs=1))
    assert list(result.metrics["top1"]) == ["8"]
    model, config = load_model(result.run_dir)
    assert config.head == "ff" and model.head_dims == (8,) and not model.training
    x = torch.randn(3, 1, 8, 8)
    assert model(x).shape == (1, 3, 10)


def test_mrl_e_adamw_linear_schedule(tmp_path):
    config = digits_config(
        tmp_path,
        head="mrl-e",
        optimizer="adamw",
        lr=3e-3,
        weight_decay=0.05,
        schedule="linear",
        epochs=2,
    )
    top1 = train(config).metrics["top1"]
    assert all(acc > 0.8 for acc in top1.values()), top1


def test_resnet18_through_the_training_loop(tmp_path):
    write_npy(tmp_path, (16, 3, 32, 32), (8, 3, 32, 32))
    config = digits_config(
        tmp_path,
        dataset="npy",
        data_root=str(tmp_path),
        backbone="resnet18",
        embed_dim=64,
        min_dim=8,
        batch_size=8,
        epochs=1,
        max_steps=2,
    )
    result = train(config)
    assert result.metrics["step"] == 2 and math.isfinite(result.metrics["test_loss"])
    assert list(result.metrics["top1"]) == ["8", "16", "32", "64"]
    model, _ = load_model(result.run_dir)
    assert model(torch.randn(2, 3, 32, 32)).shape == (4, 2, 4)


def test_lr_schedule_warmup_then_decay_to_zero():
    assert [lr_multiplier(s, 4, 20, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_multiplier(12, 4, 20, "cosine") == pytest.approx(0.5)
    assert lr_multiplier(12, 4, 20, "linear") == pytest.approx(0.5)
    assert lr_multiplier(20, 4, 20, "cosine") == pytest.approx(0.0)
    assert lr_multiplier(0, 0, 10, "linear") == 1.0


def test_too_small_train_split_for_the_batch(tmp_path):
    with pytest.raises(
        InputError, match="train split has 1437 samples, fewer than batch_size 2048"
    ):
        train(digits_config(tmp_path, batch_size=2048))
