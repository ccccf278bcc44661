"""Search plans as SQL over pgvector: the funnel runs inside PostgreSQL, one statement a query.

A collection is a table `(id bigint, embedding vector(D), payload jsonb)` with an HNSW index on
the expression `subvector(embedding, 1, D_s)::vector(D_s)` (cosine ops). A plan becomes nested
subqueries, innermost first:

    SELECT id, dist FROM (                                  -- last step: top k at D
      SELECT id, embedding FROM (                           -- step 1: top 100 of 200 at 64
        SELECT id, embedding FROM items                     -- shortlist: 200 at D_s = 16,
        ORDER BY subvector(embedding, 1, 16)::vector(16)    -- through the expression index
                 <=> subvector($1, 1, 16)::vector(16)
        LIMIT 200) s0
      ORDER BY subvector(embedding, 1, 64)::vector(64) <=> subvector($1, 1, 64)::vector(64), id
      LIMIT 100) s1
    ...

Each rerank step orders by the cosine distance of its prefix (pgvector's `<=>` normalises both
sides, so it is the per-prefix cosine of `mrl.retrieval.search`), ties broken by the smaller
id, exactly as `MatryoshkaIndex` does. The shortlist ORDER BY repeats the indexed expression
verbatim, which is what lets the planner use the HNSW index; an exact plan sorts the same
expression with index scans switched off for the transaction, so it reads every row.

Above 2,000 dims (pgvector's limit for indexing `vector`) or for float16 storage, the column is
`halfvec(D)` and every cast is `halfvec(m)`.

References:
    Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, arXiv 2205.13147,
    Section 4.3 (funnel retrieval); pgvector 0.8 README (indexing subvectors, iterative scans).
"""

from __future__ import annotations

from functools import lru_cache

from psycopg import sql

from mrl.errors import ConfigError
from mrl.retrieval.plans import Plan

MAX_VECTOR_DIMS = 2000  # pgvector indexes `vector` up to 2,000 dims ...
MAX_HALFVEC_DIMS = 4000  # ... and `halfvec` up to 4,000
MAX_EF_SEARCH = 1000  # hnsw.ef_search's upper bound
DEFAULT_EF_SEARCH = 40  # pgvector's default beam when the shortlist is smaller


def column_type(dim: int, dtype: str) -> str:
    """ "vector" or "halfvec": the SQL type of a collection's full vectors."""
    return "halfvec" if dtype == "float16" or dim > MAX_VECTOR_DIMS else "vector"


def check_dims(dim: int, shortlist_dim: int, dtype: str) -> None:
    """Raise `ConfigError` unless pgvector can index the `shortlist_dim`-prefix with HNSW.

    (`dim` itself is within a column's 16,000 dims: `mrl.service.spec.check_spec` caps it.)
    """
    limit = MAX_HALFVEC_DIMS if column_type(dim, dtype) == "halfvec" else MAX_VECTOR_DIMS
    if shortlist_dim > limit:
        raise ConfigError(
            f"shortlist_dim {shortlist_dim} is above pgvector's {limit}-dim HNSW limit for "
            f"{column_type(dim, dtype)}; choose a shorter shortlist prefix (D_s)"
        )


def prefix(kind: str, dim: int, full_dim: int, value: sql.Composable) -> sql.Composable:
    """`value`'s `dim`-prefix as a `kind(dim)` expression (the value itself at full width)."""
    if dim == full_dim:
        return value
    return sql.SQL("subvector({}, 1, {})::{}({})").format(
        value, sql.Literal(dim), sql.SQL(kind), sql.Literal(dim)
    )


def ann_expression(kind: str, shortlist_dim: int) -> sql.Composable:
    """The indexed expression: the D_s-prefix of `embedding` (also at D_s = D, so it matches)."""
    return sql.SQL("subvector(embedding, 1, {})::{}({})").format(
        sql.Literal(shortlist_dim), sql.SQL(kind), sql.Literal(shortlist_dim)
    )


def create_table(table: str, kind: str, dim: int) -> list[sql.Composable]:
    """Statements that create a collection's table.

    The vectors are kept in the heap row (`STORAGE MAIN`; pgvector's default, EXTERNAL, moves
    any vector above 2 kB to TOAST): a rerank then reads each candidate from the heap page the
    index scan already fetched instead of three TOAST chunks, 1.6x faster for a 50-candidate
    rerank at 20k x 1024 (0.52 vs 0.86 ms); the price is a heap of one 4 kB row per 8 kB page
    at D = 1024. A row too large for a page still moves to TOAST.
    """
    t = sql.Identifier(table)
    return [
        sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, embedding {}({}) NOT NULL, payload jsonb)"
        ).format(t, sql.SQL(kind), sql.Literal(dim)),
        sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE MAIN").format(t),
    ]


def create_ann_index(
    table: str, kind: str, shortlist_dim: int, m: int, ef_construction: int
) -> sql.Composable:
    """The HNSW index over the D_s-prefix, cosine ops, named `<table>_ann`."""
    return sql.SQL(
        "CREATE INDEX {} ON {} USING hnsw (({}) {}) WITH (m = {}, ef_construction = {})"
    ).format(
        sql.Identifier(f"{table}_ann"),
        sql.Identifier(table),
        ann_expression(kind, shortlist_dim),
        sql.SQL(f"{kind}_cosine_ops"),
        sql.Literal(m),
        sql.Literal(ef_construction),
    )


@lru_cache(maxsize=256)
def search_statement(
    table: str, kind: str, dim: int, shortlist_dim: int, plan: Plan, k: int
) -> sql.SQL:
    """One query's top-k under a checked `plan`: rows (id, cosine distance at the last dim).

    The query vector is the parameter `%(q)s` (a `kind` value of `dim` dims); the caller sets
    `settings(plan, k, ...)` for the transaction first. The result is cached flat, as one
    `sql.SQL` string: psycopg then skips composing the nested parts on every execution.
    """
    q = sql.Placeholder("q")

    def dist(d: int) -> sql.Composable:
        return sql.SQL("{} <=> {}").format(
            prefix(kind, d, dim, sql.Identifier("embedding")), prefix(kind, d, dim, q)
        )

    if not plan.exact and plan.shortlist_dim != shortlist_dim:
        raise ConfigError(
            f"the HNSW index covers the {shortlist_dim}-prefix, not {plan.shortlist_dim}; use an "
            "exact plan or one whose D_s is the collection's shortlist_dim"
        )
    size = plan.shortlist_size(k)
    if plan.exact:  # the same expression, sorted by a full scan (index scans are off)
        first = dist(plan.shortlist_dim)
        tie = sql.SQL(", id")
    else:  # verbatim the indexed expression, so the planner walks the HNSW graph
        first = sql.SQL("{} <=> {}").format(
            ann_expression(kind, shortlist_dim), prefix(kind, shortlist_dim, dim, q)
        )
        tie = sql.SQL("")
    if not plan.steps:  # SingleShot: the shortlist is the answer
        inner = sql.SQL("SELECT id, {} AS dist FROM {} ORDER BY {}{} LIMIT {}").format(
            first, sql.Identifier(table), first, tie, sql.Literal(size)
        )
        return _flat(sql.SQL("SELECT id, dist FROM ({}) s ORDER BY dist, id").format(inner))
    body = sql.SQL("SELECT id, embedding FROM {} ORDER BY {}{} LIMIT {}").format(
        sql.Identifier(table), first, tie, sql.Literal(size)
    )
    for i, (d, _) in enumerate(plan.steps):
        last = i + 1 == len(plan.steps)
        keep = k if last else plan.steps[i + 1][1]
        cols = sql.SQL("id, {} AS dist" if last else "id, embedding").format(dist(d))
        order = sql.SQL("dist, id" if last else "{}, id").format(dist(d))
        body = sql.SQL("SELECT {} FROM ({}) {} ORDER BY {} LIMIT {}").format(
            cols, body, sql.Identifier(f"s{i}"), order, sql.Literal(keep)
        )
    return _flat(body)


def _flat(statement: sql.Composed) -> sql.SQL:
    """`statement` as one SQL string (identifiers quoted, literals inlined)."""
    return sql.SQL(statement.as_string())


def settings_statement(
    values: dict[str, str], local: bool = True
) -> tuple[sql.Composed, list[str]]:
    """One `SELECT set_config(name, value, local), ...` applying `values`, and its parameters:
    one statement (one round trip) whatever their number. `local`: to the transaction only
    (`SET LOCAL`); otherwise to the session (`SET`), as search connections keep them."""
    call = sql.SQL("set_config(%s, %s, {})").format(sql.SQL("true" if local else "false"))
    calls = sql.SQL(", ").join(call for _ in values)
    return sql.SQL("SELECT ") + calls, [v for item in values.items() for v in item]


def settings(plan: Plan, k: int, effort: int | None = None) -> dict[str, str]:
    """The settings one search under `plan` runs with (`PostgresBackend` keeps them per
    search connection and sends them only when they change).

    An ANN shortlist of n needs a beam of at least n (`hnsw.ef_search`, at most 1,000; the
    larger of n and `effort`, default 40); a shortlist above 1,000 switches on pgvector's
    relaxed-order iterative scan, which keeps walking the graph until n rows came back. An
    exact plan switches index scans off, so the shortlist is a full scan and sort.
    """
    if plan.exact:
        return {"enable_indexscan": "off"}
    n = plan.shortlist_size(k)
    ef = max(n, DEFAULT_EF_SEARCH if effort is None else effort)
    out = {"hnsw.ef_search": str(min(ef, MAX_EF_SEARCH))}
    if ef > MAX_EF_SEARCH:
        out["hnsw.iterative_scan"] = "relaxed_order"
        out["hnsw.max_scan_tuples"] = str(max(20_000, 4 * ef))
    return out
