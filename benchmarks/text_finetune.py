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

Run as a script, it is the throughput probe: ours and the anchor alternated for a few steps
each, several rounds, medians printed and written as JSON (`--out`):

    python benchmarks/text_finetune.py --rounds 3 --steps 20 --out docs/results/text/speed.json

Each returns a `FineTuned`: the trained encoder and the training pairs/s (pairs over the
wall-clock of the training steps alone, without loading or evaluation). The pairs are
`training_pairs(...)`: the seeded draw `mrl train` makes for `max_train_examples`, so both
trainers see the same pairs. Settings sentence-transformers' trainer has and ours does not
are aligned to ours: weight decay 0.01, linear decay after 10% warm-up, no gradient clipping.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mrl.data.textsets import TextSplit, load_text_splits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_script  # noqa: E402  (the benchmarks' harness)


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
    # c_m of each size of a Matryoshka row, smallest size first; None: all 1 (the paper's).
    # A one-size row (the non-MRL fine-tune) has one term and ignores them.
    nesting_weights: tuple[float, ...] | None = None
    # Our Matryoshka row learns a rotation after the pooling (`TrainConfig.rotation`); a
    # one-size row never does (its loss is the same under any rotation).
    rotation: bool = False
    # Our Matryoshka row's self-distillation (`TrainConfig.distill_weight`, its temperature;
    # None: the InfoNCE one); a one-size row has no prefix to distil into.
    distill_weight: float = 0.0
    distill_temperature: float | None = None
    # "cpu" or "cuda": both trainers train there; on CUDA both use bf16 autocast (ours by
    # TrainConfig's default amp, the anchor by its trainer's bf16 flag), so neither is favoured.
    device: str = "cpu"

    def weights_for(self, nesting: Sequence[int]) -> list[float] | None:
        """The weights of a row training `nesting` (ascending), or None for all 1."""
        if self.nesting_weights is None or len(nesting) == 1:
            return None
        if len(self.nesting_weights) != len(nesting):
            raise ValueError(
                f"{len(self.nesting_weights)} nesting weights for {len(nesting)} sizes "
                f"{sorted(nesting)}: give one weight per size"
            )
        return list(self.nesting_weights)


@dataclass(frozen=True)
class FineTuned:
    encoder: object  # a `TextEncoder` (or anything with `.encode(texts, batch_size, progress)`)
    pairs_per_second: float
    train_seconds: float


def training_pairs(setup: FineTuneSetup) -> TextSplit:
    """The train-side pairs every fine-tuned row trains on (`mrl train`'s own seeded draw)."""
    train, _ = load_text_splits("debian", setup.data, setup.pairs, setup.seed)
    return train


def finetune_ours(
    nesting: Sequence[int], setup: FineTuneSetup, out: Path, max_steps: int | None = None
) -> FineTuned:
    """`mrl train` on the Debian pairs with our Matryoshka InfoNCE over `nesting`.

    `max_steps` stops early (a throughput probe: the encoder is then not reloaded, None).
    """
    from mrl.training import TrainConfig, load_model, train

    config = TrainConfig(
        dataset="debian",
        data_root=setup.data,
        backbone="text",
        text_model=setup.model,
        max_seq_length=setup.max_seq_length,
        embed_dim=max(nesting),
        nesting=sorted(nesting),
        nesting_weights=setup.weights_for(nesting),
        rotation=setup.rotation and len(nesting) > 1,
        distill_weight=setup.distill_weight if len(nesting) > 1 else 0.0,
        distill_temperature=setup.distill_temperature,
        contrastive_weight=1.0,
        classification_weight=0.0,
        temperature=setup.temperature,
        max_train_examples=setup.pairs,
        max_eval_examples=500 if max_steps is None else 16,
        epochs=setup.epochs,
        batch_size=setup.batch_size,
        optimizer="adamw",
        lr=setup.lr,
        weight_decay=0.01,
        schedule="linear",
        warmup_epochs=setup.warmup * setup.epochs,
        seed=setup.seed,
        device=setup.device,
        out_dir=str(out),
        max_steps=max_steps,
        progress=False,
    )
    result = train(config)
    rate = result.metrics["examples_per_s"]
    trained = result.metrics["step"] * setup.batch_size
    if max_steps is not None:
        return FineTuned(None, rate, trained / rate)
    model, _ = load_model(result.run_dir)
    return FineTuned(model.backbone, rate, trained / rate)


def finetune_sentence_transformers(
    nesting: Sequence[int], setup: FineTuneSetup, out: Path, max_steps: int | None = None
) -> FineTuned:
    """The anchor: sentence-transformers' `MatryoshkaLoss(MNRL)` and its own trainer.

    `max_steps` stops early (a throughput probe: the model is then not saved, encoder None).
    """
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
    model = SentenceTransformer(setup.model, device=setup.device)
    model.max_seq_length = setup.max_seq_length
    data = Dataset.from_dict({"anchor": pairs.queries, "positive": pairs.texts})
    inner = MultipleNegativesRankingLoss(
        model,
        scale=1 / setup.temperature,
        directions=("query_to_doc", "doc_to_query"),
        partition_mode="per_direction",
    )
    weights = setup.weights_for(nesting)  # ascending sizes; the loss takes them descending
    loss = MatryoshkaLoss(
        model,
        inner,
        matryoshka_dims=sorted(nesting, reverse=True),
        matryoshka_weights=None if weights is None else weights[::-1],
    )
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
        use_cpu=setup.device == "cpu",
        bf16=setup.device != "cpu",
        dataloader_drop_last=True,
        logging_steps=50,
        max_steps=-1 if max_steps is None else max_steps,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trained = trainer.state.global_step * setup.batch_size
    if max_steps is not None:
        return FineTuned(None, trained / seconds, seconds)
    folder = out / "model"
    model.save(str(folder))
    return FineTuned(TextEncoder(str(folder)), trained / seconds, seconds)


def interleaved_pairs_per_second(
    nesting: Sequence[int], setup: FineTuneSetup, out: Path, steps: int, rounds: int
) -> dict[str, list[float]]:
    """Training pairs/s of ours and of the anchor, `steps` steps each, alternated `rounds` times.

    On a machine whose load changes, one long run of each measures each under different
    load; alternating short runs exposes both to the same conditions, and the median of the
    rounds drops the odd disturbed one.
    """
    rates: dict[str, list[float]] = {"ft_mrl": [], "ft_st": []}
    for r in range(rounds):
        probe = out / f"round{r}"
        ours = finetune_ours(nesting, setup, probe / "ours", steps)
        anchor = finetune_sentence_transformers(nesting, setup, probe / "st", steps)
        rates["ft_mrl"].append(ours.pairs_per_second)
        rates["ft_st"].append(anchor.pairs_per_second)
    return rates


def main(argv: list[str] | None = None) -> dict:
    import torch
    from harness import thread_count

    from mrl.data.text import DEBIAN_DEFAULT
    from mrl.io import atomic_write_json
    from mrl.models.text import default_text_model_path

    parser = argparse.ArgumentParser(description="pairs/s of ours vs sentence-transformers")
    parser.add_argument("--data", default=str(DEBIAN_DEFAULT))
    parser.add_argument("--model", default=None, help="default all-MiniLM-L6-v2")
    parser.add_argument("--nesting", default="12,24,48,96,192,384")
    parser.add_argument("--pairs", type=int, default=4000, help="the pairs drawn (as text.py)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="training steps per probe")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="reports/text/speed.json")
    args = parser.parse_args(argv)
    nesting = tuple(int(s) for s in args.nesting.split(","))
    setup = FineTuneSetup(
        data=args.data,
        pairs=args.pairs,
        model=args.model or default_text_model_path(),
        max_seq_length=args.max_seq_length,
        batch_size=args.batch_size,
        lr=2e-5,
        epochs=1,
        warmup=0.1,
        temperature=0.05,
        seed=0,
    )
    with tempfile.TemporaryDirectory() as tmp, thread_count(args.threads):
        rates = interleaved_pairs_per_second(nesting, setup, Path(tmp), args.steps, args.rounds)
    median = {row: statistics.median(v) for row, v in rates.items()}
    report = {
        "benchmark": "text-train-throughput",
        "steps_per_probe": args.steps,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
        "nesting": list(nesting),
        "threads": args.threads,
        "pairs_per_s": rates,
        "median_pairs_per_s": median,
        "ratio_ours_over_anchor": median["ft_mrl"] / median["ft_st"],
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(report, indent=1))
    atomic_write_json(args.out, report)
    return report


if __name__ == "__main__":
    run_script(main)
