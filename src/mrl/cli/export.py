"""`mrl export --format sentence-transformers MODEL --out DIR`: a thin wrapper over mrl.export.

MODEL is a Hugging Face / sentence-transformers folder, or the run folder of a text model
trained by `mrl train` (its checkpoint: the fine-tuned weights, the rotation if it learned one,
and its nesting, the default of --nesting).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mrl.checks import check_int
from mrl.cli.common import check_out, parse_nesting
from mrl.errors import ConfigError, FormatError
from mrl.nesting import Nesting

FORMATS = ("sentence-transformers",)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a text encoder as a folder other tools load (sentence-transformers)",
        description="Write MODEL (a Hugging Face or sentence-transformers folder, or the "
        "run folder of a text model trained by `mrl train`) as a "
        "sentence-transformers folder that SentenceTransformer(DIR, truncate_dim=m) loads, "
        "with the nesting recorded in its config and a model card (README.md).",
    )
    p.add_argument(
        "model", help="model folder (config.json, weights, tokenizer files) or a text run folder"
    )
    p.add_argument("--out", required=True, help="new folder to write")
    p.add_argument("--format", default=FORMATS[0], choices=FORMATS)
    p.add_argument(
        "--nesting",
        help="comma-separated sizes ending at the model's width (default: a run's nesting, "
        "else halving down to 8)",
    )
    p.add_argument("--max-seq-length", type=int, help="tokens per text (default: the folder's)")
    p.add_argument("--normalize", action="store_true", help="append a Normalize module")
    p.add_argument("--results", help="`mrl eval --out` JSON: its per-size table goes in the card")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from mrl.export import export_sentence_transformers

    out = check_out(args.out, "folder")
    nesting = parse_nesting(args.nesting) if args.nesting else None
    results = _read_results(args.results) if args.results else None
    encoder, trained_nesting = _load_encoder(args)
    nesting = nesting or trained_nesting or Nesting.halving(encoder.embed_dim)
    export_sentence_transformers(encoder, nesting, out, results)
    print(f"exported {args.model} (nesting {list(nesting.dims)}) to {out}")
    return 0


def _load_encoder(args: argparse.Namespace):
    """(TextEncoder, the run's nesting or None) of MODEL: a run folder or a model folder."""
    from mrl.models.text import TextEncoder
    from mrl.training import load_model
    from mrl.training.checkpoint import CHECKPOINT

    if not (Path(args.model) / CHECKPOINT).is_file():
        return TextEncoder(args.model, args.max_seq_length, normalize=args.normalize), None
    model, config = load_model(args.model)
    if not config.is_text:
        raise ConfigError(
            f"{args.model} is a {config.backbone!r} image run; only text encoders export to "
            "sentence-transformers (use `mrl embed` for an image run's vectors)"
        )
    encoder = model.backbone
    if args.max_seq_length is not None:
        positions = encoder.model.config.max_position_embeddings
        encoder.max_seq_length = check_int("--max-seq-length", args.max_seq_length, 1, positions)
    encoder.normalize = args.normalize
    return encoder, config.get_nesting()


def _read_results(path: str) -> dict:
    try:
        with open(path) as f:
            sizes = json.load(f)["sizes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FormatError(
            f"--results {path} is not an `mrl eval --out` file ({type(e).__name__}: {e})"
        ) from None
    return {int(dim): row for dim, row in sizes.items()}
