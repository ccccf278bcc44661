"""`mrl export --format sentence-transformers MODEL --out DIR`: a thin wrapper over mrl.export."""

from __future__ import annotations

import argparse
import json

from mrl.cli.common import check_out, parse_nesting
from mrl.errors import FormatError
from mrl.nesting import Nesting

FORMATS = ("sentence-transformers",)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a text encoder as a folder other tools load (sentence-transformers)",
        description="Write MODEL (a Hugging Face or sentence-transformers folder) as a "
        "sentence-transformers folder that SentenceTransformer(DIR, truncate_dim=m) loads, "
        "with the nesting recorded in its config and a model card (README.md).",
    )
    p.add_argument("model", help="model folder (config.json, weights, tokenizer files)")
    p.add_argument("--out", required=True, help="new folder to write")
    p.add_argument("--format", default=FORMATS[0], choices=FORMATS)
    p.add_argument(
        "--nesting",
        help="comma-separated sizes ending at the model's width (default: halving down to 8)",
    )
    p.add_argument("--max-seq-length", type=int, help="tokens per text (default: the folder's)")
    p.add_argument("--normalize", action="store_true", help="append a Normalize module")
    p.add_argument("--results", help="`mrl eval --out` JSON: its per-size table goes in the card")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from mrl.export import export_sentence_transformers
    from mrl.models.text import TextEncoder

    out = check_out(args.out, "folder")
    nesting = parse_nesting(args.nesting) if args.nesting else None
    results = _read_results(args.results) if args.results else None
    encoder = TextEncoder(args.model, args.max_seq_length, normalize=args.normalize)
    nesting = nesting or Nesting.halving(encoder.embed_dim)
    export_sentence_transformers(encoder, nesting, out, results)
    print(f"exported {args.model} (nesting {list(nesting.dims)}) to {out}")
    return 0


def _read_results(path: str) -> dict:
    try:
        with open(path) as f:
            sizes = json.load(f)["sizes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FormatError(
            f"--results {path} is not an `mrl eval --out` file ({type(e).__name__}: {e})"
        ) from None
    return {int(dim): row for dim, row in sizes.items()}
