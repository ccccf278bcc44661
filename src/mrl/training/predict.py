"""Per-size head logits of a trained run on its held-out split: what `mrl cascade` fits on.

A run folder already says everything needed to score its test split (model, dataset,
data_root), so `run_logits(run_dir)` needs nothing else, for a vision run as for a text one
(whose documents are encoded by the run's fine-tuned encoder, longest first).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from mrl.checks import check_int
from mrl.data import BatchLoader, load_dataset, load_text_splits
from mrl.errors import InputError
from mrl.training.checkpoint import load_model


@dataclass(frozen=True)
class RunLogits:
    """A run's per-size logits on one split.

    Attributes:
        logits: [G, N, C] float32, one slice per head size.
        labels: [N] int64 class ids.
        head_dims: the G head sizes (the nesting, or (k,) for FF-k).
        head: the head kind ("mrl", "mrl-e", "ff").
    """

    logits: np.ndarray
    labels: np.ndarray
    head_dims: tuple[int, ...]
    head: str


@torch.no_grad()
def run_logits(run_dir: str | os.PathLike, split: str = "test", batch_size: int = 256) -> RunLogits:
    """The head logits of run `run_dir`'s model on its dataset's `split` (every row).

    Args:
        run_dir: a run folder (or its checkpoint.pt).
        split: "test" (held out: what a cascade is fitted and scored on) or "train".
        batch_size: rows per forward pass.

    Raises:
        InputError: the run has no classification head (trained with classification_weight
            0), so it gives no logits.
        as `load_model` and the dataset loaders.
    """
    batch_size = check_int("batch_size", batch_size)
    model, config = load_model(run_dir)
    if model.head is None:
        raise InputError(
            f"{run_dir} has no classification head (trained with classification_weight 0), "
            "so it has no logits; train with classification_weight > 0"
        )
    if config.is_text:
        train, test = load_text_splits(config.dataset, config.data_root)
        rows = train if split == "train" else test
        z = model.backbone.encode(rows.texts, batch_size)  # (N, d)
        logits = model.forward_head(torch.from_numpy(z))  # (G, N, C)
        labels = rows.labels
    else:
        dataset = load_dataset(
            config.dataset, split, config.data_root, image_size=config.image_size
        )
        parts = [model(x) for x, _ in BatchLoader(dataset, batch_size)]  # (G, b, C) each
        logits, labels = torch.cat(parts, dim=1), dataset.labels
    return RunLogits(
        logits.float().numpy(), np.asarray(labels), tuple(model.head_dims), model.head.kind
    )
