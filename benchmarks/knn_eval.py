"""k-NN evaluation time per nested size on a GENERATED database, vs measured memory bandwidth.

The database and queries are random Gaussian vectors generated here (no real embeddings are
needed to time an exact scan): N x d float32 written in chunks to a memory-mapped scratch file,
so even 1M x 2048 (8.2 GB) never has to sit in process memory. For each size m the script times
`mrl.evaluation.knn.knn_metrics` (one exact FAISS search with k = max k, per-prefix L2
normalisation of each database chunk, then every k-NN / retrieval metric) and reports:

- seconds per size, and that time scaled linearly to `--extrapolate-to` rows (exact search
  cost is linear in N) when the run used fewer rows;
- the scan's effective bandwidth (N * m * 4 bytes of prefix read / seconds) as a fraction of
  the machine's read bandwidth, measured here with threaded NumPy reductions over a
  `--bandwidth-gib` array (2 GiB by default: larger than any last-level cache);
- the same per-query: Q * N * m * 4 bytes / seconds over the bandwidth, i.e. how many times
  faster than memory bandwidth allows for Q separate single-query scans the batched scan runs;
- GFLOP/s of the distance computation (2 * Q * N * m / seconds): with 10k queries per pass the
  scan is compute-bound (each database chunk is reused by every query), so a low bandwidth
  fraction is expected, not a defect.

Usage:
    python benchmarks/knn_eval.py --n-db 1000000 --dim 2048 --n-queries 10000 \\
        --out reports/bench/knn_eval.json

Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from mrl.evaluation.knn import knn_metrics
from mrl.io import atomic_write_json
from mrl.nesting import Nesting

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_script  # noqa: E402  (the benchmarks' harness)


def measure_read_bandwidth(gib: float = 2.0, threads: int | None = None, repeats: int = 3) -> float:
    """Best-of-`repeats` read bandwidth in bytes/s: threads summing disjoint slices of one array.

    NumPy reductions release the GIL, so `threads` (default: all cores) read concurrently, as
    FAISS's OpenMP threads do.
    """
    threads = threads or os.cpu_count() or 1
    a = np.ones(int(gib * 2**30) // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = min(best, time.perf_counter() - t0)
    return a.nbytes / best


def generate(path: Path, n: int, d: int, seed: int, chunk: int = 65536) -> np.ndarray:
    """A generated N x d float32 standard-normal database in a .npy memmap at `path`."""
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, chunk):
        arr[s : s + chunk] = rng.standard_normal((min(chunk, n - s), d), dtype=np.float32)
    arr.flush()
    return np.load(path, mmap_mode="r")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-db", type=int, default=1_000_000, help="database rows (generated)")
    p.add_argument("--dim", type=int, default=2048, help="embedding size d")
    p.add_argument("--n-queries", type=int, default=10_000)
    p.add_argument("--sizes", type=int, nargs="*", help="prefix sizes; default: halving of d")
    p.add_argument("--k", type=int, default=100, help="neighbours retrieved (max k)")
    p.add_argument("--num-classes", type=int, default=1000, help="random labels for the metrics")
    p.add_argument("--chunk-size", type=int, default=65536, help="database rows per chunk")
    p.add_argument("--extrapolate-to", type=int, default=1_000_000, help="rows to scale time to")
    p.add_argument("--scratch", default=None, help="folder for the generated memmap")
    p.add_argument("--bandwidth-gib", type=float, default=2.0, help="bandwidth probe array size")
    p.add_argument("--out", default="reports/bench/knn_eval.json")
    args = p.parse_args(argv)

    sizes = args.sizes or list(Nesting.halving(args.dim).dims)
    if not args.bandwidth_gib > 0:
        p.error(f"--bandwidth-gib must be > 0, got {args.bandwidth_gib}")
    bandwidth = measure_read_bandwidth(args.bandwidth_gib)
    print(f"measured read bandwidth: {bandwidth / 1e9:.1f} GB/s ({os.cpu_count()} threads)")
    print(f"FAISS threads: {faiss.omp_get_max_threads()}")
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        t0 = time.perf_counter()
        db = generate(Path(tmp) / "db.npy", args.n_db, args.dim, seed=0)
        queries = rng.standard_normal((args.n_queries, args.dim), dtype=np.float32)
        db_y = rng.integers(0, args.num_classes, args.n_db)
        q_y = rng.integers(0, args.num_classes, args.n_queries)
        print(
            f"generated {args.n_db} x {args.dim} float32 database in "
            f"{time.perf_counter() - t0:.1f} s (random normal, not real embeddings)"
        )
        rows = []
        for m in sizes:
            t0 = time.perf_counter()
            knn_metrics(
                db,
                db_y,
                queries,
                q_y,
                m,
                knn_ks=(1, 20),
                retrieval_ks=(args.k,),
                chunk_size=args.chunk_size,
            )
            sec = time.perf_counter() - t0
            scan_bytes = args.n_db * m * 4
            rows.append(
                {
                    "size": m,
                    "seconds": sec,
                    "seconds_at_extrapolated_n": sec * args.extrapolate_to / args.n_db,
                    "scan_gb_per_s": scan_bytes / sec / 1e9,
                    "bandwidth_fraction": scan_bytes / sec / bandwidth,
                    "gflop_per_s": 2 * args.n_queries * args.n_db * m / sec / 1e9,
                    # bytes a one-query-at-a-time scan would stream: Q passes over the prefix
                    "query_equivalent_bandwidth_fraction": args.n_queries
                    * scan_bytes
                    / sec
                    / bandwidth,
                }
            )
            r = rows[-1]
            print(
                f"size {m:5d}: {sec:8.2f} s  scan {r['scan_gb_per_s']:.3g} GB/s "
                f"({100 * r['bandwidth_fraction']:.2g}% of bandwidth), "
                f"{r['gflop_per_s']:.0f} GFLOP/s",
                flush=True,
            )
    extrapolated = args.extrapolate_to != args.n_db
    print(
        f"\nk-NN eval, generated {args.n_db:,} x {args.dim} database, {args.n_queries:,} queries, "
        f"k={args.k}; bandwidth {bandwidth / 1e9:.1f} GB/s"
    )
    head = "| size | seconds |" + (f" s at N={args.extrapolate_to:,} |" if extrapolated else "")
    print(head + " scan GB/s | % of bandwidth | Q x scan / bandwidth | GFLOP/s |")
    print("|---" * (7 if extrapolated else 6) + "|")
    for r in rows:
        extra = f" {r['seconds_at_extrapolated_n']:.1f} |" if extrapolated else ""
        print(
            f"| {r['size']} | {r['seconds']:.2f} |{extra} {r['scan_gb_per_s']:.3g} | "
            f"{100 * r['bandwidth_fraction']:.2g} | "
            f"{r['query_equivalent_bandwidth_fraction']:.1f}x | {r['gflop_per_s']:.0f} |"
        )
    atomic_write_json(
        args.out,
        {
            "generated": True,
            "n_db": args.n_db,
            "dim": args.dim,
            "n_queries": args.n_queries,
            "k": args.k,
            "chunk_size": args.chunk_size,
            "threads": faiss.omp_get_max_threads(),
            "read_bandwidth_bytes_per_s": bandwidth,
            "extrapolate_to": args.extrapolate_to,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    run_script(main)
