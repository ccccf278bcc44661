"""Fused prefix similarities vs one matmul per size, for the Matryoshka contrastive loss.

For each setting (batch N in {64, 256}; d=384 with nesting {12, ..., 384}, d=768 with
{12, ..., 768}) it times `MatryoshkaContrastiveLoss` forward + backward on random [N, d]
queries and positives (requires_grad, so the backward reaches the inputs as it would reach
the encoder), with
- fused:    one block matmul per nesting block, cumulative sums over blocks (the flops of
            one full matmul),
- per_size: one matmul of L2-normalised prefixes per size (sum_m m / d of those flops),
and the same for `prefix_similarities` alone (forward only). Variants alternate within each
repeat so background load hits them alike; the table reports the minimum over repeats, all
with the same torch thread count.

    python benchmarks/contrastive_fused.py                  # CPU, 1 thread
    python benchmarks/contrastive_fused.py --threads 2 --repeats 50
    python benchmarks/contrastive_fused.py --device cuda    # synchronises around each call

The loss's `fused` default is the winner on CPU here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_script, thread_count  # noqa: E402  (the benchmarks' harness)

from mrl.checks import check_int
from mrl.nesting import Nesting
from mrl.nn import MatryoshkaContrastiveLoss, prefix_similarities

SETTINGS = [(n, d) for d in (384, 768) for n in (64, 256)]


def timed(fn, device: torch.device) -> float:
    """Seconds one call of `fn` takes (synchronising around it on an accelerator)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_setting(n: int, d: int, repeats: int, device: torch.device) -> dict:
    """Minimum seconds over `repeats` of each variant, for batch `n` and width `d`."""
    nesting = Nesting.halving(d, min_dim=12)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(n, d, generator=g).to(device).requires_grad_()
    p = torch.randn(n, d, generator=g).to(device).requires_grad_()
    losses = {
        name: MatryoshkaContrastiveLoss(nesting, fused=name == "fused")
        for name in ("fused", "per_size")
    }

    def step(loss_fn):
        q.grad = p.grad = None
        loss_fn(q, p).backward()

    def sims(fused):
        with torch.no_grad():
            prefix_similarities(q, p, nesting, fused=fused)

    calls = {
        "loss_fused": lambda: step(losses["fused"]),
        "loss_per_size": lambda: step(losses["per_size"]),
        "sim_fused": lambda: sims(True),
        "sim_per_size": lambda: sims(False),
    }
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(3):  # warm-up: allocator, kernels
        for fn in calls.values():
            fn()
    for _ in range(repeats):
        for name, fn in calls.items():  # round-robin: load hits every variant alike
            best[name] = min(best[name], timed(fn, device))
    return {"batch": n, "embed_dim": d, "nesting": list(nesting.dims), **best}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (same for all)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON path (default under results/)")
    args = parser.parse_args(argv)
    check_int("--threads", args.threads)
    check_int("--repeats", args.repeats)
    with thread_count(args.threads):  # a caller's (or a test's) thread count is left alone
        report = run(args)
    default = f"contrastive_fused_{report['device'].split(':')[0]}.json"
    out = Path(args.out or Path(__file__).parent / "results" / default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


def run(args: argparse.Namespace) -> dict:
    """Print the table row by row; return the report (settings, timings, environment)."""
    device = torch.device(args.device)
    rows = []
    header = (
        f"{'N':>5} {'d':>5} {'G':>3} | {'loss fused ms':>13} {'per-size ms':>11} {'speed-up':>8}"
        f" | {'sim fused ms':>12} {'per-size ms':>11} {'speed-up':>8}"
    )
    print(f"device={device} threads={torch.get_num_threads()} repeats={args.repeats} (min)")
    print(header)
    print("-" * len(header))
    for n, d in SETTINGS:
        r = bench_setting(n, d, args.repeats, device)
        rows.append(r)
        print(
            f"{n:>5} {d:>5} {len(r['nesting']):>3} | {1e3 * r['loss_fused']:>13.3f} "
            f"{1e3 * r['loss_per_size']:>11.3f} {r['loss_per_size'] / r['loss_fused']:>7.2f}x"
            f" | {1e3 * r['sim_fused']:>12.3f} {1e3 * r['sim_per_size']:>11.3f} "
            f"{r['sim_per_size'] / r['sim_fused']:>7.2f}x",
            flush=True,
        )
    report = {
        "benchmark": "contrastive_fused",
        "unit": "seconds (minimum over repeats)",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "rows": rows,
    }
    return report


if __name__ == "__main__":
    run_script(main)
