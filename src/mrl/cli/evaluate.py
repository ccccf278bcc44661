"""`mrl embed` and `mrl eval`: thin wrappers over `mrl.evaluation`."""

from __future__ import annotations

import argparse

from mrl.cli.common import check_out, parse_nesting
from mrl.data import load_dataset
from mrl.data.text import read_texts_and_labels
from mrl.evaluation.embed import DTYPES, embed_dataset, embed_texts, load_embeddings
from mrl.evaluation.evaluate import KNN_KS, RETRIEVAL_KS, evaluate_embeddings
from mrl.io import atomic_write_json
from mrl.training import load_model


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
        "--nesting", help="text models: comma-separated sizes (default: halving down to 8)"
    )
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dataset", help="dataset name (default: the run's)")
    p.add_argument("--data-root", help="dataset folder (default: the run's)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--save-logits", action="store_true", help="also write head logits [G, N, C]")
    p.set_defaults(func=run_embed)

    p = subparsers.add_parser(
        "eval",
        help="every metric at every size from two `mrl embed` folders",
        description="Top-1/5 (heads, or a linear probe), k-NN accuracy and retrieval metrics "
        "(both mAP@k variants, P@k, R@k, hit rate) per nested size. Database: --train; "
        "queries: --test. Prints a table; --out writes JSON (fractions).",
    )
    p.add_argument("--train", required=True, help="`mrl embed` folder of the train split")
    p.add_argument("--test", required=True, help="`mrl embed` folder of the test split")
    p.add_argument("--dims", type=int, nargs="+", help="sizes (default: the model's head sizes)")
    p.add_argument("--probe", action="store_true", help="also fit linear probes")
    p.add_argument("--knn-k", type=int, nargs="+", default=list(KNN_KS))
    p.add_argument("--retrieval-k", type=int, nargs="+", default=list(RETRIEVAL_KS))
    p.add_argument("--chunk-size", type=int, default=65536, help="database rows per search chunk")
    p.add_argument("--out", help="write results as JSON here")
    p.set_defaults(func=run_eval)


def run_embed(args: argparse.Namespace) -> int:
    check_out(args.out, "folder")  # before the model is loaded
    if args.texts:
        return run_embed_texts(args)
    model, config = load_model(args.run_dir)
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
    texts, labels, classes = read_texts_and_labels(args.texts)
    encoder = TextEncoder(args.run_dir)
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


def run_eval(args: argparse.Namespace) -> int:
    if args.out:
        check_out(args.out, "file")
    train, test = load_embeddings(args.train), load_embeddings(args.test)  # checked, not read
    results = evaluate_embeddings(
        train, test, args.dims, args.probe, args.knn_k, args.retrieval_k, args.chunk_size
    )
    keys = list(next(iter(results.values())))
    print("| size | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for m, row in results.items():
        print(f"| {m} | " + " | ".join(f"{100 * row[k]:.2f}" for k in keys) + " |")
    if args.out:
        atomic_write_json(args.out, {"train": args.train, "test": args.test, "sizes": results})
        print(f"wrote {args.out}")
    return 0
