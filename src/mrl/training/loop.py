"""The training loop: `train(config, resume)` -> `TrainResult`, single- or multi-process.

One optimizer step per global batch; the learning rate follows a per-step warm-up then
cosine or linear decay (`optim`); after each epoch the test split is scored at every nested
size, then rank 0 writes the checkpoint (atomically) and appends a line to metrics.jsonl.

Multi-process (`torchrun`): the global batch `batch_size` is split evenly across the
processes, so the same config gives the same optimisation on any number of them; test
metrics are summed over the ranks' shards of the test split. Rank 0 holds the run folder's
lock for the whole run (`rundir.claim_run_dir`); a refusal there stops every rank.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from mrl.checks import check_labels
from mrl.data import BatchLoader, LabeledDataset, load_dataset
from mrl.errors import ConfigError, InputError
from mrl.models import create_model
from mrl.nesting import Nesting
from mrl.nn import MatryoshkaLoss
from mrl.training.checkpoint import CHECKPOINT, save_checkpoint
from mrl.training.config import TrainConfig
from mrl.training.distributed import DistContext, on_main, setup_distributed
from mrl.training.monitor import LossMonitor
from mrl.training.optim import amp_dtype, build_optimizer, build_scheduler, optimizer_step
from mrl.training.resume import RunState, load_resumable
from mrl.training.rundir import append_metrics, claim_run_dir, prepare_run_dir
from mrl.training.text import TextTask

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        run_dir: the run folder (config.yaml, checkpoint.pt, metrics.jsonl).
        metrics: the last epoch's metrics (also the last line of metrics.jsonl): epoch
            (1-based), step (optimizer steps so far), train_loss (the epoch's mean training
            objective: classification_weight * sum_m c_m * CE_m with label smoothing, plus
            contrastive_weight * sum_m c_m * InfoNCE_m for text pairs), test_loss (the heads'
            CE without smoothing) and top1 {size as str: accuracy in [0, 1]} when there is a
            head, mrr10 {size as str: MRR@10} for text pairs, lr, examples_per_s (training
            throughput of the epoch's steps: images, pairs or texts per second, evaluation
            excluded), time_s (epoch wall time).
        is_main: False on the non-zero ranks of a multi-process run (which write nothing).
    """

    run_dir: Path
    metrics: dict[str, Any]
    is_main: bool = True

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT

    @property
    def examples_per_s(self) -> float:
        """Training throughput of the last epoch (pairs/s for a text pair set)."""
        return self.metrics["examples_per_s"]


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
    loss_fn = MatryoshkaLoss(nesting)  # the training objective's per-size CE, unsmoothed
    g = len(nesting)
    # per size: [correct (G), summed CE (G)], plus the sample count
    totals = torch.zeros(2 * g + 1, dtype=torch.float64, device=ctx.device)
    for x, y in loader.iter_batches():
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        with torch.autocast(ctx.device.type, dtype=autocast, enabled=autocast is not None):
            logits = model(x)  # (G, N, C)
        logits = logits.float()
        totals[:g] += (logits.argmax(dim=2) == y).sum(dim=1)
        totals[g : 2 * g] += loss_fn.per_size(logits, y) * len(y)  # per-size mean -> sum
        totals[-1] += len(y)
    ctx.sum_(totals)
    count = max(totals[-1].item(), 1.0)
    weights = torch.tensor(nesting.weights, dtype=torch.float64, device=ctx.device)
    return {
        "test_loss": float(weights @ totals[g : 2 * g] / count),
        "top1": {str(m): totals[i].item() / count for i, m in enumerate(nesting.dims)},
    }


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train a `MatryoshkaModel` as `config` says; under `torchrun`, with DDP.

    Vision backbones train from scratch on a labelled image or feature set; backbone "text"
    fine-tunes a Hugging Face encoder on a text set (`mrl.training.text`).

    Args:
        config: the run's settings; `config.out_dir` is the run folder.
        resume: continue from the run folder's checkpoint if there is one (exactly: same
            weights as an uninterrupted run). A checkpoint that already finished
            `config.epochs` (or `max_steps`) returns its stored metrics at once, so
            `train(config, resume=True)` doubles as a cache.

    Returns:
        `TrainResult` with the run folder and the last epoch's metrics.

    Raises:
        PathError: `out_dir` is a file, under a file, or not writable (before any training).
        LockedError: another run, or a resume of it, holds the run folder.
        RunExistsError: the run folder holds a checkpoint and `resume` is False.
        CheckpointError: the checkpoint is truncated, foreign, or its config differs in a
            key that changes the model (see `RUN_ONLY_KEYS`).
        InputError: train and test inputs of different shapes, or test labels beyond the
            train split's classes, or fewer training rows than one batch (before the first
            step).
        ConfigError: a text model whose width is not the nesting's last size.
        FormatError: a text model folder that is not a model, a damaged data file (by line).
        NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).

    Example:
        >>> config = TrainConfig(dataset="digits", backbone="mlp", epochs=1, out_dir="runs/x")
        >>> train(config).metrics["top1"]  # doctest: +SKIP
        {'8': 0.91, '16': 0.93, '32': 0.94, '64': 0.94}
    """
    ctx, created = setup_distributed(config.device)
    try:
        with contextlib.ExitStack() as held:
            # Rank 0 holds the lock until the run ends; the others wait for its verdict.
            on_main(ctx, lambda: held.enter_context(claim_run_dir(config.out_dir, resume)))
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


class VisionTask:
    """A vision run's model, batches, loss and evaluation (`TextTask`'s image counterpart).

    Raises:
        InputError: as `_load_splits`, or fewer training samples than one batch.
    """

    def __init__(self, config: TrainConfig, ctx: DistContext) -> None:
        self.config, self.ctx = config, ctx
        train_set, test_set = _load_splits(config)
        nesting = config.get_nesting()
        self.model = create_model(
            config.backbone,
            train_set.in_shape,
            nesting,
            train_set.num_classes,
            config.head,
            config.ff_dim,
        ).to(ctx.device)
        # FF-k trains one size; its loss and metrics are over that size alone.
        self.head_nesting = nesting if config.head != "ff" else Nesting(self.model.head_dims)
        self.objective = MatryoshkaLoss(self.head_nesting, label_smoothing=config.label_smoothing)
        self.batches, self.test_loader = _loaders(config, train_set, test_set, ctx)
        self.data = {"in_shape": list(train_set.in_shape), "num_classes": train_set.num_classes}

    def iter_batches(self, epoch: int, start: int = 0):
        """This rank's (x, y) batches of `epoch` from global batch `start`, on its device."""
        device = self.ctx.device
        for x, y in self.batches.iter_batches(epoch, start):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def loss(self, net: nn.Module, batch, autocast: torch.dtype | None) -> torch.Tensor:
        x, y = batch
        loss = forward_loss(net, self.objective, x, y, autocast)
        weight = self.config.classification_weight
        return loss if weight == 1 else weight * loss

    def evaluate(self, autocast: torch.dtype | None = None) -> dict[str, Any]:
        return evaluate(self.model, self.test_loader, self.head_nesting, self.ctx, autocast)


def _train(config: TrainConfig, resume: bool, ctx: DistContext) -> TrainResult:
    """The run on this rank (rank 0 already holds the run folder): resume, set up, train."""
    run_dir = Path(config.out_dir)
    ckpt_path = run_dir / CHECKPOINT
    state = None
    if resume and ckpt_path.exists():
        state = load_resumable(ckpt_path, config, ctx.device)
        if state["step"] >= _stop_step(config, state["steps_per_epoch"]):
            if ctx.is_main:
                logger.info("%s is complete (step %d); using its metrics", run_dir, state["step"])
            return TrainResult(run_dir, state["metrics"], ctx.is_main)

    _seed_everything(config.seed)
    task = TextTask(config, ctx) if config.is_text else VisionTask(config, ctx)
    model = task.model
    steps_per_epoch = len(task.batches)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    autocast = amp_dtype(config, ctx.device)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=autocast == torch.float16)
    monitor = LossMonitor(config.loss_check_every, steps_per_epoch, ckpt_path, ctx)
    run = RunState(
        config,
        task.data,
        model,
        task.objective,
        optimizer,
        scheduler,
        scaler,
        monitor,
        steps_per_epoch,
    )
    step, metrics = run.restore(state, ckpt_path) if state is not None else (0, {})
    # Text: DDP wraps the objective, whose one forward encodes every column of the batch.
    net = _distribute(task.objective if config.is_text else model, config, ctx)
    if ctx.is_main:
        prepare_run_dir(run_dir, config, state)
        logger.info(
            "training %s/%s head=%s nesting=%s on %s x %d process(es): %d steps/epoch",
            *(config.backbone, config.dataset, config.head, list(model.head_dims)),
            *(ctx.device, ctx.world_size, steps_per_epoch),
        )

    stop = _stop_step(config, steps_per_epoch)
    while step < stop:
        epoch, start = divmod(step, steps_per_epoch)
        t0 = time.perf_counter()
        net.train()
        bar = tqdm(
            task.iter_batches(epoch, start),
            total=min(steps_per_epoch, stop - epoch * steps_per_epoch) - start,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            leave=False,
            disable=True if not (ctx.is_main and config.progress) else None,
        )
        first = step
        for batch in bar:
            loss = task.loss(net, batch, autocast)
            monitor.append(loss, step)
            optimizer_step(loss, optimizer, scaler)
            scheduler.step()
            step += 1
            epoch_done = step % steps_per_epoch == 0 or step >= stop
            mid_epoch_save = (
                config.checkpoint_every is not None
                and step % config.checkpoint_every == 0
                and not epoch_done
            )
            if monitor.full or mid_epoch_save or epoch_done:
                monitor.read()  # raises NonFiniteLossError before anything is saved
                bar.set_postfix(loss=f"{monitor.last:.4f}", refresh=False)
            if mid_epoch_save and ctx.is_main:  # metrics stay the last finished epoch's
                save_checkpoint(ckpt_path, run.payload(step, metrics))
            if step >= stop:
                break
        bar.close()
        train_s = time.perf_counter() - t0  # the steps alone (monitor.read waited for them)

        metrics = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": monitor.epoch_mean,
            **task.evaluate(autocast),
            "lr": optimizer.param_groups[0]["lr"],
            "examples_per_s": (step - first) * config.batch_size / max(train_s, 1e-9),
            "time_s": time.perf_counter() - t0,
        }
        if step % steps_per_epoch == 0:  # a finished epoch starts the next average afresh
            monitor.new_epoch()
        if ctx.is_main:
            save_checkpoint(ckpt_path, run.payload(step, metrics))
            append_metrics(run_dir, metrics)
            _log_epoch(metrics)
    return TrainResult(run_dir, metrics, ctx.is_main)


def _load_splits(config: TrainConfig) -> tuple[LabeledDataset, LabeledDataset]:
    """Both splits, checked to fit one model before any step (not after the first epoch).

    Raises:
        InputError: the splits' inputs differ in shape, or test labels exceed the classes.
    """
    train_set, test_set = (
        load_dataset(config.dataset, split, config.data_root, image_size=config.image_size)
        for split in ("train", "test")
    )
    if tuple(train_set.in_shape) != tuple(test_set.in_shape):
        raise InputError(
            f"{config.dataset} train inputs have shape {tuple(train_set.in_shape)} but test "
            f"inputs {tuple(test_set.in_shape)} (per item); one model reads both, so give the "
            "splits the same features"
        )
    check_labels(test_set.labels, f"{config.dataset} test labels", train_set.num_classes)
    return train_set, test_set


def _loaders(
    config: TrainConfig, train_set: LabeledDataset, test_set: LabeledDataset, ctx: DistContext
) -> tuple[BatchLoader, BatchLoader]:
    """This rank's shard of each split: shuffled full batches for training, all for testing."""
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
    if len(train_loader) == 0:
        raise InputError(
            f"{config.dataset} train split has {len(train_set)} samples, fewer than "
            f"batch_size {config.batch_size}; lower batch_size"
        )
    test_loader = BatchLoader(
        test_set,
        config.eval_batch_size,
        rank=ctx.rank,
        world_size=ctx.world_size,
        num_workers=config.num_workers,
    )
    return train_loader, test_loader


def _distribute(model: nn.Module, config: TrainConfig, ctx: DistContext) -> nn.Module:
    """The module the steps run through: `model` itself, or its DDP wrapper (and SyncBN)."""
    if ctx.world_size == 1:
        return model
    if config.sync_bn:
        if ctx.device.type != "cuda":
            raise ConfigError("sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(
        model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None
    )


def _stop_step(config: TrainConfig, steps_per_epoch: int) -> int:
    total = config.epochs * steps_per_epoch
    return total if config.max_steps is None else min(total, config.max_steps)


def _seed_everything(seed: int) -> None:
    """Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log_epoch(metrics: dict[str, Any]) -> None:
    parts = [f"epoch {metrics['epoch']} step {metrics['step']}"]
    parts.append(f"train_loss {metrics['train_loss']:.4f}")
    if "test_loss" in metrics:
        parts.append(f"test_loss {metrics['test_loss']:.4f}")
    for key in ("top1", "mrr10"):
        if key in metrics:
            parts.append(f"{key} " + " ".join(f"{m}:{v:.4f}" for m, v in metrics[key].items()))
    parts.append(f"({metrics['examples_per_s']:.1f}/s, {metrics['time_s']:.1f} s)")
    logger.info("  ".join(parts))
