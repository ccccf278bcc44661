"""The SQL funnel vs pgvector's HNSW over the full vector, in the same embedded PostgreSQL.

Generated (not real) nested embeddings (`mrl.data.generated`, 1,000 classes, seed 0) go into
one `PostgresBackend` collection per shortlist prefix D_s (a table with an HNSW index on
`subvector(embedding, 1, D_s)::vector(D_s)`; rows loaded through `PostgresBackend.add`, the
index then built in bulk); the first one's table also gets pgvector's HNSW index on the full
`embedding` (same m and ef_construction). Then, one client, one query at a time, queries
disjoint from the database rows:

- the SQL funnel over the HNSW prefix index (the statement `PostgresBackend.search` runs:
  shortlist through the prefix index, reranked at D in a subquery), sweeping the shortlist
  size and ef_search independently (ef >= shortlist);
- the same funnel over an IVFFlat prefix index (`--ivf-dims`, lists = c * sqrt(N) for each
  c of `--ivf-lists`), sweeping ivfflat.probes and the shortlist: built after the HNSW rows
  were measured, on that collection's table in place of its HNSW prefix index (the planner
  would pick either index for the same expression);
- full-vector HNSW (`ORDER BY embedding <=> q LIMIT k`), sweeping ef_search;

each against the exact top-k at full D (brute force in NumPy, cosine; checked against the
backend's exact SQL plan on a few queries). Every method runs the same way, the path of
`PostgresBackend.search` (`PostgresBackend.read_rows`): a pooled search connection that keeps
each setting (ef_search, probes) for its session and sends them only when they change, and
the query as a prepared statement (psycopg `prepare=True`: parsed and planned once per
connection), one round trip, so the client times compare the statements, not their
plumbing. `PostgresBackend.search` itself (catalog lookup, validation) is timed separately on
the fastest funnel config ("service path"), one query a call and batched.

Each configuration is measured under every `--shared-buffers` setting (the server restarted
in between): 2 GB holds every index and the table, the full index's best case; PostgreSQL's
default 128 MB holds the prefix indexes but not the 781 MB full index, which then reads its
pages from the OS page cache (the situation of a full index larger than the buffer pool).

Latency is client wall-clock per query, each query's best of `--repeats` passes, the configs
interleaved within each pass (mean and p99 over queries), and the server's own execution
time (median over queries of the best of the passes, EXPLAIN ANALYZE with TIMING OFF, run
over all queries right after that config's client pass, so it sees the same cache), with the
shared buffers it hit and read (mean per query). Index sizes are `pg_relation_size`. Bars
(issue 10): the funnel at recall@10 >= 0.95 at least 2x faster than full-vector HNSW at that
recall, with an index at most 1/4 of its size.

Writes `pgvector_funnel.json`, `pgvector_funnel.md` and `recall_latency.png` to `--out` and
prints the report. The embedded server lives in `--data-dir` (deleted first).

Usage (the default run, 100k x 1024: about 20 minutes on 2 busy cores, 5 GB of disk, 3 GB RAM):
    python benchmarks/pgvector_funnel.py --out docs/results/pgvector
    python benchmarks/pgvector_funnel.py --n 20000 --queries 50 --out /tmp/pgv  # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.errors import ConfigError
from mrl.io import atomic_write_bytes, atomic_write_json, make_dirs
from mrl.nesting import Nesting
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Rerank, SingleShot
from mrl.service import sql as plans_sql
from mrl.service.backend import CollectionSpec
from mrl.service.postgres import PgVector, PostgresBackend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_script  # noqa: E402  (the benchmarks' harness)

K = 10
TARGET = 0.95
FUNNELS = ("sql_funnel", "sql_funnel_ivf")
KEYS = ("ms_mean", "server_ms_p50")  # client mean, server median


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
    """One swept configuration: a statement, the settings of its transaction, and tags.

    `family` groups the configs of one index (e.g. "hnsw_ds64", "ivf_ds64_lists1265",
    "full"): the bars compare each family's fastest point with full-vector HNSW.
    """

    method: str  # "sql_funnel", "sql_funnel_ivf" or "full_hnsw"
    family: str
    label: str
    index: str  # the index its plan must scan (checked by `check_plans`)
    statement: sql.Composable
    settings: dict[str, str]
    extra: dict

    def run(self, backend: PostgresBackend, q: np.ndarray) -> list[int]:
        """One query -> its top-k ids, through the path of `PostgresBackend.search`: a search
        connection (its settings sent only when they change), one prepared statement."""
        rows = backend.read_rows(self.statement, [{"q": PgVector(q)}], self.settings)[0]
        return [r[0] for r in rows] + [-1] * (K - len(rows))


def measure(backend, configs: list[Config], queries, warm, truth, repeats: int) -> list[dict]:
    """Recall and latency of every config, passes interleaved: pass r runs each config in turn.

    A query's time is its best of `repeats` passes (timeit's rule): on a machine shared with
    other jobs the minimum is the least disturbed estimate, and interleaving spreads any
    change of load over every config instead of the ones that happened to run then. Server
    time is EXPLAIN ANALYZE's execution time (TIMING OFF: no per-node clock reads) right after
    the config's client pass, the same way; both are reported per config over queries.
    """
    for c in configs:  # bring the pages each config touches into the cache
        for q in warm:
            c.run(backend, q)
    client = np.full((len(configs), repeats, len(queries)), np.inf)
    server = np.full_like(client, np.inf)
    blocks = np.zeros((len(configs), 2))  # shared buffers hit, read: mean per query
    ids = [None] * len(configs)
    for r in range(repeats):
        for j, c in enumerate(configs):
            got = []
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                got.append(c.run(backend, q))
                client[j, r, i] = time.perf_counter() - t0
            ids[j] = np.asarray(got)
            explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) ") + c.statement
            prelude, params = plans_sql.settings_statement(c.settings)
            with backend.pool.connection() as conn:
                conn.execute(prelude, params)
                hit = read = 0
                for i, q in enumerate(queries):
                    plan = conn.execute(explain, {"q": PgVector(q)}).fetchone()[0][0]
                    server[j, r, i] = plan["Execution Time"]
                    hit += plan["Plan"]["Shared Hit Blocks"]
                    read += plan["Plan"]["Shared Read Blocks"]
            blocks[j] = hit / len(queries), read / len(queries)
        print(f"  pass {r + 1}/{repeats} done", flush=True)
    rows = []
    for j, c in enumerate(configs):
        secs = client[j].min(axis=0)
        rows.append(
            {
                "method": c.method,
                "family": c.family,
                "config": c.label,
                "recall": recall_at_k(ids[j], truth),
                "ms_mean": 1e3 * float(secs.mean()),
                "ms_p50": 1e3 * float(np.median(secs)),
                "ms_p99": 1e3 * float(np.quantile(secs, 0.99)),
                "server_ms_p50": float(np.median(server[j].min(axis=0))),
                "buffers_hit": float(blocks[j, 0]),
                "buffers_read": float(blocks[j, 1]),
                **c.extra,
            }
        )
        print(
            f"  {c.family:<20} {c.label:<32} recall {rows[-1]['recall']:.3f} "
            f"{rows[-1]['ms_mean']:.2f} ms, server {rows[-1]['server_ms_p50']:.3f} ms, "
            f"buffers {blocks[j, 0]:.0f} hit / {blocks[j, 1]:.0f} read",
            flush=True,
        )
    return rows


def funnel_statement(table: str, dim: int, ds: int, shortlist: int) -> sql.SQL:
    """The SQL `PostgresBackend.search` runs for `Rerank(ds, dim, shortlist)` on `table`."""
    return plans_sql.search_statement(table, "vector", dim, ds, Rerank(ds, dim, shortlist), K)


def funnel_configs(table: str, dim: int, ds: int, shortlists, efs) -> list[Config]:
    """Rerank(ds, D, s) over the HNSW prefix index, for every (s, ef_search >= s)."""
    out = []
    for s in shortlists:
        plan = Rerank(ds, dim, s)
        for ef in [e for e in efs if e >= s]:
            out.append(
                Config(
                    "sql_funnel",
                    f"hnsw_ds{ds}",
                    f"{plan} ef={ef}",
                    f"{table}_ann",
                    funnel_statement(table, dim, ds, s),
                    plans_sql.settings(plan, K, ef),
                    {"ds": ds, "ef": ef, "shortlist": s},
                )
            )
    return out


def ivf_configs(table: str, dim: int, ds: int, lists: int, shortlists, probes) -> list[Config]:
    """Rerank(ds, D, s) over an IVFFlat prefix index of `lists` lists, per (probes, s).

    Iterative scans (relaxed order: the rerank sorts anyway) keep probing past `probes`
    when those lists hold fewer than s rows, so every shortlist is full."""
    return [
        Config(
            "sql_funnel_ivf",
            f"ivf_ds{ds}_lists{lists}",
            f"{Rerank(ds, dim, s)} probes={p}",
            f"{table}_ivf",
            funnel_statement(table, dim, ds, s),
            {"ivfflat.probes": str(p), "ivfflat.iterative_scan": "relaxed_order"},
            {"ds": ds, "lists": lists, "probes": p, "shortlist": s},
        )
        for p in probes
        for s in shortlists
    ]


def hnsw_configs(table: str, efs) -> list[Config]:
    """pgvector's HNSW over the full vector, `ORDER BY embedding <=> q LIMIT k`, per ef.

    Sequential scans are off in that transaction: on a small table the planner may prefer
    an exact scan, and this row measures the HNSW index, whatever the table's size."""
    statement = sql.SQL("SELECT id FROM {} ORDER BY embedding <=> %(q)s LIMIT {}").format(
        sql.Identifier(table), sql.Literal(K)
    )
    return [
        Config(
            "full_hnsw",
            "full",
            f"ef={ef}",
            f"{table}_full",
            statement,
            {"hnsw.ef_search": str(ef), "enable_seqscan": "off"},
            {"ef": ef},
        )
        for ef in efs
    ]


def fastest_at(rows: list[dict], target: float, key: str, **where) -> dict | None:
    """The row with the smallest `key` among those matching `where` with recall >= target."""
    ok = [r for r in rows if r["recall"] >= target and all(r.get(k) == v for k, v in where.items())]
    return min(ok, key=lambda r: r[key]) if ok else None


def pareto(rows: list[dict], key: str) -> list[dict]:
    """The recall-vs-latency frontier of `rows` (ann-benchmarks style), fastest first."""
    out, best = [], -1.0
    for r in sorted(rows, key=lambda r: r[key]):
        if r["recall"] > best:
            out.append(r)
            best = r["recall"]
    return out


def against_hnsw(here: list[dict], funnels: list[dict], key: str, sizes: dict) -> dict:
    """The fastest of `funnels` at recall@10 >= 0.95 on `key` (client mean or server p50)
    against the fastest full-vector HNSW config of `here` at (at least) the recall it
    reached (the bar's verdict), with the funnel's index size as a fraction of the full
    index. Also against the fastest full HNSW at >= 0.95 whatever the funnel reached
    ("at_target": the stricter reading when the funnel lands above the target)."""
    funnel = fastest_at(funnels, TARGET, key)
    if funnel is None:
        return {"funnel": None, "hnsw": None, "speedup": None, "pass": False}
    hnsw = fastest_at(here, funnel["recall"], key, method="full_hnsw") or fastest_at(
        here, TARGET, key, method="full_hnsw"
    )
    at_target = fastest_at(here, TARGET, key, method="full_hnsw")
    ratio = sizes[funnel["family"]] / sizes["full_index"]
    speedup = hnsw and hnsw[key] / funnel[key]
    return {
        "family": funnel["family"],
        "funnel": {k: funnel[k] for k in ("config", "recall", key)},
        "hnsw": hnsw and {k: hnsw[k] for k in ("config", "recall", key)},
        "speedup": speedup,
        "hnsw_at_target": at_target and {k: at_target[k] for k in ("config", "recall", key)},
        "speedup_at_target": at_target and at_target[key] / funnel[key],
        "index_ratio": ratio,
        "pass": bool(speedup and speedup >= 2 and ratio <= 0.25),
    }


def bars(rows: list[dict], sizes: dict, regime: str) -> dict:
    """The issue's bars under one shared_buffers regime: for each latency key, the fastest
    funnel config of any family ("best_<key>", the bar's verdict) and of each family."""
    here = [r for r in rows if r["regime"] == regime]
    funnels = [r for r in here if r["method"] in FUNNELS]
    out: dict = {"target_recall": TARGET}
    for key in KEYS:
        out[f"best_{key}"] = against_hnsw(here, funnels, key, sizes)
    for family in sorted({r["family"] for r in funnels}):
        mine = [r for r in funnels if r["family"] == family]
        out[family] = {key: against_hnsw(here, mine, key, sizes) for key in KEYS}
        out[family]["index_ratio"] = sizes[family] / sizes["full_index"]
        out[family]["index_pass"] = out[family]["index_ratio"] <= 0.25
    return out


def format_report(res: dict) -> str:
    c = res["config"]
    lines = [
        f"# SQL funnel vs pgvector full-vector HNSW ({c['n']:,} x {c['dim']} generated nested "
        f"vectors, {c['queries']} queries, k={K})",
        "",
        f"PostgreSQL {res['versions']['postgres']}, pgvector {res['versions']['pgvector']}, "
        f"{res['machine']}; one client, one query at a time over a unix socket, every method "
        f"a prepared statement on a search connection that keeps its settings for the session "
        f"(`PostgresBackend.read_rows`, as `search` runs); each query's best of "
        f"{c['repeats']} passes. HNSW m={c['hnsw_m']}, ef_construction={c['ef_construction']} "
        "for every HNSW index. Client ms: mean over queries; server ms: EXPLAIN ANALYZE "
        "execution time, median; buffers: shared hit / read per query.",
    ]
    for regime in c["shared_buffers"].split(","):
        b = res["bars"][regime]
        lines += [
            "",
            f"## shared_buffers = {regime}",
            "",
            "| family | latency | fastest at recall@10 >= 0.95 | recall | ms | full HNSW at that "
            "recall | recall | ms | speedup | index / full |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for family, f in b.items():
            if family == "target_recall" or family.startswith("best_"):
                continue
            for key, what in (("ms_mean", "client"), ("server_ms_p50", "server")):
                v = f[key]
                if v["funnel"] is None or v["hnsw"] is None:
                    lines.append(f"| {family} | {what} | none | | | | | | | |")
                    continue
                lines.append(
                    f"| {family} | {what} | {v['funnel']['config']} | "
                    f"{v['funnel']['recall']:.3f} | {v['funnel'][key]:.3f} | "
                    f"{v['hnsw']['config']} | {v['hnsw']['recall']:.3f} | {v['hnsw'][key]:.3f} "
                    f"| **{v['speedup']:.2f}x** | {f['index_ratio']:.3f} |"
                )
        for key, what in (("ms_mean", "client"), ("server_ms_p50", "server")):
            best = b[f"best_{key}"]
            if best["funnel"] and best["hnsw"]:
                lines.append(
                    f"\nBar on {what} time (the fastest funnel config at recall@10 >= "
                    f"{TARGET}, any index, >= 2x faster than full HNSW at its recall, index "
                    f"<= 1/4): {best['family']} {best['funnel']['config']} (recall "
                    f"{best['funnel']['recall']:.3f}, {best['funnel'][key]:.3f} ms) vs HNSW "
                    f"{best['hnsw']['config']} ({best['hnsw']['recall']:.3f}, "
                    f"{best['hnsw'][key]:.3f} ms): {best['speedup']:.2f}x, index "
                    f"{best['index_ratio']:.3f}: **{'pass' if best['pass'] else 'FAIL'}**. "
                    f"Against full HNSW's fastest at >= {TARGET} "
                    f"({best['hnsw_at_target']['config']}, "
                    f"{best['hnsw_at_target']['recall']:.3f}): "
                    f"{best['speedup_at_target']:.2f}x."
                )
        svc = res["service_path"].get(regime)
        if svc:
            lines.append(
                f"\nService path (`PostgresBackend.search`, {svc['config']}): "
                f"{svc['ms_mean']:.3f} ms/query one query a call (the bare statement: "
                f"{svc['bare_ms_mean']:.3f} ms), {svc['batched_ms_per_query']:.3f} ms/query "
                f"batched ({c['queries']} queries pipelined in one call), recall "
                f"{svc['recall']:.3f}."
            )
        lines += [
            "",
            "| method | family | config | recall@10 | client ms mean | p99 | server ms p50 "
            "| buffers hit / read |",
            "|---|---|---|---|---|---|---|---|",
        ]
        here = [r for r in res["rows"] if r["regime"] == regime]
        shown = [r for r in here if r["method"] == "full_hnsw"]
        for family in sorted({r["family"] for r in here} - {"full"}):
            shown += pareto([r for r in here if r["family"] == family], "server_ms_p50")
        for r in shown:
            lines.append(
                f"| {r['method']} | {r['family']} | {r['config']} | {r['recall']:.3f} | "
                f"{r['ms_mean']:.3f} | {r['ms_p99']:.3f} | {r['server_ms_p50']:.3f} | "
                f"{r['buffers_hit']:.0f} / {r['buffers_read']:.0f} |"
            )
    lines.append(
        "\n(funnel rows: each family's server-time Pareto frontier; every row is in the JSON)"
    )
    s = res["sizes"]
    lines += ["", "| index | size MiB | build s |", "|---|---|---|"]
    for key, build in res["builds"].items():
        lines.append(f"| {key} | {s[key] / 2**20:.1f} | {build:.1f} |")
    lines.append(f"| table (heap + TOAST) | {s['table'] / 2**20:.1f} | |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    """Recall@10 vs latency per regime (rows), client and server (columns): each family's
    points and frontier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = res["config"]["shared_buffers"].split(",")
    fig, axes = plt.subplots(
        len(regimes), 2, figsize=(11, 4.2 * len(regimes)), sharex=True, squeeze=False
    )
    panels = (("ms_mean", "client ms / query (mean of best-of)"), ("server_ms_p50", "server ms"))
    for row, regime in zip(axes, regimes, strict=True):
        here = [r for r in res["rows"] if r["regime"] == regime]
        for ax, (key, ylabel) in zip(row, panels, strict=True):
            for family in sorted({r["family"] for r in here}):
                rows = [r for r in here if r["family"] == family]
                label = "full-vector HNSW" if family == "full" else f"funnel {family}"
                front = pareto(rows, key)
                (line,) = ax.plot(
                    [r["recall"] for r in front], [r[key] for r in front], marker="o", label=label
                )
                ax.scatter(
                    [r["recall"] for r in rows],
                    [r[key] for r in rows],
                    s=10,
                    alpha=0.35,
                    color=line.get_color(),
                )
            ax.axvline(TARGET, color="grey", lw=0.8, ls="--")
            ax.set_yscale("log")
            ax.set_xlabel("recall@10 vs exact full-D search")
            ax.set_ylabel(ylabel)
            ax.set_title(f"shared_buffers = {regime}", fontsize=10)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
    c = res["config"]
    fig.suptitle(
        f"pgvector {res['versions']['pgvector']}: {c['n']:,} x {c['dim']} generated, 1 client"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="database rows (generated)")
    p.add_argument("--dim", type=int, default=1024, help="D")
    p.add_argument("--queries", type=int, default=200, help="measured queries")
    p.add_argument("--warm", type=int, default=50, help="warm-up queries per config (others)")
    p.add_argument(
        "--shortlist-dims", default="32,64,128,256", help="D_s values, one collection each"
    )
    p.add_argument("--shortlists", default="10,15,20,30,40,60", help="funnel shortlists")
    p.add_argument("--funnel-efs", default="10,15,20,30,40,60,80", help="funnel ef_search")
    p.add_argument("--efs", default="10,15,20,30,40,60,80,120,160", help="full-HNSW ef_search")
    p.add_argument(
        "--ivf-dims", default="64,128", help="D_s of the IVFFlat runs (of shortlist-dims)"
    )
    p.add_argument("--ivf-lists", default="4,8", help="IVF lists, as multiples of sqrt(n)")
    p.add_argument("--ivf-probes", default="4,8,16,32")
    p.add_argument("--ivf-shortlists", default="20,30,50")
    p.add_argument("--repeats", type=int, default=3, help="passes per config (best of)")
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--maintenance-work-mem", default="3GB", help="for CREATE INDEX")
    p.add_argument("--shared-buffers", default="2GB,128MB", help="regimes, server restarted")
    p.add_argument("--data-dir", default="runs/pgvector-bench", help="embedded server folder")
    p.add_argument("--out", default="docs/results/pgvector")
    return p


def _reopen(backend, data_dir, args, regime: str, label: str):
    """Close `backend` and open the server again under `shared_buffers = regime`."""
    backend.close()
    backend = _open(data_dir, args, regime)
    print(f"{label}shared_buffers = {regime}", flush=True)
    return backend


def _open(data_dir: Path, args, shared_buffers: str | None = None) -> PostgresBackend:
    """The backend on the embedded server, restarted with `shared_buffers` if given."""
    backend = PostgresBackend(
        data_dir=data_dir, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, timeout=60
    )
    if shared_buffers is None:
        return backend
    with psycopg.connect(backend.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(shared_buffers))
        )
        conn.execute("ALTER SYSTEM SET max_parallel_maintenance_workers = 1")
    backend.close()
    return _open(data_dir, args)


def load_prefix_collection(
    backend: PostgresBackend, conn, name: str, x: np.ndarray, dims, ds: int, work_mem: str
) -> tuple[str, float, tuple[float, int]]:
    """Collection `name` holding the rows `x` (ids 0..N-1) with its HNSW index on the
    `ds`-prefix: rows through `PostgresBackend.add` with that index dropped, then the index
    rebuilt in bulk with the backend's own DDL (a like-for-like build time with the full
    index; an incremental load of 100k x 1024 took 250 s). Returns (table, load seconds,
    (index build seconds, index bytes))."""
    backend.create(CollectionSpec(name, x.shape[1], dims, ds, backend="postgres"))
    table = backend.table(name)
    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(f"{table}_ann")))
    t0 = time.perf_counter()
    for s in range(0, len(x), 5000):
        backend.add(name, np.arange(s, min(s + 5000, len(x))), x[s : s + 5000])
    load_s = time.perf_counter() - t0
    print(f"loaded {name} in {load_s:.1f} s", flush=True)
    m, ef_construction = backend.hnsw_m, backend.ef_construction
    ddl = plans_sql.create_ann_index(table, "vector", ds, m, ef_construction)
    built = build_index(conn, f"{table}_ann", ddl, work_mem)
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
    return table, load_s, built


def build_full_hnsw(
    conn, table: str, m: int, ef_construction: int, work_mem: str
) -> tuple[float, int]:
    """(seconds, bytes) of pgvector's HNSW over the whole vector of `table` (cosine): the
    index a pgvector user runs, named `<table>_full`."""
    ddl = sql.SQL(
        "CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = {}, ef_construction = {})"
    ).format(
        sql.Identifier(f"{table}_full"),
        sql.Identifier(table),
        sql.Literal(m),
        sql.Literal(ef_construction),
    )
    return build_index(conn, f"{table}_full", ddl, work_mem)


def build_index(conn, name: str, ddl: sql.Composable, work_mem: str) -> tuple[float, int]:
    """(seconds, bytes) of one CREATE INDEX, with `maintenance_work_mem = work_mem`."""
    conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(work_mem)))
    t0 = time.perf_counter()
    conn.execute(ddl)
    seconds = time.perf_counter() - t0
    size = conn.execute("SELECT pg_relation_size(%s::regclass)", (name,)).fetchone()[0]
    print(f"built {name}: {seconds:.1f} s, {size / 2**20:.1f} MiB", flush=True)
    return seconds, size


def service_path(backend, name, ds, best, queries, truth, repeats) -> dict:
    """`PostgresBackend.search` on the fastest HNSW-prefix funnel config: per call and batched."""
    plan = Rerank(ds, queries.shape[1], best["shortlist"])
    secs = np.full((repeats, len(queries)), np.inf)
    for r in range(repeats):
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            backend.search(name, q, K, plan, effort=best["ef"])
            secs[r, i] = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = backend.search(name, queries, K, plan, effort=best["ef"])
    batched = (time.perf_counter() - t0) / len(queries)
    return {
        "config": best["config"],
        "family": best["family"],
        "ms_mean": 1e3 * float(secs.min(axis=0).mean()),
        "bare_ms_mean": best["ms_mean"],
        "batched_ms_per_query": 1e3 * batched,
        "recall": recall_at_k(hits.ids, truth),
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    dss, ivf_dss = ints(args.shortlist_dims), ints(args.ivf_dims)
    if not set(ivf_dss) <= set(dss):
        raise ConfigError(
            f"--ivf-dims {args.ivf_dims} must be among --shortlist-dims {args.shortlist_dims}"
        )
    out = make_dirs(args.out, "report folder")
    data_dir = Path(args.data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    regimes = args.shared_buffers.split(",")
    t_start = time.perf_counter()

    gen = GeneratedNestedSpec(dim=args.dim, num_classes=1000, seed=0)
    x, _ = generated_nested_embeddings(args.n, gen)
    qs, _ = generated_nested_embeddings(args.queries + args.warm, gen, "queries")
    queries, warm = qs[: args.queries], qs[args.queries :]
    truth = exact_top_k(x, queries, K)

    backend = _open(data_dir, args, regimes[0])
    with backend.pool.connection() as conn:
        versions = {
            "postgres": conn.execute("SHOW server_version").fetchone()[0],
            "pgvector": conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0],
        }
    print(f"PostgreSQL {versions}", flush=True)

    # One collection per D_s: rows through PostgresBackend.add with the prefix index dropped,
    # then the index rebuilt in bulk with the backend's own DDL (a like-for-like build time
    # with the full index; the previous run measured the incremental load: 250 s).
    nesting = Nesting.halving(args.dim, min_dim=min(dss))
    sizes, builds, loads, names, tables = {}, {}, {}, {}, {}
    with psycopg.connect(backend.dsn, autocommit=True) as conn:
        for ds in dss:
            name = names[ds] = f"bench_ds{ds}"
            key = f"hnsw_ds{ds}"
            tables[ds], loads[name], (builds[key], sizes[key]) = load_prefix_collection(
                backend, conn, name, x, nesting.dims, ds, args.maintenance_work_mem
            )
        table = tables[dss[0]]
        builds["full_index"], sizes["full_index"] = build_full_hnsw(
            conn, table, args.hnsw_m, args.ef_construction, args.maintenance_work_mem
        )
        sizes["table"] = conn.execute("SELECT pg_table_size(%s::regclass)", (table,)).fetchone()[0]

    # The exact SQL plan agrees with the NumPy ground truth, and each config uses its index.
    exact = backend.search(names[dss[0]], queries[:3], K, SingleShot(args.dim)).ids
    parity = int((exact == truth[:3]).all(axis=1).sum())
    shortlists, funnel_efs = ints(args.shortlists), ints(args.funnel_efs)
    configs = hnsw_configs(table, ints(args.efs))
    for ds in dss:
        configs += funnel_configs(tables[ds], args.dim, ds, shortlists, funnel_efs)
    check_plans(backend, configs, queries[0])

    rows, service = [], {}
    print(f"measuring {len(configs)} configs, {args.repeats} interleaved passes", flush=True)
    for regime in regimes:
        backend = _reopen(backend, data_dir, args, regime, "")
        got = measure(backend, configs, queries, warm, truth, args.repeats)
        rows += [{**r, "regime": regime} for r in got]
        best = fastest_at(got, TARGET, "ms_mean", method="sql_funnel")
        if best is not None:
            service[regime] = service_path(
                backend, names[best["ds"]], best["ds"], best, queries, truth, args.repeats
            )

    # IVFFlat over the prefix: in place of that table's HNSW prefix index (the planner could
    # take either for the same expression), one lists value at a time.
    for ds in ivf_dss:
        t = tables[ds]
        with psycopg.connect(backend.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(f"{t}_ann")))
        for mult in ints(args.ivf_lists):
            lists = round(mult * math.sqrt(args.n))
            family = f"ivf_ds{ds}_lists{lists}"
            ddl = sql.SQL(
                "CREATE INDEX {} ON {} USING ivfflat (({}) vector_cosine_ops) WITH (lists = {})"
            ).format(
                sql.Identifier(f"{t}_ivf"),
                sql.Identifier(t),
                plans_sql.ann_expression("vector", ds),
                sql.Literal(lists),
            )
            with psycopg.connect(backend.dsn, autocommit=True) as conn:
                builds[family], sizes[family] = build_index(
                    conn, f"{t}_ivf", ddl, args.maintenance_work_mem
                )
            ivf = ivf_configs(
                t, args.dim, ds, lists, ints(args.ivf_shortlists), ints(args.ivf_probes)
            )
            check_plans(backend, ivf, queries[0])
            for regime in regimes:
                backend = _reopen(backend, data_dir, args, regime, f"{family}, ")
                got = measure(backend, ivf, queries, warm, truth, args.repeats)
                rows += [{**r, "regime": regime} for r in got]
            with psycopg.connect(backend.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(f"{t}_ivf")))
    backend.close()

    res = {
        "config": {
            **vars(args),
            "generator": dataclasses.asdict(gen),
            "nesting": list(nesting.dims),
            "k": K,
        },
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end (this benchmark and its server "
        "included)",
        "versions": versions,
        "loads_seconds": loads,
        "builds": builds,
        "sizes": sizes,
        "exact_sql_matches_numpy": f"{parity}/3 queries, identical top-{K} ids",
        "rows": rows,
        "service_path": service,
        "bars": {regime: bars(rows, sizes, regime) for regime in regimes},
        "seconds": time.perf_counter() - t_start,
    }
    report = format_report(res)
    report += (
        f"\nExact SQL plan vs NumPy: {res['exact_sql_matches_numpy']}. "
        f"Run: {res['seconds']:.0f} s.\n"
    )
    atomic_write_json(out / "pgvector_funnel.json", res)
    atomic_write_bytes(out / "pgvector_funnel.md", report.encode())
    plot(res, out / "recall_latency.png")
    print(report)
    return 0


def plan_of(backend, config: Config, q: np.ndarray) -> str:
    """The EXPLAIN text of `config`'s statement for query `q`, under its settings."""
    prelude, params = plans_sql.settings_statement(config.settings)
    with backend.pool.connection() as conn:
        conn.execute(prelude, params)
        plan = conn.execute(sql.SQL("EXPLAIN ") + config.statement, {"q": PgVector(q)})
        return " ".join(r[0] for r in plan)


def scans_its_index(backend, config: Config, q: np.ndarray) -> bool:
    """Whether the planner runs `config` through the index it measures (not a table scan)."""
    return f" {config.index} " in f"{plan_of(backend, config, q)} "


def check_plans(backend, configs: list[Config], q: np.ndarray) -> None:
    """Assert that each config's statement, under its settings, scans the index it measures."""
    for c in configs:
        assert scans_its_index(backend, c, q), (c.family, c.label, plan_of(backend, c, q))


if __name__ == "__main__":
    run_script(main)
