"""What a one-query `MatryoshkaIndex.search` costs beside the bare faiss call it makes.

Issue 11's one-query bar is won or lost by microseconds at D = 384: the search is one faiss
call (the ANN alone, or a fused rerank) and the rest is ours (the query's normalisation,
the prepared set-up's checks, equal scores put in id order, the ids, the stats). This times,
one query per call on 1 thread and in alternating passes over the same queries, our
`index.search(q, k, plan, effort)` against that faiss call made bare (`search_c` on the same
structure with the same parameters, the queries normalised beforehand, k results), for
`SingleShot(D_s, ann)` and, with the fused copy on, `Rerank(D_s, D, r)`. Each runs on the
collection as stored, exact duplicates kept (real collections hold them: 12,225 of the
63,664 Debian descriptions, whose equal scores must still come back in id order), and with
them dropped (the split `ann_frontier.py` times). The tied share is the fraction of queries
whose k + 1 best scores hold a tie; before ties were ordered inside the one-query path they
sent such a query through a second, staged search.

    python benchmarks/one_query_overhead.py \\
        --database runs/debian-real/debian-descriptions-mrl16k-kd-w5 \\
        --out docs/results/ann_frontier/debian/one-query-overhead

prints the table and writes one_query_overhead.md and one_query_overhead.json to --out.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from mrl.checks import check_int
from mrl.data.npy import load_npy
from mrl.errors import ConfigError
from mrl.retrieval import MatryoshkaIndex, Rerank, SingleShot
from mrl.retrieval.fused import refine_params
from mrl.retrieval.search import HNSW_KINDS
from mrl.retrieval.storage import unit_prefix

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann_frontier import parse_candidate  # noqa: E402  (the frontier's --ours specs)
from harness import run_script, thread_count, write_results  # noqa: E402

log = logging.getLogger("benchmarks.one_query_overhead")
K = 10


def collections(database: str, queries: int, seed: int):
    """(queries, [(label, rows)]): held-out queries, the rest as stored and deduplicated."""
    path = Path(database)
    x = np.asarray(load_npy(path / "embeddings.npy" if path.is_dir() else path), np.float32)
    if queries >= len(x):
        raise ConfigError(f"--queries {queries} leaves no database rows of {len(x)}; use fewer")
    held = np.random.default_rng(seed).permutation(len(x))
    stored = x[np.sort(held[queries:])]
    _, first = np.unique(stored, axis=0, return_index=True)
    out = [("as stored", stored)]
    if len(first) < len(stored):
        out.append(("duplicates dropped", stored[np.sort(first)]))
    return x[held[:queries]], out


def bare_call(index: MatryoshkaIndex, plan, effort: int, queries: np.ndarray):
    """The faiss call `index.search` makes for one query of `plan`, made bare, and the
    queries as it takes them: a function of one [1, D_s] (or [1, D], fused) float32 query
    returning its [k] storage rows, and those [Q, 1, D_s] (or [Q, 1, D]) queries."""
    if index.ann in HNSW_KINDS:
        base = faiss.SearchParametersHNSW(efSearch=effort)
    else:
        base = faiss.SearchParametersIVF(nprobe=effort)
    scores, rows = np.empty((1, K), np.float32), np.empty((1, K), np.int64)
    if plan.steps:  # fused: faiss normalises the full query itself
        searched, params, inputs = (
            index.fused_.index,
            refine_params(base, plan.steps[0][1], K),
            queries,
        )
    else:
        searched, params = index.ann_, base
        inputs = unit_prefix(queries, plan.shortlist_dim)

    def call(q: np.ndarray) -> np.ndarray:
        searched.search_c(1, faiss.swig_ptr(q), K, faiss.swig_ptr(scores), faiss.swig_ptr(rows),
                          params)  # fmt: skip
        return rows[0].copy()

    call.params = (base, params)  # faiss keeps raw pointers: the objects must outlive it
    return call, np.ascontiguousarray(inputs, dtype=np.float32)[:, None, :]


def alternate(ours, queries, bare, inputs, repeats: int) -> tuple[float, float]:
    """Best-of-`repeats` seconds per query of `ours` over `queries` and `bare` over `inputs`,
    timed in alternating passes."""
    best = [np.inf, np.inf]
    for _ in range(repeats):
        for side, (fn, rows) in enumerate(((ours, queries), (bare, inputs))):
            t0 = time.perf_counter()
            for q in rows:
                fn(q)
            best[side] = min(best[side], (time.perf_counter() - t0) / len(rows))
    return best[0], best[1]


def measure(index: MatryoshkaIndex, plan, effort: int, queries: np.ndarray, repeats: int):
    """Ours and bare, timed one query per call on 1 thread; the tied and same-ids shares."""
    with thread_count(1):
        bare, inputs = bare_call(index, plan, effort, queries)
        batch = index.search(queries, K, plan, effort)
        index.search(queries[0], K, plan, effort)  # sets the one-query search up
        ours = lambda q: index.search(q, K, plan, effort)  # noqa: E731
        ours_s, bare_s = alternate(ours, queries, bare, inputs, repeats)
        # the tie test the one-query path makes: the k + 1 best of each query
        wide = index.search(queries, K + 1, plan, effort).scores
    same = [(index.store_.ids[bare(q)] == batch.ids[i]).all() for i, q in enumerate(inputs)]
    return {
        "plan": str(plan), "effort": effort, "bare_us": bare_s * 1e6, "ours_us": ours_s * 1e6,
        "overhead_us": (ours_s - bare_s) * 1e6, "ratio": ours_s / bare_s,
        "tied_share": float((wide[:, 1:] == wide[:, :-1]).any(axis=1).mean()),
        "same_ids_share": float(np.mean(same)),
    }  # fmt: skip


def run(args) -> dict:
    queries, sets = collections(args.database, args.queries, args.seed)
    c = parse_candidate(args.ours)
    d = queries.shape[1]
    if c.dim > d:
        raise ConfigError(f"--ours {args.ours!r}: D_s {c.dim} is above the vectors' {d} dims")
    plans = [SingleShot(c.dim, exact=False), Rerank(c.dim, d, args.rerank)]
    rows = []
    with tqdm(total=len(sets) * len(plans), desc="one query") as bar:
        for label, x in sets:
            params = {"hnsw_m": c.hnsw_m, "ef_construction": c.ef_construction,
                      "graph_dim": c.graph_dim, "ivf_lists": c.lists}  # fmt: skip
            params = {key: v for key, v in params.items() if v is not None}
            with thread_count(args.threads):
                index = MatryoshkaIndex(shortlist_dim=c.dim, ann=c.kind, **params).build(x)
            for plan in plans:
                index.use_fused_rerank(bool(plan.steps))
                bar.set_description(f"{label}: {plan}")
                row = measure(index, plan, args.effort, queries, args.repeats)
                rows.append({"collection": label, "rows": len(x), **row})
                log.info("%s %s: ours %.1f us, bare %.1f us", label, plan, row["ours_us"],
                         row["bare_us"])  # fmt: skip
                bar.update()
    return {"database": str(args.database), "dim": d, "queries": len(queries),
            "index": args.ours, "k": K, "repeats": args.repeats, "rows": rows}  # fmt: skip


def format_report(res: dict) -> str:
    lines = [
        f"# One query per call: ours beside the bare faiss call ({res['index']})",
        "",
        f"{res['database']}: D = {res['dim']}, {res['queries']} held-out queries one per call "
        f"(1 thread), k = {res['k']}, best of {res['repeats']} alternating passes. `bare`: "
        "the faiss call our search makes, on the same structure with the same parameters "
        "(the query normalised beforehand); `same ids`: the share of queries where bare and "
        "ours return the same ids (ties may come back in another order from bare faiss).",
        "",
        "| collection | rows | plan @effort | bare us/query | ours us/query | ours - bare us "
        "| ours / bare | tied share | same ids |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['collection']} | {r['rows']} | `{r['plan']}` @{r['effort']} | "
            f"{r['bare_us']:.1f} | {r['ours_us']:.1f} | {r['overhead_us']:.1f} | "
            f"{r['ratio']:.2f}x | {r['tied_share']:.3f} | {r['same_ids_share']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", required=True, help="real embeddings: .npy or `mrl embed` folder")
    p.add_argument("--out", required=True, help="folder for one_query_overhead.{md,json}")
    p.add_argument(
        "--ours",
        default="hnsw_sq8@384/m16/efc100",
        help="the index, as ann_frontier.py's --ours (no +fused: both plans run)",
    )
    p.add_argument("--effort", type=int, default=24, help="efSearch (HNSW) or nprobe (IVF)")
    p.add_argument("--rerank", type=int, default=20, help="the fused plan's shortlist size")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5, help="alternating passes; the best counts")
    p.add_argument("--threads", type=int, default=2, help="build threads")
    p.add_argument("--seed", type=int, default=0)
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("effort", "queries", "repeats", "threads"):
        check_int(f"--{name}", getattr(args, name), 1)
    check_int("--rerank", args.rerank, K)
    if parse_candidate(args.ours).fused:
        raise ConfigError(f"--ours {args.ours!r}: leave out +fused (the rerank plan turns it on)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = run(args)
    write_results(out, "one_query_overhead", res, format_report(res))
    return 0


if __name__ == "__main__":
    run_script(main)
