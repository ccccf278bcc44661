"""Adaptive-retrieval benchmark: the paper's Figure 8 and wall-clock against faiss baselines.

The defaults are the headline configuration: generated (not real) labelled nested
embeddings, 1M x 2048 stored as float32 (8.2 GB, copied into RAM on huge pages for the
index), 10k queries, shortlists on the 32-d prefix (the 16-d prefix of this generator reaches
only 97% of exact mAP@10): HNSW32 as in the paper, and IVF (about 8 sqrt(N) cells, nprobe 64)
for comparison. Also, for each index, the plan (and for IVF the nprobe) that
`MatryoshkaIndex.tune` picks on 1,000 further generated queries (disjoint from the 10k).

One run measures, on the same machine with the same thread count:

- Figure 8 (with `--fig8-queries N`): mAP@10 (the paper's variant) vs MFLOPs/query for
  single-shot search at every halving dim, for every (D_s, D_r) shortlist+rerank pair with
  k' = 200, and for the funnel, all with exact shortlisting so FLOPs follow the paper's
  D_s * N + D_r * k' accounting; its brute-force scans take most of a run that includes it;
- our HNSW-shortlisted plans against faiss `IndexFlatIP` at full D (batched, sharded over
  database blocks so float16 storage never needs a float32 copy of the whole database) and
  faiss `IndexHNSWFlat` at full D (built on the first `--hnsw-full-rows` rows, its full
  build extrapolated);
- HNSW build time and memory on the D_s-prefix vs on full D;
- the rerank stage's achieved bytes/s against the machine's measured memory bandwidth.

Writes `retrieval_bench.json`, `retrieval_bench.md` and (with Figure 8) `figure8.png` to
`--out`, each atomically, and prints the Markdown table. Thread counts of faiss, torch and
BLAS are restored when the run ends.

Usage (the headline is heavy: 19 GB peak RSS, about 9 minutes on 2 idle cores):
    python benchmarks/retrieval.py --out reports/retrieval-1m-ds32-f32
    python benchmarks/retrieval.py --dtype float16 --out reports/retrieval-1m-ds32-f16
    python benchmarks/retrieval.py --n 100000 --n-queries 2000 --out reports/retrieval-100k
    python benchmarks/retrieval.py --database DIR --queries DIR2 --out reports/real

`--database` runs on the embeddings written by `mrl embed` (`--tune-queries` applies to
generated data only).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from mrl.checks import check_int, check_labels
from mrl.data.generated import (
    GeneratedNestedSpec,
    generated_nested_embeddings,
    write_generated_nested_embeddings,
)
from mrl.data.npy import load_npy
from mrl.errors import InputError
from mrl.io import atomic_open, atomic_write_bytes, atomic_write_json
from mrl.nesting import Nesting, truncate
from mrl.retrieval import Funnel, MatryoshkaIndex, Rerank, SingleShot, search
from mrl.retrieval.index import default_ivf_lists
from mrl.retrieval.plans import Plan
from mrl.retrieval.storage import STORAGE_DTYPES, resident_copy, unit_prefix
from mrl.retrieval.tune import labelled_map_at_k, neighbor_recall, time_search

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_script, thread_count  # noqa: E402  (the benchmarks' harness)

log = logging.getLogger("benchmarks.retrieval")


def measure_memory_bandwidth(mib: int = 512, repeats: int = 5) -> dict:
    """Best-of-`repeats` bytes/s of a numpy sum (read) and copy (read + write) over `mib` MiB.

    Two arrays of `mib` MiB are allocated; they should exceed the last-level cache (the
    default does on any current CPU), or the figure is the cache's, not the memory's.
    """
    a = np.ones(mib * (1 << 20) // 4, dtype=np.float32)
    b = np.empty_like(a)
    read = copy = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        t1 = time.perf_counter()
        np.copyto(b, a)
        t2 = time.perf_counter()
        read, copy = max(read, a.nbytes / (t1 - t0)), max(copy, 2 * a.nbytes / (t2 - t1))
    return {"read_bytes_per_s": read, "copy_bytes_per_s": copy, "array_mib": mib}


def flat_ip_search(
    database: np.ndarray, queries: np.ndarray, k: int, block_rows: int = 65536
) -> tuple[np.ndarray, float]:
    """Exact top-k by faiss `IndexFlatIP` at full D over unit vectors, one shard per block.

    Only the `search` calls and the heap merge are timed (a resident faiss index would not
    pay the float16 -> float32 conversion or the `add`).

    Returns:
        ids [Q, k] (database rows) and the timed seconds.
    """
    d = database.shape[1]
    qn = truncate(queries, d, normalize=True)
    heap = faiss.ResultHeap(len(qn), k, keep_max=True)
    seconds = 0.0
    for start in range(0, len(database), block_rows):
        shard = faiss.IndexFlatIP(d)
        shard.add(unit_prefix(database[start : start + block_rows], d))
        t0 = time.perf_counter()
        scores, ids = shard.search(qn, min(k, shard.ntotal))
        if ids.shape[1] < k:  # a last shard smaller than k
            pad = k - ids.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1 - start)
        heap.add_result(scores, ids + start)
        seconds += time.perf_counter() - t0
    heap.finalize()
    return heap.I, seconds


def _hnsw(x: np.ndarray, m: int, ef_construction: int) -> tuple[faiss.Index, float, int]:
    index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    t0 = time.perf_counter()
    index.add(x)
    return index, time.perf_counter() - t0, len(faiss.serialize_index(index))


def figure8(
    index: MatryoshkaIndex,
    queries: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    k: int = 10,
    shortlist: int = 200,
    min_dim: int = 8,
) -> dict:
    """mAP@k vs MFLOPs/query: single-shot dims, the (D_s, D_r) grid and the funnel.

    Dims are the halving nesting of D down to `min_dim`. Shortlists are exact (brute force at
    D_s), computed once per D_s and reused for every D_r. Row ids equal database rows here
    (the index is built with the default ids). The funnel starts at the index's D_s.
    """
    n, d = index.count, index.dim
    dims = Nesting.halving(d, min_dim=min_dim).dims
    single = []
    for m in dims:
        rows, _, _ = search.shortlist(index, queries, m, k, exact=True)
        single.append(
            {
                "dim": m,
                "mflops": m * n / 1e6,
                "map": labelled_map_at_k(rows, query_labels, db_labels, k),
            }
        )
        log.info("single-shot %d: mAP@%d %.4f", m, k, single[-1]["map"])
    grid, funnel = [], None
    for ds in [m for m in dims if m <= 256 and m < d]:  # D_s, the shortlist dim
        rows, _, _ = search.shortlist(index, queries, ds, shortlist, exact=True)
        for dr in [m for m in dims if m > ds]:  # D_r, the rerank dim
            top, _ = search.rerank(index, queries, rows, ((dr, shortlist),), k)
            mflops = (ds * n + dr * shortlist) / 1e6
            grid.append(
                {
                    "shortlist_dim": ds,
                    "rerank_dim": dr,
                    "mflops": mflops,
                    "map": labelled_map_at_k(top, query_labels, db_labels, k),
                }
            )
        best = max(g["map"] for g in grid if g["shortlist_dim"] == ds)
        log.info("D_s=%d: best rerank mAP@%d %.4f", ds, k, best)
        if ds == index.shortlist_dim:
            plan = Funnel.halving(d, ds, shortlist, final=k)
            top, _ = search.rerank(index, queries, rows, plan.steps, k)
            funnel = {
                "plan": str(plan),
                "mflops": (ds * n + sum(a * b for a, b in plan.steps)) / 1e6,
                "map": labelled_map_at_k(top, query_labels, db_labels, k),
            }
    return {
        "queries": len(queries),
        "k": k,
        "shortlist": shortlist,
        "single_shot": single,
        "grid": grid,
        "funnel": funnel,
    }


def plot_figure8(fig8: dict, path: Path, title: str) -> None:
    """Write the Figure 8 reproduction (log-x MFLOPs/query, y mAP@10) as a PNG, atomically.

    Uses matplotlib's object API (a `Figure` of its own, no pyplot state), so a caller's
    figures and backend are untouched.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    s = fig8["single_shot"]
    ax.plot(
        [p["mflops"] for p in s], [100 * p["map"] for p in s], "k-o", label="single-shot (exact)"
    )
    for p in s:
        ax.annotate(
            str(p["dim"]),
            (p["mflops"], 100 * p["map"]),
            fontsize=7,
            xytext=(3, -9),
            textcoords="offset points",
        )
    shortlist_dims = sorted({g["shortlist_dim"] for g in fig8["grid"]})
    cmap = colormaps["viridis"].resampled(max(1, len(shortlist_dims)))
    for i, ds in enumerate(shortlist_dims):
        pts = [g for g in fig8["grid"] if g["shortlist_dim"] == ds]
        ax.plot(
            [g["mflops"] for g in pts],
            [100 * g["map"] for g in pts],
            "s--",
            color=cmap(i),
            ms=4,
            lw=0.8,
            label=f"D_s={ds}, D_r={pts[0]['rerank_dim']}..{pts[-1]['rerank_dim']} "
            f"(k'={fig8['shortlist']})",
        )
    if fig8["funnel"]:
        f = fig8["funnel"]
        ax.plot([f["mflops"]], [100 * f["map"]], "r*", ms=14, label=f["plan"])
    ax.set_xscale("log")
    ax.set_xlabel("MFLOPs / query (D_s * N + sum D_r * k')")
    ax.set_ylabel(f"mAP@{fig8['k']} (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=130)
    atomic_write_bytes(path, png.getvalue())


def _default_ivf_lists(n: int) -> int:
    """About 8 sqrt(N) cells, as a power of two (8192 at 1M rows).

    With nprobe 64 this matched HNSW32's shortlist recall at efSearch 200 on the 32-d prefix
    of the 1M generated set (recall@200 of the exact 32-d top-200: 0.985 vs 0.978) at half
    its time; 4 sqrt(N) cells at nprobe 32 reached only 0.972. Chosen on that label-free
    recall, not on the benchmark's mAP.
    """
    return default_ivf_lists(n, per_sqrt_n=8.0)


def _plan_row(
    index,
    plan,
    ann,
    queries,
    query_labels,
    db_labels,
    k,
    repeats,
    flat_s,
    exact_rows,
    exact_map,
    bw,
    effort=None,
) -> dict:
    """One table row: `plan` timed on `index` (best of `repeats`) with quality and cost."""
    r, took = time_search(index, queries, k, plan, repeats, effort)
    st = r.stats
    rerank_bps = (
        st.rerank_bytes_per_query * len(queries) / st.rerank_seconds if plan.steps else None
    )
    row = {
        "method": f"ours {plan} [{ann}]",
        "ms_per_query": 1e3 * took / len(queries),
        "speedup_vs_flat": flat_s / took,
        "map": labelled_map_at_k(r.ids, query_labels, db_labels, k),
        "recall_vs_exact": neighbor_recall(r.ids, exact_rows),
        "mflops_per_query": st.flops_per_query / 1e6,
        "kb_read_per_query": st.bytes_per_query / 1e3,
        "shortlist_ms_per_query": 1e3 * st.shortlist_seconds / len(queries),
        "rerank_ms_per_query": 1e3 * st.rerank_seconds / len(queries),
        "rerank_bytes_per_s": rerank_bps,
        "rerank_bandwidth_fraction": rerank_bps / bw if rerank_bps else None,
    }
    row["map_ratio"] = row["map"] / exact_map
    log.info(
        "%s: %.4f ms/query (%.0fx), mAP ratio %.4f",
        row["method"],
        row["ms_per_query"],
        row["speedup_vs_flat"],
        row["map_ratio"],
    )
    return row


def _tuned_row(index, ann, efforts, tuning, target, db_labels, k, timing) -> tuple[dict, dict]:
    """Tune `index` on the held-out `tuning` (queries, labels), then time the chosen plan.

    Returns:
        (the table row measured on the benchmark's queries, a record of the tuning).
    """
    tune_q, tune_y = tuning
    t0 = time.perf_counter()
    tuner = index.tune(tune_q, target, k, tune_y, db_labels, repeats=1, efforts=efforts)
    record = {
        "queries": len(tune_q),
        "target": target,
        "efforts": efforts,
        "seconds": time.perf_counter() - t0,
        "best_plan": str(tuner.best_plan_),
        "best_effort": tuner.best_effort_,
        "pareto": [dataclasses.asdict(row) for row in tuner.pareto_],
    }
    log.info("%s tuned on %d held-out queries: %s", ann, len(tune_q), tuner.best_plan_)
    label = ann if tuner.best_effort_ is None else f"{ann} effort {tuner.best_effort_}"
    row = _plan_row(index, tuner.best_plan_, f"{label}, tuned", *timing, effort=tuner.best_effort_)
    return row, record


def run_retrieval_benchmark(
    database: np.ndarray,
    db_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
    out_dir: str | Path,
    title: str,
    k: int = 10,
    shortlist_dim: int = 16,
    fig8_queries: int = 0,
    hnsw_full_rows: int = 50_000,
    threads: int | None = None,
    repeats: int = 2,
    fig8_min_dim: int = 8,
    fig8_shortlist: int = 200,
    bandwidth_mib: int = 512,
    ivf_lists: int | None = None,
    ivf_probe: int = 64,
    tuning: tuple[np.ndarray, np.ndarray] | None = None,
    tune_target: float = 0.997,
) -> dict:
    """Run every measurement, write `retrieval_bench.json`, `retrieval_bench.md`, `figure8.png`.

    Args:
        database: [N, D] embeddings (float16/float32, memmap fine); ids are rows 0..N-1.
        db_labels: [N] int labels.
        queries: [Q, D] held-out queries; query_labels: [Q].
        out_dir: output folder.
        title: names the data in the outputs (say "generated" for generated data).
        k: results per query (mAP@k).
        shortlist_dim: D_s of the HNSW index.
        fig8_queries: queries used for Figure 8, 0 to leave it out (its brute-force scans
            cost Q * N * sum(dims)).
        hnsw_full_rows: rows of the full-D HNSW baseline (a subsample when N is larger; its
            build time is then extrapolated as t * N log N / (n log n)).
        threads: faiss OpenMP and BLAS threads for every timed call; default all cores.
        repeats: timing runs per plan (best kept).
        fig8_min_dim: smallest single-shot / D_s size in Figure 8 (the paper's is 8).
        fig8_shortlist: k', the candidates reranked in Figure 8 (the paper's is 200).
        bandwidth_mib: size of each of the two arrays of the memory-bandwidth probe.
        ivf_lists: cells of the IVF-shortlist variant; default about 8 sqrt(N) (see
            `_default_ivf_lists`).
        ivf_probe: cells it probes per query.
        tuning: (queries, labels) disjoint from `queries`: `MatryoshkaIndex.tune` picks the
            fastest plan reaching `tune_target` of exact mAP@k on them, which is then timed
            and scored on `queries` like the fixed plans.
        tune_target: mAP@k relative to exact search that the tuned plan must reach; a margin
            above a 0.995 goal absorbs the variance of a small tuning set.

    Returns:
        the JSON-able results dict.
    """
    out = Path(out_dir)
    threads = check_int("threads", threads or faiss.omp_get_max_threads(), 1)
    check_int("fig8_queries", fig8_queries, 0)
    check_int("bandwidth_mib", bandwidth_mib, 1)
    db_labels = check_labels(db_labels, "database labels")
    query_labels = check_labels(query_labels, "query labels")
    for x, y, what in ((database, db_labels, "database"), (queries, query_labels, "queries")):
        if len(x) != len(y):
            raise InputError(f"{what}: {len(x)} rows but {len(y)} labels; give one per row")
    n, d = database.shape
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    res: dict = {
        "title": title,
        "n": n,
        "dim": d,
        "queries": len(queries),
        "k": k,
        "threads": threads,
        "storage_dtype": str(database.dtype),
        "shortlist_dim": shortlist_dim,
    }
    with thread_count(threads):
        res["memory_bandwidth"] = measure_memory_bandwidth(bandwidth_mib)
        log.info("bandwidth: read %.1f GB/s", res["memory_bandwidth"]["read_bytes_per_s"] / 1e9)

        # The index holds its vectors in RAM like a serving index (faiss's flat baseline
        # searches resident shards too); reranks from a cold memory map would pay page faults.
        resident = resident_copy(database)
        t0 = time.perf_counter()
        index = MatryoshkaIndex(shortlist_dim=shortlist_dim, dtype=str(database.dtype)).build(
            resident
        )
        build_s = time.perf_counter() - t0
        hnsw_ds_bytes = len(faiss.serialize_index(index.ann_))
        log.info("MatryoshkaIndex (HNSW32 on %d-d) built in %.1f s", shortlist_dim, build_s)

        exact_rows, flat_s = flat_ip_search(database, queries, k)
        exact_map = labelled_map_at_k(exact_rows, query_labels, db_labels, k)
        flat_ms = 1e3 * flat_s / len(queries)
        log.info("IndexFlatIP@%d: %.3f ms/query, mAP@%d %.4f", d, flat_ms, k, exact_map)
        rows = [
            {
                "method": f"faiss IndexFlatIP @ {d} (exact)",
                "ms_per_query": flat_ms,
                "speedup_vs_flat": 1.0,
                "map": exact_map,
                "map_ratio": 1.0,
                "recall_vs_exact": 1.0,
                "mflops_per_query": d * n / 1e6,
                "kb_read_per_query": d * n * 4 / 1e3,
            }
        ]

        bw = res["memory_bandwidth"]["read_bytes_per_s"]
        timing = (queries, query_labels, db_labels, k, repeats, flat_s, exact_rows, exact_map, bw)
        plans: list[Plan] = [SingleShot(shortlist_dim, exact=False), Rerank(shortlist_dim, d, 200)]
        plans += [Funnel.halving(d, shortlist_dim, s, final=k) for s in (200, 400, 800)]
        rows += [_plan_row(index, plan, "HNSW32", *timing) for plan in plans]

        res["tuning"] = {}
        if tuning is not None:
            row, res["tuning"]["HNSW32"] = _tuned_row(
                index, "HNSW32", None, tuning, tune_target, db_labels, k, timing
            )
            rows.append(row)

        # The same plans over an IVF shortlist: a cheaper first stage at a low D_s.
        lists = ivf_lists or _default_ivf_lists(n)
        t0 = time.perf_counter()
        ivf = MatryoshkaIndex(
            shortlist_dim,
            ann="ivf",
            dtype=str(database.dtype),
            ivf_lists=lists,
            ivf_probe=ivf_probe,
        ).build(resident)
        res["ivf_build_seconds"] = time.perf_counter() - t0
        log.info(
            "MatryoshkaIndex (IVF%d on %d-d) built in %.1f s",
            lists,
            shortlist_dim,
            res["ivf_build_seconds"],
        )
        label = f"IVF{lists} nprobe {ivf_probe}"
        rows += [_plan_row(ivf, plan, label, *timing) for plan in (plans[1], plans[2])]
        if tuning is not None:  # the tuner also chooses nprobe here
            efforts = sorted({8, 16, 32, 48, 64, 96, 128} & set(range(1, lists + 1)))
            ann = f"IVF{lists}"
            row, res["tuning"][ann] = _tuned_row(
                ivf, ann, efforts, tuning, tune_target, db_labels, k, timing
            )
            rows.append(row)
        del ivf

        # HNSW at full D vs on the D_s-prefix, built on the same rows.
        sub = min(n, hnsw_full_rows)
        full_idx, full_t, full_b = _hnsw(unit_prefix(database[:sub], d), 32, 40)
        _, ds_t, ds_b = _hnsw(unit_prefix(database[:sub], shortlist_dim), 32, 40)
        qn = truncate(queries, d, normalize=True)
        full_idx.hnsw.efSearch = max(64, k)
        t0 = time.perf_counter()
        _, hnsw_ids = full_idx.search(qn, k)
        hnsw_s = time.perf_counter() - t0
        scale = n * math.log(n) / (sub * math.log(sub)) if sub < n else 1.0
        res["hnsw_build"] = {
            "rows": sub,
            "extrapolated_to": n if sub < n else None,
            "full_dim_seconds": full_t,
            "full_dim_bytes": full_b,
            "prefix_dim_seconds": ds_t,
            "prefix_dim_bytes": ds_b,
            "time_ratio": full_t / ds_t,
            "memory_ratio": full_b / ds_b,
            "full_dim_seconds_extrapolated": full_t * scale,
            "prefix_dim_seconds_measured_at_n": build_s,
            "prefix_dim_bytes_at_n": hnsw_ds_bytes,
            "full_dim_bytes_at_n_estimated": full_b * n / sub,
        }
        rows.append(
            {
                "method": f"faiss IndexHNSWFlat @ {d} (M=32, efSearch={full_idx.hnsw.efSearch}"
                + (f", built on first {sub} rows only)" if sub < n else ")"),
                "ms_per_query": 1e3 * hnsw_s / len(queries),
                "speedup_vs_flat": flat_s / hnsw_s,
                "map": labelled_map_at_k(hnsw_ids, query_labels, db_labels[:sub], k)
                if sub == n
                else None,
                "map_ratio": None,
                "recall_vs_exact": neighbor_recall(hnsw_ids, exact_rows) if sub == n else None,
            }
        )
        if rows[-1]["map"] is not None:
            rows[-1]["map_ratio"] = rows[-1]["map"] / exact_map
        del full_idx
        res["table"] = rows

        if fig8_queries:
            fq = min(fig8_queries, len(queries))
            res["figure8"] = figure8(
                index,
                queries[:fq],
                query_labels[:fq],
                db_labels,
                k,
                shortlist=fig8_shortlist,
                min_dim=fig8_min_dim,
            )
            plot_figure8(res["figure8"], out / "figure8.png", f"{title}: mAP@{k} vs MFLOPs/query")

    atomic_write_json(out / "retrieval_bench.json", res)
    with atomic_open(out / "retrieval_bench.md", "w") as f:
        f.write(format_report(res))
    return res


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def format_report(res: dict) -> str:
    """The benchmark as Markdown tables."""
    bw = res["memory_bandwidth"]
    lines = [
        f"# Adaptive retrieval benchmark: {res['title']}",
        "",
        f"N = {res['n']} x D = {res['dim']} ({res['storage_dtype']} storage), {res['queries']} "
        f"queries, k = {res['k']}, {res['threads']} threads, shortlists on the "
        f"{res['shortlist_dim']}-d prefix by HNSW32 (the paper's) or IVF (in brackets). "
        f"mAP@{res['k']} is the paper's variant. Our index holds its vectors in RAM.",
        f"Memory bandwidth (numpy sum): {bw['read_bytes_per_s'] / 1e9:.1f} GB/s read, "
        f"{bw['copy_bytes_per_s'] / 1e9:.1f} GB/s copy.",
        "",
        "| method | ms/query | speedup vs flat | mAP@k | mAP ratio | recall vs exact | MFLOPs/q "
        "| KB read/q | rerank GB/s | of bandwidth |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["table"]:
        bps = r.get("rerank_bytes_per_s")
        cells = [
            r["method"],
            f"{r['ms_per_query']:.4f}",
            f"{r['speedup_vs_flat']:.1f}x",
            _f(r["map"], ".4f"),
            _f(r["map_ratio"], ".4f"),
            _f(r["recall_vs_exact"], ".4f"),
            _f(r.get("mflops_per_query"), ".3f"),
            _f(r.get("kb_read_per_query"), ".1f"),
            _f(bps / 1e9 if bps else None, ".2f"),
            _f(r.get("rerank_bandwidth_fraction"), ".1%"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for ann, t in res.get("tuning", {}).items():
        effort = "" if t["best_effort"] is None else f" at effort {t['best_effort']}"
        lines += [
            "",
            f"Tuned row ({ann}): `MatryoshkaIndex.tune` picked `{t['best_plan']}`{effort} as the "
            f"fastest plan reaching {t['target']} of exact mAP@{res['k']} on {t['queries']} "
            f"further generated queries, disjoint from the measured ones "
            f"({t['seconds']:.0f} s of tuning; efforts tried: {t['efforts'] or 'the default'}).",
        ]
    h = res["hnsw_build"]
    lines += [
        "",
        f"HNSW32 build on the same {h['rows']} rows: full D {h['full_dim_seconds']:.1f} s / "
        f"{h['full_dim_bytes'] / 2**20:.0f} MiB vs {res['shortlist_dim']}-d prefix "
        f"{h['prefix_dim_seconds']:.1f} s / {h['prefix_dim_bytes'] / 2**20:.0f} MiB: "
        f"time ratio {h['time_ratio']:.1f}x, memory ratio {h['memory_ratio']:.1f}x.",
    ]
    if h["extrapolated_to"]:
        lines.append(
            f"At N = {h['extrapolated_to']}: prefix build measured "
            f"{h['prefix_dim_seconds_measured_at_n']:.1f} s / "
            f"{h['prefix_dim_bytes_at_n'] / 2**20:.0f} MiB; full-D build extrapolated "
            f"(t * N log N / (n log n)) to {h['full_dim_seconds_extrapolated']:.0f} s / "
            f"{h['full_dim_bytes_at_n_estimated'] / 2**30:.1f} GiB (not run)."
        )
    f8 = res.get("figure8")
    if f8:
        lines += [
            "",
            f"## Figure 8 ({f8['queries']} queries, exact shortlists, k' = {f8['shortlist']})",
            "",
            "| plan | MFLOPs/query | mAP@k |",
            "|---|---|---|",
        ]
        for p in f8["single_shot"]:
            lines.append(f"| single-shot {p['dim']} | {p['mflops']:.3f} | {p['map']:.4f} |")
        for g in f8["grid"]:
            dims = f"D_s={g['shortlist_dim']}, D_r={g['rerank_dim']}"
            lines.append(f"| {dims} | {g['mflops']:.3f} | {g['map']:.4f} |")
        if f8["funnel"]:
            fu = f8["funnel"]
            lines.append(
                f"| {fu['plan']} (exact shortlist) | {fu['mflops']:.3f} | {fu['map']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def _load(path: str, name: str = "embeddings.npy") -> np.ndarray:
    """A .npy file, or `name` inside an `mrl embed` folder, memory-mapped read-only."""
    p = Path(path)
    return load_npy(p / name if p.is_dir() else p, mmap=True)


def _generated(args) -> tuple[tuple, tuple | None, str]:
    """Generated database (cached under --data-dir), measured queries and tuning queries."""
    spec = GeneratedNestedSpec(dim=args.dim, num_classes=args.num_classes, seed=args.seed)
    prefix = (
        Path(args.data_dir)
        / f"generated-{args.n}x{args.dim}-c{args.num_classes}-s{args.seed}-{args.dtype}"
    )
    x_path, y_path = Path(f"{prefix}-X.npy"), Path(f"{prefix}-y.npy")
    if not (x_path.exists() and y_path.exists()):
        print(f"generating {args.n} x {args.dim} nested embeddings -> {x_path}")
        write_generated_nested_embeddings(prefix, args.n, spec, "database", args.dtype)
    database, db_labels = load_npy(x_path, mmap=True), load_npy(y_path)
    nq = args.n_queries
    queries, query_labels = generated_nested_embeddings(nq + args.tune_queries, spec, "queries")
    tuning = None
    if args.tune_queries:  # rows after the measured queries: disjoint from them
        tuning = (queries[nq:], query_labels[nq:])
        queries, query_labels = queries[:nq], query_labels[:nq]
    title = f"generated nested embeddings ({args.num_classes} classes, {dataclasses.asdict(spec)})"
    return (database, db_labels, queries, query_labels), tuning, title


def _given(args) -> tuple[tuple, None, str]:
    """Embeddings from --database (and --queries, or its last --n-queries rows held out)."""
    database = _load(args.database)
    db_labels = np.asarray(_load(args.labels or args.database, "labels.npy"))
    if args.queries:
        queries = np.asarray(_load(args.queries))
        query_labels = np.asarray(_load(args.query_labels or args.queries, "labels.npy"))
    else:  # hold out the last rows as queries
        nq = min(args.n_queries, len(database) // 10)
        queries, query_labels = np.asarray(database[-nq:]), db_labels[-nq:]
        database, db_labels = database[:-nq], db_labels[:-nq]
    manifest = Path(args.database) / "manifest.json"
    info = json.loads(manifest.read_text()) if manifest.is_file() else {}
    what = " ".join(str(info[key]) for key in ("dataset", "model") if key in info)
    title = f"real embeddings {what or args.database} (D={database.shape[1]})"
    return (database, db_labels, queries, query_labels), None, title


def parser() -> argparse.ArgumentParser:
    """The script's options; the defaults are the headline configuration."""
    p = argparse.ArgumentParser(
        prog="python benchmarks/retrieval.py",
        description="Figure 8 (mAP@10 vs MFLOPs) and timings vs faiss IndexFlatIP / "
        "IndexHNSWFlat. Without --database, generates labelled nested embeddings (named "
        "generated) of --n x --dim, cached as .npy under --data-dir. With --database (an .npy "
        "or `mrl embed` folder) and --labels, benchmarks those; queries come from "
        "--queries/--query-labels or are the last --n-queries database rows (held out). "
        "The defaults are the headline configuration.",
    )
    p.add_argument("--out", required=True, help="output folder (JSON, Markdown, figure8.png)")
    p.add_argument("--database", help=".npy [N, D] or `mrl embed` folder")
    p.add_argument("--labels", help=".npy [N] int labels (default: the embed folder's)")
    p.add_argument("--queries", help=".npy [Q, D] or `mrl embed` folder")
    p.add_argument("--query-labels", help=".npy [Q] int labels (default: the embed folder's)")
    p.add_argument("--n", type=int, default=1_000_000, help="generated database rows")
    p.add_argument("--dim", type=int, default=2048, help="generated dim")
    p.add_argument("--num-classes", type=int, default=1000, help="generated classes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=STORAGE_DTYPES, help="generated storage")
    p.add_argument("--data-dir", default="runs/generated", help="cache of generated .npy files")
    p.add_argument("--n-queries", type=int, default=10_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--shortlist-dim", type=int, default=32)
    p.add_argument(
        "--fig8-queries", type=int, default=0, help="queries for Figure 8 (0: leave it out)"
    )
    p.add_argument("--fig8-min-dim", type=int, default=8, help="smallest Figure 8 size")
    p.add_argument("--fig8-shortlist", type=int, default=200, help="k' reranked in Figure 8")
    p.add_argument(
        "--hnsw-full-rows",
        type=int,
        default=50_000,
        help="rows of the full-D HNSW baseline (subsample beyond)",
    )
    p.add_argument(
        "--ivf-lists", type=int, help="cells of the IVF-shortlist rows (default ~8 sqrt(N))"
    )
    p.add_argument("--ivf-probe", type=int, default=64, help="cells probed by the IVF rows")
    p.add_argument(
        "--tune-queries",
        type=int,
        default=1000,
        help="generated data: tune a plan (`MatryoshkaIndex.tune`) on this many further queries",
    )
    p.add_argument(
        "--tune-target", type=float, default=0.997, help="mAP@k relative to exact, for tuning"
    )
    p.add_argument("--threads", type=int, help="faiss/BLAS threads (default: all cores)")
    p.add_argument("--repeats", type=int, default=2, help="timing runs per plan (best kept)")
    p.add_argument(
        "--bandwidth-mib", type=int, default=512, help="MiB per array of the bandwidth probe"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for `argv` (default: the command line); print the table; exit code."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data, tuning, title = _given(args) if args.database else _generated(args)
    res = run_retrieval_benchmark(
        *data,
        args.out,
        title,
        k=args.k,
        shortlist_dim=args.shortlist_dim,
        fig8_queries=args.fig8_queries,
        hnsw_full_rows=args.hnsw_full_rows,
        threads=args.threads,
        repeats=args.repeats,
        fig8_min_dim=args.fig8_min_dim,
        fig8_shortlist=args.fig8_shortlist,
        bandwidth_mib=args.bandwidth_mib,
        ivf_lists=args.ivf_lists,
        ivf_probe=args.ivf_probe,
        tuning=tuning,
        tune_target=args.tune_target,
    )
    print(format_report(res))
    print(json.dumps({"out": str(args.out), "n": res["n"], "queries": res["queries"]}))
    return 0


if __name__ == "__main__":
    run_script(main)
