"""The training loop: `train(config, resume)` -> `TrainResult`, single- or multi-process.

One optimizer step per global batch; the learning rate follows a per-step warm-up then
cosine or linear decay; after each epoch the test split is scored at every nested size,
then rank 0 writes the checkpoint (atomically) and appends a line to metrics.jsonl.

Multi-process (`torchrun`): the global batch `batch_size` is split evenly across the
processes, so the same config gives the same optimisation on any number of them; test
metrics are summed over the ranks' shards of the test split.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from mrl.data import BatchLoader, LabeledDataset, load_dataset
from mrl.io import atomic_open
from mrl.models import create_model
from mrl.nesting import Nesting
from mrl.nn import MatryoshkaLoss
from mrl.training.checkpoint import (
    CHECKPOINT,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mrl.training.config import TrainConfig
from mrl.training.distributed import DistContext, setup_distributed

logger = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
# Keys a resumed run may change: they extend, relocate or re-host the run. Any other
# difference would silently train a different model from the checkpoint's state.
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "max_steps",
        "device",
        "out_dir",
        "data_root",
        "num_workers",
        "progress",
        "eval_batch_size",
        "loss_check_every",
        "checkpoint_every",
    }
)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stopped and the last checkpoint is kept."""


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        run_dir: the run folder (config.yaml, checkpoint.pt, metrics.jsonl).
        metrics: the last epoch's metrics (also the last line of metrics.jsonl): epoch
            (1-based), step (optimizer steps so far), train_loss (the epoch's mean training
            objective, sum_m c_m * CE_m with label smoothing), test_loss (the same without
            smoothing), top1 {size as str: accuracy in [0, 1]}, lr, time_s (epoch wall time).
        is_main: False on the non-zero ranks of a multi-process run (which write nothing).
    """

    run_dir: Path
    metrics: dict[str, Any]
    is_main: bool = True

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Learning-rate factor for optimizer step `step` (0-based): linear warm-up to 1, then decay.

    Warm-up takes `warmup_steps` steps (step 0 already gets 1/warmup_steps, so no step has
    lr 0); then cosine or linear decay reaches 0 at `total_steps`.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW; weight decay on weight matrices only (not biases, norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision (always on the CPU)."""
    if not config.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if config.amp_dtype == "bf16" else torch.float16


def forward_loss(
    model: nn.Module,
    loss_fn: MatryoshkaLoss,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """The training loss of one batch: model under autocast, loss in float32.

    Args:
        x: [N, *in_shape] inputs on the model's device.
        y: [N] int64 labels.
        autocast: the mixed-precision dtype, or None.

    Returns:
        The scalar loss, sum over sizes of c_m * CE_m.
    """
    with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
        logits = model(x)  # (G, N, C)
    return loss_fn(logits.float(), y)


def optimizer_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> None:
    """Backward and update; `scaler` scales the loss for fp16 (it is a no-op when disabled)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: BatchLoader,
    nesting: Nesting,
    ctx: DistContext,
    autocast: torch.dtype | None = None,
) -> dict[str, Any]:
    """Test loss (sum_m c_m * CE_m, no label smoothing) and top-1 per size, over all ranks.

    Returns:
        {"test_loss": float, "top1": {str(size): accuracy in [0, 1]}}.
    """
    model.eval()
    weights = torch.tensor(nesting.weights, dtype=torch.float64, device=ctx.device)
    # per size: [correct (G), summed CE (G)], plus the sample count
    totals = torch.zeros(2 * len(nesting) + 1, dtype=torch.float64, device=ctx.device)
    for x, y in loader.iter_batches():
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        with torch.autocast(ctx.device.type, dtype=autocast, enabled=autocast is not None):
            logits = model(x)  # (G, N, C)
        logits = logits.float()
        g, n, c = logits.shape
        ce = F.cross_entropy(logits.reshape(g * n, c), y.repeat(g), reduction="none")  # (G*N,)
        totals[:g] += (logits.argmax(dim=2) == y).sum(dim=1)
        totals[g : 2 * g] += ce.view(g, n).sum(dim=1)
        totals[-1] += n
    ctx.sum_(totals)
    g, count = len(nesting), max(totals[-1].item(), 1.0)
    return {
        "test_loss": float(weights @ totals[g : 2 * g] / count),
        "top1": {str(m): totals[i].item() / count for i, m in enumerate(nesting.dims)},
    }


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train a `MatryoshkaModel` as `config` says; under `torchrun`, with DDP.

    Args:
        config: the run's settings; `config.out_dir` is the run folder.
        resume: continue from the run folder's checkpoint if there is one (exactly: same
            weights as an uninterrupted run). A checkpoint that already finished
            `config.epochs` (or `max_steps`) returns its stored metrics at once, so
            `train(config, resume=True)` doubles as a cache.

    Returns:
        `TrainResult` with the run folder and the last epoch's metrics.

    Raises:
        FileExistsError: the run folder holds a checkpoint and `resume` is False.
        CheckpointError: the checkpoint is truncated, foreign, or its config differs.
        NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).

    Example:
        >>> config = TrainConfig(dataset="digits", backbone="mlp", epochs=1, out_dir="runs/x")
        >>> train(config).metrics["top1"]  # doctest: +SKIP
        {'8': 0.91, '16': 0.93, '32': 0.94, '64': 0.94}
    """
    ctx, created = setup_distributed(config.device)
    try:
        result = _train(config, resume, ctx)
        if created:
            # Rank 0 may still be writing its last checkpoint; tearing gloo down while a
            # peer is mid-flight aborts the process ("terminate called without an active
            # exception"), so every rank finishes together before the group goes. The DDP
            # wrapper sits in reference cycles: collect it now, while its group still
            # exists, rather than at interpreter exit.
            gc.collect()
            dist.barrier()
        return result
    finally:
        if created:
            dist.destroy_process_group()


def _train(config: TrainConfig, resume: bool, ctx: DistContext) -> TrainResult:
    run_dir = Path(config.out_dir)
    ckpt_path = run_dir / CHECKPOINT
    state = None
    if ckpt_path.exists():
        if not resume:
            raise FileExistsError(
                f"{run_dir} already holds a checkpoint; resume it (--resume) or choose "
                "another out_dir"
            )
        state = load_checkpoint(ckpt_path, map_location=ctx.device)
        _check_resumable(state, config, ckpt_path)
        stop = _stop_step(config, state["steps_per_epoch"])
        if state["step"] >= stop:
            if ctx.is_main:
                logger.info("%s is complete (step %d); using its metrics", run_dir, state["step"])
            return TrainResult(run_dir, state["metrics"], ctx.is_main)

    _seed_everything(config.seed)
    train_set = load_dataset(
        config.dataset, "train", config.data_root, image_size=config.image_size
    )
    test_set = load_dataset(config.dataset, "test", config.data_root, image_size=config.image_size)
    nesting = config.get_nesting()
    model = create_model(
        config.backbone,
        train_set.in_shape,
        nesting,
        train_set.num_classes,
        config.head,
        config.ff_dim,
    ).to(ctx.device)
    # FF-k trains one size; its loss and metrics are over that size alone.
    head_nesting = nesting if config.head != "ff" else Nesting(model.head_dims)
    loss_fn = MatryoshkaLoss(head_nesting, label_smoothing=config.label_smoothing)
    optimizer = build_optimizer(model, config)
    train_loader = BatchLoader(
        train_set,
        config.batch_size,
        shuffle=True,
        drop_last=True,
        seed=config.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        num_workers=config.num_workers,
    )
    test_loader = BatchLoader(
        test_set,
        config.eval_batch_size,
        rank=ctx.rank,
        world_size=ctx.world_size,
        num_workers=config.num_workers,
    )
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(
            f"{config.dataset} train split has {len(train_set)} samples, fewer than "
            f"batch_size {config.batch_size}; lower batch_size"
        )
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(total_steps, round(config.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, warmup_steps, total_steps, config.schedule)
    )
    autocast = amp_dtype(config, ctx.device)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=autocast == torch.float16)

    step, loss_sum, loss_count, metrics = 0, 0.0, 0, {}
    if state is not None:
        _check_same_data(state, train_set, steps_per_epoch, ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, metrics = state["step"], state["metrics"]
        loss_sum, loss_count = state["epoch_loss"]
        # The schedule is a function of the step; re-derive the lr in case `epochs` changed.
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base_lr * scheduler.lr_lambdas[0](step)
        set_rng_state(state["rng"])
    if config.sync_bn and ctx.world_size > 1:
        if ctx.device.type != "cuda":
            raise ValueError("sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model
    if ctx.world_size > 1:
        net = DistributedDataParallel(
            model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None
        )
    if ctx.is_main:
        _prepare_run_dir(run_dir, config, state)
        logger.info(
            "training %s/%s head=%s nesting=%s on %s x %d process(es): %d steps/epoch",
            config.backbone,
            config.dataset,
            config.head,
            list(model.head_dims),
            ctx.device,
            ctx.world_size,
            steps_per_epoch,
        )

    stop = _stop_step(config, steps_per_epoch)
    pending = PendingLosses(config.loss_check_every, ctx)
    run = _Checkpointed(config, train_set, model, optimizer, scheduler, scaler, steps_per_epoch)
    while step < stop:
        epoch, start = divmod(step, steps_per_epoch)
        t0 = time.perf_counter()
        net.train()
        epoch_end = min(steps_per_epoch, stop - epoch * steps_per_epoch)
        bar = tqdm(
            train_loader.iter_batches(epoch, start),
            total=epoch_end - start,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            leave=False,
            disable=True if not (ctx.is_main and config.progress) else None,
        )
        for x, y in bar:
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            loss = forward_loss(net, loss_fn, x, y, autocast)
            pending.append(loss, step)
            optimizer_step(loss, optimizer, scaler)
            scheduler.step()
            step += 1
            mid_epoch_save = (
                config.checkpoint_every is not None
                and step % config.checkpoint_every == 0
                and step % steps_per_epoch != 0
                and step < stop
            )
            if pending.full or mid_epoch_save or step >= stop or step % steps_per_epoch == 0:
                loss_sum, loss_count = _read_losses(
                    pending, loss_sum, loss_count, steps_per_epoch, ckpt_path
                )
                bar.set_postfix(loss=f"{pending.last:.4f}", refresh=False)
            if mid_epoch_save and ctx.is_main:  # metrics stay the last finished epoch's
                save_checkpoint(ckpt_path, run.payload(step, loss_sum, loss_count, metrics))
            if step >= stop:
                break
        bar.close()
        metrics = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": loss_sum / max(loss_count, 1),
            **evaluate(model, test_loader, head_nesting, ctx, autocast),
            "lr": optimizer.param_groups[0]["lr"],
            "time_s": time.perf_counter() - t0,
        }
        if step % steps_per_epoch == 0:  # a finished epoch starts the next average afresh
            loss_sum, loss_count = 0.0, 0
        if ctx.is_main:
            save_checkpoint(ckpt_path, run.payload(step, loss_sum, loss_count, metrics))
            with open(run_dir / METRICS, "a") as f:
                f.write(json.dumps(metrics) + "\n")
            top1 = " ".join(f"{m}:{acc:.4f}" for m, acc in metrics["top1"].items())
            logger.info(
                "epoch %d step %d  train_loss %.4f  test_loss %.4f  top1 %s  (%.1f s)",
                metrics["epoch"],
                step,
                metrics["train_loss"],
                metrics["test_loss"],
                top1,
                metrics["time_s"],
            )
    return TrainResult(run_dir, metrics, ctx.is_main)


@dataclass
class _Checkpointed:
    """What a checkpoint saves besides the step counters: one place for both save points."""

    config: TrainConfig
    train_set: LabeledDataset
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    steps_per_epoch: int

    def payload(self, step: int, loss_sum: float, loss_count: int, metrics: dict) -> dict:
        """The checkpoint dict after optimizer step `step` (RNG state taken now)."""
        return {
            "config": self.config.to_dict(),
            "data": {
                "in_shape": list(self.train_set.in_shape),
                "num_classes": self.train_set.num_classes,
            },
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": step,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_loss": [loss_sum, loss_count],
            "rng": rng_state(),
            "metrics": metrics,
        }


class PendingLosses:
    """Per-step losses kept on the device until they are read back together.

    `.item()` on a CUDA loss waits for the GPU to finish the step; reading every `capacity`
    steps (with one all-reduce for all of them) keeps the device busy, and the NaN/inf stop
    still names the first bad step exactly. The model may take a few steps past a bad loss
    before the read, but the run stops without saving, so the last good checkpoint stands.
    """

    def __init__(self, capacity: int, ctx: DistContext):
        self.ctx = ctx
        self.losses = torch.empty(capacity, device=ctx.device)
        self.count = 0
        self.first_step = 0
        self.last = math.nan

    @property
    def full(self) -> bool:
        return self.count == len(self.losses)

    def append(self, loss: torch.Tensor, step: int) -> None:
        """Record the loss of optimizer step `step` (0-based) without waiting for it."""
        if self.count == 0:
            self.first_step = step
        self.losses[self.count] = loss.detach()
        self.count += 1

    def read(self) -> tuple[int, list[float]]:
        """(first step, the losses since the last read averaged over processes); empties."""
        values = self.ctx.mean(self.losses[: self.count]).tolist()
        self.count = 0
        if values:
            self.last = values[-1]
        return self.first_step, values


def _read_losses(
    pending: PendingLosses, loss_sum: float, loss_count: int, steps_per_epoch: int, ckpt: Path
) -> tuple[float, int]:
    """Add the pending losses to the epoch's running sum; stop at the first NaN/inf."""
    first_step, values = pending.read()
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            step = first_step + offset
            raise _non_finite(value, step, step // steps_per_epoch, steps_per_epoch, ckpt)
        loss_sum, loss_count = loss_sum + value, loss_count + 1
    return loss_sum, loss_count


def _stop_step(config: TrainConfig, steps_per_epoch: int) -> int:
    total = config.epochs * steps_per_epoch
    return total if config.max_steps is None else min(total, config.max_steps)


def _seed_everything(seed: int) -> None:
    """Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_resumable(state: dict[str, Any], config: TrainConfig, path: Path) -> None:
    saved = state["config"]
    current = config.to_dict()
    changed = sorted(
        k
        for k in current.keys() | saved.keys()
        if k not in RESUMABLE_CHANGES and current.get(k) != saved.get(k)
    )
    if changed:
        diffs = ", ".join(
            f"{k} ({saved.get(k)!r} in the checkpoint, now {current.get(k)!r})" for k in changed
        )
        raise CheckpointError(
            f"cannot resume {path}: the config differs in {diffs}; use the checkpoint's "
            "settings or another out_dir"
        )


def _check_same_data(
    state: dict[str, Any], train_set: LabeledDataset, steps_per_epoch: int, path: Path
) -> None:
    now = {"in_shape": list(train_set.in_shape), "num_classes": train_set.num_classes}
    if state["data"] != now or state["steps_per_epoch"] != steps_per_epoch:
        raise CheckpointError(
            f"cannot resume {path}: it was trained on data with {state['data']} and "
            f"{state['steps_per_epoch']} steps per epoch, but the data now has {now} and "
            f"{steps_per_epoch}"
        )


def _prepare_run_dir(run_dir: Path, config: TrainConfig, state: dict[str, Any] | None) -> None:
    """Write config.yaml; on resume, keep only metrics lines the checkpoint has reached."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(f".{CHECKPOINT}.*.tmp"):  # left by a kill -9 mid-write
        stale.unlink(missing_ok=True)
    config.to_yaml(run_dir / CONFIG)
    log = run_dir / METRICS
    if state is None:
        log.unlink(missing_ok=True)
        return
    kept = []
    if log.exists():
        for line in log.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line cut short by a crash
                record = json.loads(line)
                if record["step"] <= state["step"]:
                    kept.append(record)
    if state["metrics"] and (not kept or kept[-1]["step"] < state["step"]):
        kept.append(state["metrics"])  # crashed between the checkpoint and its log line
    with atomic_open(log, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in kept)


def _non_finite(
    value: float, step: int, epoch: int, steps_per_epoch: int, ckpt_path: Path
) -> NonFiniteLossError:
    kept = (
        f"the last good checkpoint ({ckpt_path}) is kept"
        if ckpt_path.exists()
        else "no checkpoint had been written yet"
    )
    return NonFiniteLossError(
        f"loss is {value} at step {step + 1} (epoch {epoch + 1}, batch "
        f"{step % steps_per_epoch + 1}/{steps_per_epoch}); training stopped and {kept}. "
        "Try a lower lr, or check the data for extreme values."
    )
