"""`mrl embed` and `mrl eval`: thin wrappers over `mrl.evaluation`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrl.cli.common import check_out, parse_nesting
from mrl.data import load_dataset, load_text_splits
from mrl.data.text import read_pairs, read_texts_and_labels
from mrl.errors import ConfigError
from mrl.evaluation.embed import DTYPES, embed_dataset, embed_texts, load_embeddings
from mrl.evaluation.evaluate import KNN_KS, RETRIEVAL_KS, evaluate_embeddings
from mrl.evaluation.ranking import RANKING_KS, Qrels, ranking_metrics, read_qrels
from mrl.evaluation.report import RANKING_PLOTS, RANKING_TABLES, write_report
from mrl.io import atomic_write_json
from mrl.training import load_model
from mrl.training.checkpoint import CHECKPOINT
from mrl.training.distributed import resolve_device


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed",
        help="write a trained model's representations of a split (or of texts) to .npy files",
        description="Run RUN_DIR's model over a dataset split; write embeddings.npy [N, d], "
        "labels.npy [N] int64, optional logits.npy [G, N, C] and manifest.json to --out. "
        "With --texts, RUN_DIR is a text model folder (Hugging Face or sentence-transformers) "
        "and the texts of the file are embedded (with their labels, if it has a label field).",
    )
    p.add_argument("run_dir", help="training run folder (config.yaml + checkpoint.pt)")
    p.add_argument(
        "--texts",
        help=".txt (one text a line), or JSONL/CSV with a text (and optional label) field",
    )
    p.add_argument(
        "--pair-side",
        choices=("query", "positive"),
        help="--texts is a (query, positive) pairs file: embed this side of every pair",
    )
    p.add_argument(
        "--nesting", help="text models: comma-separated sizes (default: halving down to 8)"
    )
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dataset", help="dataset name (default: the run's)")
    p.add_argument("--data-root", help="dataset folder (default: the run's)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where the model runs (auto: CUDA when available, else the CPU)",
    )
    p.add_argument("--save-logits", action="store_true", help="also write head logits [G, N, C]")
    p.set_defaults(func=run_embed)

    p = subparsers.add_parser(
        "eval",
        help="every metric at every size from two `mrl embed` folders",
        description="Labelled sets (--train, --test): top-1/5 (heads, or a linear probe), "
        "k-NN accuracy and retrieval metrics (both mAP@k variants, P@k, R@k, hit rate) per "
        "nested size; database --train, queries --test. Judged text search (--queries, "
        "--corpus, optional --qrels): MRR@10, nDCG@10, AP@10, R@10, R@100 per size. Prints a "
        "table; --out writes JSON (fractions); --report writes report.md and PNGs per size.",
    )
    p.add_argument("--train", help="`mrl embed` folder of the train split (the database)")
    p.add_argument("--test", help="`mrl embed` folder of the test split (the queries)")
    p.add_argument("--queries", help="`mrl embed` folder of search queries (text search)")
    p.add_argument("--corpus", help="`mrl embed` folder of the searched corpus")
    p.add_argument(
        "--qrels",
        help='JSONL {"query": row, "relevant": [row, ...]}; default query i <-> corpus row i',
    )
    p.add_argument("--dims", type=int, nargs="+", help="sizes (default: the model's head sizes)")
    p.add_argument("--probe", action="store_true", help="also fit linear probes")
    p.add_argument("--knn-k", type=int, nargs="+", default=list(KNN_KS))
    p.add_argument("--retrieval-k", type=int, nargs="+", default=list(RETRIEVAL_KS))
    p.add_argument("--chunk-size", type=int, default=65536, help="database rows per search chunk")
    p.add_argument("--out", help="write results as JSON here")
    p.add_argument("--report", help="write report.md, results.json and PNGs to this folder")
    p.set_defaults(func=run_eval)


def run_embed(args: argparse.Namespace) -> int:
    check_out(args.out, "folder")  # before the model is loaded
    args.device = resolve_device(args.device)  # a missing CUDA is named before any work
    if args.texts and not (Path(args.run_dir) / CHECKPOINT).is_file():
        return run_embed_texts(args)  # a Hugging Face or sentence-transformers folder
    model, config = load_model(args.run_dir)
    model.to(args.device)
    if config.is_text:
        return run_embed_text_run(args, model, config)
    dataset_name = args.dataset or config.dataset
    root = args.data_root or config.data_root
    dataset = load_dataset(dataset_name, args.split, root, image_size=config.image_size)
    info = {"model": str(args.run_dir), "dataset": dataset_name, "split": args.split}
    out = embed_dataset(
        model, dataset, args.out, args.batch_size, args.dtype, args.save_logits, info
    )
    print(
        f"wrote {len(dataset)} embeddings of {args.run_dir} ({dataset_name} {args.split}) to {out}"
    )
    return 0


def run_embed_texts(args: argparse.Namespace) -> int:
    from mrl.models.text import TextEncoder

    nesting = parse_nesting(args.nesting) if args.nesting else None
    texts, labels, classes = _read_texts(args)
    encoder = TextEncoder(args.run_dir).to(args.device)
    out = embed_texts(
        encoder,
        texts,
        args.out,
        nesting,
        labels,
        args.batch_size,
        args.dtype,
        {"model": str(args.run_dir), "texts": str(args.texts), "classes": classes},
    )
    print(f"wrote {len(texts)} embeddings of {args.texts} by {args.run_dir} to {out}")
    return 0


def _read_texts(args: argparse.Namespace) -> tuple[list[str], object, object]:
    """(texts, labels or None, classes or None) of --texts, or of one side of a pairs file."""
    if args.pair_side:
        return [getattr(pair, args.pair_side) for pair in read_pairs(args.texts)], None, None
    return read_texts_and_labels(args.texts)


def run_embed_text_run(args: argparse.Namespace, model, config) -> int:
    """A trained text run: its fine-tuned encoder over --texts, or over its dataset's split."""
    if args.save_logits:
        raise ConfigError(
            "--save-logits: a text run's logits go straight to `mrl cascade RUN_DIR`; drop "
            "--save-logits"
        )
    if args.texts:
        texts, labels, classes = _read_texts(args)
        info = {"texts": str(args.texts)}
    else:
        train, test = load_text_splits(
            args.dataset or config.dataset, args.data_root or config.data_root
        )
        rows = train if args.split == "train" else test
        texts, labels, classes = rows.texts, rows.labels, rows.classes
        info = {"dataset": args.dataset or config.dataset, "split": args.split}
    out = embed_texts(
        model.backbone,
        texts,
        args.out,
        config.get_nesting(),
        labels,
        args.batch_size,
        args.dtype,
        {"model": str(args.run_dir), **info, "classes": classes},
    )
    print(f"wrote {len(texts)} embeddings of {args.run_dir} to {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    ranking = _eval_mode(args)
    if args.out:
        check_out(args.out, "file")
    if args.report:
        check_out(args.report, "folder")
    if ranking:
        corpus, queries = load_embeddings(args.corpus), load_embeddings(args.queries)
        qrels = read_qrels(args.qrels, len(queries.embeddings)) if args.qrels else None
        qrels = qrels or Qrels.paired(len(queries.embeddings))
        dims = args.dims or list(corpus.nesting.dims)
        results = ranking_metrics(
            corpus.embeddings, queries.embeddings, qrels, dims, RANKING_KS, args.chunk_size
        )
        sources = {"corpus": args.corpus, "queries": args.queries, "qrels": args.qrels}
    else:
        train, test = load_embeddings(args.train), load_embeddings(args.test)  # checked only
        results = evaluate_embeddings(
            train, test, args.dims, args.probe, args.knn_k, args.retrieval_k, args.chunk_size
        )
        sources = {"train": args.train, "test": args.test}
    keys = list(next(iter(results.values())))
    print("| size | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for m, row in results.items():
        print(f"| {m} | " + " | ".join(f"{100 * row[k]:.2f}" for k in keys) + " |")
    if args.out:
        atomic_write_json(args.out, {**sources, "sizes": results})
        print(f"wrote {args.out}")
    if args.report:
        name = sources.get("corpus") or sources["train"]
        report = {"methods": {str(name): results}, "setup": sources}
        figures = {"plots": RANKING_PLOTS, "tables": RANKING_TABLES} if ranking else {}
        print(f"wrote {write_report(report, args.report, 'Per-size evaluation', **figures)}")
    return 0


def _eval_mode(args: argparse.Namespace) -> bool:
    """True for judged text search (--queries/--corpus), False for labelled sets."""
    labelled, ranking = (args.train, args.test), (args.queries, args.corpus)
    if any(labelled) and any(ranking):
        raise ConfigError("give --train/--test (labelled sets) or --queries/--corpus, not both")
    if all(ranking):
        return True
    if all(labelled) and not args.qrels:
        return False
    raise ConfigError(
        "give --train and --test (labelled sets), or --queries and --corpus (text search, "
        "with optional --qrels)"
    )
