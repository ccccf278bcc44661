"""The fine-tuned rows of `benchmarks/text.py`: our trainer and sentence-transformers' anchor.

Each row fine-tunes the same base encoder on the same (summary, description) pairs, with the
same batch size, learning rate, warm-up, epochs, sequence length and seed:

- `finetune_ours(nesting=(384,))`: `mrl train` with the contrastive loss on the full
  embedding only (the non-MRL fine-tune);
- `finetune_ours(nesting=(12, ..., 384))`: `mrl train` with our Matryoshka contrastive loss;
- `finetune_sentence_transformers`: `MatryoshkaLoss(MultipleNegativesRankingLoss)` trained by
  `SentenceTransformerTrainer`, the anchor. Its MNRL runs in both directions with a softmax
  per direction (`directions=("query_to_doc", "doc_to_query")`, `partition_mode=
  "per_direction"`) at scale 1 / temperature, which is our symmetric InfoNCE: the two
  rows optimise the same objective, so their quality and pairs/s compare implementations.

Each returns a `FineTuned`: the trained encoder and the training pairs/s (pairs over the
wall-clock of the training steps alone, without loading or evaluation). The pairs are
`training_pairs(...)`: the seeded draw `mrl train` makes for `max_train_examples`, so both
trainers see the same pairs. Settings sentence-transformers' trainer has and ours does not
are aligned to ours: weight decay 0.01, linear decay after 10% warm-up, no gradient clipping.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mrl.data.textsets import TextSplit, load_text_splits


@dataclass(frozen=True)
class FineTuneSetup:
    """What every fine-tuned row shares."""

    data: str  # debian-packages.jsonl.gz
    pairs: int  # training pairs, drawn by `seed` from the train side
    model: str  # base model folder
    max_seq_length: int
    batch_size: int
    lr: float
    epochs: int
    warmup: float  # fraction of the steps
    temperature: float
    seed: int


@dataclass(frozen=True)
class FineTuned:
    encoder: object  # a `TextEncoder` (or anything with `.encode(texts, batch_size, progress)`)
    pairs_per_second: float
    train_seconds: float


def training_pairs(setup: FineTuneSetup) -> TextSplit:
    """The train-side pairs every fine-tuned row trains on (`mrl train`'s own seeded draw)."""
    train, _ = load_text_splits("debian", setup.data, setup.pairs, setup.seed)
    return train


def finetune_ours(nesting: Sequence[int], setup: FineTuneSetup, out: Path) -> FineTuned:
    """`mrl train` on the Debian pairs with our Matryoshka InfoNCE over `nesting`."""
    from mrl.training import TrainConfig, load_model, train

    config = TrainConfig(
        dataset="debian",
        data_root=setup.data,
        backbone="text",
        text_model=setup.model,
        max_seq_length=setup.max_seq_length,
        embed_dim=max(nesting),
        nesting=sorted(nesting),
        contrastive_weight=1.0,
        classification_weight=0.0,
        temperature=setup.temperature,
        max_train_examples=setup.pairs,
        max_eval_examples=500,
        epochs=setup.epochs,
        batch_size=setup.batch_size,
        optimizer="adamw",
        lr=setup.lr,
        weight_decay=0.01,
        schedule="linear",
        warmup_epochs=setup.warmup * setup.epochs,
        seed=setup.seed,
        device="cpu",
        out_dir=str(out),
    )
    result = train(config)
    rate = result.metrics["examples_per_s"]
    model, _ = load_model(result.run_dir)
    trained = len(training_pairs(setup)) // setup.batch_size * setup.batch_size * setup.epochs
    return FineTuned(model.backbone, rate, trained / rate)


def finetune_sentence_transformers(
    nesting: Sequence[int], setup: FineTuneSetup, out: Path
) -> FineTuned:
    """The anchor: sentence-transformers' `MatryoshkaLoss(MNRL)` and its own trainer."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import (
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    from mrl.models.text import TextEncoder

    pairs = training_pairs(setup)
    model = SentenceTransformer(setup.model, device="cpu")
    model.max_seq_length = setup.max_seq_length
    data = Dataset.from_dict({"anchor": pairs.queries, "positive": pairs.texts})
    inner = MultipleNegativesRankingLoss(
        model,
        scale=1 / setup.temperature,
        directions=("query_to_doc", "doc_to_query"),
        partition_mode="per_direction",
    )
    loss = MatryoshkaLoss(model, inner, matryoshka_dims=sorted(nesting, reverse=True))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"),
        num_train_epochs=setup.epochs,
        per_device_train_batch_size=setup.batch_size,
        learning_rate=setup.lr,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        warmup_steps=setup.warmup,  # a float below 1 is a fraction of the steps (v5+)
        max_grad_norm=0.0,  # no clipping, as ours
        seed=setup.seed,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_drop_last=True,
        logging_steps=50,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    folder = out / "model"
    model.save(str(folder))
    trained = len(pairs) // setup.batch_size * setup.batch_size * setup.epochs
    return FineTuned(TextEncoder(str(folder)), trained / seconds, seconds)
