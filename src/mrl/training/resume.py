"""What a checkpoint holds, and how a run continues from one exactly.

`RunState.payload` is everything after optimizer step `step` (weights, optimizer, schedule,
loss scaler, RNG, the epoch's running loss); `RunState.restore` puts it back. A checkpoint
is resumable only by a config that trains the same model (`model_changes` is empty) on the
same data (input shape, classes, steps per epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mrl.checks import require_keys
from mrl.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from mrl.training.config import TrainConfig, model_changes
from mrl.training.monitor import LossMonitor

_KEYS = ("config", "data", "model", "optimizer", "scheduler", "scaler", "step")
_KEYS += ("steps_per_epoch", "epoch_loss", "rng", "metrics")


def load_resumable(path: Path, config: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The checkpoint at `path`, checked to be one `config` may continue.

    Raises:
        CheckpointError: not an mrl checkpoint, truncated, or saved by a config that trains
            a different model (every differing key named, with both values).
    """
    state = load_checkpoint(path, map_location=device)
    require_keys(state, _KEYS, path, error=CheckpointError)
    saved, current = state["config"], config.to_dict()
    changed = model_changes(saved, current)
    if changed:
        diffs = ", ".join(
            f"{k} ({saved.get(k)!r} in the checkpoint, now {current.get(k)!r})" for k in changed
        )
        raise CheckpointError(
            f"cannot resume {path}: the config differs in {diffs}; use the checkpoint's "
            "settings or another out_dir"
        )
    return state


@dataclass
class RunState:
    """The objects a checkpoint saves and restores, and what identifies the run's data.

    `data` identifies the training data (vision: input shape and class count; text: rows
    and class count); `objective` is the loss module, whose state (the contrastive loss's
    size-draw generator) a checkpoint keeps too.
    """

    config: TrainConfig
    data: dict[str, Any]
    model: nn.Module
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    monitor: LossMonitor
    steps_per_epoch: int

    def payload(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint dict after optimizer step `step` (RNG state taken now)."""
        return {
            "config": self.config.to_dict(),
            "data": self.data,
            "model": self.model.state_dict(),
            "objective": _loss_state(self.objective),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": step,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_loss": self.monitor.state(),
            "rng": rng_state(),
            "metrics": metrics,
        }

    def restore(self, state: dict[str, Any], path: Path) -> tuple[int, dict[str, Any]]:
        """Load `payload`'s `state` back; returns (step, the last finished epoch's metrics).

        Raises:
            CheckpointError: the checkpoint was trained on other data.
        """
        now = self.data
        if state["data"] != now or state["steps_per_epoch"] != self.steps_per_epoch:
            raise CheckpointError(
                f"cannot resume {path}: it was trained on data with {state['data']} and "
                f"{state['steps_per_epoch']} steps per epoch, but the data now has {now} and "
                f"{self.steps_per_epoch}"
            )
        self.model.load_state_dict(state["model"])
        if state.get("objective"):  # absent from checkpoints of losses without state
            self.objective.load_state_dict(state["objective"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.monitor.load_state(state["epoch_loss"])
        set_rng_state(state["rng"])
        return state["step"], state["metrics"]


def _loss_state(objective: nn.Module) -> dict[str, Any]:
    """The objective's own state (not the model's weights, which "model" holds)."""
    return {k: v for k, v in objective.state_dict().items() if not k.startswith("model.")}
