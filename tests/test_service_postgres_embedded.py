"""PostgresBackend's embedded server: a down database is a named 503, and it recovers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pg_helpers import pg_data_dir  # noqa: F401 (fixture)

pytest.importorskip("pgserver")
pytest.importorskip("psycopg_pool")

from mrl.errors import ConfigError, LockedError, PathError, UnavailableError  # noqa: E402
from mrl.retrieval.plans import SingleShot  # noqa: E402
from mrl.service.backend import CollectionSpec  # noqa: E402
from mrl.service.postgres import PostgresBackend  # noqa: E402


def test_database_down_then_back(pg_data_dir):  # noqa: F811
    x = np.random.default_rng(0).standard_normal((50, 32)).astype(np.float32)
    with PostgresBackend(data_dir=pg_data_dir / "db", pool_size=2, timeout=1) as backend:
        backend.create(CollectionSpec("c", 32, (8, 32), 8, backend="postgres"))
        backend.add("c", np.arange(50), x)
        backend.server.stop()
        for call in (
            lambda: backend.info("c"),
            lambda: backend.search("c", x[:1], 3, None),
            lambda: backend.add("c", np.array([99]), x[:1]),
        ):
            with pytest.raises(UnavailableError, match="is unavailable: .*retry once the database"):
                call()
        backend.server.start()
        deadline = time.monotonic() + 20
        while True:  # the pool replaces its dead connections in the background
            try:
                info = backend.info("c")
                break
            except UnavailableError:
                assert time.monotonic() < deadline, "the backend did not recover"
        assert info["count"] == 50  # nothing was half-written while it was down
        hits = backend.search("c", x[:2], 1, SingleShot(32))
        np.testing.assert_array_equal(hits.ids[:, 0], [0, 1])
        backend.add("c", np.array([99]), x[:1])
        # a restart while idle: every pooled connection is dead, yet no call fails (writes
        # check theirs on checkout, a search runs again on a fresh one)
        backend.server.stop()
        backend.server.start()
        hits = backend.search("c", x[:2], 1, SingleShot(32))
        np.testing.assert_array_equal(hits.ids[:, 0], [0, 1])
        backend.add("c", np.array([98]), x[1:2])
        # a second service cannot take the same data folder
        with pytest.raises(LockedError, match="in use by another process"):
            PostgresBackend(data_dir=pg_data_dir / "db")
    with PostgresBackend(data_dir=pg_data_dir / "db") as again:  # the data survives a restart
        assert again.info("c")["count"] == 52


@pytest.mark.parametrize(
    "dsn, match",
    [("x", 'missing "=" after "x"'), ("postgresql:///db?foo=bar", "invalid URI query parameter")],
)
def test_malformed_dsn(dsn, match):
    with pytest.raises(ConfigError, match=f"dsn is not a PostgreSQL connection string .*{match}"):
        PostgresBackend(dsn=dsn)


def test_unreachable_dsn_names_the_reason():
    with pytest.raises(
        UnavailableError, match="/nonexistent.* is unavailable: .*(No such file|failed)"
    ):
        PostgresBackend(dsn="postgresql://postgres@/postgres?host=/nonexistent", timeout=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "either dsn .* or data_dir"),
        ({"dsn": "x", "data_dir": "y"}, "either dsn .* or data_dir"),
        ({"dsn": 5}, "dsn must be a connection string"),
        ({"dsn": "x", "pool_size": 0}, "pool_size"),
        ({"dsn": "x", "timeout": 0}, "timeout"),
        ({"dsn": "x", "hnsw_m": 1}, "hnsw_m"),
        ({"dsn": "x", "hnsw_m": 32, "ef_construction": 40}, "must be >= 2 \\* hnsw_m = 64"),
        ({"dsn": "x", "ef_search": 1001}, "ef_search"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PostgresBackend(**kwargs)


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PathError, match="file"):
        PostgresBackend(data_dir=tmp_path / "file")
