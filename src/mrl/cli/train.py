"""`mrl train --config configs/demo.yaml [--key=value | --key value ...] [--resume]`.

Any `--key=value` or `--key value` flag overrides that key of the YAML config (a bare
`--amp` sets a bool key to true; unknown keys are errors that suggest the nearest).
Multi-process: `torchrun --nproc_per_node=N $(which mrl) train ...`.
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
    """A per-size table of test top-1 from the last epoch."""
    m = result.metrics
    lines = [
        f"run {result.run_dir}: epoch {m['epoch']}, step {m['step']}, "
        f"test loss {m['test_loss']:.4f}",
        f"{'dim':>6}  {'top-1 %':>8}",
    ]
    lines += [f"{dim:>6}  {100 * acc:>8.2f}" for dim, acc in m["top1"].items()]
    return "\n".join(lines)
