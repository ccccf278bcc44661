"""Our Matryoshka fine-tune under every recipe tried, side by side, against the bars of issue 9.

Reads the `results.json` of several `benchmarks/text.py` runs of the same queries and corpus
and prints one table of our fine-tune (`ft_mrl`) per recipe: MRR@10 at every size, the share
of its own full-size MRR@10 kept at 48 and 24 dims, and its full-size gap to the 384-only
fine-tune (`ft_plain`) of the same training budget (pairs, epochs, batch, rate), when one of
the runs has that row.

A run whose nesting weights are zero but at one size m trained an encoder for m alone (with
`--rotation`, the first m rows of a learned orthogonal map after the pooling: a learned
projection to m dims). That is the paper's independently trained low-dimensional model, so
the table also gives, for each such size, ours minus that model at the same budget (the
claim "MRL matches independently trained low-dim models"), and what the retention bar would
need: the 95%-at-48 bar asks ours at 48 dims to reach 0.95 x ours at the full size, which
is only possible if the m-only model reaches it too or MRL beats it.

    python benchmarks/text_recipes.py --runs docs/results/text/{lr-1e-4-16000,rotation-16000} \
        --out docs/results/text/recipes

Writes recipes.md (the table), recipes.json (the same numbers) and recipes.png (MRR@10
against size, one line per recipe, the single-size models as stars).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules
from harness import run_script  # noqa: E402  (the benchmarks' harness)
from text import LATER_RECIPE_DEFAULTS, MERGE_KEYS, finish_size_plot, read_json  # noqa: E402

from mrl.errors import ConfigError  # noqa: E402
from mrl.io import atomic_open, atomic_write_json, make_dirs  # noqa: E402

BUDGET_KEYS = ("pairs", "epochs", "batch_size", "lr", "max_seq_length", "temperature")
RETENTION_BARS = (("48", 0.95), ("24", 0.90))  # issue 9: (size, share of the full size)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="benchmarks/text.py --out folders")
    parser.add_argument("--out", default="reports/text-recipes", help="recipes.md/json/png folder")
    args = parser.parse_args(argv)
    reports = {
        folder: read_json(str(Path(folder) / "results.json"), "--runs") for folder in args.runs
    }
    out = make_dirs(args.out, "--out")
    table = compare(reports)
    text = markdown(table)
    print(text, flush=True)
    atomic_write_json(out / "recipes.json", table)
    with atomic_open(out / "recipes.md", "w") as f:
        f.write(text + "\n")
    plot(table, out / "recipes.png")
    print(f"wrote {out}/recipes.json, recipes.md, recipes.png")
    return table


def compare(reports: dict[str, dict]) -> dict:
    """The table's numbers: one entry per `ft_mrl` row, with its bars and references.

    ConfigError when the runs are not of the same queries (`MERGE_KEYS`) or none has our row.
    """
    folders = list(reports)
    first = reports[folders[0]]
    for folder in folders[1:]:
        for key in MERGE_KEYS:
            if reports[folder][key] != first[key]:
                raise ConfigError(
                    f"--runs: {folder} has {key} {reports[folder][key]!r}, {folders[0]} "
                    f"{first[key]!r}; compare runs of the same queries only"
                )
    sizes = [str(m) for m in first["nesting"]]
    full = sizes[-1]
    plain = {
        budget(r["finetune"]): r["rows"]["ft_plain"][full]["mrr_at_10"]
        for r in reports.values()
        if "ft_plain" in r["rows"]
    }
    recipes = []
    for folder, report in reports.items():
        if "ft_mrl" not in report["rows"]:
            continue
        finetune = {**LATER_RECIPE_DEFAULTS, **report["finetune"]}
        mrr = {m: report["rows"]["ft_mrl"][m]["mrr_at_10"] for m in sizes}
        reference = plain.get(budget(finetune))
        recipes.append(
            {
                "run": folder,
                "label": recipe_label(finetune, sizes),
                "budget": dict(zip(BUDGET_KEYS, budget(finetune), strict=True)),
                "only_size": only_size(finetune, sizes),
                "mrr_at_10": mrr,
                "kept": {m: mrr[m] / mrr[full] for m, _ in RETENTION_BARS if m in mrr},
                "gap_to_plain_pts": None if reference is None else 100 * (mrr[full] - reference),
            }
        )
    if not recipes:
        raise ConfigError(
            "--runs: no run has our Matryoshka fine-tune (ft_mrl); nothing to compare"
        )
    for recipe in recipes:
        recipe["vs_only_pts"] = {
            other["only_size"]: 100
            * (recipe["mrr_at_10"][other["only_size"]] - other["mrr_at_10"][other["only_size"]])
            for other in recipes
            if other["only_size"]
            and other["budget"] == recipe["budget"]
            and not recipe["only_size"]
        }
    references = [
        {"budget": dict(zip(BUDGET_KEYS, key, strict=True)), "mrr_at_10": value}
        for key, value in plain.items()
    ]
    return {
        "sizes": sizes,
        "n_queries": first["n_queries"],
        "plain_at_full": references,  # the 384-only fine-tunes at the full size, per budget
        "recipes": recipes,
    }


def budget(finetune: dict) -> tuple:
    """What two fine-tunes must share for their numbers to compare: pairs, epochs, ..."""
    return tuple(finetune[k] for k in BUDGET_KEYS)


def only_size(finetune: dict, sizes: list[str]) -> str | None:
    """The size a fine-tune was trained for alone (every other nesting weight 0), else None."""
    weights = finetune.get("nesting_weights")
    if not weights:
        return None
    live = [m for m, w in zip(sizes, weights, strict=True) if w]
    return live[0] if len(live) == 1 else None


def recipe_label(finetune: dict, sizes: list[str]) -> str:
    """A short human name of a recipe: budget first, then each lever away from plain MRL."""
    pairs = finetune.get("pairs_trained") or finetune["pairs"]  # older reports: as asked
    parts = [f"{pairs:,} pairs, lr {finetune['lr']:g}"]
    single = only_size(finetune, sizes)
    if single:
        parts.append(f"trained for {single} dims only")
    elif finetune.get("nesting_weights"):
        parts.append("weights (" + ", ".join(f"{w:g}" for w in finetune["nesting_weights"]) + ")")
    if finetune.get("rotation"):
        parts.append("rotation")
    if finetune.get("distill_weight"):
        temperature = finetune.get("distill_temperature") or finetune["temperature"]
        parts.append(f"distil {finetune['distill_weight']:g} at T {temperature:g}")
    return ", ".join(parts)


def markdown(table: dict) -> str:
    """The recipes' table, then each single-size comparison and the retention bars' need."""
    sizes, full = table["sizes"], table["sizes"][-1]
    kept_heads = [f"kept at {m}" for m, _ in RETENTION_BARS if m in sizes]
    heads = [*sizes, *kept_heads, f"{full} vs {full}-only"]
    lines = [
        f"Ours (Matryoshka InfoNCE) per recipe, MRR@10 on {table['n_queries']} Debian queries.",
        "",
        "| recipe | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(heads),
    ]
    for r in table["recipes"]:
        cells = [f"{r['mrr_at_10'][m]:.3f}" for m in sizes]
        cells += [f"{r['kept'][m]:.1%}" for m, _ in RETENTION_BARS if m in sizes]
        gap = r["gap_to_plain_pts"]
        cells.append("n/a" if gap is None or r["only_size"] else f"{gap:+.1f} pts")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in table["recipes"]:
        for m, pts in r["vs_only_pts"].items():
            need = next((share for size, share in RETENTION_BARS if size == m), None)
            bar = (
                f"; the {need:.0%} bar needs {need * r['mrr_at_10'][full]:.3f} there"
                if need
                else ""
            )
            lines.append(
                f"- {r['label']}: at {m} dims {r['mrr_at_10'][m]:.3f}, {pts:+.1f} pts against "
                f"the model trained for {m} alone{bar}"
            )
    return "\n".join(lines)


def plot(table: dict, path: Path) -> None:
    """MRR@10 against size (log2 axis): a line per recipe, a star per single-size model."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6), tight_layout=True)
    ax = fig.add_subplot()
    ax.set_prop_cycle(color=colormaps["tab20"].colors)  # one colour per recipe (tab10 repeats)
    sizes = [int(m) for m in table["sizes"]]
    for r in table["recipes"]:
        if r["only_size"]:
            m = r["only_size"]
            ax.plot(
                [int(m)],
                [r["mrr_at_10"][m]],
                "*",
                markersize=14,
                markeredgecolor="k",
                label=r["label"],
            )
        else:
            ax.plot(sizes, [r["mrr_at_10"][str(m)] for m in sizes], "o-", label=r["label"])
    title = f"Our Matryoshka fine-tune per recipe, {table['n_queries']} queries"
    finish_size_plot(fig, ax, sizes, title, path, legend_size=7)


if __name__ == "__main__":
    run_script(main)
