"""One query per call through faiss alone: the fused rerank's structures against full-D HNSW.

Where `ann_frontier.py` times `MatryoshkaIndex.search` (faiss plus our Python), this times
only the faiss call each structure costs, so it shows whether a structure can lead at all
before any Python is added: faiss `IndexHNSWFlat` at full D (efSearch swept) against the
`IndexRefine` that `MatryoshkaIndex.use_fused_rerank` builds (an ANN over the D_s-prefix,
`s` candidates re-scored at full D), for several ANN kinds, prefixes, shortlists and
efforts. The database and timed queries are `ann_frontier.py`'s for the same `--database`,
`--queries` and `--seed` (duplicates dropped, the same held-out rows), recall@k against
exact full-D search; one thread, each point the fastest of `--repeats` passes, one process.

    python benchmarks/fused_structures.py --database runs/debian-real/debian-descriptions-mrl16k \\
        --candidates hnsw_sq8@192 hnsw@192 hnsw@128 --out reports/fused-structures
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from mrl.errors import ConfigError
from mrl.io import atomic_write_json, make_dirs
from mrl.retrieval import MatryoshkaIndex
from mrl.retrieval.fused import refine_params
from mrl.retrieval.search import HNSW_KINDS
from mrl.retrieval.tune import neighbor_recall

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann_frontier import _sets  # noqa: E402  (the same real set and held-out queries)
from harness import run_script, thread_count  # noqa: E402  (the benchmarks' harness)

EFFORTS = (16, 24, 32, 48, 64)
SHORTLISTS = (20, 30, 50, 100)


def time_calls(index: faiss.Index, params, queries: np.ndarray, k: int, repeats: int):
    """Best-of-`repeats` microseconds per one-query `index.search`, and the rows found."""
    best, rows = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = np.vstack([index.search(v[None], k, params=params)[1] for v in queries])
        best = min(best, (time.perf_counter() - t0) / len(queries))
    return best * 1e6, rows


def run(args) -> dict:
    """Every structure's points on one thread (the caller's thread counts are restored)."""
    with thread_count(1):
        return _points(args)


def _points(args) -> dict:
    split = argparse.Namespace(
        database=args.database, queries=args.queries, tune_queries=0, seed=args.seed
    )
    _, db, queries, _ = next(_sets(split))
    db = np.ascontiguousarray(db / np.linalg.norm(db, axis=1, keepdims=True), dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    d, k = db.shape[1], args.k
    exact = faiss.IndexFlatIP(d)
    exact.add(db)
    truth = exact.search(queries, k)[1]
    points = []
    hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    hnsw.add(db)
    for ef in EFFORTS:
        params = faiss.SearchParametersHNSW(efSearch=ef)
        us, rows = time_calls(hnsw, params, queries, k, args.repeats)
        points.append(
            {
                "structure": "faiss HNSWFlat full D",
                "effort": ef,
                "us": us,
                "recall": neighbor_recall(rows, truth),
            }
        )
    for spec in args.candidates:
        kind, _, dim = spec.partition("@")
        if kind not in HNSW_KINDS or not dim.isdigit():
            raise ConfigError(f"--candidates takes hnsw@D_s or hnsw_sq8@D_s, got {spec!r}")
        index = MatryoshkaIndex(shortlist_dim=int(dim), ann=kind).build(db).use_fused_rerank()
        for s in SHORTLISTS:
            for ef in EFFORTS:
                base = faiss.SearchParametersHNSW(efSearch=max(ef, s))
                params = refine_params(base, s, k)
                us, rows = time_calls(index.fused_.index, params, queries, k, args.repeats)
                points.append(
                    {
                        "structure": f"fused {spec}",
                        "shortlist": s,
                        "effort": ef,
                        "us": us,
                        "recall": neighbor_recall(rows, truth),
                    }
                )
    return {"database": str(args.database), "rows": len(db), "dim": d, "k": k, "points": points}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/fused_structures.py", description=__doc__)
    p.add_argument("--database", required=True, help=".npy [N, D] or `mrl embed` folder")
    p.add_argument(
        "--candidates",
        nargs="+",
        default=["hnsw_sq8@192", "hnsw@192"],
        help="HNSW kinds as ANN@D_s (hnsw or hnsw_sq8)",
    )
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for structures.json")
    args = p.parse_args(argv)
    res = run(args)
    make_dirs(args.out, "output folder")
    atomic_write_json(Path(args.out) / "structures.json", res)
    print(
        f"| structure | shortlist | effort | us/query | recall@{res['k']} |\n|---|---|---|---|---|"
    )
    for pt in res["points"]:
        print(
            f"| {pt['structure']} | {pt.get('shortlist', '')} | {pt['effort']} | "
            f"{pt['us']:.1f} | {pt['recall']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    run_script(main)
