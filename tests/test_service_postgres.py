"""PostgresBackend on a real embedded PostgreSQL + pgvector: CRUD, parity, recall, errors."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from pg_helpers import pg_database, postgres_dsn  # noqa: F401 (fixtures)

pytest.importorskip("psycopg_pool")
from psycopg import sql  # noqa: E402

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings  # noqa: E402
from mrl.errors import (  # noqa: E402
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
)
from mrl.retrieval.index import MatryoshkaIndex  # noqa: E402
from mrl.retrieval.plans import Funnel, Rerank, SingleShot  # noqa: E402
from mrl.service import sql as plans_sql  # noqa: E402
from mrl.service.backend import CollectionSpec  # noqa: E402
from mrl.service.postgres import PgVector, PostgresBackend  # noqa: E402
from mrl.service.spec import resolve_plan  # noqa: E402

NESTING = (16, 32, 64)


@pytest.fixture(scope="module")
def backend(pg_database):  # noqa: F811
    b = PostgresBackend(dsn=pg_database, pool_size=2, timeout=2)
    yield b
    b.close()


_names = itertools.count()


@pytest.fixture
def coll(backend):
    """An empty 64-d collection (D_s = 16) with a new name, dropped afterwards."""
    name = f"c{next(_names)}"
    backend.create(CollectionSpec(name, 64, NESTING, 16, backend="postgres"))
    yield name
    backend.drop(name)


def _data(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def filled(backend):
    """1,500 random 64-d vectors (no near-ties among top scores) in collection 'parity'."""
    x = _data(1500)
    backend.create(CollectionSpec("parity", 64, NESTING, 16, backend="postgres"))
    backend.add("parity", np.arange(1500) * 3, x)  # ids != rows: parity must map ids
    yield "parity", x
    backend.drop("parity")


def test_crud_round_trip(backend, coll):
    x = _data(20, seed=1)
    payloads = [{"i": i, "tag": "é"} if i % 3 else None for i in range(20)]
    backend.add(coll, np.arange(100, 120), x, payloads)
    (spec,) = [s for s in backend.collections() if s.name == coll]
    assert spec == CollectionSpec(coll, 64, NESTING, 16, backend="postgres")
    info = backend.info(coll)
    assert info["count"] == 20 and info["spec"] == spec == backend.spec(coll)
    assert info["memory_bytes"] >= info["table_bytes"] + info["ann_index_bytes"] > 0
    vector, payload = backend.get(coll, 101)
    np.testing.assert_array_equal(vector, x[1])
    assert payload == {"i": 1, "tag": "é"} and backend.get(coll, 100)[1] is None
    assert backend.payloads(coll, np.array([102, -1, 100])) == [{"i": 2, "tag": "é"}, None, None]
    assert backend.delete(coll, np.array([101, 105])) == 2
    assert backend.info(coll)["count"] == 18
    with pytest.raises(NotFoundError, match="id 101 is not in collection"):
        backend.get(coll, 101)


@pytest.mark.parametrize(
    "plan",
    [
        SingleShot(64),
        SingleShot(16),
        SingleShot(32),
        Rerank(16, 64, 50, exact=True),
        Funnel(16, ((32, 200), (64, 30)), exact=True),
    ],
    ids=str,
)
def test_exact_plans_give_the_same_ids_as_matryoshka_index(backend, filled, plan):
    name, x = filled
    queries = _data(12, seed=7)
    index = MatryoshkaIndex(shortlist_dim=16, ann="flat").build(x, ids=np.arange(1500) * 3)
    want = index.search(queries, 10, plan)
    got = backend.search(name, queries, 10, plan)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)


def test_batch_equals_one_query_at_a_time(backend, filled):
    name, _ = filled
    queries = _data(5, seed=3)
    batch = backend.search(name, queries, 10, Funnel(16, ((32, 100), (64, 20))))
    for q, ids in zip(queries, batch.ids, strict=True):
        one = backend.search(name, q, 10, Funnel(16, ((32, 100), (64, 20))))
        np.testing.assert_array_equal(one.ids[0], ids)


def _explain(backend, name, plan, q) -> str:
    spec = backend.info(name)["spec"]
    table = backend.table(name)
    statement = plans_sql.search_statement(table, "vector", 64, spec.shortlist_dim, plan, 10)
    with backend.pool.connection() as conn:
        for key, value in plans_sql.settings(plan, 10).items():
            conn.execute("SELECT set_config(%s, %s, true)", (key, value))
        rows = conn.execute(sql.SQL("EXPLAIN ") + statement, {"q": PgVector(q)}).fetchall()
    return "\n".join(r[0] for r in rows), table


@pytest.mark.parametrize(
    "plan", [SingleShot(16), Funnel(16, ((32, 100), (64, 20)), exact=True)], ids=str
)
def test_exact_plans_scan_every_row(backend, filled, plan):
    text, table = _explain(backend, filled[0], plan, _data(1)[0])
    assert f"{table}_ann" not in text and "Seq Scan" in text, text


@pytest.mark.parametrize(
    "plan", [SingleShot(16, exact=False), Funnel(16, ((32, 100), (64, 20)))], ids=str
)
def test_ann_plans_walk_the_prefix_index(backend, filled, plan):
    text, table = _explain(backend, filled[0], plan, _data(1)[0])
    assert f"Index Scan using {table}_ann" in text, text


def test_ann_recall_against_exact(backend, coll):
    spec = GeneratedNestedSpec(dim=64, num_classes=50, seed=0)  # nested: prefixes carry signal
    x, _ = generated_nested_embeddings(2000, spec)
    queries, _ = generated_nested_embeddings(30, spec, "queries")
    backend.add(coll, np.arange(2000), x)

    def recall(ids, truth) -> float:
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])

    exact = backend.search(coll, queries, 10, SingleShot(64)).ids
    rerank = backend.search(coll, queries, 10, Rerank(16, 64, 100))
    assert recall(rerank.ids, exact) >= 0.9
    assert rerank.stats["ef_search"] >= rerank.stats["shortlist"] == 100
    # the HNSW shortlist against the exact one, under the same (default halving) funnel
    funnel = resolve_plan(backend.info(coll)["spec"], None, 10)
    ann = backend.search(coll, queries, 10, None).ids
    same = backend.search(coll, queries, 10, dataclasses.replace(funnel, exact=True)).ids
    assert recall(ann, same) >= 0.9


def _ids_in(backend, name) -> set[int]:
    with backend.pool.connection() as conn:
        rows = conn.execute(
            sql.SQL("SELECT id FROM {}").format(sql.Identifier(backend.table(name)))
        )
        return {i for (i,) in rows.fetchall()}


@pytest.mark.parametrize(
    "ids, vectors, payloads, error, match",
    [
        ([5, 6, 2], None, None, ConflictError, "id 2 at position 2 is already in collection"),
        ([5, 6, 5], None, None, InputError, "duplicate id 5 at position 2"),
        ([5, -6, 7], None, None, InputError, "-6 at position 1 is negative"),
        ([5, 6, 7], "nan", None, InputError, "NaN or inf; first bad row is 1"),
        ([5, 6, 7], "inf", None, InputError, "NaN or inf; first bad row is 1"),
        ([5, 6, 7], "wide", None, InputError, "dim 65 but the index has dim 64"),
        ([5, 6, 7], "null", None, InputError, "must be floating point, got dtype object"),
        ([5, 6], None, None, InputError, "got 2 ids for 3 vectors"),
        ([5, 6, 7], None, [{}, {"x": float("nan")}, None], InputError, "payload 1 is not JSON"),
        ([5, 6, 7], None, [{}, [1], None], InputError, "payload 1 must be a JSON object"),
        ([5, 6, 7], None, [{}, {"s": "a\x00b"}, None], InputError, "payload 1 holds a NUL"),
        ([5, 6, 7], None, [{}], InputError, "got 1 payloads for 3 vectors"),
    ],
)
def test_failed_batch_leaves_nothing_behind(backend, coll, ids, vectors, payloads, error, match):
    backend.add(coll, np.arange(3), _data(3))
    x = _data(3, seed=2)
    if vectors == "nan":
        x[1, 3] = np.nan
    elif vectors == "inf":
        x[1, 0] = np.inf
    elif vectors == "wide":
        x = np.hstack([x, x[:, :1]])
    elif vectors == "null":  # JSON nulls in a vector
        x = [row.tolist() for row in x]
        x[1][2] = None
    with pytest.raises(error, match=match):
        backend.add(coll, np.array(ids), x, payloads)
    assert _ids_in(backend, coll) == {0, 1, 2}
    assert backend.info(coll)["count"] == 3


def test_tuned_plan_table_round_trip(backend, coll):
    assert backend.tuning(coll) is None
    table = {"target": 0.95, "rows": [{"plan": "rerank:16:64:50", "recall": 0.97}]}
    backend.set_tuning(coll, table)
    assert backend.tuning(coll) == table
    with pytest.raises(InputError, match="not JSON"):
        backend.set_tuning(coll, {"x": float("nan")})
    assert backend.tuning(coll) == table
    with pytest.raises(NotFoundError, match="collection 'nope' does not exist"):
        backend.set_tuning("nope", table)


def test_delete_is_all_or_nothing(backend, coll):
    backend.add(coll, np.arange(4), _data(4))
    with pytest.raises(NotFoundError, match="id 9 at position 1 is not in collection .* nothing"):
        backend.delete(coll, np.array([1, 9, 2]))
    with pytest.raises(InputError, match="the same id is given twice"):
        backend.delete(coll, np.array([1, 1]))
    with pytest.raises(InputError, match="no ids to delete"):
        backend.delete(coll, np.array([], dtype=np.int64))
    assert _ids_in(backend, coll) == {0, 1, 2, 3} and backend.info(coll)["count"] == 4


def _spec(**change) -> CollectionSpec:
    fields = {
        "name": "ok",
        "dim": 64,
        "nesting": NESTING,
        "shortlist_dim": 16,
        "backend": "postgres",
    }
    fields.update(change)
    return CollectionSpec(**fields)


@pytest.mark.parametrize(
    "spec, match",
    [
        (_spec(name="a b"), "collection name 'a b' is not 1-64 characters"),
        (_spec(name='x"; DROP TABLE y; --'), "is not 1-64 characters"),
        (_spec(name="x" * 65), "is not 1-64 characters"),
        (_spec(name=""), "is not 1-64 characters"),
        (_spec(backend="sqlite"), "unknown backend 'sqlite'"),
        (_spec(backend="memory"), "spec.backend is 'memory' but this is the postgres backend"),
        (_spec(nesting=(16, 32)), "ends at 32 but the embedding has 64"),
        (_spec(nesting=(32, 16, 64)), "strictly increasing"),
        (_spec(shortlist_dim=8), "size 8 is not in the nesting"),
        (_spec(shortlist_dim=0), "shortlist_dim"),
        (_spec(dim=2.5), "dim"),
        (_spec(metric="l2"), "unknown metric 'l2'"),
        (_spec(dtype="int8"), "unknown dtype 'int8'"),
        (_spec(default_plan="fast"), "cannot read plan 'fast'"),
        (_spec(dim=20000, nesting=(16, 20000)), "dim"),
        (
            _spec(dim=5000, nesting=(4500, 5000), shortlist_dim=4500),
            "above pgvector's 4000-dim HNSW limit for halfvec",
        ),
    ],
)
def test_bad_specs_are_named(backend, spec, match):
    with pytest.raises(ConfigError, match=match):
        backend.create(spec)
    assert "ok" not in [s.name for s in backend.collections()]


def test_create_twice_conflicts(backend, coll):
    with pytest.raises(ConflictError, match=f"collection '{coll}' already exists"):
        backend.create(CollectionSpec(coll, 64, NESTING, 16, backend="postgres"))


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.info("nope"),
        lambda b: b.spec("nope"),
        lambda b: b.drop("nope"),
        lambda b: b.add("nope", np.arange(1), _data(1)),
        lambda b: b.get("nope", 1),
        lambda b: b.delete("nope", np.arange(1)),
        lambda b: b.payloads("nope", np.arange(1)),
        lambda b: b.search("nope", _data(1), 1, None),
        lambda b: b.table("nope"),
    ],
)
def test_unknown_collection(backend, call):
    with pytest.raises(NotFoundError, match="collection 'nope' does not exist"):
        call(backend)


def test_a_name_that_cannot_be_a_collection(backend):
    with pytest.raises(ConfigError, match="collection name 'a;b' is not 1-64 characters"):
        backend.info("a;b")


@pytest.mark.parametrize(
    "k, queries, plan, error, match",
    [
        (0, None, None, ConfigError, "k must be a positive int"),
        (-1, None, None, ConfigError, "k must be a positive int"),
        (4, None, SingleShot(64), ConfigError, "k=4 exceeds the 3 items of collection"),
        (1, "short", None, InputError, "dim 32 but the index has dim 64"),
        (1, "nan", None, InputError, "NaN or inf; first bad row is 0"),
        (1, None, SingleShot(32, exact=False), ConfigError, "covers the 16-prefix, not 32"),
        (1, None, Rerank(16, 128, 10), ConfigError, "uses dim 128 but the index has only 64"),
        (1, None, "funnel", ConfigError, "must be a SingleShot, Rerank or Funnel"),
    ],
)
def test_bad_searches_are_named(backend, coll, k, queries, plan, error, match):
    backend.add(coll, np.arange(3), _data(3))
    q = _data(1)
    if queries == "short":
        q = q[:, :32]
    elif queries == "nan":
        q[0, 0] = np.nan
    with pytest.raises(error, match=match):
        backend.search(coll, q, k, plan)


def test_search_of_an_empty_collection(backend, coll):
    with pytest.raises(InputError, match=f"collection '{coll}' is empty: add items"):
        backend.search(coll, _data(1), 1, None)


def test_halfvec_above_2000_dims(backend):
    dim = 2048
    x = np.random.default_rng(5).standard_normal((200, dim)).astype(np.float32)
    backend.create(CollectionSpec("wide", dim, (64, 512, dim), 64, backend="postgres"))
    try:
        backend.add("wide", np.arange(200), x)
        with backend.pool.connection() as conn:
            kind = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (backend.table("wide"),),
            ).fetchone()[0]
        assert kind == "halfvec(2048)"
        vector, _ = backend.get("wide", 7)
        np.testing.assert_array_equal(vector, x[7].astype(np.float16).astype(np.float32))
        hits = backend.search("wide", x[:5], 3, Rerank(64, dim, 50))
        np.testing.assert_array_equal(hits.ids[:, 0], np.arange(5))
        np.testing.assert_allclose(hits.scores[:, 0], 1, atol=1e-3)
        exact = MatryoshkaIndex(shortlist_dim=64, ann="flat", dtype="float16").build(x)
        want = exact.search(x[10:15] + 0.5, 5, SingleShot(dim)).ids
        got = backend.search("wide", x[10:15] + 0.5, 5, SingleShot(dim)).ids
        assert (got == want).mean() >= 0.8  # halfvec rounds the query too; near-ties may swap
    finally:
        backend.drop("wide")


def test_two_backends_share_one_database(backend, pg_database, coll):  # noqa: F811
    backend.add(coll, np.arange(3), _data(3))
    with PostgresBackend(dsn=pg_database, pool_size=1) as other:
        assert other.info(coll)["count"] == 3
        other.add(coll, np.array([10]), _data(1))
    assert backend.info(coll)["count"] == 4


def test_identifiers_are_quoted(backend):
    backend.create(CollectionSpec("Mixed-Case_1", 64, NESTING, 16, backend="postgres"))
    try:
        backend.add("Mixed-Case_1", np.arange(2), _data(2))
        assert backend.search("Mixed-Case_1", _data(1), 2, SingleShot(64)).ids.shape == (1, 2)
    finally:
        backend.drop("Mixed-Case_1")


def test_search_follows_changes_made_by_another_backend(backend, pg_database, coll):  # noqa: F811
    """Searches cache a collection's table and spec, never its count or its existence."""
    backend.add(coll, np.arange(3), _data(3))
    assert backend.search(coll, _data(1), 3, SingleShot(64)).ids.shape == (1, 3)
    with PostgresBackend(dsn=pg_database, pool_size=1) as other:
        other.add(coll, np.array([7, 8]), _data(2, seed=4))
        assert backend.search(coll, _data(1), 5, SingleShot(64)).ids.shape == (1, 5)
        assert backend.payloads(coll, np.array([7])) == [None]  # the table is cached now
        other.drop(coll)  # re-created under the same name: a new table, other rows
        other.create(CollectionSpec(coll, 64, NESTING, 16, backend="postgres"))
        other.add(coll, np.array([40, 41]), _data(2, seed=5), [{"v": 40}, None])
        with pytest.raises(ConflictError, match="dropped and re-created since the search"):
            backend.payloads(coll, np.array([7]))  # ids of a search of the old collection
        assert backend.payloads(coll, np.array([41, 40])) == [None, {"v": 40}]
        hits = backend.search(coll, _data(1), 2, SingleShot(64))
        assert set(hits.ids[0]) == {40, 41}
        with pytest.raises(ConfigError, match="k=3 exceeds the 2 items"):
            backend.search(coll, _data(1), 3, SingleShot(64))
        other.drop(coll)
        with pytest.raises(NotFoundError, match=f"collection '{coll}' does not exist"):
            backend.payloads(coll, np.array([40]))
        with pytest.raises(NotFoundError, match=f"collection '{coll}' does not exist"):
            backend.search(coll, _data(1), 1, SingleShot(64))
        other.create(CollectionSpec(coll, 64, NESTING, 16, backend="postgres"))  # for teardown


def test_settings_statement_applies_every_setting_to_the_transaction(backend):
    statement, values = plans_sql.settings_statement({"hnsw.ef_search": "77", "work_mem": "5MB"})
    with backend.pool.connection() as conn:
        conn.execute(statement, values)
        assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "77"
        assert conn.execute("SHOW work_mem").fetchone()[0] == "5MB"
    with backend.pool.connection() as conn:  # SET LOCAL: gone with the transaction
        assert conn.execute("SHOW work_mem").fetchone()[0] != "5MB"
    statement, values = plans_sql.settings_statement({"work_mem": "6MB"}, local=False)
    with backend.pool.connection() as conn:
        conn.execute(statement, values)
        conn.commit()
        assert conn.execute("SHOW work_mem").fetchone()[0] == "6MB"  # the session's now
        conn.execute("RESET work_mem")


def _setting(conn, name: str) -> str:
    return conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]


def test_search_connections_keep_settings_for_the_session_and_drop_stale_ones(pg_database):  # noqa: F811
    with PostgresBackend(dsn=pg_database, pool_size=1) as one:  # one connection: one session
        with one.search_pool.connection() as conn:
            default_mem = _setting(conn, "work_mem")
            conn.apply({"work_mem": "7MB", "enable_indexscan": "off"})
            assert conn.applied == {"work_mem": "7MB", "enable_indexscan": "off"}
        with one.search_pool.connection() as conn:
            assert (_setting(conn, "work_mem"), _setting(conn, "enable_indexscan")) == (
                "7MB",
                "off",
            )
            conn.apply({"work_mem": "9MB"})  # enable_indexscan is not in it: back to default
            assert (_setting(conn, "work_mem"), _setting(conn, "enable_indexscan")) == (
                "9MB",
                "on",
            )
            conn.execute("SET work_mem = '3MB'")  # behind its back: apply sends nothing new
            conn.apply({"work_mem": "9MB"})
            assert _setting(conn, "work_mem") == "3MB"
            conn.apply({})
            assert _setting(conn, "work_mem") == default_mem and conn.applied == {}


def test_an_exact_search_leaves_no_setting_behind_for_an_ann_one(pg_database, filled):  # noqa: F811
    name, x = filled
    ann = Rerank(16, 64, 100)
    with PostgresBackend(dsn=pg_database, pool_size=1) as one:
        exact = one.search(name, x[:2], 5, SingleShot(64))
        with one.search_pool.connection() as conn:
            assert conn.applied == {"enable_indexscan": "off"}
        hits = one.search(name, x[:2], 5, ann)
        with one.search_pool.connection() as conn:
            assert _setting(conn, "enable_indexscan") == "on"
            assert conn.applied == plans_sql.settings(ann, 5, one.ef_search)
            table = one.table(name)
            statement = plans_sql.search_statement(table, "vector", 64, 16, ann, 5)
            plan = conn.execute(sql.SQL("EXPLAIN ") + statement, {"q": PgVector(x[0])})
            shown = " ".join(r[0] for r in plan)
    assert f"Index Scan using {table}_ann" in shown  # the prefix index again
    np.testing.assert_array_equal(exact.ids[:, 0], [0, 3])
    np.testing.assert_array_equal(hits.ids[:, 0], [0, 3])  # each query is a row


def test_info_answers_when_the_prefix_index_was_dropped_by_hand(backend, coll):
    with backend.pool.connection() as conn:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(f"{backend.table(coll)}_ann")))
    info = backend.info(coll)
    assert info["ann_index_bytes"] == 0 and info["memory_bytes"] > 0
