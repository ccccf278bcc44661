"""The SQL funnel vs pgvector's HNSW over the full vector, in the same embedded PostgreSQL.

Generated (not real) nested embeddings (`mrl.data.generated`, 1,000 classes, seed 0) go into
one `PostgresBackend` collection per shortlist prefix D_s (a table with an HNSW index on
`subvector(embedding, 1, D_s)::vector(D_s)`, filled through `PostgresBackend.add`); the first
one's table also gets pgvector's HNSW index on the full `embedding` (same m and
ef_construction), built by `CREATE INDEX` after the load. Then, one client, one query at a
time, queries disjoint from the database rows:

- the SQL funnel (`PostgresBackend.search`: shortlist through the prefix index, reranked at
  larger prefixes and D in nested subqueries), sweeping the shortlist size and ef_search;
- full-vector HNSW (`ORDER BY embedding <=> q LIMIT k`), sweeping ef_search;

each against the exact top-k at full D (brute force in NumPy, cosine; checked against the
backend's exact SQL plan on a few queries). Latency is client wall-clock per query, each
query's best of `--repeats` passes, the configs interleaved within each pass (mean and p99
over queries: a transaction with `SET LOCAL` and the statement over a unix socket; the
funnel's path also reads the collection's catalog row), and the server's own execution time
(median over queries of the best of the passes, EXPLAIN ANALYZE with TIMING OFF). Index
sizes are `pg_relation_size`. Bars (issue 10): the funnel at recall@10 >= 0.95 at least 2x
faster than full-vector HNSW at that recall, with an index at most 1/4 of its size.

Writes `pgvector_funnel.json`, `pgvector_funnel.md` and `recall_latency.png` to `--out` and
prints the table. The embedded server lives in `--data-dir` (deleted first).

Usage (the default run, 100k x 1024: about 15 minutes on 2 busy cores, 3 GB of disk, 3 GB RAM):
    python benchmarks/pgvector_funnel.py --out docs/results/pgvector
    python benchmarks/pgvector_funnel.py --n 20000 --queries 50 --out /tmp/pgv  # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.io import atomic_write_bytes, atomic_write_json, make_dirs
from mrl.nesting import Nesting
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Funnel, Plan, Rerank, SingleShot
from mrl.service import sql as plans_sql
from mrl.service.backend import CollectionSpec
from mrl.service.postgres import PgVector, PostgresBackend

K = 10
TARGET = 0.95


def recall_at_k(ids: np.ndarray, truth: np.ndarray) -> float:
    """Mean |found ∩ exact| / k over queries ([Q, k] each)."""
    return float(
        np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(ids, truth, strict=True)])
    )


def exact_top_k(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """[Q, k] ids of the exact full-D cosine top-k (ties by smaller id), by brute force."""
    index = MatryoshkaIndex(shortlist_dim=8, ann="flat").build(x)
    return index.search(queries, k, SingleShot(x.shape[1])).ids


@dataclasses.dataclass
class Config:
    """One swept configuration: how to run a query, and the SQL it runs (for EXPLAIN)."""

    method: str  # "sql_funnel" or "full_hnsw"
    label: str
    run: Callable[[np.ndarray], list[int]]  # one query -> top-k ids
    statement: sql.Composable
    settings: dict[str, str]
    extra: dict


def measure(backend, configs: list[Config], queries, warm, truth, repeats: int) -> list[dict]:
    """Recall and latency of every config, passes interleaved: pass r runs each config in turn.

    A query's time is its best of `repeats` passes (timeit's rule): on a machine shared with
    other jobs the minimum is the least disturbed estimate, and interleaving spreads any
    change of load over every config instead of the ones that happened to run then. Server
    time is EXPLAIN ANALYZE's execution time (TIMING OFF: no per-node clock reads), the same
    way; both are reported per config as the mean / p50 / p99 over queries.
    """
    for c in configs:  # bring the pages each config touches into the cache
        for q in warm:
            c.run(q)
    client = np.full((len(configs), repeats, len(queries)), np.inf)
    server = np.full_like(client, np.inf)
    ids = [None] * len(configs)
    for r in range(repeats):
        for j, c in enumerate(configs):
            got = []
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                got.append(c.run(q))
                client[j, r, i] = time.perf_counter() - t0
            ids[j] = np.asarray(got)
            explain = sql.SQL("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) ") + c.statement
            with backend.pool.connection() as conn:
                for key, value in c.settings.items():
                    conn.execute("SELECT set_config(%s, %s, true)", (key, value))
                for i, q in enumerate(queries):
                    plan = conn.execute(explain, {"q": PgVector(q)}).fetchone()[0][0]
                    server[j, r, i] = plan["Execution Time"]
        print(f"  pass {r + 1}/{repeats} done", flush=True)
    rows = []
    for j, c in enumerate(configs):
        secs = client[j].min(axis=0)
        rows.append(
            {
                "method": c.method,
                "config": c.label,
                "recall": recall_at_k(ids[j], truth),
                "ms_mean": 1e3 * float(secs.mean()),
                "ms_p50": 1e3 * float(np.median(secs)),
                "ms_p99": 1e3 * float(np.quantile(secs, 0.99)),
                "server_ms_p50": float(np.median(server[j].min(axis=0))),
                **c.extra,
            }
        )
        print(
            f"  {c.method:<10} {c.label:<40} recall {rows[-1]['recall']:.3f} "
            f"{rows[-1]['ms_mean']:.2f} ms, server {rows[-1]['server_ms_p50']:.2f} ms"
        )
    return rows


def funnel_plans(ds: int, dim: int, shortlists: list[int]) -> list[tuple[Plan, int]]:
    """(plan, ef_search) pairs swept for the SQL funnel at shortlist prefix `ds`."""
    out: list[tuple[Plan, int]] = []
    for s in shortlists:
        out.append((Rerank(ds, dim, s), s))
        mid = 4 * ds
        if s >= 4 * K and mid < dim:  # a 3-stage funnel: D_s -> 4 D_s on s -> D on s / 4
            out.append((Funnel(ds, ((mid, s), (dim, max(K, s // 4)))), s))
    return out


def funnel_configs(backend, name: str, plans, ds: int) -> list[Config]:
    """The SQL funnel through `PostgresBackend.search`, one config per (plan, ef_search)."""
    out = []
    for plan, ef in plans:
        out.append(
            Config(
                "sql_funnel",
                f"{plan} ef={ef}",
                lambda q, plan=plan, ef=ef: backend.search(name, q, K, plan, effort=ef).ids[0],
                backend_statement(backend, name, plan),
                plans_sql.settings(plan, K, ef),
                {"ds": ds, "ef": ef},
            )
        )
    return out


def backend_statement(backend: PostgresBackend, name: str, plan: Plan) -> sql.Composable:
    """The SQL `PostgresBackend.search` runs for one query of `plan` on collection `name`."""
    spec = backend.info(name)["spec"]
    kind = plans_sql.column_type(spec.dim, spec.dtype)
    return plans_sql.search_statement(
        backend.table(name), kind, spec.dim, spec.shortlist_dim, plan, K
    )


def hnsw_configs(backend, table: str, efs: list[int]) -> list[Config]:
    """pgvector's HNSW over the full vector: a transaction with SET LOCAL, then the query.

    Sequential scans are off in that transaction: on a small table the planner may prefer
    an exact scan, and this row measures the HNSW index, whatever the table's size."""
    statement = sql.SQL("SELECT id FROM {} ORDER BY embedding <=> %(q)s LIMIT {}").format(
        sql.Identifier(table), sql.Literal(K)
    )

    def search(q, ef):
        with backend.pool.connection() as conn:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
            conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
            return [i for (i,) in conn.execute(statement, {"q": PgVector(q)}).fetchall()]

    return [
        Config(
            "full_hnsw",
            f"ef={ef}",
            lambda q, ef=ef: search(q, ef),
            statement,
            {"hnsw.ef_search": str(ef), "enable_seqscan": "off"},
            {"ef": ef},
        )
        for ef in efs
    ]


def fastest_at(rows: list[dict], method: str, target: float, key: str = "ms_mean") -> dict | None:
    ok = [r for r in rows if r["method"] == method and r["recall"] >= target]
    return min(ok, key=lambda r: r[key]) if ok else None


def pareto(rows: list[dict], method: str, key: str = "ms_mean") -> list[dict]:
    """The recall-vs-latency frontier of one method (ann-benchmarks style), fastest first."""
    out, best = [], -1.0
    for r in sorted((r for r in rows if r["method"] == method), key=lambda r: r[key]):
        if r["recall"] > best:
            out.append(r)
            best = r["recall"]
    return out


def bars(rows: list[dict], sizes: dict, ds: int) -> dict:
    """The issue's bars, on client latency (and on server time, for reference)."""
    out = {"target_recall": TARGET}
    for key in ("ms_mean", "server_ms_p50"):
        funnel = fastest_at([r for r in rows if r.get("ds", ds) == ds], "sql_funnel", TARGET, key)
        hnsw = None
        if funnel is not None:  # HNSW at (at least) the recall the funnel reached
            hnsw = fastest_at(rows, "full_hnsw", funnel["recall"], key) or fastest_at(
                rows, "full_hnsw", TARGET, key
            )
        out[key] = {
            "funnel": funnel and {k: funnel[k] for k in ("config", "recall", key)},
            "hnsw": hnsw and {k: hnsw[k] for k in ("config", "recall", key)},
            "speedup": funnel and hnsw and hnsw[key] / funnel[key],
        }
        out[key]["pass"] = bool(out[key]["speedup"] and out[key]["speedup"] >= 2)
    out["index_ratio"] = sizes[f"prefix_index_ds{ds}"] / sizes["full_index"]
    out["index_pass"] = out["index_ratio"] <= 0.25
    return out


def format_report(res: dict) -> str:
    c = res["config"]
    lines = [
        f"# SQL funnel vs pgvector full-vector HNSW ({c['n']:,} x {c['dim']} generated nested "
        f"vectors, {c['queries']} queries, k={K})",
        "",
        f"PostgreSQL {res['versions']['postgres']}, pgvector {res['versions']['pgvector']}, "
        f"{res['machine']}; one client, one query at a time over a unix socket, each query's "
        f"best of {c['repeats']} passes. HNSW m="
        f"{c['hnsw_m']}, ef_construction={c['ef_construction']} for every index.",
        "",
        "| method | config | recall@10 | ms/query mean | p99 | server ms p50 |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['method']} | {r['config']} | {r['recall']:.3f} | {r['ms_mean']:.2f} | "
            f"{r['ms_p99']:.2f} | {r['server_ms_p50']:.2f} |"
        )
    s = res["sizes"]
    lines += ["", "| index | size MiB | build s |", "|---|---|---|"]
    for key, build in res["builds"].items():
        lines.append(f"| {key} | {s[key] / 2**20:.1f} | {build:.1f} |")
    lines.append(f"| table (heap + TOAST) | {s['table'] / 2**20:.1f} | |")
    for ds, b in res["bars"].items():
        lines += ["", f"Bars at D_s={ds} (fastest config with recall@10 >= {TARGET}):"]
        for key in ("ms_mean", "server_ms_p50"):
            v = b[key]
            if v["funnel"] is None or v["hnsw"] is None:
                lines.append(f"- {key}: no config reached the target ({v})")
                continue
            lines.append(
                f"- {key}: funnel {v['funnel']['config']} ({v['funnel']['recall']:.3f}, "
                f"{v['funnel'][key]:.2f} ms) vs HNSW {v['hnsw']['config']} "
                f"({v['hnsw']['recall']:.3f}, {v['hnsw'][key]:.2f} ms): "
                f"{v['speedup']:.2f}x ({'pass' if v['pass'] else 'FAIL'} >= 2x)"
            )
        lines.append(
            f"- index size: {b['index_ratio']:.3f} of the full index "
            f"({'pass' if b['index_pass'] else 'FAIL'} <= 0.25)"
        )
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    """Recall@10 vs latency, client (left) and server (right), every config and the frontier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    groups = {}
    for r in res["rows"]:
        label = "full-vector HNSW" if r["method"] == "full_hnsw" else f"SQL funnel D_s={r['ds']}"
        groups.setdefault(label, []).append(r)
    panels = (("ms_mean", "client ms / query (mean of best-of)"), ("server_ms_p50", "server ms"))
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for label, rows in groups.items():
            ax.scatter([r["recall"] for r in rows], [r[key] for r in rows], s=14, alpha=0.5)
            front = pareto(rows, rows[0]["method"], key)
            ax.plot([r["recall"] for r in front], [r[key] for r in front], marker="o", label=label)
        ax.axvline(TARGET, color="grey", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 vs exact full-D search")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend()
    c = res["config"]
    fig.suptitle(
        f"pgvector {res['versions']['pgvector']}: {c['n']:,} x {c['dim']} generated, 1 client"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="database rows (generated)")
    p.add_argument("--dim", type=int, default=1024, help="D")
    p.add_argument("--queries", type=int, default=200, help="measured queries")
    p.add_argument("--warm", type=int, default=50, help="warm-up queries per config (others)")
    p.add_argument("--shortlist-dims", default="32,64", help="D_s values, one collection each")
    p.add_argument("--shortlists", default="10,20,30,40,60,80,160,320", help="funnel shortlists")
    p.add_argument("--efs", default="10,15,20,30,40,60,80,160,320", help="full-HNSW ef_search")
    p.add_argument("--repeats", type=int, default=3, help="passes per config (best of)")
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--maintenance-work-mem", default="3GB", help="for CREATE INDEX")
    p.add_argument("--shared-buffers", default="2GB", help="set before the run")
    p.add_argument("--data-dir", default="runs/pgvector-bench", help="embedded server folder")
    p.add_argument("--out", default="docs/results/pgvector")
    return p


def _open(data_dir: Path, args) -> PostgresBackend:
    return PostgresBackend(
        data_dir=data_dir, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, timeout=60
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = make_dirs(args.out, "report folder")
    data_dir = Path(args.data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    dss = [int(v) for v in args.shortlist_dims.split(",")]
    t_start = time.perf_counter()

    gen = GeneratedNestedSpec(dim=args.dim, num_classes=1000, seed=0)
    x, _ = generated_nested_embeddings(args.n, gen)
    qs, _ = generated_nested_embeddings(args.queries + args.warm, gen, "queries")
    queries, warm = qs[: args.queries], qs[args.queries :]
    truth = exact_top_k(x, queries, K)

    backend = _open(data_dir, args)  # first start: initdb; then restart with the settings
    with psycopg.connect(backend.dsn, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{args.shared_buffers}'")
        conn.execute("ALTER SYSTEM SET max_parallel_maintenance_workers = 1")
    backend.close()
    backend = _open(data_dir, args)
    with backend.pool.connection() as conn:
        versions = {
            "postgres": conn.execute("SHOW server_version").fetchone()[0],
            "pgvector": conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0],
            "shared_buffers": conn.execute("SHOW shared_buffers").fetchone()[0],
        }
    print(f"PostgreSQL {versions}", flush=True)

    nesting = Nesting.halving(args.dim, min_dim=min(dss))
    sizes, builds, loads, rows = {}, {}, {}, []
    names = {}
    for ds in dss:
        name = names[ds] = f"bench_ds{ds}"
        backend.create(CollectionSpec(name, args.dim, nesting.dims, ds, backend="postgres"))
        t0 = time.perf_counter()
        for s in range(0, args.n, 5000):
            backend.add(name, np.arange(s, min(s + 5000, args.n)), x[s : s + 5000])
        loads[name] = time.perf_counter() - t0
        print(
            f"loaded {name} in {loads[name]:.1f} s (HNSW on the {ds}-prefix, incremental)",
            flush=True,
        )
    table = backend.table(names[dss[0]])
    with psycopg.connect(backend.dsn, autocommit=True) as conn:
        conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        for ds in dss:  # the prefix indexes rebuilt in bulk too, for a like-for-like build time
            t = backend.table(names[ds])
            t0 = time.perf_counter()
            conn.execute(sql.SQL("REINDEX INDEX {}").format(sql.Identifier(f"{t}_ann")))
            builds[f"prefix_index_ds{ds}"] = time.perf_counter() - t0
            sizes[f"prefix_index_ds{ds}"] = conn.execute(
                "SELECT pg_relation_size(%s::regclass)", (f"{t}_ann",)
            ).fetchone()[0]
            print(f"prefix index D_s={ds}: {builds[f'prefix_index_ds{ds}']:.1f} s", flush=True)
        t0 = time.perf_counter()
        conn.execute(
            sql.SQL(
                "CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops) "
                "WITH (m = {}, ef_construction = {})"
            ).format(
                sql.Identifier(f"{table}_full"),
                sql.Identifier(table),
                sql.Literal(args.hnsw_m),
                sql.Literal(args.ef_construction),
            )
        )
        builds["full_index"] = time.perf_counter() - t0
        sizes["full_index"] = conn.execute(
            "SELECT pg_relation_size(%s::regclass)", (f"{table}_full",)
        ).fetchone()[0]
        sizes["table"] = conn.execute("SELECT pg_table_size(%s::regclass)", (table,)).fetchone()[0]
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        print(f"full-vector HNSW: {builds['full_index']:.1f} s", flush=True)

    # The exact SQL plan agrees with the NumPy ground truth (and the funnel uses its index).
    exact = backend.search(names[dss[0]], queries[:3], K, SingleShot(args.dim)).ids
    parity = int((exact == truth[:3]).all(axis=1).sum())
    with backend.pool.connection() as conn:
        shown = conn.execute(
            sql.SQL("EXPLAIN ")
            + backend_statement(backend, names[dss[0]], Rerank(dss[0], args.dim, 40)),
            {"q": PgVector(queries[0])},
        ).fetchall()
        funnel_uses = " ".join(r[0] for r in shown)
        conn.execute("SELECT set_config('enable_seqscan', 'off', true)")  # as hnsw_configs
        shown = conn.execute(
            sql.SQL("EXPLAIN SELECT id FROM {} ORDER BY embedding <=> %(q)s LIMIT 10").format(
                sql.Identifier(table)
            ),
            {"q": PgVector(queries[0])},
        ).fetchall()
        hnsw_uses = " ".join(r[0] for r in shown)
    assert f"{table}_ann" in funnel_uses and f"{table}_full" in hnsw_uses, (funnel_uses, hnsw_uses)

    shortlists = [int(v) for v in args.shortlists.split(",")]
    configs = hnsw_configs(backend, table, [int(v) for v in args.efs.split(",")])
    for ds in dss:
        configs += funnel_configs(backend, names[ds], funnel_plans(ds, args.dim, shortlists), ds)
    print(f"measuring {len(configs)} configs, {args.repeats} interleaved passes", flush=True)
    rows += measure(backend, configs, queries, warm, truth, args.repeats)
    # batched: every query of a call pipelined on one connection (one transaction)
    best = fastest_at(rows, "sql_funnel", TARGET)
    batched = None
    if best is not None:
        plan = next(
            p
            for p, ef in funnel_plans(best["ds"], args.dim, shortlists)
            if f"{p} ef={ef}" == best["config"]
        )
        t0 = time.perf_counter()
        hits = backend.search(names[best["ds"]], queries, K, plan, effort=best["ef"])
        batched = {
            "config": best["config"],
            "ms_per_query": 1e3 * (time.perf_counter() - t0) / len(queries),
            "recall": recall_at_k(hits.ids, truth),
        }
    backend.close()

    res = {
        "config": {
            **vars(args),
            "queries": args.queries,
            "generator": dataclasses.asdict(gen),
            "nesting": list(nesting.dims),
            "k": K,
        },
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        "(shared with other jobs)",
        "versions": versions,
        "loads_seconds": loads,
        "builds": builds,
        "sizes": sizes,
        "exact_sql_matches_numpy": f"{parity}/3 queries, identical top-{K} ids",
        "rows": rows,
        "pareto": {m: [r["config"] for r in pareto(rows, m)] for m in ("sql_funnel", "full_hnsw")},
        "batched_funnel": batched,
        "bars": {ds: bars(rows, sizes, ds) for ds in dss},
        "seconds": time.perf_counter() - t_start,
    }
    report = format_report(res)
    if batched:
        report += (
            f"\nBatched ({len(queries)} queries pipelined in one call, {batched['config']}): "
            f"{batched['ms_per_query']:.2f} ms/query, recall {batched['recall']:.3f}.\n"
        )
    report += (
        f"\nExact SQL plan vs NumPy: {res['exact_sql_matches_numpy']}. "
        f"Run: {res['seconds']:.0f} s.\n"
    )
    atomic_write_json(out / "pgvector_funnel.json", res)
    atomic_write_bytes(out / "pgvector_funnel.md", report.encode())
    plot(res, out / "recall_latency.png")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
