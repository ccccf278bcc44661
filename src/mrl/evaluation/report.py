"""Per-size comparison tables and plots (the paper's Table 1/2 and Figures 2/3/7 shape).

Results are a plain dict, `results["methods"][method][size] -> {metric: fraction}`, so the same
writer serves `mrl reproduce` and any user-assembled comparison. `write_report` turns it into
`report.md` (Markdown tables, percentages), `results.json` (all numbers, fractions) and PNGs
with size on a log axis, one line per method.
"""

from __future__ import annotations

import os
from pathlib import Path

# The object-oriented Figure API draws straight to PNG: no pyplot, no global backend switch.
from matplotlib.figure import Figure

from mrl.io import atomic_open, atomic_write_json

Results = dict  # {"methods": {name: {size: {metric: value}}}, "setup": {...}, ...}

# (file stem, title, metric keys tried in order: the first one a method has is plotted)
PLOTS = (
    ("top1_vs_size", "Top-1 classification accuracy", ("top1", "probe_top1")),
    ("knn1_vs_size", "1-NN accuracy", ("knn_1",)),
    ("map10_vs_size", "mAP@10 (paper: sum of P@i at hits / 10)", ("map_at_10_paper",)),
)

# (heading, metric keys tried in order, note)
TABLES = (
    (
        "Top-1 accuracy (%)",
        ("top1", "probe_top1"),
        "Model's own head where it has one (MRL, MRL-E, FF); a linear probe on the frozen "
        "features for SVD and Rand-FS, as in the paper's Table 1.",
    ),
    ("Linear-probe top-1 (%)", ("probe_top1",), "The same probe for every method."),
    ("1-NN accuracy (%)", ("knn_1",), "Database: train split; queries: test split; cosine."),
    ("20-NN accuracy (%)", ("knn_20",), "Majority vote, ties to the smallest class id."),
    (
        "mAP@10, paper variant (%)",
        ("map_at_10_paper",),
        "Sum of precision@i at the hits i <= 10, divided by 10 (RAIVNLab/MRL compute_metrics).",
    ),
    (
        "mAP@10, standard AP@k (%)",
        ("map_at_10",),
        "The same sum divided by min(10, number of relevant items); equal to the paper variant "
        "whenever every query class has at least 10 items in the database.",
    ),
    ("Precision@10 (%)", ("precision_at_10",), ""),
    (
        "Recall@100 (%)",
        ("recall_at_100",),
        "Relevant items counted per query class from the train labels.",
    ),
)

# Ranked retrieval with judged relevant items (text search; `mrl.evaluation.ranking`).
RANKING_PLOTS = (
    ("mrr10_vs_size", "MRR@10", ("mrr_at_10",)),
    ("ndcg10_vs_size", "nDCG@10", ("ndcg_at_10",)),
    ("recall100_vs_size", "Recall@100", ("recall_at_100",)),
)
RANKING_NOTE = "Exact cosine search over each L2-normalised prefix; judged relevant items."
RANKING_TABLES = (
    ("MRR@10 (%)", ("mrr_at_10",), RANKING_NOTE),
    ("nDCG@10 (%)", ("ndcg_at_10",), ""),
    ("AP@10 (%)", ("map_at_10",), ""),
    ("Recall@10 (%)", ("recall_at_10",), ""),
    ("Recall@100 (%)", ("recall_at_100",), ""),
)


def _value(metrics: dict | None, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if metrics and key in metrics:
            return metrics[key]
    return None


def _has(results: Results, keys: tuple[str, ...]) -> bool:
    """Whether any method has a value for one of `keys` at some size."""
    per_sizes = results["methods"].values()
    return any(_value(v, keys) is not None for s in per_sizes for v in s.values())


def _sizes(results: Results) -> list[int]:
    return sorted({int(m) for per_size in results["methods"].values() for m in per_size})


def markdown_table(results: Results, keys: tuple[str, ...]) -> str:
    """One row per size, one column per method; values in percent, "-" where missing."""
    methods = list(results["methods"])
    lines = ["| size | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for m in _sizes(results):
        cells = []
        for name in methods:
            v = _value(
                results["methods"][name].get(m) or results["methods"][name].get(str(m)), keys
            )
            cells.append("-" if v is None else f"{100 * v:.2f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_metric(
    results: Results, keys: tuple[str, ...], title: str, path: str | os.PathLike
) -> None:
    """PNG of metric vs size (log2 x axis), one line per method that has it."""
    fig = Figure(figsize=(6, 4.2), dpi=120)
    ax = fig.subplots()
    for name, per_size in results["methods"].items():
        pts = [(int(m), _value(v, keys)) for m, v in per_size.items()]
        pts = sorted((m, 100 * v) for m, v in pts if v is not None)
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    sizes = _sizes(results)
    ax.set_xticks(sizes, [str(m) for m in sizes])
    ax.set_xlabel("representation size (dims)")
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def write_report(
    results: Results,
    out_dir: str | os.PathLike,
    title: str = "MRL vs baselines",
    plots: tuple = PLOTS,
    tables: tuple = TABLES,
) -> Path:
    """Write report.md, results.json and the PNG plots to `out_dir`.

    Args:
        results: {"methods": {name: {size: {metric: fraction}}}, "setup": {...}, "notes": [...]}.
        out_dir: created if missing; files are replaced atomically.
        plots, tables: what to draw and tabulate (`PLOTS`/`TABLES` for classification and
            label retrieval, `RANKING_PLOTS`/`RANKING_TABLES` for judged text retrieval);
            a plot or table no method has a value for is left out.

    Returns:
        the path of report.md.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results)
    plots = [p for p in plots if _has(results, p[2])]
    for stem, plot_title, keys in plots:
        plot_metric(results, keys, plot_title, out / f"{stem}.png")
    parts = [f"# {title}", ""]
    if results.get("setup"):
        parts += [
            "## Setup",
            "",
            "```",
            *(f"{k}: {v}" for k, v in results["setup"].items()),
            "```",
            "",
        ]
    for note in results.get("notes", []):
        parts += [note, ""]
    for heading, keys, note in (t for t in tables if _has(results, t[1])):
        parts += [f"## {heading}", ""] + ([note, ""] if note else [])
        parts += [markdown_table(results, keys), ""]
    parts += ["## Plots", ""] + [f"![{t}]({stem}.png)" for stem, t, _ in plots] + [""]
    with atomic_open(out / "report.md", "w") as f:
        f.write("\n".join(parts))
    return out / "report.md"
