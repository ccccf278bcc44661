"""How close the joint policy's coordinate descent gets to the exact optimum, and how fast.

For 3-size cascades (two thresholds) the exact optimum over the joint policy's own candidate
set (0, 1, the paper's grid and `--grid` held-out confidence quantiles per threshold) can be
found by brute force. This script compares, on random holdouts of saved logits (an
`mrl embed --save-logits` folder) or of generated logits:

- the pairwise rule's cost at its own held-out accuracy,
- the joint policy's cost for that same accuracy target,
- the brute-force minimum cost reaching the target over the same candidates,

for both cost models, with the time of each fit.

Usage:
    python benchmarks/cascade_search.py [--logits runs/.../embeddings/test] [--sizes 2 4 8] \\
        --out reports/bench/cascade_search.json

Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mrl.adaptive import Cascade, cascade_exits, max_confidence
from mrl.adaptive.thresholds import size_costs, threshold_candidates
from mrl.evaluation.embed import load_embeddings
from mrl.io import atomic_write_json
from mrl.nesting import Nesting

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_script  # noqa: E402  (the benchmarks' harness)


def generated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, Nesting]:
    """Logits of 3 sizes whose accuracy rises with size, with per-example difficulty."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    logits = rng.normal(size=(3, n, 10))
    strength = np.array([1.5, 2.5, 3.0])[:, None] * rng.uniform(0, 3, n)[None, :]
    logits[:, np.arange(n), labels] += strength
    return logits, labels, Nesting((8, 16, 32))


def brute_force(conf, correct, cost, need, grid):
    """Least total cost with >= need correct over every (t0, t1) candidate pair."""
    cands = [threshold_candidates(conf[j], grid) for j in range(2)]
    rows = np.arange(conf.shape[1])
    best = None
    for t0 in cands[0]:
        for t1 in cands[1]:
            exits = cascade_exits(conf, [t0, t1])
            if correct[exits, rows].sum() >= need:
                c = cost[exits].sum()
                best = c if best is None else min(best, c)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logits", help="`mrl embed --save-logits` folder (default: generated)")
    parser.add_argument("--sizes", type=int, nargs=3, help="3 head sizes to cascade over")
    parser.add_argument("--holdout", type=int, default=2000, help="held-out examples per case")
    parser.add_argument("--cases", type=int, default=5, help="random holdouts")
    parser.add_argument("--grid", type=int, default=64, help="confidence quantiles per threshold")
    parser.add_argument("--out", help="JSON output path")
    args = parser.parse_args()

    if args.logits:
        data = load_embeddings(args.logits)
        full = Nesting(tuple(data.head_dims))
        sizes = args.sizes or full.dims[:3]
        idx = [full.index(m) for m in sizes]
        scores, labels, nesting = np.asarray(data.logits)[idx], data.labels, Nesting(tuple(sizes))
    else:
        scores, labels, nesting = generated(20000, 0)
    rng = np.random.default_rng(0)
    rows = []
    for case in range(args.cases):
        hold = rng.choice(len(labels), args.holdout, replace=False)
        x, y = scores[:, hold], labels[hold]
        conf, pred = max_confidence(x, nesting)
        correct = pred == y
        t0 = time.perf_counter()
        pairwise = Cascade(nesting).fit(x, y)
        t_pair = time.perf_counter() - t0
        need = round(pairwise.holdout_.accuracy * len(y))
        for cost_name in ("expected", "cumulative"):
            cost = size_costs(nesting.dims, cost_name)
            t0 = time.perf_counter()
            joint = Cascade(
                nesting, "joint", target=pairwise.holdout_.accuracy, cost=cost_name, grid=args.grid
            ).fit(x, y)
            t_joint = time.perf_counter() - t0
            t0 = time.perf_counter()
            exact = brute_force(conf, correct, cost, need, args.grid) / len(y)
            t_brute = time.perf_counter() - t0
            attr = f"{cost_name}_dim"
            rows.append(
                {
                    "case": case,
                    "cost": cost_name,
                    "pairwise": getattr(pairwise.holdout_, attr),
                    "joint": getattr(joint.holdout_, attr),
                    "exact": float(exact),
                    "seconds_pairwise": t_pair,
                    "seconds_joint": t_joint,
                    "seconds_brute_force": t_brute,
                }
            )
    print(f"sizes {list(nesting.dims)}, holdout {args.holdout}, grid {args.grid}")
    print("| case | cost | pairwise | joint | exact | joint s | brute-force s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['cost']} | {r['pairwise']:.3f} | {r['joint']:.3f} | "
            f"{r['exact']:.3f} | {r['seconds_joint']:.3f} | {r['seconds_brute_force']:.1f} |"
        )
    if args.out:
        atomic_write_json(args.out, {"sizes": list(nesting.dims), "rows": rows, **vars(args)})


if __name__ == "__main__":
    run_script(main)
