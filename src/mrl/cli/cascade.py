"""`mrl cascade`: adaptive-classification report (and thresholds) from per-size logits.

The logits come from an `mrl embed --save-logits` folder, or straight from a run folder
(`mrl.training.run_logits`: the run's model on its test split), e.g. a text run trained with
a section head (classification_weight > 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mrl.adaptive.cascade import CAP_SEARCH, POLICIES, Cascade, check_thresholds_path
from mrl.adaptive.confidence import INPUTS, correctness
from mrl.adaptive.report import Reference, cascade_report, report_folder, write_report
from mrl.adaptive.thresholds import COSTS
from mrl.checks import check_int, check_number
from mrl.errors import ConfigError, InputError
from mrl.evaluation.embed import MANIFEST, load_embeddings
from mrl.nesting import Nesting
from mrl.training import RunLogits, run_logits
from mrl.training.checkpoint import CHECKPOINT

MODEL_NAMES = {"mrl": "MRL", "mrl-e": "MRL-E"}  # the manifest's head kind -> report label


def _read_logits(folder: str) -> RunLogits:
    """Per-size logits from an `mrl embed --save-logits` folder, or from a run folder (a
    checkpoint and no manifest: its model scores its own test split, e.g. a text run's
    section head)."""
    path = Path(folder)
    if (path / CHECKPOINT).is_file() and not (path / MANIFEST).is_file():
        return run_logits(path)
    data = load_embeddings(folder)
    if data.logits is None:
        raise InputError(
            f"{folder} holds no logits; rerun `mrl embed` with --save-logits (or give the run "
            "folder itself)"
        )
    return RunLogits(data.logits, data.labels, tuple(data.head_dims), data.manifest.get("head"))


def _load_logits(folder: str, inputs: str = "logits", largest_only: bool = False):
    """`_read_logits` of `folder`, its logits (all sizes, or the largest) validated.

    Returns:
        (the `RunLogits`, correct [G, N] bool of each size read); errors name the folder.
    """
    data = _read_logits(folder)
    dims = tuple(data.head_dims)
    logits = data.logits
    if largest_only:
        dims, logits = dims[-1:], logits[-1:]
    try:
        _, correct = correctness(logits, data.labels, Nesting(dims), inputs)
    except InputError as e:
        raise InputError(f"{folder}: {e}") from None
    return data, correct


def _ff_folder(folder: str, labels: np.ndarray) -> Reference:
    """A reference from another model's `mrl embed --save-logits` folder of the same split."""
    data, correct = _load_logits(folder, largest_only=True)
    if not np.array_equal(data.labels, labels):
        raise InputError(
            f"{folder} holds other examples (labels differ); embed the same split in the same order"
        )
    dim = data.head_dims[-1]
    kind = "FF" if len(data.head_dims) == 1 else "ref"
    return Reference(f"{kind}-{dim}", dim, correct=correct[0])


def _ff_accuracy(spec: str) -> Reference:
    """A reference from DIM=ACC, ACC a fraction (<= 1) or a percentage."""
    try:
        dim, acc = spec.split("=")
        dim, acc = int(dim), float(acc)
    except ValueError:
        raise ConfigError(f"--ff-accuracy takes DIM=ACC, e.g. 256=0.912, got {spec!r}") from None
    if dim < 1 or not 0.0 <= acc <= 100.0:
        raise ConfigError(
            f"--ff-accuracy {spec!r}: DIM must be >= 1 and ACC a fraction or a percentage in "
            "0..100, e.g. 256=91.2"
        )
    return Reference(f"FF-{dim}", dim, accuracy=acc / 100 if acc > 1 else acc)


def _cap(value: str) -> int | str:
    """argparse type for --cap: a size, or "search"."""
    if value == CAP_SEARCH:
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expects a size or '{CAP_SEARCH}', got {value!r}"
        ) from None


def _holdout(value: float) -> float | int:
    """--holdout as the library takes it: a fraction in (0, 1), or a whole count >= 1."""
    check_number("--holdout", value, 0.0, low_open=True)
    if value < 1:
        return value
    if value != int(value):
        raise ConfigError(f"--holdout is a fraction below 1 or a whole count, got {value}")
    return int(value)


def run(args: argparse.Namespace) -> int:
    if args.no_report and not args.save_thresholds:
        raise ConfigError("--no-report needs --save-thresholds (otherwise there is nothing to do)")
    # in points here, as fractions in the library: check in the units the user typed
    check_number("--tolerance (accuracy points)", args.tolerance, -100.0, 100.0)
    check_number("--margin (accuracy points)", args.margin, -100.0, 100.0)
    check_int("--splits", args.splits, low=1)
    check_int("--seed", args.seed, low=0)
    holdout = _holdout(args.holdout)
    only_saved = ("policy", "cap", "target", "target_dim", "budget", "cost")
    given = [k for k in only_saved if getattr(args, k) is not None]
    if given and not args.save_thresholds:
        raise ConfigError(
            f"--{given[0].replace('_', '-')} sets the cascade of --save-thresholds; add "
            "--save-thresholds JSON (the report fits its own cascades)"
        )
    if args.save_thresholds:
        check_thresholds_path(args.save_thresholds)
    data, _ = _load_logits(args.logits, args.inputs)
    out = report_folder(args.out or Path(args.logits) / "cascade") if not args.no_report else None
    nesting = Nesting(tuple(data.head_dims))
    scores, labels = np.asarray(data.logits), np.asarray(data.labels)
    references = [_ff_folder(f, labels) for f in args.ff]  # all checked before any fit
    references += [_ff_accuracy(s) for s in args.ff_accuracy]
    if args.save_thresholds:
        cascade = Cascade(
            nesting,
            policy=args.policy or "joint",
            cap=args.cap,
            target=args.target,
            target_dim=args.target_dim,
            tolerance=args.tolerance / 100,
            budget=args.budget,
            cost=args.cost or "expected",
            grid=args.grid,
            inputs=args.inputs,
        ).fit(scores, labels)
        cascade.save(args.save_thresholds)
        h = cascade.holdout_
        print(
            f"thresholds {np.round(cascade.thresholds_, 4).tolist()} -> {args.save_thresholds} "
            f"(on these {len(labels)} examples: top-1 {100 * h.accuracy:.2f}%, "
            f"E[dim] {h.expected_dim:.1f}, cumulative {h.cumulative_dim:.1f})"
        )
    if args.no_report:
        return 0
    report = cascade_report(
        scores,
        labels,
        nesting,
        references,
        n_splits=args.splits,
        holdout=holdout,
        seed=args.seed,
        tolerance=args.tolerance / 100,
        margin=args.margin / 100,
        grid=args.grid,
        inputs=args.inputs,
        model_name=MODEL_NAMES.get(data.head, "MRL"),
    )
    report["settings"]["logits"] = str(args.logits)
    report["settings"]["references"] = list(args.ff) + list(args.ff_accuracy)
    paths = write_report(report, out)
    d = nesting.embed_dim
    for r in report["headline"]:
        print(
            f"{r['reference']:>10} ({100 * r['reference_accuracy']['mean']:.2f}%): "
            f"{r['policy']}, min {r['minimises']}: top-1 {100 * r['accuracy']['mean']:.2f}% "
            f"({100 * r['gap']:+.2f} pts), E[dim] {r['expected_dim']['mean']:.1f} "
            f"({d}/E[dim] = {r['expected_ratio']:.1f}x), cumulative "
            f"{r['cumulative_dim']['mean']:.1f} ({r['cumulative_ratio']:.1f}x)"
        )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cascade",
        help="adaptive classification: cascade thresholds and report from saved logits",
        description=(
            "Fit confidence cascades on repeated random holdout/test splits of one model's "
            "per-size logits (an `mrl embed --save-logits` folder) and write cascade.json, "
            "cascade.md and cascade.png: fixed sizes, the paper's pairwise rule per cap, the "
            "joint policy per target size, and the least cost reaching each reference's top-1."
        ),
    )
    p.add_argument(
        "logits",
        help="`mrl embed --save-logits` folder of an MRL / MRL-E model, or a run folder (its "
        "model scores its test split)",
    )
    p.add_argument("--out", help="report folder (default: LOGITS/cascade)")
    p.add_argument("--splits", type=int, default=30, help="random splits (paper: 30)")
    p.add_argument("--holdout", type=float, default=0.2, help="holdout fraction, or count if >= 1")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits")
    p.add_argument(
        "--ff",
        action="append",
        default=[],
        metavar="FOLDER",
        help="reference model's `mrl embed --save-logits` folder of the same split (repeatable)",
    )
    p.add_argument(
        "--ff-accuracy",
        action="append",
        default=[],
        metavar="DIM=ACC",
        help="reference top-1 without per-example logits, e.g. 256=91.2 (repeatable)",
    )
    p.add_argument(
        "--tolerance", type=float, default=0.2, help="points a cascade may be below its target"
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.2,
        help="points a headline cascade must beat its reference by on the holdout",
    )
    p.add_argument("--grid", type=int, default=256, help="joint policy: quantiles per threshold")
    p.add_argument(
        "--inputs",
        choices=INPUTS,
        default="logits",
        help="what logits.npy holds: raw logits (mrl embed) or probabilities (rows sum to 1)",
    )
    p.add_argument("--no-report", action="store_true", help="only fit --save-thresholds")
    g = p.add_argument_group("thresholds file (fitted on all examples in LOGITS)")
    g.add_argument("--save-thresholds", metavar="JSON", help="fit one cascade and save it")
    g.add_argument("--policy", choices=POLICIES, help="threshold rule (default: joint)")
    g.add_argument(
        "--cap",
        type=_cap,
        help=f"largest size allowed (default: the largest); '{CAP_SEARCH}' (joint, shared): "
        "the best cap on the holdout",
    )
    g.add_argument("--target", type=float, help="accuracy target (fraction)")
    g.add_argument("--target-dim", type=int, help="reach this size's accuracy")
    g.add_argument("--budget", type=float, help="cost budget in dims")
    g.add_argument("--cost", choices=COSTS, help="cost the policy minimises (default: expected)")
    p.set_defaults(func=run)
