"""`mrl index build|tune` and `mrl search`: thin wrappers over mrl.retrieval.

The benchmark harness is a script, `python benchmarks/retrieval.py` (the library and the CLI
never import benchmarks).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from mrl.cli.common import check_out
from mrl.data.npy import load_npy
from mrl.errors import InputError
from mrl.io import atomic_open, atomic_write_json
from mrl.retrieval.index import ANN_KINDS, MatryoshkaIndex
from mrl.retrieval.plans import parse_plan
from mrl.retrieval.storage import STORAGE_DTYPES

PLAN_HELP = (
    "single:DIM[:ann] | rerank:DS:DR:SHORTLIST[:exact] | funnel (the paper's halving schedule) "
    "| funnel:DS:32x200,64x100,...[:exact]"
)


def _load(path: str, ndim: int, what: str, name: str = "embeddings.npy") -> np.ndarray:
    """A non-empty `ndim`-d .npy file (or `name` inside an `mrl embed` folder), memory-mapped.

    2-D arrays are vectors and must be floating point; 1-D ones are ids or labels (checked by
    the library, which names the bad entry).

    Raises:
        InputError: naming the file, when it is empty, has another rank, or 2-D and not float.
    """
    p = Path(path)
    if p.is_dir():
        p = p / name
    x = load_npy(p, mmap=True)
    shape = "[N, D]" if ndim == 2 else "[N]"
    if x.ndim != ndim:
        raise InputError(f"{p}: {what} must be a {ndim}-D array {shape}, got shape {x.shape}")
    if x.size == 0:
        raise InputError(f"{p}: {what} are empty (shape {x.shape}); give at least one row")
    if ndim == 2 and not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{p}: {what} must be floating point (float32), got dtype {x.dtype}")
    return x


def _add_index_params(p: argparse.ArgumentParser) -> None:
    """The `MatryoshkaIndex` parameters, one flag each (validated by the index, not here)."""
    defaults = MatryoshkaIndex()
    p.add_argument("--shortlist-dim", type=int, default=defaults.shortlist_dim, help="D_s")
    p.add_argument("--ann", default=defaults.ann, choices=ANN_KINDS)
    p.add_argument("--dtype", default=defaults.dtype, choices=STORAGE_DTYPES)
    for name in ("hnsw_m", "ef_construction", "ef_search", "ivf_probe"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument(
        "--ivf-lists", type=int, default=None, help="IVF cells (default about 6 sqrt(N))"
    )
    p.add_argument(
        "--graph-dim",
        type=int,
        default=None,
        help="HNSW kinds: build the graph over this shorter prefix (default D_s)",
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser(
        "index", help="build or tune a Matryoshka retrieval index"
    ).add_subparsers(dest="index_command", required=True, metavar="COMMAND")

    p = index.add_parser(
        "build",
        help="build a Matryoshka index (HNSW on the D_s-prefix + full vectors) and save it",
        description="Build from an [N, D] .npy (or an `mrl embed` folder) and save atomically "
        "to --out (manifest + sha256 checksums).",
    )
    p.add_argument("vectors", help=".npy [N, D] or `mrl embed` folder")
    p.add_argument("--out", required=True, help="index folder")
    p.add_argument("--ids", help=".npy [N] int ids (default 0..N-1)")
    _add_index_params(p)
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
    p.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="a plan meets --target when this lower confidence bound of its quality does "
        "(0 compares the sample mean)",
    )
    p.add_argument(
        "--per-query", action="store_true", help="time one query per call (a service's latency)"
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
    p.add_argument("--out", help="write ids and scores to this .npz file (exactly this path)")
    p.set_defaults(func=run_search)


def _int_list(value: str) -> list[int]:
    """argparse type: "16,32,64" -> [16, 32, 64]."""
    try:
        return [int(x) for x in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expects comma-separated ints like 16,32,64, got {value!r}"
        ) from None


def run_build(args: argparse.Namespace) -> int:
    check_out(args.out, "folder")
    vectors = _load(args.vectors, 2, "vectors")
    ids = None if args.ids is None else np.asarray(_load(args.ids, 1, "ids"))
    index = MatryoshkaIndex(
        shortlist_dim=args.shortlist_dim,
        ann=args.ann,
        dtype=args.dtype,
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        graph_dim=args.graph_dim,
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
    if args.out:
        check_out(args.out, "file")
    index = MatryoshkaIndex.load(args.index, mmap=args.mmap)
    plan = parse_plan(args.plan, index.dim, index.shortlist_dim)
    res = index.search(_load(args.queries, 2, "queries"), args.k, plan, effort=args.effort)
    st = res.stats
    q = len(res.ids)
    print(
        f"{plan}: {q} queries in {st.seconds:.3f} s ({1e3 * st.seconds / q:.4f} ms/query), "
        f"{st.flops_per_query / 1e6:.3f} MFLOPs/query, {st.bytes_per_query / 1e3:.1f} KB read/query"
    )
    print("first query:", res.ids[0].tolist())
    if args.out:
        with atomic_open(args.out, "wb") as f:
            np.savez(f, ids=res.ids, scores=res.scores)
    return 0


def run_tune(args: argparse.Namespace) -> int:
    if args.out:
        check_out(args.out, "file")
    if (args.query_labels is None) != (args.id_labels is None):
        raise InputError("give both --query-labels and --id-labels, or neither")
    index = MatryoshkaIndex.load(args.index)
    labels = (None, None)
    if args.query_labels is not None:
        labels = (
            np.asarray(_load(args.query_labels, 1, "query labels")),
            np.asarray(_load(args.id_labels, 1, "id labels")),
        )
    queries = np.asarray(_load(args.queries, 2, "queries"))
    tuner = index.tune(
        queries,
        args.target,
        args.k,
        *labels,
        efforts=args.efforts,
        confidence=args.confidence or None,
        per_query=args.per_query,
    )
    print(
        f"{'plan':48s} {'effort':>6s} {'ms/query':>9s} {'MFLOPs/q':>9s} {'quality':>8s} "
        f"{'rel.':>7s} {'bound':>7s}  pareto"
    )
    for r in tuner.table_:
        effort = "-" if r.effort is None else str(r.effort)
        print(
            f"{r.plan:48s} {effort:>6s} {r.latency_ms:9.4f} {r.flops_per_query / 1e6:9.3f} "
            f"{r.quality:8.4f} {r.relative_quality:7.4f} {r.quality_bound:7.4f}  "
            f"{'*' if r.pareto else ''}"
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
