"""The training-loss monitor: per-step losses read back in groups, averaged, NaN/inf stop."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from mrl.errors import MrlError
from mrl.training.distributed import DistContext


class NonFiniteLossError(MrlError, FloatingPointError):
    """The loss became NaN or infinite; training stopped and the last checkpoint is kept."""


class LossMonitor:
    """The epoch's mean training loss, from per-step losses kept on the device until read.

    `.item()` on a CUDA loss waits for the GPU to finish the step; reading every `capacity`
    steps (with one all-reduce for all of them) keeps the device busy, and the NaN/inf stop
    still names the first bad step exactly. The model may take a few steps past a bad loss
    before the read, but the run stops without saving, so the last good checkpoint stands.

    Args:
        capacity: steps between reads (`TrainConfig.loss_check_every`).
        steps_per_epoch: to name the epoch and batch of a bad step.
        checkpoint: the run's checkpoint path, named in the NaN/inf error.
        ctx: the process group (losses are averaged over the processes).
    """

    def __init__(
        self, capacity: int, steps_per_epoch: int, checkpoint: Path, ctx: DistContext
    ) -> None:
        self.ctx = ctx
        self.steps_per_epoch = steps_per_epoch
        self.checkpoint = checkpoint
        self.pending = torch.empty(capacity, device=ctx.device)
        self.count = 0  # losses in `pending`
        self.first_step = 0  # optimizer step of pending[0]
        self.last = math.nan  # the latest loss read, for the progress bar
        self.loss_sum, self.loss_count = 0.0, 0  # the epoch so far

    @property
    def full(self) -> bool:
        return self.count == len(self.pending)

    @property
    def epoch_mean(self) -> float:
        return self.loss_sum / max(self.loss_count, 1)

    def append(self, loss: torch.Tensor, step: int) -> None:
        """Record the loss of optimizer step `step` (0-based) without waiting for it."""
        if self.count == 0:
            self.first_step = step
        self.pending[self.count] = loss.detach()
        self.count += 1

    def read(self) -> None:
        """Add the pending losses (averaged over processes) to the epoch's sum.

        Raises:
            NonFiniteLossError: naming the first NaN/inf step, its epoch and batch.
        """
        values = self.ctx.mean(self.pending[: self.count]).tolist()
        self.count = 0
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                raise self._non_finite(value, self.first_step + offset)
            self.loss_sum, self.loss_count = self.loss_sum + value, self.loss_count + 1
        if values:
            self.last = values[-1]

    def new_epoch(self) -> None:
        """Start the next epoch's average afresh."""
        self.loss_sum, self.loss_count = 0.0, 0

    def state(self) -> list:
        """The epoch's running sum and count, for a checkpoint (read first)."""
        return [self.loss_sum, self.loss_count]

    def load_state(self, state: list) -> None:
        self.loss_sum, self.loss_count = state

    def _non_finite(self, value: float, step: int) -> NonFiniteLossError:
        epoch, batch = divmod(step, self.steps_per_epoch)
        kept = (
            f"the last good checkpoint ({self.checkpoint}) is kept"
            if self.checkpoint.exists()
            else "no checkpoint had been written yet"
        )
        return NonFiniteLossError(
            f"loss is {value} at step {step + 1} (epoch {epoch + 1}, batch "
            f"{batch + 1}/{self.steps_per_epoch}); training stopped and {kept}. "
            "Try a lower lr, or check the data for extreme values."
        )
