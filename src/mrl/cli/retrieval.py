"""`mrl index build|tune`, `mrl search`, `mrl bench retrieval`: thin wrappers over mrl.retrieval."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from mrl.data.generated import (
    GeneratedNestedSpec,
    generated_nested_embeddings,
    write_generated_nested_embeddings,
)
from mrl.io import atomic_write_json
from mrl.retrieval.bench import run_retrieval_benchmark
from mrl.retrieval.index import ANN_KINDS, MatryoshkaIndex
from mrl.retrieval.plans import parse_plan
from mrl.retrieval.storage import STORAGE_DTYPES

PLAN_HELP = (
    "single:DIM[:ann] | rerank:DS:DR:SHORTLIST[:exact] | funnel (the paper's halving schedule) "
    "| funnel:DS:32x200,64x100,...[:exact]"
)


def _load(path: str, name: str = "embeddings.npy") -> np.ndarray:
    """A .npy file, or `name` inside an `mrl embed` folder, memory-mapped read-only."""
    p = Path(path)
    if p.is_dir():
        p = p / name
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    return np.load(p, mmap_mode="r")


def _subcommands(subparsers: argparse._SubParsersAction, name: str, help: str):
    """The sub-subparsers of group `name`, created unless another module already made it."""
    parser = subparsers.choices.get(name) or subparsers.add_parser(name, help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    index = _subcommands(subparsers, "index", "build or tune a Matryoshka retrieval index")

    p = index.add_parser(
        "build",
        help="build a Matryoshka index (HNSW on the D_s-prefix + full vectors) and save it",
        description="Build from an [N, D] .npy (or an `mrl embed` folder) and save atomically "
        "to --out (manifest + sha256 checksums).",
    )
    p.add_argument("vectors", help=".npy [N, D] or `mrl embed` folder")
    p.add_argument("--out", required=True, help="index folder")
    p.add_argument("--ids", help=".npy [N] int ids (default 0..N-1)")
    p.add_argument("--shortlist-dim", type=int, default=16, help="D_s indexed by the ANN")
    p.add_argument("--ann", default="hnsw", choices=ANN_KINDS)
    p.add_argument("--dtype", default="float32", choices=STORAGE_DTYPES)
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--ef-search", type=int, default=64)
    p.add_argument("--ivf-lists", type=int, default=1024)
    p.add_argument("--ivf-probe", type=int, default=16)
    p.set_defaults(func=run_build)

    p = index.add_parser(
        "tune",
        help="measure plans on sample queries; print the Pareto table and the cheapest plan",
        description="Quality is relative to exact full-dim search: recall@k of its ids, or "
        "the paper's mAP@k ratio when --query-labels and --id-labels are given.",
    )
    p.add_argument("index", help="index folder")
    p.add_argument("queries", help=".npy [Q, D] sample queries")
    p.add_argument("--target", type=float, default=0.95, help="e.g. 0.995 = 99.5%% of exact")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--query-labels", help=".npy [Q] int labels (mAP target)")
    p.add_argument("--id-labels", help=".npy labels indexed by id (mAP target)")
    p.add_argument(
        "--efforts",
        type=_int_list,
        help="ANN efforts to try with every plan, e.g. 16,32,64 (HNSW efSearch or IVF nprobe)",
    )
    p.add_argument("--out", help="write the table and the chosen plan as JSON")
    p.set_defaults(func=run_tune)

    p = subparsers.add_parser(
        "search",
        help="search a saved Matryoshka index with a plan",
        description=f"Plans: {PLAN_HELP}.",
    )
    p.add_argument("index", help="index folder")
    p.add_argument("queries", help=".npy [Q, D] queries")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--plan", default="funnel", help=PLAN_HELP)
    p.add_argument("--mmap", action="store_true", help="memory-map the stored vectors")
    p.add_argument("--effort", type=int, help="HNSW efSearch or IVF nprobe for this search")
    p.add_argument("--out", help="write ids and scores to this .npz")
    p.set_defaults(func=run_search)

    bench = _subcommands(subparsers, "bench", "benchmarks")
    p = bench.add_parser(
        "retrieval",
        help="Figure 8 (mAP@10 vs MFLOPs) and timings vs faiss IndexFlatIP / IndexHNSWFlat",
        description="Without --database, generates labelled nested embeddings (clearly "
        "named generated) of --n x --dim, cached as .npy under --data-dir. With --database "
        "(an .npy or `mrl embed` folder) and --labels, benchmarks those; queries come from "
        "--queries/--query-labels or are the last --n-queries database rows (held out).",
    )
    p.add_argument("--out", required=True, help="output folder (JSON, Markdown, figure8.png)")
    p.add_argument("--database", help=".npy [N, D] or `mrl embed` folder")
    p.add_argument("--labels", help=".npy [N] int labels (default: the embed folder's)")
    p.add_argument("--queries", help=".npy [Q, D] or `mrl embed` folder")
    p.add_argument("--query-labels", help=".npy [Q] int labels (default: the embed folder's)")
    p.add_argument("--n", type=int, default=100_000, help="generated database rows")
    p.add_argument("--dim", type=int, default=2048, help="generated dim")
    p.add_argument("--classes", type=int, default=1000, help="generated classes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float16", choices=STORAGE_DTYPES, help="generated storage")
    p.add_argument("--data-dir", default="runs/generated", help="cache of generated .npy files")
    p.add_argument("--n-queries", type=int, default=10_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--shortlist-dim", type=int, default=16)
    p.add_argument("--fig8-queries", type=int, default=1000, help="queries for Figure 8")
    p.add_argument(
        "--hnsw-full-rows",
        type=int,
        default=100_000,
        help="rows of the full-D HNSW baseline (subsample beyond)",
    )
    p.add_argument("--fig8-min-dim", type=int, default=8, help="smallest Figure 8 size")
    p.add_argument(
        "--ivf-lists", type=int, help="cells of the IVF-shortlist rows (default ~8 sqrt(N))"
    )
    p.add_argument("--ivf-probe", type=int, default=64, help="cells probed by the IVF rows")
    p.add_argument(
        "--tune-queries",
        type=int,
        default=0,
        help="generated data: tune a plan (`MatryoshkaIndex.tune`) on this many further queries",
    )
    p.add_argument(
        "--tune-target", type=float, default=0.997, help="mAP@k relative to exact, for tuning"
    )
    p.add_argument("--threads", type=int, help="faiss/BLAS threads (default: all cores)")
    p.add_argument("--no-figure8", action="store_true")
    p.set_defaults(func=run_bench)


def _int_list(value: str) -> list[int]:
    """argparse type: "16,32,64" -> [16, 32, 64]."""
    try:
        return [int(x) for x in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expects comma-separated ints like 16,32,64, got {value!r}"
        ) from None


def run_build(args: argparse.Namespace) -> int:
    vectors = _load(args.vectors)
    ids = None if args.ids is None else np.load(args.ids)
    index = MatryoshkaIndex(
        shortlist_dim=args.shortlist_dim,
        ann=args.ann,
        dtype=args.dtype,
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        ef_search=args.ef_search,
        ivf_lists=args.ivf_lists,
        ivf_probe=args.ivf_probe,
    ).build(vectors, ids)
    index.save(args.out)
    print(
        f"built {args.ann} index over {index.count} x {index.dim} "
        f"(D_s={args.shortlist_dim}, {args.dtype}) -> {args.out}"
    )
    return 0


def run_search(args: argparse.Namespace) -> int:
    index = MatryoshkaIndex.load(args.index, mmap=args.mmap)
    plan = parse_plan(args.plan, index.dim, index.shortlist_dim)
    res = index.search(_load(args.queries), args.k, plan, effort=args.effort)
    st = res.stats
    q = len(np.atleast_2d(res.ids))
    print(
        f"{plan}: {q} queries in {st.seconds:.3f} s ({1e3 * st.seconds / q:.4f} ms/query), "
        f"{st.flops_per_query / 1e6:.3f} MFLOPs/query, {st.bytes_per_query / 1e3:.1f} KB read/query"
    )
    print("first query:", np.atleast_2d(res.ids)[0].tolist())
    if args.out:
        np.savez(args.out, ids=res.ids, scores=res.scores)
    return 0


def run_tune(args: argparse.Namespace) -> int:
    index = MatryoshkaIndex.load(args.index)
    if (args.query_labels is None) != (args.id_labels is None):
        raise ValueError("give both --query-labels and --id-labels, or neither")
    labels = (
        (None, None)
        if args.query_labels is None
        else (np.load(args.query_labels), np.load(args.id_labels))
    )
    queries = np.asarray(_load(args.queries))
    tuner = index.tune(queries, args.target, args.k, *labels, efforts=args.efforts)
    print(
        f"{'plan':48s} {'effort':>6s} {'ms/query':>9s} {'MFLOPs/q':>9s} {'quality':>8s} "
        f"{'rel.':>7s}  pareto"
    )
    for r in tuner.table_:
        effort = "-" if r.effort is None else str(r.effort)
        print(
            f"{r.plan:48s} {effort:>6s} {r.latency_ms:9.4f} {r.flops_per_query / 1e6:9.3f} "
            f"{r.quality:8.4f} {r.relative_quality:7.4f}  {'*' if r.pareto else ''}"
        )
    effort = "" if tuner.best_effort_ is None else f" at effort {tuner.best_effort_}"
    print(
        f"cheapest plan reaching {args.target}: {tuner.best_plan_}{effort} "
        f"({tuner.best_.latency_ms:.4f} ms/query)"
    )
    if args.out:
        atomic_write_json(
            args.out,
            {
                "target": args.target,
                "k": args.k,
                "best_plan": str(tuner.best_plan_),
                "best_effort": tuner.best_effort_,
                "table": [dataclasses.asdict(r) for r in tuner.table_],
            },
        )
    return 0


def run_bench(args: argparse.Namespace) -> int:
    tuning = None
    if args.database:
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
    else:
        spec = GeneratedNestedSpec(dim=args.dim, n_classes=args.classes, seed=args.seed)
        prefix = (
            Path(args.data_dir)
            / f"generated-{args.n}x{args.dim}-c{args.classes}-s{args.seed}-{args.dtype}"
        )
        x_path, y_path = Path(f"{prefix}-X.npy"), Path(f"{prefix}-y.npy")
        if not (x_path.exists() and y_path.exists()):
            print(f"generating {args.n} x {args.dim} nested embeddings -> {x_path}")
            write_generated_nested_embeddings(prefix, args.n, spec, "database", args.dtype)
        database, db_labels = np.load(x_path, mmap_mode="r"), np.load(y_path)
        nq = args.n_queries
        queries, query_labels = generated_nested_embeddings(nq + args.tune_queries, spec, "queries")
        if args.tune_queries:  # rows after the measured queries: disjoint from them
            tuning = (queries[nq:], query_labels[nq:])
            queries, query_labels = queries[:nq], query_labels[:nq]
        title = f"generated nested embeddings ({args.classes} classes, {dataclasses.asdict(spec)})"
    res = run_retrieval_benchmark(
        database,
        db_labels,
        queries,
        query_labels,
        args.out,
        title,
        k=args.k,
        shortlist_dim=args.shortlist_dim,
        fig8_queries=args.fig8_queries,
        hnsw_full_rows=args.hnsw_full_rows,
        threads=args.threads,
        skip_figure8=args.no_figure8,
        fig8_min_dim=args.fig8_min_dim,
        ivf_lists=args.ivf_lists,
        ivf_probe=args.ivf_probe,
        tuning=tuning,
        tune_target=args.tune_target,
    )
    print((Path(args.out) / "retrieval_bench.md").read_text())
    print(json.dumps({"out": str(args.out), "n": res["n"], "queries": res["queries"]}))
    return 0
