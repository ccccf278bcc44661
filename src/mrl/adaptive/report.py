"""The cascade report behind `mrl cascade`: frontier, references and headline over splits.

For one model's saved per-size logits it measures, over repeated holdout/test splits:
fixed sizes; the paper's pairwise rule at every cap; the joint policy asked for "the accuracy
of size m at the least cost" for every m, once per cost model; and, for each reference
classifier (the model's own largest size, FF-k models), the joint and the shared-threshold
cascades fitted to reach the reference's accuracy, with their cost as a ratio to the largest size.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mrl.adaptive.cascade import CAP_SEARCH, Cascade
from mrl.adaptive.confidence import correctness
from mrl.adaptive.splits import SplitResults, evaluate_splits, holdout_splits
from mrl.adaptive.thresholds import COSTS
from mrl.checks import check_int, check_number
from mrl.errors import ConfigError, InputError
from mrl.io import atomic_open, atomic_write_json, make_dirs
from mrl.nesting import Nesting


@dataclass(frozen=True)
class Reference:
    """A classifier whose accuracy a cascade should match.

    Attributes:
        name: label in tables and plots, e.g. "FF-256".
        dim: its representation size (for the plot and the ratio).
        correct: [N] bool per-example correctness on the same examples as the cascade's
            scores (preferred: each split gets the reference's own holdout/test accuracy).
        accuracy: a single accuracy (fraction) when per-example results are not available.
    """

    name: str
    dim: int
    correct: np.ndarray | None = None
    accuracy: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a reference needs a name such as 'FF-256', got {self.name!r}")
        if (self.correct is None) == (self.accuracy is None):
            raise ConfigError(f"reference {self.name}: give exactly one of correct or accuracy")
        check_int(f"reference {self.name}: dim", self.dim, low=1)
        if self.accuracy is not None:
            check_number(f"reference {self.name}: accuracy (a fraction)", self.accuracy, 0.0, 1.0)
        if self.correct is not None:
            correct = np.asarray(self.correct)
            if correct.ndim != 1 or correct.dtype != bool:
                raise InputError(
                    f"reference {self.name}: correct must be [N] bool per-example results, got "
                    f"shape {correct.shape} dtype {correct.dtype}"
                )


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def _row(results: tuple[SplitResults, int]) -> dict:
    split_results, missed = results
    row = {k: v for k, v in split_results.summary().items() if k != "holdout_accuracy"}
    return {**row, "target_missed_splits": missed}


def cascade_report(
    scores: np.ndarray,
    labels: np.ndarray,
    nesting: Nesting,
    references: list[Reference] = (),
    n_splits: int = 30,
    holdout: float | int = 0.2,
    seed: int = 0,
    tolerance: float = 0.002,
    margin: float = 0.002,
    grid: int = 256,
    inputs: str = "logits",
    model_name: str = "MRL",
) -> dict:
    """Everything `mrl cascade` reports, as a JSON-ready dict (accuracies as fractions).

    Args:
        scores: [G, N, C] per-size logits (or probabilities) of the model, G = len(nesting).
        labels: [N] int class ids.
        nesting: the model's head sizes (at least two).
        references: classifiers to match; the model's own largest size is always added first.
        n_splits, holdout, seed: the repeated splits (`holdout_splits`).
        tolerance: accuracy (fraction) a headline cascade may be below its reference on
            the test parts (the criterion reported as "within_tolerance").
        margin: accuracy (fraction) a headline cascade must beat its reference by on each
            holdout: thresholds fitted to reach a target exactly on a finite holdout fall
            short of it on new examples (about 0.3 points at 2,000 held-out examples).
        grid: the joint policy's confidence quantiles per threshold.
        inputs: "logits" or "probabilities".
        model_name: how tables and plots name the model, e.g. "MRL" or "MRL-E".

    Returns:
        {"settings", "fixed", "pairwise", "joint", "shared", "headline"}; every metric is
        {"mean", "std"} over splits; "headline" rows carry ratios embed_dim / cost.
    """
    if not isinstance(nesting, Nesting) or len(nesting) < 2:
        raise ConfigError(f"a cascade report needs a Nesting of at least two sizes, got {nesting}")
    check_number("tolerance (an accuracy fraction)", tolerance, -1.0, 1.0)
    check_number("margin (an accuracy fraction)", margin, -1.0, 1.0)
    check_int("grid (confidence quantiles per threshold)", grid, low=2)
    _, correct = correctness(scores, labels, nesting, inputs)  # validates the inputs once
    labels = np.asarray(labels)
    for ref in references:
        if not isinstance(ref, Reference):
            raise ConfigError(f"references must be Reference objects, got {type(ref).__name__}")
        if ref.correct is not None and np.shape(ref.correct) != labels.shape:
            raise InputError(
                f"reference {ref.name} has {len(ref.correct)} results but the scores have "
                f"{len(labels)} examples; use the same split in the same order"
            )
    d = nesting.embed_dim
    own = Reference(f"{model_name}-{d}", d, correct=correct[-1])
    names = [own.name, *(r.name for r in references)]
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise ConfigError(
            f"two references are named {twice!r} (the model's own largest size is {own.name!r}); "
            "give each reference once, under its own name"
        )
    references = [own, *references]
    splits = holdout_splits(len(labels), n_splits, holdout, seed)
    tests = [test for _, test in splits]

    def test_accuracy(c: np.ndarray) -> dict[str, float]:
        return _stats(np.array([c[t].mean() for t in tests]))

    fixed = {
        "mrl": {m: test_accuracy(correct[g]) for g, m in enumerate(nesting)},
        "references": {
            r.name: {
                "dim": r.dim,
                "accuracy": test_accuracy(r.correct)
                if r.correct is not None
                else {"mean": r.accuracy, "std": 0.0},
            }
            for r in references[1:]
        },
    }

    def run(cascade: Cascade, ref: Reference | None = None) -> tuple[SplitResults, int]:
        """Results over the splits, and on how many the holdout target was out of reach."""
        with warnings.catch_warnings(record=True) as caught:  # one count, not S warnings
            warnings.simplefilter("always", UserWarning)
            if ref is not None and ref.correct is not None:
                res = evaluate_splits(cascade, scores, labels, splits, ref.correct, True)
            else:
                res = evaluate_splits(cascade, scores, labels, splits)
        return res, sum("is not reached on the holdout" in str(w.message) for w in caught)

    common = {"inputs": inputs}
    pairwise = {m: _row(run(Cascade(nesting, cap=m, **common))) for m in nesting.dims[1:]}
    joint = {
        cost: {
            m: _row(run(Cascade(nesting, "joint", target_dim=m, cost=cost, grid=grid, **common)))
            for m in nesting
        }
        for cost in COSTS
    }
    shared = {
        m: _row(run(Cascade(nesting, "shared", cap=CAP_SEARCH, target_dim=m, **common)))
        for m in nesting
    }

    def headline_row(policy: str, minimises: str, row: dict, ref: Reference, ref_acc: dict) -> dict:
        """A headline entry: a cascade's row beside its reference, with the gap and ratios."""
        gap = row["accuracy"]["mean"] - ref_acc["mean"]
        return {
            "reference": ref.name,
            "reference_dim": ref.dim,
            "reference_accuracy": ref_acc,
            "policy": policy,
            "minimises": minimises,
            **row,
            "gap": gap,
            "within_tolerance": bool(gap >= -tolerance - 1e-12),
            "expected_ratio": d / row["expected_dim"]["mean"],
            "cumulative_ratio": d / row["cumulative_dim"]["mean"],
        }

    headline = []
    for ref in references:
        ref_acc = fixed["mrl"][d] if ref is own else fixed["references"][ref.name]["accuracy"]
        # both costs grow with a shared threshold, so one fit serves both cost models
        fits = [("joint", None, cost, cost) for cost in COSTS] + [
            ("shared", None, "expected", "both"),
            ("shared", CAP_SEARCH, "expected", "expected"),
        ]
        for policy, cap, cost, minimises in fits:
            # a per-example reference sets each split's target from its own holdout (`run`)
            cascade = Cascade(
                nesting,
                policy,
                cap=cap,
                target=ref.accuracy,
                tolerance=-margin,
                cost=cost,
                grid=grid,
                **common,
            )
            name = policy if cap is None else f"{policy}, cap searched"
            headline.append(headline_row(name, minimises, _row(run(cascade, ref)), ref, ref_acc))
        # the paper's rule: the smallest cap whose mean test accuracy is within tolerance
        for m, row in pairwise.items():
            entry = headline_row(f"pairwise (cap {m})", "-", row, ref, ref_acc)
            if entry["within_tolerance"]:
                headline.append(entry)
                break
    return {
        "settings": {
            "dims": list(nesting.dims),
            "n_examples": len(labels),
            "n_splits": n_splits,
            "holdout": holdout,
            "seed": seed,
            "tolerance": tolerance,
            "margin": margin,
            "grid": grid,
            "model_name": model_name,
        },
        "fixed": fixed,
        "pairwise": pairwise,
        "joint": joint,
        "shared": shared,
        "headline": headline,
    }


def _pm(stat: dict, scale: float = 100.0, digits: int = 2) -> str:
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def report_markdown(report: dict) -> str:
    """The report as Markdown tables (accuracies in %, costs in dims, mean ± std)."""
    s = report["settings"]
    d = s["dims"][-1]
    lines = [
        "# Adaptive classification (cascades)",
        "",
        f"Sizes {s['dims']}; {s['n_examples']} examples; {s['n_splits']} random splits, "
        f"holdout {s['holdout']} for thresholds, the rest for the numbers below "
        "(mean ± std over splits). Headline cascades (joint, and shared: one threshold for "
        "every size) are fitted to beat the reference's "
        f"held-out top-1 by {100 * s['margin']:.2f} points and judged within "
        f"{100 * s['tolerance']:.2f} points on the test parts; the pairwise row is the "
        'smallest cap within the tolerance. "Holdout target missed": splits where no '
        "cascade searched reached the target on the holdout, which then use the most "
        "accurate cascade found.",
        "",
        "## Headline: the least cost reaching a reference's top-1",
        "",
        "| reference | ref top-1 % | policy | minimises | top-1 % | gap (pts) | E[dim] | "
        f"{d}/E[dim] | cumulative dims | {d}/cumulative | holdout target missed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["headline"]:
        lines.append(
            f"| {r['reference']} | {_pm(r['reference_accuracy'])} | {r['policy']} | "
            f"{r['minimises']} | {_pm(r['accuracy'])} | {100 * r['gap']:+.2f} | "
            f"{_pm(r['expected_dim'], 1, 1)} | {r['expected_ratio']:.1f}x | "
            f"{_pm(r['cumulative_dim'], 1, 1)} | {r['cumulative_ratio']:.1f}x | "
            f"{r['target_missed_splits']}/{s['n_splits']} splits |"
        )
    lines += [
        "",
        "## Fixed sizes (test top-1 %)",
        "",
        "| model | size | top-1 % |",
        "|---|---|---|",
    ]
    name = s.get("model_name", "MRL")
    for m, acc in report["fixed"]["mrl"].items():
        lines.append(f"| {name} | {m} | {_pm(acc)} |")
    for name, ref in report["fixed"]["references"].items():
        lines.append(f"| {name} | {ref['dim']} | {_pm(ref['accuracy'])} |")
    lines += [
        "",
        "## Paper's pairwise rule, per cap",
        "",
        "| cap | top-1 % | E[dim] | cumulative dims | mean thresholds |",
        "|---|---|---|---|---|",
    ]
    for m, r in report["pairwise"].items():
        t = " ".join(f"{x:.3f}" for x in r["thresholds"]["mean"])
        lines.append(
            f"| {m} | {_pm(r['accuracy'])} | {_pm(r['expected_dim'], 1, 1)} | "
            f"{_pm(r['cumulative_dim'], 1, 1)} | {t} |"
        )
    frontiers = [
        (f"Joint policy: size m's held-out top-1 at the least {cost} cost", rows)
        for cost, rows in report["joint"].items()
    ]
    frontiers.append(
        (
            "Shared threshold, cap searched: size m's held-out top-1 at the least E[dim]",
            report["shared"],
        )
    )
    for title, rows in frontiers:
        lines += [
            "",
            f"## {title}",
            "",
            "| target size | top-1 % | E[dim] | cumulative dims | caps chosen (cap: splits) |",
            "|---|---|---|---|---|",
        ]
        for m, r in rows.items():
            caps = ", ".join(f"{cap}: {n}" for cap, n in r["caps"].items())
            lines.append(
                f"| {m} | {_pm(r['accuracy'])} | {_pm(r['expected_dim'], 1, 1)} | "
                f"{_pm(r['cumulative_dim'], 1, 1)} | {caps} |"
            )
    return "\n".join(lines) + "\n"


def plot_report(report: dict) -> Figure:
    """Top-1 vs dims: fixed sizes, FF references and the cascades' frontiers (both costs)."""
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    mrl = report["fixed"]["mrl"]
    dims = [int(m) for m in mrl]
    name = report["settings"].get("model_name", "MRL")
    ax.plot(dims, [100 * mrl[m]["mean"] for m in mrl], "o-", color="k", label=f"{name}, fixed size")
    refs = report["fixed"]["references"]
    if refs:
        ax.plot(
            [r["dim"] for r in refs.values()],
            [100 * r["accuracy"]["mean"] for r in refs.values()],
            "s--",
            color="tab:gray",
            label="FF / references, fixed size",
        )

    def curve(rows: dict, x: str, style: str, color: str, label: str) -> None:
        xs = [rows[m][x]["mean"] for m in rows]
        ys = [100 * rows[m]["accuracy"]["mean"] for m in rows]
        es = [100 * rows[m]["accuracy"]["std"] for m in rows]
        ax.errorbar(xs, ys, yerr=es, fmt=style, color=color, capsize=2, label=label)

    curve(report["pairwise"], "expected_dim", "^-", "tab:blue", "pairwise rule (paper), E[dim]")
    curve(report["pairwise"], "cumulative_dim", "^:", "tab:blue", "pairwise rule, cumulative")
    joint = report["joint"]
    curve(joint["expected"], "expected_dim", "D-", "tab:red", "joint policy, E[dim]")
    curve(joint["cumulative"], "cumulative_dim", "D:", "tab:red", "joint policy, cumulative")
    shared = report["shared"]
    curve(shared, "expected_dim", "s-", "tab:green", "shared threshold, cap searched, E[dim]")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("dims (expected final size, or cumulative dims computed)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"Adaptive classification, {report['settings']['n_splits']} splits")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def report_folder(out_dir: str | os.PathLike) -> Path:
    """`out_dir`, created, once it is known to be a usable folder (check before the work).

    Raises:
        PathError: `out_dir` or a parent is a file, or it cannot be created.
    """
    return make_dirs(out_dir, "report folder")


def write_report(report: dict, out_dir: str | os.PathLike) -> list[Path]:
    """Write cascade.json, cascade.md and cascade.png into `out_dir`, each atomically."""
    out = report_folder(out_dir)
    atomic_write_json(out / "cascade.json", report)
    with atomic_open(out / "cascade.md", "w") as f:
        f.write(report_markdown(report))
    with atomic_open(out / "cascade.png", "wb") as f:
        plot_report(report).savefig(f, format="png", dpi=150)
    return [out / "cascade.json", out / "cascade.md", out / "cascade.png"]
