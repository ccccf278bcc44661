"""`PostgresBackend`: collections of nested vectors in PostgreSQL + pgvector, searched in SQL.

Each collection is one table, `id bigint PRIMARY KEY, embedding vector(D), payload jsonb`
(`halfvec(D)` above 2,000 dims or for float16 storage), with an HNSW index on its D_s-prefix;
plans run as nested SQL subqueries (`mrl.service.sql`), so the funnel never leaves the
database. A catalog table (`mrl_collections`) holds every collection's spec and live count;
each write takes its collection's catalog row `FOR UPDATE`, so writes to one collection are
serialised and the count is exact (`k` is checked against it without a scan).

The database is an embedded PostgreSQL in a folder the service owns (`mrl.service.embedded`)
or any PostgreSQL with pgvector >= 0.7 named by a DSN. Two psycopg pools: writes and catalog
reads borrow a checked connection for one transaction (a batch that fails, a duplicate id or
a bad row, leaves nothing behind); searches borrow an autocommit connection that keeps its
planner settings (`hnsw.ef_search`, ...) for the session, so a search is one prepared
statement and one round trip. A database that cannot be reached raises `UnavailableError`
naming why, and the pools replace their dead connections once the database is back.
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import Format
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from mrl.checks import check_int, check_k, check_number
from mrl.errors import ConfigError, ConflictError, InputError, NotFoundError, UnavailableError
from mrl.retrieval.plans import Plan
from mrl.retrieval.search import check_effort
from mrl.retrieval.storage import as_ids, as_rows, check_new_ids
from mrl.service import sql as plans_sql
from mrl.service.backend import CollectionSpec, SearchHits
from mrl.service.embedded import EmbeddedPostgres
from mrl.service.spec import (
    check_delete_ids,
    check_name,
    check_search_k,
    check_spec,
    resolve_plan,
    spec_to_dict,
)

CATALOG = "mrl_collections"
_MIN_PGVECTOR = (0, 7)  # subvector() and halfvec arrived in pgvector 0.7.0
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


class PgVector:
    """A [D] float array as a pgvector `vector` query parameter (pgvector's binary form).

    Pass it as a psycopg parameter on a connection of `PostgresBackend`'s pools (which know
    its type oid); `PgHalfVector` is the same for `halfvec`. Binary parameters skip formatting and
    parsing 1,000 floats as text per query.
    """

    __slots__ = ("data",)
    item = ">f4"  # big-endian float32, as vector_recv reads them

    def __init__(self, x: np.ndarray):
        self.data = struct.pack(">HH", len(x), 0) + np.asarray(x).astype(self.item).tobytes()


class PgHalfVector(PgVector):
    """A [D] float array as a pgvector `halfvec` query parameter (see `PgVector`)."""

    __slots__ = ()
    item = ">f2"


def _vec_dumper(oid: int) -> type[Dumper]:
    """A psycopg dumper sending `PgVector`s as binary values of the type with `oid`."""

    class VecDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: PgVector) -> bytes:
            return obj.data

    VecDumper.oid = oid
    return VecDumper


class SearchConnection(psycopg.Connection):
    """A search-pool connection that remembers the settings its session runs with.

    Searches set `hnsw.ef_search` and the like for the session (`set_config(..., false)`),
    and only when they differ from what the connection already has: a stream of searches
    under one plan pays no settings round trip. Only searches use these connections, so
    the settings never reach a write.
    """

    applied: dict[str, str] | None = None  # None: unknown (a new or a failed session)

    def apply(self, settings: dict[str, str]) -> None:
        """Make this session's settings `settings` (a `RESET ALL` first if some set earlier
        are not in it); nothing is sent when they already are."""
        if self.applied == settings:
            return
        stale = self.applied is None or bool(self.applied.keys() - settings.keys())
        self.applied = None  # unknown until every statement below went through
        if stale:
            self.execute("RESET ALL")
        if settings:
            statement, values = plans_sql.settings_statement(settings, local=False)
            self.execute(statement, values, prepare=True)
        self.applied = dict(settings)


def _copy_stream(ids: np.ndarray, x: np.ndarray, kind: str, payloads: list[bytes | None]) -> bytes:
    """Rows (id, embedding, payload) in PostgreSQL's binary COPY format, header to trailer.

    The fixed part of every row is one NumPy structured array (no Python loop over floats);
    only the payloads, when given, are joined row by row.
    """
    n, d = x.shape
    item = (PgHalfVector if kind == "halfvec" else PgVector).item
    fields = [
        ("nfields", ">i2"),
        ("id_len", ">i4"),
        ("id", ">i8"),
        ("vec_len", ">i4"),
        ("dim", ">u2"),
        ("unused", ">u2"),
        ("vec", item, (d,)),
    ]
    rows = np.zeros(n, dtype=fields)
    rows["nfields"], rows["id_len"], rows["id"] = 3, 8, ids
    rows["vec_len"], rows["dim"], rows["vec"] = 4 + np.dtype(item).itemsize * d, d, x
    if all(p is None for p in payloads):
        null = np.full(n, -1, dtype=">i4")
        fixed = np.empty(n, dtype=[("row", rows.dtype), ("payload", ">i4")])
        fixed["row"], fixed["payload"] = rows, null
        return _COPY_HEADER + fixed.tobytes() + _COPY_TRAILER
    parts = [_COPY_HEADER]
    for row, p in zip(rows, payloads, strict=True):
        parts.append(row.tobytes())
        # jsonb's binary form: a version byte (1), then the JSON text
        parts.append(
            struct.pack(">i", -1) if p is None else struct.pack(">i", len(p) + 1) + b"\x01" + p
        )
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _payload_bytes(payloads, n: int) -> list[bytes | None]:
    """Payloads as JSON bytes (None stays None); `InputError` naming the first bad one."""
    if payloads is None:
        return [None] * n
    payloads = list(payloads)
    if len(payloads) != n:
        raise InputError(
            f"got {len(payloads)} payloads for {n} vectors; give one (or null) per vector"
        )
    out: list[bytes | None] = []
    for i, p in enumerate(payloads):
        if p is None:
            out.append(None)
            continue
        if not isinstance(p, dict):
            raise InputError(f"payload {i} must be a JSON object or null, got {type(p).__name__}")
        try:
            text = json.dumps(p, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise InputError(f"payload {i} is not JSON ({e}); give JSON values only") from None
        if "\\u0000" in text:
            raise InputError(f"payload {i} holds a NUL character, which jsonb cannot store")
        out.append(text.encode())
    return out


def _spec_of(stored: dict) -> CollectionSpec:
    """A catalog row's spec (JSON gives the nesting back as a list); not checked again: the
    catalog only holds specs that passed `check_spec`, and searches read it every call."""
    return CollectionSpec(**{**stored, "nesting": tuple(stored["nesting"])})


def _where(dsn: str) -> str:
    """The server a DSN points at, for messages (never its password)."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured PostgreSQL"
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"PostgreSQL {host}{port}/{info.get('dbname', '')}"


class PostgresBackend:
    """The service's PostgreSQL + pgvector backend (see the module docstring).

    Args:
        dsn: a libpq connection string or URI of a PostgreSQL with pgvector >= 0.7 (the
            extension is created if missing); None starts the embedded server in `data_dir`.
        data_dir: the folder of the embedded server (created if missing, locked while open);
            only without `dsn`.
        pool_size: most connections held by each of the two pools (writes, searches;
            concurrent calls beyond it wait), 1..1024.
        timeout: seconds a call waits for a connection before `UnavailableError`, > 0.
        hnsw_m: HNSW graph degree of new collections' indexes (pgvector's `m`), 2..100.
        ef_construction: HNSW build beam of new indexes, 4..1000, >= 2 * hnsw_m.
        ef_search: least HNSW search beam (raised to each plan's shortlist), 1..1000.

    Raises:
        ConfigError: a bad argument, both or neither of `dsn` / `data_dir`, or a pgvector
            older than 0.7.
        UnavailableError: the database cannot be reached (the message says why).

    Example:
        >>> backend = PostgresBackend(data_dir="runs/pg")  # doctest: +SKIP
        >>> backend.create(CollectionSpec("docs", 64, (8, 16, 32, 64), 16))  # doctest: +SKIP
    """

    def __init__(
        self,
        dsn: str | None = None,
        data_dir: str | Path | None = None,
        pool_size: int = 8,
        timeout: float = 5.0,
        hnsw_m: int = 16,
        ef_construction: int = 64,
        ef_search: int = plans_sql.DEFAULT_EF_SEARCH,
    ):
        if (dsn is None) == (data_dir is None):
            raise ConfigError(
                "give PostgresBackend either dsn (a PostgreSQL with pgvector) or data_dir "
                "(a folder for the embedded server), not both or neither"
            )
        if dsn is not None and not isinstance(dsn, str):
            raise ConfigError(f"dsn must be a connection string, got {type(dsn).__name__}")
        self.pool_size = check_int("pool_size", pool_size, 1, 1024)
        self.timeout = check_number("timeout", timeout, 0, low_open=True)
        self.hnsw_m = check_int("hnsw_m", hnsw_m, 2, 100)
        self.ef_construction = check_int("ef_construction", ef_construction, 4, 1000)
        if self.ef_construction < 2 * self.hnsw_m:
            raise ConfigError(
                f"ef_construction={ef_construction} must be >= 2 * hnsw_m = {2 * self.hnsw_m} "
                "(pgvector's rule); raise it or lower hnsw_m"
            )
        self.ef_search = check_int("ef_search", ef_search, 1, plans_sql.MAX_EF_SEARCH)
        self._entries: dict[str, tuple[str, CollectionSpec]] = {}  # name -> (table, spec)
        self.server = None if data_dir is None else EmbeddedPostgres(data_dir)
        self.pool = self.search_pool = None
        try:
            self.dsn = dsn if self.server is None else self.server.start()
            self._setup()
            # writes and catalog reads: each checkout checks the connection (one round trip),
            # so a write right after a database restart finds a live one
            self.pool = self._pool("mrl-postgres", check=ConnectionPool.check_connection)
            # searches: autocommit, no check (a dead connection fails at once and `read_rows` runs
            # the search again on a fresh one)
            self.search_pool = self._pool("mrl-postgres-search", SearchConnection, autocommit=True)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ connections
    def _setup(self) -> None:
        """Create the extension and the catalog (once per database); learn pgvector's oids."""
        try:
            conn = psycopg.connect(self.dsn, connect_timeout=max(1, round(self.timeout)))
        except psycopg.OperationalError as e:
            raise UnavailableError(self._down(e)) from e
        except psycopg.ProgrammingError as e:  # libpq could not parse it
            raise ConfigError(
                f"dsn is not a PostgreSQL connection string ({' '.join(str(e).split())}); "
                "write it as postgresql://user:password@host:port/dbname or key=value pairs"
            ) from None
        with conn, conn.transaction():
            # one creator at a time: IF NOT EXISTS alone races between two new services
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (CATALOG,))
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as e:
                raise ConfigError(
                    f"cannot enable pgvector in {_where(self.dsn)} ({' '.join(str(e).split())}); "
                    "install pgvector >= 0.7 there, or have a superuser run CREATE EXTENSION vector"
                ) from None
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, "
                    "no bigint GENERATED ALWAYS AS IDENTITY UNIQUE, spec jsonb NOT NULL, "
                    "count bigint NOT NULL DEFAULT 0, tuning jsonb)"
                ).format(sql.Identifier(CATALOG))
            )
            version = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]
            if tuple(int(v) for v in re.findall(r"\d+", version)[:2]) < _MIN_PGVECTOR:
                raise ConfigError(
                    f"pgvector {version} in {_where(self.dsn)} is too old (subvector and halfvec "
                    "need 0.7); run ALTER EXTENSION vector UPDATE"
                )
            self._oids = conn.execute(
                "SELECT 'vector'::regtype::oid, 'halfvec'::regtype::oid"
            ).fetchone()

    def _pool(
        self,
        name: str,
        connection_class: type[psycopg.Connection] = psycopg.Connection,
        check=None,
        autocommit: bool = False,
    ) -> ConnectionPool:
        """An open pool of up to `pool_size` connections to `dsn`, taught pgvector's types."""
        return ConnectionPool(
            self.dsn,
            connection_class=connection_class,
            min_size=1,
            max_size=self.pool_size,
            timeout=self.timeout,
            kwargs={"connect_timeout": max(1, round(self.timeout)), "autocommit": autocommit},
            configure=self._configure,
            check=check,
            name=name,
            open=True,
        )

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.adapters.register_dumper(PgVector, _vec_dumper(self._oids[0]))
        conn.adapters.register_dumper(PgHalfVector, _vec_dumper(self._oids[1]))

    def _down(self, error: BaseException | None = None) -> str:
        """Why the database cannot be used now, in one line (asks it directly if unknown)."""
        if error is None:
            try:
                psycopg.connect(self.dsn, connect_timeout=max(1, round(self.timeout))).close()
                why = f"all {self.pool_size} connections stayed busy for {self.timeout:g} s"
            except psycopg.Error as e:
                error = e
        if error is not None:
            why = " ".join(str(error).split()) or type(error).__name__
        return f"{_where(self.dsn)} is unavailable: {why}; retry once the database is up"

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection inside one transaction (committed on success, else rolled back)."""
        with self._errors(), self.pool.connection() as conn:
            yield conn

    def read_rows(
        self, statement: sql.Composable, params: list[dict], settings: dict[str, str] | None
    ) -> list[list[tuple]]:
        """The rows of read-only `statement` for each parameter set, on a search connection
        under `settings` (None: whatever its session has, for a read no planner setting can
        change, such as one by primary key): one prepared statement and one round trip for
        one set, all of them pipelined for several. `search` runs its SQL through it; so do
        the benchmarks that time SQL beside it (`benchmarks/pgvector_funnel.py`).

        A connection the server dropped (a restart) fails at once; the read then runs again,
        once, after the pool has replaced its dead connections (a read can be repeated).
        """
        with self._errors():
            try:
                return self._read_once(statement, params, settings)
            except (PoolTimeout, PoolClosed):
                raise
            except psycopg.OperationalError:
                self.search_pool.check()  # drops every connection the server closed
            return self._read_once(statement, params, settings)

    def _read_once(
        self, statement: sql.Composable, params: list[dict], settings: dict[str, str] | None
    ) -> list[list[tuple]]:
        """One attempt of `read_rows`, on one search connection."""
        with self.search_pool.connection() as conn:
            if settings is not None:
                conn.apply(settings)
            if len(params) == 1:
                return [conn.execute(statement, params[0], prepare=True).fetchall()]
            with conn.pipeline():
                cursors = [conn.execute(statement, p, prepare=True) for p in params]
            return [cur.fetchall() for cur in cursors]

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg's and the pool's failures as mrl's errors (`UnavailableError` says why)."""
        try:
            yield
        except PoolTimeout as e:
            raise UnavailableError(self._down()) from e
        except PoolClosed as e:
            raise UnavailableError("the PostgreSQL backend is closed; open a new one") from e
        except psycopg.OperationalError as e:  # the server went away mid-call
            raise UnavailableError(self._down(e)) from e
        except psycopg.errors.DataException as e:  # a value pgvector or jsonb refused
            raise InputError(f"the database refused a value: {' '.join(str(e).split())}") from e

    def _lookup(
        self, conn: psycopg.Connection, name: str, lock: bool = False
    ) -> tuple[str, CollectionSpec, int]:
        """(table, spec, count) of collection `name`; `lock` holds its row until commit."""
        check_name(name)
        row = conn.execute(
            sql.SQL("SELECT no, spec, count FROM {} WHERE name = %s{}").format(
                sql.Identifier(CATALOG), sql.SQL(" FOR UPDATE" if lock else "")
            ),
            (name,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"collection {name!r} does not exist; create it first")
        no, spec, count = row
        return f"mrl_items_{no}", _spec_of(spec), count

    def _entry(self, name: str) -> tuple[str, CollectionSpec]:
        """(table, spec) of collection `name`, from the catalog once, then from memory.

        A collection's table and spec never change while it exists, so searches skip the
        catalog round trip: a search that finds the table gone (the collection was dropped)
        looks it up again, and one that gets fewer than k rows reads the live count to check k.
        """
        hit = self._entries.get(name)
        if hit is None:
            with self._transaction() as conn:
                table, spec, _ = self._lookup(conn, name)
            hit = self._entries[name] = (table, spec)
        return hit

    # ------------------------------------------------------------------ collections
    def create(self, spec: CollectionSpec) -> None:
        """Create an empty collection: its table and its HNSW index over the D_s-prefix."""
        spec = check_spec(spec)
        if spec.backend != "postgres":
            raise ConfigError(
                f"spec.backend is {spec.backend!r} but this is the postgres backend; "
                "create the collection with backend='postgres'"
            )
        plans_sql.check_dims(spec.dim, spec.shortlist_dim, spec.dtype)
        kind = plans_sql.column_type(spec.dim, spec.dtype)
        with self._transaction() as conn:
            try:
                no = conn.execute(
                    sql.SQL("INSERT INTO {} (name, spec) VALUES (%s, %s) RETURNING no").format(
                        sql.Identifier(CATALOG)
                    ),
                    (spec.name, Jsonb(spec_to_dict(spec))),
                ).fetchone()[0]
            except psycopg.errors.UniqueViolation:
                raise ConflictError(
                    f"collection {spec.name!r} already exists; drop it first or pick another name"
                ) from None
            table = f"mrl_items_{no}"
            for statement in plans_sql.create_table(table, kind, spec.dim):
                conn.execute(statement)
            conn.execute(
                plans_sql.create_ann_index(
                    table, kind, spec.shortlist_dim, self.hnsw_m, self.ef_construction
                )
            )

    def collections(self) -> list[CollectionSpec]:
        with self._transaction() as conn:
            rows = conn.execute(
                sql.SQL("SELECT spec FROM {} ORDER BY name").format(sql.Identifier(CATALOG))
            ).fetchall()
        return [_spec_of(spec) for (spec,) in rows]

    def info(self, name: str) -> dict[str, Any]:
        """Spec, live count and on-disk sizes: `memory_bytes` is the table with its indexes.

        Also `table_bytes` (heap + TOAST), `index_bytes` (every index) and `ann_index_bytes`
        (the HNSW index alone), from `pg_table_size` / `pg_indexes_size` / `pg_relation_size`.
        """
        with self._transaction() as conn:
            table, spec, count = self._lookup(conn, name)
            sizes = conn.execute(
                "SELECT pg_total_relation_size(%(t)s::regclass), pg_table_size(%(t)s::regclass), "
                "pg_indexes_size(%(t)s::regclass), "
                "coalesce(pg_relation_size(to_regclass(%(a)s)), 0)",  # 0 if someone dropped it
                {"t": table, "a": f"{table}_ann"},
            ).fetchone()
        total, table_bytes, index_bytes, ann_bytes = sizes
        return {
            "spec": spec,
            "count": count,
            "memory_bytes": total,
            "table_bytes": table_bytes,
            "index_bytes": index_bytes,
            "ann_index_bytes": ann_bytes,
        }

    def spec(self, name: str) -> CollectionSpec:
        """The collection's spec from the catalog, then from memory (`_entry`): `add` and
        `search` look it up again if the collection was dropped in the meantime."""
        return self._entry(name)[1]

    def table(self, name: str) -> str:
        """The SQL table holding collection `name` (its HNSW index is `<table>_ann`), for
        tools that query it directly, such as `benchmarks/pgvector_funnel.py`."""
        with self._transaction() as conn:
            return self._lookup(conn, name)[0]

    def drop(self, name: str) -> None:
        with self._transaction() as conn:
            table, _, _ = self._lookup(conn, name, lock=True)
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE name = %s").format(sql.Identifier(CATALOG)), (name,)
            )
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
        self._entries.pop(name, None)

    # ------------------------------------------------------------------ items
    def add(
        self,
        name: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        payloads: list[dict[str, Any] | None] | None = None,
    ) -> None:
        """Store a batch in one transaction (binary COPY): all of it, or nothing.

        Raises:
            NotFoundError: no such collection.
            InputError: bad vectors (wrong width, NaN/inf, beyond float16 for halfvec), bad
                or repeated ids, payloads that are not JSON objects.
            ConflictError: an id already in the collection (named, with its position).
        """
        with self._transaction() as conn:
            table, spec, _ = self._lookup(conn, name, lock=True)
            kind = plans_sql.column_type(spec.dim, spec.dtype)
            x = as_rows(vectors, spec.dim, "vectors", "float16" if kind == "halfvec" else "float32")
            ids = check_new_ids(ids, len(x))
            texts = _payload_bytes(payloads, len(x))
            clash = conn.execute(
                sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table)),
                (ids.tolist(),),
            ).fetchall()
            if clash:
                pos = int(np.flatnonzero(np.isin(ids, [i for (i,) in clash]))[0])
                raise ConflictError(
                    f"id {int(ids[pos])} at position {pos} is already in collection {name!r}; "
                    "delete it first or give a new id"
                )
            try:
                with conn.cursor().copy(
                    sql.SQL("COPY {} (id, embedding, payload) FROM STDIN (FORMAT BINARY)").format(
                        sql.Identifier(table)
                    )
                ) as copy:
                    copy.write(_copy_stream(ids, x, kind, texts))
            except psycopg.errors.UniqueViolation as e:  # a concurrent writer of the same id
                raise ConflictError(
                    f"{e.diag.message_detail or 'an id is already present'} in collection "
                    f"{name!r}; give new ids"
                ) from None
            self._count(conn, name, len(ids))

    def _count(self, conn: psycopg.Connection, name: str, delta: int) -> None:
        conn.execute(
            sql.SQL("UPDATE {} SET count = count + %s WHERE name = %s").format(
                sql.Identifier(CATALOG)
            ),
            (delta, name),
        )

    def get(self, name: str, item_id: int) -> tuple[np.ndarray, dict[str, Any] | None]:
        """One item's full vector ([D] float32) and payload."""
        (item_id,) = as_ids([item_id], "item id").tolist()
        with self._transaction() as conn:
            table, _, _ = self._lookup(conn, name)
            row = conn.execute(
                sql.SQL("SELECT embedding::real[], payload FROM {} WHERE id = %s").format(
                    sql.Identifier(table)
                ),
                (item_id,),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"id {item_id} is not in collection {name!r}")
        return np.asarray(row[0], dtype=np.float32), row[1]

    def delete(self, name: str, ids: np.ndarray) -> int:
        """Delete every id given, in one transaction; none if one is absent (NotFoundError)."""
        ids = check_delete_ids(ids)
        with self._transaction() as conn:
            table, _, _ = self._lookup(conn, name, lock=True)
            gone = conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = ANY(%s) RETURNING id").format(
                    sql.Identifier(table)
                ),
                (ids.tolist(),),
            ).fetchall()
            missing = np.flatnonzero(~np.isin(ids, [i for (i,) in gone]))
            if len(missing):  # raising rolls the whole delete back
                pos = int(missing[0])
                raise NotFoundError(
                    f"id {int(ids[pos])} at position {pos} is not in collection {name!r}; "
                    "nothing was deleted"
                )
            self._count(conn, name, -len(gone))
        return len(gone)

    def payloads(self, name: str, ids: np.ndarray) -> list[dict[str, Any] | None]:
        """Payloads of `ids` in order; None for a -1 (not found) id, a null payload, or an id
        deleted since the search that returned it. One round trip on a search connection."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        table, _ = self._entry(name)
        statement = sql.SQL("SELECT id, payload FROM {} WHERE id = ANY(%(ids)s)").format(
            sql.Identifier(table)
        )
        try:
            rows = self.read_rows(statement, [{"ids": ids[ids >= 0].tolist()}], None)[0]
        except psycopg.errors.UndefinedTable:  # dropped elsewhere since it was cached
            self._entries.pop(name, None)
            self._entry(name)  # NotFoundError, or it was re-created:
            raise ConflictError(
                f"collection {name!r} was dropped and re-created since the search; search again"
            ) from None
        found = dict(rows)
        return [found.get(int(i)) for i in ids]

    # ------------------------------------------------------------------ tuned plans
    def set_tuning(self, name: str, table: dict) -> None:
        """Store a tuned plan table (JSON) with collection `name`, in its catalog row."""
        if not isinstance(table, dict):
            raise InputError(f"a tuned plan table is a JSON object, got {type(table).__name__}")
        try:
            value = Jsonb(json.loads(json.dumps(table, allow_nan=False)))
        except (TypeError, ValueError) as e:
            raise InputError(f"the tuned plan table is not JSON ({e})") from None
        with self._transaction() as conn:
            self._lookup(conn, name, lock=True)
            conn.execute(
                sql.SQL("UPDATE {} SET tuning = %s WHERE name = %s").format(
                    sql.Identifier(CATALOG)
                ),
                (value, name),
            )

    def tuning(self, name: str) -> dict | None:
        """The tuned plan table of collection `name`, or None if it was never tuned."""
        with self._transaction() as conn:
            self._lookup(conn, name)
            return conn.execute(
                sql.SQL("SELECT tuning FROM {} WHERE name = %s").format(sql.Identifier(CATALOG)),
                (name,),
            ).fetchone()[0]

    # ------------------------------------------------------------------ search
    def search(
        self,
        name: str,
        queries: np.ndarray,
        k: int,
        plan: Plan | None = None,
        effort: int | None = None,
    ) -> SearchHits:
        """Top-k of each query under `plan`, run in SQL: one statement a query, all of them
        pipelined on one connection (one round trip for the batch).

        Args:
            name: the collection.
            queries: [Q, D] (or [D]) finite floats.
            k: results per query, 1..count.
            plan: `SingleShot`, `Rerank` or `Funnel`; None: the collection's default
                (`mrl.service.spec.resolve_plan`, the same as the in-process backend's).
                ANN plans must shortlist at the collection's D_s (its HNSW index).
            effort: least `hnsw.ef_search` for this call (raised to the shortlist),
                1..1000; default the backend's `ef_search`.

        Returns:
            `SearchHits`: [Q, k] ids and cosine scores (at the plan's last dim), best first,
            ties by smaller id; -1 / -inf pad rows an ANN scan could not fill. `stats` has
            `seconds` (the SQL part), `shortlist` and `ef_search`.
        """
        given = plan
        check_name(name)
        k = check_k(k)  # against the collection's live count if fewer than k rows come back
        if effort is not None:
            effort = min(check_effort(effort), plans_sql.MAX_EF_SEARCH)
        for _ in range(2):  # again after a cached catalog entry turned out stale
            table, spec = self._entry(name)
            kind = plans_sql.column_type(spec.dim, spec.dtype)
            q = as_rows(queries, spec.dim, "queries", "float32")
            plan = resolve_plan(spec, given, k)
            statement = plans_sql.search_statement(
                table, kind, spec.dim, spec.shortlist_dim, plan, k
            )
            settings = plans_sql.settings(plan, k, self.ef_search if effort is None else effort)
            wrap = PgHalfVector if kind == "halfvec" else PgVector
            t0 = time.perf_counter()
            try:
                results = self.read_rows(statement, [{"q": wrap(v)} for v in q], settings)
                break
            except psycopg.errors.UndefinedTable:  # dropped (and maybe re-created) elsewhere
                self._entries.pop(name, None)
        else:
            raise ConflictError(
                f"collection {name!r} was dropped and re-created during the search; retry it"
            )
        seconds = time.perf_counter() - t0
        if any(len(rows) < k for rows in results):  # k above the count, or a short scan
            with self._transaction() as conn:
                count = self._lookup(conn, name)[2]
            k = check_search_k(k, count, name)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        for i, rows in enumerate(results):
            if rows:
                got = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
                ids[i, : len(rows)] = [r[0] for r in rows]
                scores[i, : len(rows)] = 1.0 - got[:, 1]
        stats = {
            "seconds": seconds,
            "shortlist": float(plan.shortlist_size(k)),
            "ef_search": float(settings.get("hnsw.ef_search", 0)),
        }
        return SearchHits(ids, scores, stats)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close the pools, then stop the embedded server (if this backend started one)."""
        for pool in (self.pool, self.search_pool):
            if pool is not None:
                pool.close()
        if self.server is not None:
            self.server.close()

    def __enter__(self) -> PostgresBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
