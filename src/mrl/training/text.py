"""The text side of `train`: a Hugging Face encoder on a text set, batched by length.

`TextTask` is what the loop needs for a text run, with the same duties as the vision
`VisionTask` in `loop.py`: the model, this rank's batches of an epoch, the loss of a batch,
the per-epoch test metrics, and what identifies the data in a checkpoint.

Batches: rows are grouped by token length (`LengthSortedBatches`: shuffle by seed and
epoch, sort within chunks of `SORT_CHUNK_BATCHES` batches, shuffle the batch order) and each
column (queries, documents, hard negatives) is tokenised on its own with dynamic padding, so
short queries are not padded to the length of long descriptions. Rows are sorted by
`columns_sort_key`: the longest column's token count first, then the next, so a batch is
short in every column. Each column takes one encoder pass; every nested size of every
objective is computed from that one pass. Measured on 16,000 Debian training pairs (MiniLM
tokenizer, max_seq_length 64, batch 32): random batches hold 1.368M token slots for 1.044M
real tokens (23.7% padding); chunks of 16 sorted batches hold 1.162M (10.1%) with this key
and 1.218M (14.3%) sorted by the sum of the columns' lengths; chunks of 50 (the default)
1.133M (7.9%), 64 give 1.131M.

Objective: `contrastive_weight` * Matryoshka InfoNCE (queries -> documents, in-batch and
hard negatives) + `classification_weight` * Matryoshka cross-entropy of the head over the
documents' labels. Under DDP the InfoNCE sees the whole global batch (embeddings are
gathered from every rank, with gradients), so W processes train as one does.

Per-epoch metrics (on `max_eval_examples` test rows drawn with a fixed seed, the same for
every run, so an epoch's evaluation is bounded): MRR@10 per size of each query against all
those documents (one relevant each), and, with a head, test_loss and top-1 per size. Every
rank evaluates the same rows (the set is capped, and MRR needs every document), so nothing
is gathered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mrl.checks import check_labels
from mrl.data import LengthSortedBatches, TextSplit, columns_sort_key, load_text_splits
from mrl.data.textsets import sample_rows
from mrl.errors import InputError
from mrl.models import MatryoshkaModel, create_text_model
from mrl.nesting import Nesting
from mrl.nn import MatryoshkaContrastiveLoss, MatryoshkaLoss, prefix_similarities
from mrl.training.config import TrainConfig
from mrl.training.distributed import DistContext

logger = logging.getLogger(__name__)

# Batches per length-sorted chunk: less padding, still random batches. 50 as the megabatches
# of Hugging Face's LengthGroupedSampler (group_by_length).
SORT_CHUNK_BATCHES = 50
MRR_K = 10
EVAL_SEED = 0  # draws the capped per-epoch test rows
_EVAL_QUERY_CHUNK = 512  # queries per similarity block in the MRR pass (bounds memory)


class TextObjective(nn.Module):
    """The weighted text loss of one batch, as a module so that DDP wraps one forward call.

    Args:
        model: the `MatryoshkaModel` (a `TextEncoder` backbone, a head or None).
        contrastive: the Matryoshka InfoNCE, or None when its weight is 0.
        classification: the heads' Matryoshka cross-entropy, or None when its weight is 0.
        weights: (contrastive_weight, classification_weight).
    """

    def __init__(
        self,
        model: MatryoshkaModel,
        contrastive: MatryoshkaContrastiveLoss | None,
        classification: MatryoshkaLoss | None,
        weights: tuple[float, float],
    ) -> None:
        super().__init__()
        self.model = model
        self.contrastive = contrastive
        self.classification = classification
        self.weights = weights

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Scalar loss of `batch` ({"tokens": {column: tokens}, "labels": [N] or None})."""
        z = {col: self.model.forward_features(t) for col, t in batch["tokens"].items()}  # (N, d)
        loss = torch.zeros((), device=z["text"].device)
        if self.contrastive is not None:
            pairs = {col: _gather(e.float()) for col, e in z.items()}
            loss = loss + self.weights[0] * self.contrastive(
                pairs["query"], pairs["text"], pairs.get("negative")
            )
        if self.classification is not None:
            logits = self.model.forward_head(z["text"])  # (G, N, C)
            loss = loss + self.weights[1] * self.classification(logits.float(), batch["labels"])
        return loss


class TextTask:
    """A text run's model, batches, loss and evaluation (see the module docstring).

    Raises:
        ConfigError: the nesting does not end at the encoder's width (both named).
        FormatError, MissingPathError, PathError: a text model folder that is not a model,
            a missing or damaged data file (named by line).
        InputError: fewer training rows than one batch, test labels beyond the classes.
    """

    def __init__(self, config: TrainConfig, ctx: DistContext) -> None:
        self.config, self.ctx = config, ctx
        train, test = load_text_splits(
            config.dataset, config.data_root, config.max_train_examples, config.seed
        )
        classify = config.classification_weight > 0
        if classify:
            check_labels(test.labels, f"{config.dataset} test labels", train.num_classes)
        self.nesting = config.get_nesting()
        self.model = create_text_model(
            config.text_model,
            self.nesting,
            train.num_classes if classify else None,
            config.head,
            config.ff_dim,
            config.max_seq_length,
            config.rotation,
        ).to(ctx.device)
        self.encoder = self.model.backbone
        self.columns = ("query", "text", "negative") if config.contrastive_weight > 0 else ("text",)
        self.train = train
        # The same rows for every run (seed 0, not the run's): runs compare on one sample,
        # spread over the whole file rather than its first (alphabetical) packages.
        self.test = test.subset(sample_rows(len(test), config.max_eval_examples, EVAL_SEED))
        self.batches = LengthSortedBatches(
            self._sort_keys(train),
            config.batch_size,
            chunk_batches=SORT_CHUNK_BATCHES,
            shuffle=True,
            drop_last=True,
            seed=config.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        if len(self.batches) == 0:
            raise InputError(
                f"{config.dataset} train split has {len(train)} rows, fewer than batch_size "
                f"{config.batch_size}; lower batch_size"
            )
        self.head_nesting = (
            None
            if self.model.head is None
            else (self.nesting if config.head != "ff" else Nesting(self.model.head_dims))
        )
        contrastive = None
        if config.contrastive_weight > 0:
            contrastive = MatryoshkaContrastiveLoss(
                self.nesting,
                config.temperature,
                config.symmetric_loss,
                config.n_dims_per_step,
                config.seed,
                distill_weight=config.distill_weight,
                distill_temperature=config.distill_temperature,
            )
        classification = None
        if classify:
            classification = MatryoshkaLoss(
                self.head_nesting, label_smoothing=config.label_smoothing
            )
        weights = (config.contrastive_weight, config.classification_weight)
        self.objective = TextObjective(self.model, contrastive, classification, weights)

    @property
    def data(self) -> dict[str, Any]:
        """What identifies the training data in a checkpoint: rows and classes."""
        return {"texts": len(self.train), "num_classes": self.train.num_classes}

    def _sort_keys(self, split: TextSplit) -> np.ndarray:
        """[N] sort key per row of `split` (`columns_sort_key` of the token counts of the
        columns trained on, each text capped at max_seq_length + 1); says once how many
        training and test texts are truncated."""
        counts = []
        cut = {"training": [0, 0], "test": [0, 0]}  # side -> [truncated, texts]
        for side, rows in (("training", split), ("test", self.test)):
            for name, texts in rows.columns().items():
                if name in self.columns:
                    lengths, truncated = self.encoder.count_truncated(texts)
                    if rows is split:
                        counts.append(lengths)
                    cut[side][0] += truncated
                    cut[side][1] += len(texts)
        if (cut["training"][0] or cut["test"][0]) and self.ctx.is_main:
            logger.warning(
                "%d of %d training texts and %d of %d test texts are longer than "
                "max_seq_length=%d tokens and are truncated",
                *(*cut["training"], *cut["test"], self.encoder.max_seq_length),
            )
        return columns_sort_key(counts)

    def iter_batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        """This rank's tokenised batches of `epoch` from global batch `start`, on its device."""
        device = self.ctx.device
        columns = {k: v for k, v in self.train.columns().items() if k in self.columns}
        for rows in self.batches.iter_batches(epoch, start):
            tokens = {
                name: {
                    k: v.to(device, non_blocking=True)
                    for k, v in self.encoder.tokenize([texts[i] for i in rows]).items()
                }
                for name, texts in columns.items()
            }
            labels = None
            if self.objective.classification is not None:
                labels = torch.from_numpy(self.train.labels[rows]).to(device, non_blocking=True)
            yield {"tokens": tokens, "labels": labels}

    def loss(self, net: nn.Module, batch: dict[str, Any], autocast: torch.dtype | None):
        """The batch's scalar loss through `net` (the objective or its DDP wrapper)."""
        with torch.autocast(self.ctx.device.type, dtype=autocast, enabled=autocast is not None):
            return net(batch)

    @torch.no_grad()
    def evaluate(self, autocast: torch.dtype | None = None) -> dict[str, Any]:
        """MRR@10 per size (pairs), test_loss and top-1 per size (a head), on the capped test
        rows: {"mrr10": {str(size): float}, "test_loss": float, "top1": {...}}."""
        self.model.eval()
        metrics: dict[str, Any] = {}

        def encode(texts: list[str]) -> torch.Tensor:  # truncation was reported at set-up
            kw = dict(progress=False, warn_truncated=False)
            return torch.from_numpy(self.encoder.encode(texts, self.config.eval_batch_size, **kw))

        docs = encode(self.test.texts)  # (N, d)
        if self.test.queries is not None and self.objective.contrastive is not None:
            metrics["mrr10"] = mrr_per_size(encode(self.test.queries), docs, self.nesting)
        if self.objective.classification is not None:
            logits = self.model.forward_head(docs.to(self.ctx.device)).float()  # (G, N, C)
            labels = torch.from_numpy(self.test.labels).to(self.ctx.device)
            correct = (logits.argmax(dim=2) == labels).double().mean(dim=1)  # (G,)
            metrics["test_loss"] = float(MatryoshkaLoss(self.head_nesting)(logits, labels))
            metrics["top1"] = {
                str(m): float(c) for m, c in zip(self.head_nesting.dims, correct, strict=True)
            }
        return metrics


def _gather(z: torch.Tensor) -> torch.Tensor:
    """[N * W, d]: every rank's rows (rank order), differentiable; `z` itself for one process.

    The in-batch negatives of InfoNCE are then the whole global batch on every rank, as in
    one process. Each rank computes the same loss; all_gather's backward sends every rank's
    gradient of its rows back to their owner (W times the one-process gradient), and DDP's
    mean over the W ranks brings it back to exactly the one-process gradient.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(z.contiguous()))


def mrr_per_size(queries: torch.Tensor, docs: torch.Tensor, nesting: Nesting) -> dict[str, float]:
    """MRR@10 of query i against every document, document i its one relevant, per size.

    Args:
        queries, docs: [N, d] embeddings (row i of each is a pair); each prefix is compared by
            cosine similarity (normalised on its own), as the contrastive loss trains it.

    Returns:
        {str(size): MRR@10 in [0, 1]}.
    """
    # evaluation.metrics holds the one MRR definition (pure NumPy); imported here because the
    # training layer does not load the evaluation package at import (tests/test_architecture).
    from mrl.evaluation.metrics import mrr_at_k

    n = len(queries)
    k = min(MRR_K, n)
    rel = np.zeros((len(nesting), n, k), dtype=bool)
    for start in range(0, n, _EVAL_QUERY_CHUNK):
        q = queries[start : start + _EVAL_QUERY_CHUNK]
        top = prefix_similarities(q, docs, nesting).topk(k, dim=2).indices  # (G, c, k)
        target = torch.arange(start, start + len(q))[None, :, None]
        rel[:, start : start + len(q)] = (top == target).numpy()
    return {str(m): float(mrr_at_k(rel[g], k)) for g, m in enumerate(nesting)}
