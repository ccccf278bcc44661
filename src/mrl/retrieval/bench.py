"""Adaptive-retrieval benchmark: the paper's Figure 8 and wall-clock against faiss baselines.

One run measures, on the same machine with the same thread count:

- Figure 8: mAP@10 (the paper's variant) vs MFLOPs/query for single-shot search at every
  halving dim, for every (D_s, D_r) shortlist+rerank pair with k' = 200, and for the funnel,
  all with exact shortlisting so FLOPs follow the paper's D_s * N + D_r * k' accounting;
- our HNSW-shortlisted plans against faiss `IndexFlatIP` at full D (batched, sharded over
  database blocks so float16 storage never needs a float32 copy of the whole database) and
  faiss `IndexHNSWFlat` at full D (built on a subsample when the database is large);
- HNSW build time and memory on the D_s-prefix vs on full D;
- the rerank stage's achieved bytes/s against the machine's measured memory bandwidth.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from mrl.evaluation import metrics
from mrl.nesting import Nesting, truncate
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Funnel, Plan, Rerank, SingleShot
from mrl.retrieval.storage import resident_copy, unit_prefix
from mrl.retrieval.tune import neighbor_recall

log = logging.getLogger(__name__)


def measure_memory_bandwidth(mib: int = 512, repeats: int = 5) -> dict:
    """Best-of-`repeats` bytes/s of a numpy sum (read) and copy (read + write) over `mib` MiB."""
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


def _map_at_k(ids: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray, k: int) -> float:
    rel = metrics.relevance(db_labels[np.maximum(ids, 0)], query_labels) & (ids >= 0)
    return metrics.map_at_k_paper(rel, k)


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
        rows, _, _ = index.shortlist(queries, m, k, exact=True)
        single.append(
            {"dim": m, "mflops": m * n / 1e6, "map": _map_at_k(rows, query_labels, db_labels, k)}
        )
        log.info("single-shot %d: mAP@%d %.4f", m, k, single[-1]["map"])
    grid, funnel = [], None
    for ds in [m for m in dims if m <= 256 and m < d]:
        rows, _, _ = index.shortlist(queries, ds, shortlist, exact=True)
        for dr in [m for m in dims if m > ds]:
            top, _ = index.rerank(queries, rows, ((dr, shortlist),), k)
            mflops = (ds * n + dr * shortlist) / 1e6
            grid.append(
                {
                    "ds": ds,
                    "dr": dr,
                    "mflops": mflops,
                    "map": _map_at_k(top, query_labels, db_labels, k),
                }
            )
        log.info(
            "D_s=%d: best rerank mAP@%d %.4f", ds, k, max(g["map"] for g in grid if g["ds"] == ds)
        )
        if ds == index.shortlist_dim:
            plan = Funnel.halving(d, ds, shortlist, final=k)
            top, _ = index.rerank(queries, rows, plan.steps, k)
            funnel = {
                "plan": str(plan),
                "mflops": (ds * n + sum(a * b for a, b in plan.steps)) / 1e6,
                "map": _map_at_k(top, query_labels, db_labels, k),
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
    """Write the Figure 8 reproduction (log-x MFLOPs/query, y mAP@10) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
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
    ds_values = sorted({g["ds"] for g in fig8["grid"]})
    cmap = plt.get_cmap("viridis", len(ds_values))
    for i, ds in enumerate(ds_values):
        pts = [g for g in fig8["grid"] if g["ds"] == ds]
        ax.plot(
            [g["mflops"] for g in pts],
            [100 * g["map"] for g in pts],
            "s--",
            color=cmap(i),
            ms=4,
            lw=0.8,
            label=f"D_s={ds}, D_r={pts[0]['dr']}..{pts[-1]['dr']} (k'={fig8['shortlist']})",
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
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _default_ivf_lists(n: int) -> int:
    """About 8 sqrt(N) cells, as a power of two (8192 at 1M rows).

    With nprobe 64 this matched HNSW32's shortlist recall at efSearch 200 on the 32-d prefix
    of the 1M generated set (recall@200 of the exact 32-d top-200: 0.985 vs 0.978) at half
    its time; 4 sqrt(N) cells at nprobe 32 reached only 0.972. Chosen on that label-free
    recall, not on the benchmark's mAP.
    """
    return max(1, 2 ** round(math.log2(8 * math.sqrt(n))))


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
    r, took = _time_plan(index, queries, k, plan, repeats, effort)
    st = r.stats
    rerank_bps = (
        st.rerank_bytes_per_query * len(queries) / st.rerank_seconds if plan.steps else None
    )
    row = {
        "method": f"ours {plan} [{ann}]",
        "ms_per_query": 1e3 * took / len(queries),
        "speedup_vs_flat": flat_s / took,
        "map": _map_at_k(r.ids, query_labels, db_labels, k),
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


def _time_plan(
    index: MatryoshkaIndex, queries: np.ndarray, k: int, plan: Plan, repeats: int, effort=None
):
    best, res = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = index.search(queries, k, plan, effort=effort)
        took = time.perf_counter() - t0
        if took < best:
            best, res = took, r
    return res, best


def run_retrieval_benchmark(
    database: np.ndarray,
    db_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
    out_dir: str | Path,
    title: str,
    k: int = 10,
    shortlist_dim: int = 16,
    fig8_queries: int = 1000,
    hnsw_full_rows: int = 100_000,
    threads: int | None = None,
    repeats: int = 2,
    skip_figure8: bool = False,
    fig8_min_dim: int = 8,
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
        fig8_queries: queries used for Figure 8 (its brute-force scans cost Q * N * sum(dims)).
        hnsw_full_rows: rows of the full-D HNSW baseline (a subsample when N is larger; its
            build time is then extrapolated as t * N log N / (n log n)).
        threads: faiss OpenMP and BLAS threads for every timed call; default all cores.
        repeats: timing runs per plan (best kept).
        skip_figure8: leave out Figure 8 (e.g. for a quick check).
        fig8_min_dim: smallest single-shot / D_s size in Figure 8 (the paper's is 8).
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
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    torch.set_num_threads(threads)
    db_labels = metrics.check_labels(db_labels, "database labels")
    query_labels = metrics.check_labels(query_labels, "query labels")
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
    with threadpool_limits(threads):
        res["memory_bandwidth"] = measure_memory_bandwidth()
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
        exact_map = _map_at_k(exact_rows, query_labels, db_labels, k)
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
                "map": _map_at_k(hnsw_ids, query_labels, db_labels[:sub], k) if sub == n else None,
                "map_ratio": None,
                "recall_vs_exact": neighbor_recall(hnsw_ids, exact_rows) if sub == n else None,
            }
        )
        if rows[-1]["map"] is not None:
            rows[-1]["map_ratio"] = rows[-1]["map"] / exact_map
        del full_idx
        res["table"] = rows

        if not skip_figure8:
            fq = min(fig8_queries, len(queries))
            res["figure8"] = figure8(
                index, queries[:fq], query_labels[:fq], db_labels, k, min_dim=fig8_min_dim
            )
            plot_figure8(res["figure8"], out / "figure8.png", f"{title}: mAP@{k} vs MFLOPs/query")

    (out / "retrieval_bench.json").write_text(json.dumps(res, indent=2))
    (out / "retrieval_bench.md").write_text(format_report(res))
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
            lines.append(f"| D_s={g['ds']}, D_r={g['dr']} | {g['mflops']:.3f} | {g['map']:.4f} |")
        if f8["funnel"]:
            fu = f8["funnel"]
            lines.append(
                f"| {fu['plan']} (exact shortlist) | {fu['mflops']:.3f} | {fu['map']:.4f} |"
            )
    return "\n".join(lines) + "\n"
