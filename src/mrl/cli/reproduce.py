"""`mrl reproduce`: the paper's Table 1/2 comparison, a thin wrapper over `mrl.experiments`."""

from __future__ import annotations

import argparse
import json

from mrl.experiments.reproduce import load_reproduce_config, reproduce


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="train MRL, MRL-E and FF-k, compare with SVD / Rand-FS at every size, write a report",
        description="Trains (or reuses) every model, evaluates every method at every size and "
        "writes report.md, results.json and plots. Overrides follow the config: "
        "--train.KEY=value (or --train.KEY value) for training keys, --KEY=value (or --KEY "
        "value) for the others (out_dir, runs_dir, rand_fs_draws, ...), values as YAML. "
        "Example: mrl reproduce --config configs/reproduce_mnist5k.yaml --train.epochs 3 "
        "--out_dir reports/quick",
        allow_abbrev=False,  # so an override like --conf=1 is never taken for --config
    )
    p.add_argument("--config", help="reproduce YAML (e.g. configs/reproduce_fashion_mnist.yaml)")
    p.set_defaults(func=run_reproduce, overrides=[])  # main() fills in the override extras


def run_reproduce(args: argparse.Namespace) -> int:
    config = load_reproduce_config(args.config, args.overrides)
    report = reproduce(config)
    print(report.read_text())
    timing = json.loads((report.parent / "results.json").read_text())["timing_s"]
    print(f"wrote {report} in {timing['total']} s")
    return 0
