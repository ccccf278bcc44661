"""`mrl adapt fit` and `mrl adapt apply`: thin wrappers over `mrl.adaptation`."""

from __future__ import annotations

import argparse

import numpy as np

from mrl.adaptation.adaptor import MODES, MatryoshkaAdaptor
from mrl.adaptation.folders import adapt_folder, load_vectors
from mrl.cli.common import check_out, parse_nesting
from mrl.data.npy import load_npy
from mrl.errors import ConfigError
from mrl.evaluation.embed import DTYPES


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "adapt",
        help="post-hoc Matryoshka adaptor for frozen embeddings of any model",
        description="Learn a map whose prefixes are good embeddings (`fit`), then write adapted "
        "vectors as an `mrl embed` folder that `mrl eval` and `mrl index build` read (`apply`).",
    )
    sub = p.add_subparsers(dest="adapt_command", required=True, metavar="{fit,apply}")

    f = sub.add_parser(
        "fit",
        help="fit an adaptor on train-side embeddings and save it",
        description="Fit a MatryoshkaAdaptor (a rotation started at PCA, optionally plus a "
        "residual MLP) on TRAIN_EMBEDDINGS and save it to --out. Unsupervised: keep the full "
        "embedding's neighbours at every prefix. Supervised: contrastive on (TRAIN[i], "
        "--positives[i]) pairs.",
    )
    f.add_argument("train", help="`mrl embed` folder or .npy [N, d] (queries when supervised)")
    f.add_argument("--out", required=True, help="adaptor folder to write")
    f.add_argument(
        "--nesting",
        help="comma-separated sizes ending at the output width, e.g. "
        "12,24,48,96,192,384 (default: halving of the width down to >= 8)",
    )
    f.add_argument("--out-dim", type=int, help="adapted width D <= d (default: d)")
    f.add_argument("--mode", choices=MODES, default="unsupervised")
    f.add_argument("--positives", help="supervised: .npy or folder [N, d], row i pairs TRAIN[i]")
    f.add_argument("--hidden", type=int, default=0, help="residual MLP width (0: linear only)")
    f.add_argument("--epochs", type=int, default=5)
    f.add_argument("--batch-size", type=int, default=256)
    f.add_argument("--lr", type=float, default=1e-2)
    f.add_argument("--weight-decay", type=float, default=0.0)
    f.add_argument("--rank-weight", type=float, default=1.0)
    f.add_argument("--sim-weight", type=float, default=0.1)
    f.add_argument("--temperature", type=float, default=0.05)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default="cpu")
    f.set_defaults(func=run_fit)

    a = sub.add_parser(
        "apply",
        help="write adapted vectors as an `mrl embed` folder",
        description="Transform EMBEDDINGS (an `mrl embed` folder or .npy [N, d]) with the "
        "adaptor in ADAPTOR_DIR; write embeddings.npy [N, D], labels.npy (when the input has "
        "labels) and manifest.json with the adaptor's nesting to --out.",
    )
    a.add_argument("adaptor", help="folder written by `mrl adapt fit`")
    a.add_argument("embeddings", help="`mrl embed` folder or .npy [N, d]")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--labels", help=".npy [N] int labels for a .npy input")
    a.add_argument("--dtype", default="float32", choices=DTYPES)
    a.set_defaults(func=run_apply)


def run_fit(args: argparse.Namespace) -> int:
    check_out(args.out, "folder")
    if (args.mode == "supervised") != (args.positives is not None):
        raise ConfigError(
            "--mode supervised needs --positives (and --positives needs --mode supervised)"
        )
    nesting = parse_nesting(args.nesting) if args.nesting else None
    adaptor = MatryoshkaAdaptor(
        nesting=nesting,
        out_dim=args.out_dim,
        hidden=args.hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        rank_weight=args.rank_weight,
        sim_weight=args.sim_weight,
        temperature=args.temperature,
        seed=args.seed,
        device=args.device,
    )
    x, _, _ = load_vectors(args.train)
    positives = load_vectors(args.positives)[0] if args.positives else None
    adaptor.fit(x, positives)
    out = adaptor.save(args.out)
    losses = ", ".join(f"{v:.4g}" for v in adaptor.loss_history_)
    print(
        f"fitted a {adaptor.mode_} adaptor {adaptor.d_in_} -> {adaptor.out_dim_} dims "
        f"(nesting {list(adaptor.nesting_.dims)}) on {len(x)} rows; loss per epoch: {losses}"
    )
    print(f"wrote {out}")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    check_out(args.out, "folder")
    adaptor = MatryoshkaAdaptor.load(args.adaptor)
    labels = np.asarray(load_npy(args.labels)) if args.labels else None
    out = adapt_folder(
        adaptor, args.embeddings, args.out, labels, args.dtype, {"adaptor": str(args.adaptor)}
    )
    print(f"wrote {adaptor.out_dim_}-dim adapted embeddings of {args.embeddings} to {out}")
    return 0
