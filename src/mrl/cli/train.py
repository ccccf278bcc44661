"""`mrl train --config configs/demo.yaml [--key=value | --key value ...] [--resume]`.

Any `--key=value` or `--key value` flag overrides that key of the YAML config (a bare
`--amp` sets a bool key to true; unknown keys are errors that suggest the nearest).
Multi-process: `torchrun --nproc_per_node=N $(which mrl) train ...`.
Text: `mrl train --config configs/minilm_debian.yaml` fine-tunes a Hugging Face encoder
(backbone: text, text_model: FOLDER or null for all-MiniLM-L6-v2).
"""

from __future__ import annotations

import argparse

from mrl.training import TrainResult, load_config, train


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a Matryoshka model from a YAML config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # so an override like --res=1 is never taken for --resume
    )
    parser.add_argument("--config", help="YAML config (keys of mrl.training.TrainConfig)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in out_dir from its checkpoint"
    )
    # main() hands every unrecognised argument to `overrides` (`--key=value`, `--key value`).
    parser.set_defaults(func=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    result = train(config, resume=args.resume)  # errors: one line, exit 2 (mrl.cli.main)
    if result.is_main:
        print(format_top1(result))
    return 0


def format_top1(result: TrainResult) -> str:
    """A per-size table of the last epoch: test top-1 (a head), MRR@10 (text pairs)."""
    m = result.metrics
    head = f"run {result.run_dir}: epoch {m['epoch']}, step {m['step']}"
    if "test_loss" in m:
        head += f", test loss {m['test_loss']:.4f}"
    head += f", {m['examples_per_s']:.1f} examples/s" if "examples_per_s" in m else ""
    columns = [(key, title) for key, title in _COLUMNS if key in m]
    sizes = next(iter(m[key] for key, _ in columns))
    lines = [head, f"{'dim':>6}" + "".join(f"  {title:>8}" for _, title in columns)]
    for dim in sizes:
        lines.append(f"{dim:>6}" + "".join(f"  {100 * m[key][dim]:>8.2f}" for key, _ in columns))
    return "\n".join(lines)


_COLUMNS = (("top1", "top-1 %"), ("mrr10", "MRR@10 %"))  # metrics key, column title
